"""The embedded synthetic dataset (``avfmae.data.synthetic``): RAVDESS-style names
``<labeled|pool>/Actor_XX/01-01-EE-01-SS-RR-XX.mp4`` (emotion code EE; 00 = unlabeled pool) and
``synthetic.json`` with the class table (``classes``: code, name, valence, arousal, ...).

A labeled clip's label is its class name, or for the variants (``synthetic/variants.py``) what
the registry entry's ``label_from`` option derives from the class: ``face`` (its face pattern,
renamed by ``face_labels``). A levelled variant's clip gets one level per target dimension: the
level of the class's value on as many equal bins of [-1, 1] as the entry has labels. Its
``t_<dim>`` targets are the class's values; pool clips are unlabeled. The subject is the actor
folder.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from avfmae.data.parsers import Clip, ParseResult
from avfmae.data.parsers._common import walk_files
from avfmae.data.registry import DatasetError, DatasetSpec

NAME = re.compile(r"^\d{2}-\d{2}-(\d{2})-\d{2}-\d{2}-\d{2}-(\d{2,})$")


def parse(root: Path, spec: DatasetSpec) -> ParseResult:
    meta_file = root / "synthetic.json"
    if not meta_file.is_file():
        raise DatasetError(f"{meta_file} missing: run `avfmae download {spec.name}`")
    meta = json.loads(meta_file.read_text())
    classes = sorted(meta.get("classes", []), key=lambda c: int(c["code"]))
    labels = {int(c["code"]): class_label(c, spec) if spec.labels and not spec.levelled else None
              for c in classes}
    derived = spec.option("label_from") is not None
    if spec.labels and not spec.levelled and (
            not set(labels.values()) <= set(spec.labels) if derived
            else tuple(labels.values()) != spec.labels):
        raise DatasetError(
            f"{meta_file}: classes {[c['name'] for c in classes]} do not give the registry's "
            f"labels {spec.labels}; regenerate the dataset (`avfmae download {spec.name}`) or "
            "update the registry"
        )
    by_code = {int(c["code"]): c for c in classes}
    res = ParseResult([])
    for part in ("labeled", "pool"):
        for path in walk_files(root / part, (".mp4",)):
            m = NAME.match(path.stem)
            if not m:
                res.skip("file name not in the synthetic format")
                continue
            code = int(m.group(1))
            subject = path.parent.name
            cid = path.stem
            if part == "labeled":
                cls = by_code.get(code)
                if cls is None:
                    res.excluded.append((path.name, f"emotion code {code:02d} not in the class table"))
                    continue
                targets = {t: float(cls[t]) for t in spec.targets}
                levels = class_levels(cls, spec) if spec.levelled else None
                res.clips.append(Clip(cid, video=path, subject=subject, label=labels[code],
                                      targets=targets, levels=levels))
            else:
                res.clips.append(Clip(cid, video=path, subject=subject))
    ids = [c.clip_id for c in res.clips]
    if len(ids) != len(set(ids)):
        for c in res.clips:
            c.clip_id = f"{'L' if c.labeled else 'P'}_{c.clip_id}"
    if not any(c.labeled for c in res.clips):
        raise DatasetError(f"{root}: no labeled synthetic clips under labeled/Actor_*/")
    return res


def class_label(cls: dict, spec: DatasetSpec) -> str:
    """The label a class of ``synthetic.json`` gets in dataset ``spec`` (see the module doc)."""
    how = str(spec.option("label_from") or "class")
    if how == "class":
        return cls["name"]
    if how == "face":
        return dict(spec.option("face_labels", ()))[cls["face_pattern"]]
    raise DatasetError(f"{spec.name}: unknown label_from option {how!r}")


def class_levels(cls: dict, spec: DatasetSpec) -> dict[str, str]:
    """A class's level name per target dimension of the levelled dataset ``spec``: its value
    in [-1, 1] on ``len(spec.labels)`` equal bins."""
    n = len(spec.labels)
    return {dim: spec.labels[min(n - 1, max(0, int((float(cls[dim]) + 1.0) / 2.0 * n)))]
            for dim in spec.targets}
