"""Unlabeled pretraining pools.

- VoxCeleb2 (dev, audio-visual mp4 release): ``**/id<NNNNN>/<youtube id>/<NNNNN>.mp4``; the
  subject is the speaker id, the clip id ``<speaker>_<youtube id>_<n>``.
- AVSpeech: the clips the user fetched from YouTube, any video under ``clips/``; clip ids are the
  paths below ``clips/`` with separators turned into ``__``.
- folder: any video under the folder (recursively); ids as for AVSpeech, relative to the folder.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from avfmae.data.parsers import Clip, ParseResult
from avfmae.data.parsers._common import VIDEO_EXTS, safe_id, walk_files
from avfmae.data.registry import DatasetError, DatasetSpec

VOX = re.compile(r"^id\d+$")


def parse_voxceleb2(root: Path, spec: DatasetSpec) -> ParseResult:
    res = ParseResult([])
    for path in walk_files(root, (".mp4",)):
        speaker, video_id = path.parent.parent.name, path.parent.name
        if not VOX.match(speaker):
            res.skip("not under id<NNNNN>/<video>/")
            continue
        res.clips.append(Clip(safe_id(f"{speaker}_{video_id}_{path.stem}"), video=path,
                              subject=speaker))
    if not res.clips:
        raise DatasetError(f"{root}: no VoxCeleb2 clips (id<NNNNN>/<video id>/<NNNNN>.mp4)")
    return res


def _by_path(root: Path, base: Path, what: str) -> ParseResult:
    res = ParseResult([])
    seen: set[str] = set()
    for path in walk_files(base, VIDEO_EXTS):
        rel = path.relative_to(base).with_suffix("")
        cid = safe_id("__".join(rel.parts))
        if cid in seen:
            cid = f"{cid}_{hashlib.sha1(str(rel).encode()).hexdigest()[:8]}"
        seen.add(cid)
        res.clips.append(Clip(cid, video=path))
    if not res.clips:
        raise DatasetError(f"{base}: no {what} videos ({', '.join(VIDEO_EXTS)})")
    return res


def parse_avspeech(root: Path, spec: DatasetSpec) -> ParseResult:
    return _by_path(root, root / "clips", "AVSpeech")


def parse_folder(root: Path, spec: DatasetSpec) -> ParseResult:
    return _by_path(root, root, "face")
