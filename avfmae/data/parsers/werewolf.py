"""Werewolf-XL — GUESSED layout (we could not see the release; adjust the copy to this shape):
clips ``video/**/<name>.mp4`` and ``annotations.csv`` with the columns
``name,subject,arousal,valence,dominance`` (one row per clip; values in [0, 1] as in HiCMAE's
lists). Clips without a row are kept as unlabeled clips; rows without a clip are reported. The
players of ``annotations.csv`` are the protocol's player list: its five blocks are cut from
them, so a copy with part of the videos (and the whole ``annotations.csv``) keeps each player's
block.
"""

from __future__ import annotations

import csv
from pathlib import Path

from avfmae.data.parsers import Clip, ParseResult
from avfmae.data.parsers._common import VIDEO_EXTS, as_float, safe_id, walk_files
from avfmae.data.registry import DatasetError, DatasetSpec


def parse(root: Path, spec: DatasetSpec) -> ParseResult:
    ann = root / "annotations.csv"
    if not ann.is_file():
        raise DatasetError(f"Werewolf-XL annotations missing: {ann}")
    with open(ann, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        cols = {c.strip().lower(): c for c in reader.fieldnames or []}
        need = ("name", "subject", *spec.targets)
        if any(c not in cols for c in need):
            raise DatasetError(f"{ann}: expected the columns {','.join(need)}")
        rows: dict[str, tuple[str, dict[str, float]]] = {}
        for n, row in enumerate(reader, 2):
            values = {t: as_float(row[cols[t]]) for t in spec.targets}
            if any(v is None for v in values.values()):
                raise DatasetError(f"{ann}:{n}: missing target value in {row}")
            rows[Path(row[cols["name"]].strip()).stem] = (row[cols["subject"]].strip(), values)
    videos = {p.stem: p for p in walk_files(root / "video", VIDEO_EXTS)}
    res = ParseResult([], subjects=tuple(dict.fromkeys(subject for subject, _ in rows.values())))
    for name in sorted(set(rows) - set(videos)):
        res.excluded.append((name, "annotated but no video under video/"))
    for name, path in sorted(videos.items()):
        subject, targets = rows.get(name, ("", None))
        if targets is None:
            res.skip("no annotation row: kept unlabeled")
        res.clips.append(Clip(safe_id(name), video=path, subject=subject, targets=targets))
    if not res.clips:
        raise DatasetError(f"{root}: no Werewolf-XL clips under video/")
    return res
