"""MAFW: ``data/clips/NNNNN.mp4`` and the official lists ``Train & Test Set/<set>/no_caption/
set_k/{train,test}.txt``.

List lines are ``<clip file> <label>`` separated by a space (e.g. ``00025.mp4 anger``), as in
the publisher's release and the HiCMAE/AVF-MAE preprocessing. ``Train_Test_Set`` (no spaces) is
accepted too. The 11-class lists live under ``single/``; the 43-class compound lists are assumed
to live under ``compound/`` with the same line format (a guess: we could not see the release),
and their label names are read from the lists and sorted. Clips named by no test list are kept
as unlabeled clips.
"""

from __future__ import annotations

from pathlib import Path

from avfmae.data.parsers import Clip, ParseResult
from avfmae.data.parsers._common import find_video, walk_files
from avfmae.data.registry import DatasetError, DatasetSpec

SPLIT_DIRS = ("Train & Test Set", "Train_Test_Set", "Train&Test Set")


def _split_root(root: Path, kind: str) -> Path:
    for name in SPLIT_DIRS:
        cand = root / name / kind / "no_caption"
        if cand.is_dir():
            return cand
    raise DatasetError(
        f"{root}: no split folder '<{' | '.join(SPLIT_DIRS)}>/{kind}/no_caption' (MAFW layout)"
    )


def _read_list(path: Path) -> list[tuple[str, str]]:
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2:
            raise DatasetError(f"{path}:{n}: expected '<clip> <label>', got {line!r}")
        out.append((Path(parts[0]).stem, parts[1]))
    return out


def _parse(root: Path, spec: DatasetSpec, kind: str, fixed_labels: bool) -> ParseResult:
    clip_dir = root / "data" / "clips"
    if not clip_dir.is_dir():
        raise DatasetError(f"{root}: no data/clips/ folder (MAFW layout)")
    videos = {p.stem: p for p in walk_files(clip_dir, (".mp4", ".avi"))}
    split_root = _split_root(root, kind)
    n_folds = spec.protocol.n_folds or 5
    labels: dict[str, str] = {}
    fold_of: dict[str, int] = {}
    train_lists: dict[int, set[str]] = {}
    bad: list[str] = []
    for k in range(1, n_folds + 1):
        test_file = split_root / f"set_{k}" / "test.txt"
        train_file = split_root / f"set_{k}" / "train.txt"
        if not test_file.is_file():
            raise DatasetError(f"MAFW split list missing: {test_file}")
        for part_file, is_test in ((test_file, True), (train_file, False)):
            if not part_file.is_file():
                continue
            ids = set()
            for stem, label in _read_list(part_file):
                label = label.strip().lower()
                if fixed_labels and label not in spec.labels:
                    bad.append(f"{part_file.name} of set_{k}: {stem} {label!r}")
                    continue
                if labels.setdefault(stem, label) != label:
                    bad.append(f"{stem}: labeled {labels[stem]!r} and {label!r} in different lists")
                ids.add(stem)
                if is_test:
                    if stem in fold_of and fold_of[stem] != k:
                        bad.append(f"{stem}: in the test lists of set_{fold_of[stem]} and set_{k}")
                    fold_of[stem] = k
            if not is_test:
                train_lists[k] = ids
    if bad:
        raise DatasetError("MAFW split lists are inconsistent:\n  " + "\n  ".join(bad[:50]))
    res = ParseResult([], train_lists=train_lists)
    if not fixed_labels:
        found = sorted(set(labels.values()))
        if len(found) > spec.num_classes:
            raise DatasetError(
                f"MAFW compound lists name {len(found)} classes, expected at most "
                f"{spec.num_classes}: {', '.join(found)}"
            )
        res.labels = tuple(found)
    for stem in sorted(set(videos) | set(labels)):
        video = videos.get(stem) or find_video(clip_dir, stem)
        if video is None:
            res.excluded.append((stem, "named in the split lists but no video in data/clips/"))
            continue
        if stem in labels and stem not in fold_of:
            res.skip("in a training list only (no test fold): kept unlabeled")
        labeled = stem in fold_of
        res.clips.append(Clip(stem, video=video, label=labels[stem] if labeled else None,
                              fold=fold_of.get(stem)))
    return res


def parse_single(root: Path, spec: DatasetSpec) -> ParseResult:
    return _parse(root, spec, "single", fixed_labels=True)


def parse_compound(root: Path, spec: DatasetSpec) -> ParseResult:
    return _parse(root, spec, "compound", fixed_labels=False)
