"""CREMA-D: ``VideoFlash/AAAA_SSS_EEE_LL.flv`` with ``AudioWAV/AAAA_SSS_EEE_LL.wav``.

Name fields (publisher's README): actor id (1001..1091), sentence code (IEO, TIE, IOM, IWW, TAI,
MTI, IWL, ITH, DFA, ITS, TSI, WSI), emotion (ANG, DIS, FEA, HAP, NEU, SAD), level (LO, MD, HI,
XX). Four clips are known to be broken (no or empty media) and are excluded, leaving 7,438.
The 4-class variant keeps ANG, HAP, NEU, SAD as labels; DIS/FEA clips stay as unlabeled clips.
"""

from __future__ import annotations

import re
from pathlib import Path

from avfmae.data.parsers import Clip, ParseResult
from avfmae.data.parsers._common import walk_files
from avfmae.data.registry import DatasetError, DatasetSpec

NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")
BROKEN = ("1076_MTI_NEU_XX", "1076_MTI_SAD_XX", "1064_TIE_SAD_XX", "1064_IEO_DIS_MD")


def parse(root: Path, spec: DatasetSpec) -> ParseResult:
    codes = tuple(spec.option("codes"))
    res = ParseResult([])
    video_dir, audio_dir = root / "VideoFlash", root / "AudioWAV"
    if not video_dir.is_dir():
        raise DatasetError(f"{root}: no VideoFlash/ folder (CREMA-D layout)")
    for path in walk_files(video_dir, (".flv",)):
        m = NAME.match(path.stem)
        if not m:
            res.skip("file name not in CREMA-D format")
            continue
        if path.stem in BROKEN:
            res.excluded.append((path.stem, "known broken clip"))
            continue
        actor, _sentence, emotion, _level = m.groups()
        audio = audio_dir / f"{path.stem}.wav"
        if not audio.is_file():
            res.excluded.append((path.stem, f"audio file missing: {audio}"))
            continue
        label = spec.labels[codes.index(emotion)] if emotion in codes else None
        if label is None:
            res.skip(f"emotion outside the {len(codes)}-class set (kept unlabeled)")
        res.clips.append(Clip(path.stem, video=path, audio=audio, subject=actor, label=label))
    if not res.clips:
        raise DatasetError(f"{root}: no CREMA-D clips under VideoFlash/")
    return res
