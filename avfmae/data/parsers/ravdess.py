"""RAVDESS: ``Actor_XX/MM-VV-EE-II-SS-RR-AA.mp4`` (Zenodo record 1188976, Video_Speech zips).

Filename fields (publisher's README): modality (01 full audio-visual, 02 video-only, 03
audio-only), vocal channel (01 speech, 02 song), emotion (01 neutral, 02 calm, 03 happy, 04 sad,
05 angry, 06 fearful, 07 disgust, 08 surprised), intensity (01 normal, 02 strong), statement
(01, 02), repetition (01, 02), actor (01..24; odd male, even female). Only audio-visual speech
files (modality 01, vocal channel 01) are indexed: 60 per actor, 1,440 in all.
"""

from __future__ import annotations

import re
from pathlib import Path

from avfmae.data.parsers import Clip, ParseResult
from avfmae.data.parsers._common import walk_files
from avfmae.data.registry import DatasetError, DatasetSpec

NAME = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")


def parse_name(stem: str) -> dict[str, int] | None:
    """The seven numeric fields of a RAVDESS file name, or ``None``."""
    m = NAME.match(stem)
    if not m:
        return None
    keys = ("modality", "channel", "emotion", "intensity", "statement", "repetition", "actor")
    return dict(zip(keys, (int(g) for g in m.groups())))


def parse(root: Path, spec: DatasetSpec) -> ParseResult:
    res = ParseResult([])
    for path in walk_files(root, (".mp4",)):
        f = parse_name(path.stem)
        if f is None:
            res.skip("file name not in RAVDESS format")
            continue
        if f["modality"] != 1 or f["channel"] != 1:
            res.skip("not an audio-visual speech file (modality 01, vocal channel 01)")
            continue
        if not 1 <= f["emotion"] <= len(spec.labels):
            res.excluded.append((path.name, f"emotion code {f['emotion']:02d} is not 01..08"))
            continue
        res.clips.append(Clip(
            clip_id=path.stem, video=path, subject=f"Actor_{f['actor']:02d}",
            label=spec.labels[f["emotion"] - 1],
        ))
    if not res.clips:
        raise DatasetError(f"{root}: no RAVDESS audio-visual speech files (Actor_XX/01-01-*.mp4)")
    return res
