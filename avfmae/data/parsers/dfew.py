"""DFEW: ``Clip/original/NNNNN.mp4`` and ``EmoLabel_DataSplit/{train,test}(single-labeled)/
set_k.csv`` (columns ``video_name,label``; video_name is the clip number, label 1..7 =
happy, sad, neutral, angry, surprise, disgust, fear), as used by MAE-DFER/HiCMAE.
Clips named by no test list are kept as unlabeled clips.
"""

from __future__ import annotations

import csv
from pathlib import Path

from avfmae.data.parsers import Clip, ParseResult
from avfmae.data.parsers._common import as_int, walk_files
from avfmae.data.registry import DatasetError, DatasetSpec


def _read(path: Path) -> list[tuple[str, int]]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        cols = {c.strip().lower(): c for c in reader.fieldnames or []}
        if "video_name" not in cols or "label" not in cols:
            raise DatasetError(f"{path}: expected the columns video_name,label")
        out = []
        for n, row in enumerate(reader, 2):
            v, lab = as_int(row[cols["video_name"]]), as_int(row[cols["label"]])
            if v is None or lab is None:
                raise DatasetError(f"{path}:{n}: not a clip number and label: {row}")
            out.append((f"{v:05d}", lab))
    return out


def parse(root: Path, spec: DatasetSpec) -> ParseResult:
    clip_dir = root / "Clip" / "original"
    split_dir = root / "EmoLabel_DataSplit"
    if not clip_dir.is_dir():
        raise DatasetError(f"{root}: no Clip/original/ folder (DFEW layout)")
    videos = {p.stem: p for p in walk_files(clip_dir, (".mp4", ".avi"))}
    labels: dict[str, str] = {}
    fold_of: dict[str, int] = {}
    train_lists: dict[int, set[str]] = {}
    bad = []
    for k in range(1, (spec.protocol.n_folds or 5) + 1):
        for part in ("test", "train"):
            path = split_dir / f"{part}(single-labeled)" / f"set_{k}.csv"
            if not path.is_file():
                if part == "test":
                    raise DatasetError(f"DFEW split list missing: {path}")
                continue
            ids = set()
            for stem, lab in _read(path):
                if not 1 <= lab <= len(spec.labels):
                    bad.append(f"{path.name} ({part}, set_{k}): clip {stem} has label {lab}")
                    continue
                labels[stem] = spec.labels[lab - 1]
                ids.add(stem)
                if part == "test":
                    if stem in fold_of and fold_of[stem] != k:
                        bad.append(f"{stem}: in the test lists of set_{fold_of[stem]} and set_{k}")
                    fold_of[stem] = k
            if part == "train":
                train_lists[k] = ids
    if bad:
        raise DatasetError("DFEW split lists are inconsistent:\n  " + "\n  ".join(bad[:50]))
    res = ParseResult([], train_lists=train_lists)
    for stem in sorted(set(videos) | set(fold_of)):
        if stem not in videos:
            res.excluded.append((stem, "named in the split lists but no video in Clip/original/"))
            continue
        labeled = stem in fold_of
        res.clips.append(Clip(stem, video=videos[stem], label=labels[stem] if labeled else None,
                              fold=fold_of.get(stem)))
    return res
