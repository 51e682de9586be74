"""AVCAffe — GUESSED layout (we could not see the release; adjust the copy to this shape):
clips ``videos/**/<participant>_task_<t>_<k>.<mp4|avi>`` and ``labels.csv`` with the columns
``participant,task,arousal,valence`` (self-reports per participant and task; ``task`` may be
``3`` or ``task_3``). A clip inherits its task's arousal/valence; clips of tasks without a
label row are kept as unlabeled clips. The subject is the participant. The self-reports are
levels: each value must be one of the registry's level names (1–5), and becomes the clip's level
of that dimension (the value itself stays as the ``t_<dim>`` column). The participants of
``labels.csv`` are the protocol's participant list: its five blocks are cut from them, so a copy
with part of the videos (and the whole ``labels.csv``) keeps each participant's block.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from avfmae.data.parsers import Clip, ParseResult
from avfmae.data.parsers._common import VIDEO_EXTS, as_float, safe_id, walk_files
from avfmae.data.registry import DatasetError, DatasetSpec

NAME = re.compile(r"^(?P<pid>.+?)_task_(?P<task>\d+)_(?P<clip>\w+)$")


def parse(root: Path, spec: DatasetSpec) -> ParseResult:
    label_file = root / "labels.csv"
    if not label_file.is_file():
        raise DatasetError(f"AVCAffe labels missing: {label_file}")
    with open(label_file, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        cols = {c.strip().lower(): c for c in reader.fieldnames or []}
        need = ("participant", "task", *spec.targets)
        if any(c not in cols for c in need):
            raise DatasetError(f"{label_file}: expected the columns {','.join(need)}")
        table: dict[tuple[str, int], dict[str, float]] = {}
        for n, row in enumerate(reader, 2):
            task = re.sub(r"\D", "", row[cols["task"]])
            values = {t: as_float(row[cols[t]]) for t in spec.targets}
            if not task or any(v is None for v in values.values()):
                raise DatasetError(f"{label_file}:{n}: incomplete row {row}")
            key = (row[cols["participant"]].strip(), int(task))
            table[key] = values  # type: ignore[assignment]
    res = ParseResult([], subjects=tuple(dict.fromkeys(pid for pid, _ in table)))
    for path in walk_files(root / "videos", VIDEO_EXTS):
        m = NAME.match(path.stem)
        if not m:
            res.skip("file name not <participant>_task_<t>_<k>")
            continue
        targets = table.get((m["pid"], int(m["task"])))
        if targets is None:
            res.skip("no label row for the clip's participant and task: kept unlabeled")
        res.clips.append(Clip(safe_id(path.stem), video=path, subject=m["pid"], targets=targets,
                              levels=report_levels(targets, spec, path)))
    if not res.clips:
        raise DatasetError(f"{root}: no AVCAffe clips under videos/")
    return res


def report_levels(targets: dict[str, float] | None, spec: DatasetSpec,
                  clip: Path) -> dict[str, str] | None:
    """The level name of each self-report; a value that is no level is an error."""
    if targets is None:
        return None
    levels = {dim: f"{value:g}" for dim, value in targets.items()}
    off = {dim: v for dim, v in levels.items() if v not in spec.labels}
    if off:
        raise DatasetError(f"{clip.name}: self-reports {off} are not among the levels "
                           f"{', '.join(spec.labels)}")
    return levels
