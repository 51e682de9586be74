"""MER2023 and MER2024 (challenge releases by Lian et al.).

MER2023 (release layout as read by the organisers' baseline): ``train/<name>.<avi|mp4>`` with
``train-label.csv`` (columns ``name,discrete[,valence]``) and ``test1/`` (MER-MULTI) with
``test1-label.csv`` in the same format. The name of the test1 label file is a guess (the labels
came with the post-challenge release); ``test2/`` (noisy copies of test1) is ignored and
``test3/`` clips (MER-SEMI) join as unlabeled clips.

MER2024: ``video-labeled/<name>.<ext>`` with ``label-disdim.csv`` (``name,discrete,valence``),
and ``video-unlabeled/`` clips joining as unlabeled clips. Folds: ``labels/set_k/{train,test}
.txt`` (lines ``<name> <label>``, AVF-MAE++'s format) when present; otherwise a deterministic
label-stratified 5-fold split (clips ordered by a hash of their name within each label).
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

from avfmae.data.parsers import Clip, ParseResult
from avfmae.data.parsers._common import VIDEO_EXTS, walk_files
from avfmae.data.registry import DatasetError, DatasetSpec


def _labels_csv(path: Path, spec: DatasetSpec) -> dict[str, str]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        cols = {c.strip().lower(): c for c in reader.fieldnames or []}
        if "name" not in cols or "discrete" not in cols:
            raise DatasetError(f"{path}: expected the columns name,discrete")
        out, bad = {}, []
        for n, row in enumerate(reader, 2):
            name = Path(row[cols["name"]].strip()).stem
            label = row[cols["discrete"]].strip().lower()
            if label not in spec.labels:
                bad.append(f"line {n}: {name} {label!r}")
                continue
            out[name] = label
    if bad:
        raise DatasetError(
            f"{path}: labels outside {', '.join(spec.labels)}:\n  " + "\n  ".join(bad[:50])
        )
    return out


def _videos(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in walk_files(folder, VIDEO_EXTS)} if folder.is_dir() else {}


def parse_mer2023(root: Path, spec: DatasetSpec) -> ParseResult:
    res = ParseResult([])
    for part, fold in (("train", 0), ("test1", 1)):
        label_file = root / f"{part}-label.csv"
        if not label_file.is_file():
            raise DatasetError(f"MER2023 label file missing: {label_file}")
        labels = _labels_csv(label_file, spec)
        videos = _videos(root / part)
        for name in sorted(labels):
            if name not in videos:
                res.excluded.append((name, f"labeled in {label_file.name} but no video in {part}/"))
                continue
            res.clips.append(Clip(name, video=videos[name], label=labels[name], fold=fold))
        extra = set(videos) - set(labels)
        if extra:
            res.skip(f"videos in {part}/ without a label", len(extra))
    seen = {c.clip_id for c in res.clips}
    for name, path in sorted(_videos(root / "test3").items()):
        if name not in seen:
            res.clips.append(Clip(name, video=path))
    return res


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def parse_mer2024(root: Path, spec: DatasetSpec) -> ParseResult:
    label_file = root / "label-disdim.csv"
    if not label_file.is_file():
        raise DatasetError(f"MER2024 label file missing: {label_file}")
    labels = _labels_csv(label_file, spec)
    videos = _videos(root / "video-labeled")
    n_folds = spec.protocol.n_folds or 5
    res = ParseResult([])
    present = sorted(n for n in labels if n in videos)
    for name in sorted(set(labels) - set(videos)):
        res.excluded.append((name, "labeled in label-disdim.csv but no video in video-labeled/"))
    fold_of: dict[str, int] = {}
    list_dir = root / "labels"
    if (list_dir / "set_1" / "test.txt").is_file():
        train_lists: dict[int, set[str]] = {}
        for k in range(1, n_folds + 1):
            for part in ("test", "train"):
                path = list_dir / f"set_{k}" / f"{part}.txt"
                if not path.is_file():
                    if part == "test":
                        raise DatasetError(f"MER2024 fold list missing: {path}")
                    continue
                lines = path.read_text(encoding="utf-8-sig").splitlines()
                ids = {Path(line.split()[0]).stem for line in lines if line.split()}
                if part == "test":
                    for name in ids:
                        if name in fold_of and fold_of[name] != k:
                            raise DatasetError(f"{name}: in the test lists of set_{fold_of[name]} "
                                               f"and set_{k}")
                        fold_of[name] = k
                else:
                    train_lists[k] = ids
        res.train_lists = train_lists
    else:
        # label-stratified round robin: labels in order, clips of a label in hash order
        order = sorted(present, key=lambda n: (labels[n], _hash(f"mer2024|{n}")))
        for i, name in enumerate(order):
            fold_of[name] = i % n_folds + 1
    for name in present:
        if name in fold_of:
            res.clips.append(Clip(name, video=videos[name], label=labels[name], fold=fold_of[name]))
        else:
            res.clips.append(Clip(name, video=videos[name]))
            res.skip("labeled but in no test list: kept unlabeled")
    seen = set(present)
    for name, path in sorted(_videos(root / "video-unlabeled").items()):
        if name not in seen:
            res.clips.append(Clip(name, video=path))
    return res
