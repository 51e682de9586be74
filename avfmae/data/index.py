"""The ``index`` stage: a dataset's own layout → ``manifest.csv``, ``splits.csv``, ``index.json``.

``index(ds, params)`` runs the dataset's parser over its files (the raw folder of a public or
generated dataset, the user-placed copy of a licensed one), writes the clips that need their own
video file (micro-expression image sequences, IEMOCAP utterances cut from dialog videos) under
``{data.root}/interim/{ds}/media/``, assigns the folds of the dataset's protocol, carves a
validation part out of each fold's training part, validates both tables (pandera, every failure
listed) and swaps the finished folder into ``{data.root}/interim/{ds}`` in one rename.

Paths in the manifest are relative to the working directory (the repository root) when under it,
absolute otherwise. :func:`read_manifest` and :func:`read_splits` read the files back with the
right column types.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from avfmae import pipeline
from avfmae.data import locations, registry
from avfmae.data.parsers import Clip, ParseResult, load_parser
from avfmae.data.parsers._common import cut_segment, encode_frames, natural_key
from avfmae.data.registry import DatasetError, DatasetSpec
from avfmae.data.schemas import MANIFEST_COLUMNS, PARTS, validate

if TYPE_CHECKING:
    from avfmae.config import Params

__all__ = ["index", "assign_folds", "subject_folds", "official_subjects", "missing_subjects",
           "unrunnable_folds", "check_requested_folds", "make_splits", "read_manifest",
           "read_splits", "rel_path", "ME_FPS"]

log = logging.getLogger(__name__)

ME_FPS = 25.0


def rel_path(path: Path | str) -> str:
    """``path`` relative to the working directory when under it, else absolute (not resolved:
    symlinked dataset folders keep their user-facing path)."""
    p = os.path.abspath(path)
    cwd = os.getcwd()
    if p == cwd or p.startswith(cwd.rstrip(os.sep) + os.sep):
        return os.path.relpath(p, cwd)
    return p


def read_manifest(path: Path | str) -> pd.DataFrame:
    """Read a ``manifest.csv`` with its contract types (str ids/paths/subjects, bool, int)."""
    df = pd.read_csv(path, dtype={"clip_id": str, "dataset": str, "video": str, "audio": str,
                                  "subject": str}, keep_default_na=False,
                     na_values={c: [""] for c in _target_cols_of(path)})
    df["labeled"] = df["labeled"].map(lambda v: str(v).strip().lower() == "true").astype(bool)
    df["label"] = df["label"].astype(int)
    for col in df.columns:
        if col.startswith("t_"):
            df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
        elif col.startswith("l_"):
            df[col] = df[col].astype(int)
    return df


def _target_cols_of(path: Path | str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        header = f.readline().strip().split(",")
    return [c for c in header if c.startswith("t_")]


def read_splits(path: Path | str) -> pd.DataFrame:
    """Read a ``splits.csv`` (clip_id str, fold int, part str)."""
    return pd.read_csv(path, dtype={"clip_id": str, "fold": int, "part": str},
                       keep_default_na=False)


# ----------------------------------------------------------------------------------------------
# Folds and splits
# ----------------------------------------------------------------------------------------------


def assign_folds(spec: DatasetSpec, clips: list[Clip],
                 listed: Sequence[str] = ()) -> tuple[dict[str, int], int]:
    """Test fold of every labeled clip (0 = training only) and the number of folds.

    Subject-based protocols place each subject by its official id (see
    :class:`~avfmae.data.registry.Protocol`), or by its place among the subjects the copy's
    label file names (``listed``, :attr:`ParseResult.subjects`), so a partial copy keeps every
    present subject in its published fold; folds whose subjects are all missing simply have no
    test clips.
    """
    proto = spec.protocol
    labeled = [c for c in clips if c.labeled]
    if not labeled:
        raise DatasetError(f"{spec.name}: no labeled clips to split")
    if proto.kind in ("official", "groups"):
        n = proto.n_folds or 0
        bad = [c.clip_id for c in labeled if c.fold is None or not 0 <= c.fold <= n
               or (proto.kind == "groups" and c.fold == 0)]
        if bad:
            raise DatasetError(f"{spec.name}: clips without a valid fold (1..{n}): "
                               f"{', '.join(bad[:20])}" + (" ..." if len(bad) > 20 else ""))
        return {c.clip_id: int(c.fold) for c in labeled}, n  # type: ignore[arg-type]
    missing = [c.clip_id for c in labeled if not c.subject]
    if missing:
        raise DatasetError(f"{spec.name}: the {proto.kind} protocol needs subjects; none for "
                           f"{', '.join(missing[:20])}")
    fold_of_subject, n = subject_folds(spec, {c.subject for c in labeled}, listed)
    return {c.clip_id: fold_of_subject[c.subject] for c in labeled}, n


def subject_folds(spec: DatasetSpec, present: set[str],
                  listed: Sequence[str] = ()) -> tuple[dict[str, int], int]:
    """Fold of every subject of the protocol and the number of folds: by the official list
    where the registry pins one, else by the subjects the label file names (``listed``), else
    by the ``present`` subjects (leave-one-subject-out: the number in each id; blocks: in
    natural order). Present subjects missing from the list are an error: they would have no
    published fold."""
    proto = spec.protocol
    if proto.kind not in ("subject_blocks", "loso"):
        raise DatasetError(f"{spec.name}: protocol {proto.kind!r} has no subject folds")
    if proto.kind == "loso" and not proto.subjects:
        return _numbered_folds(spec, present)
    subjects = official_subjects(spec, listed) or sorted(present, key=natural_key)
    unknown = sorted(present - set(subjects), key=natural_key)
    if unknown:
        raise DatasetError(f"{spec.name}: subjects not in the official list of the protocol "
                           f"({subjects[0]}..{subjects[-1]}): {', '.join(unknown[:20])}")
    if proto.kind == "loso":
        if len(subjects) < 2:
            raise DatasetError(f"{spec.name}: leave-one-subject-out needs 2+ subjects")
        return {s: i + 1 for i, s in enumerate(subjects)}, len(subjects)
    k = proto.n_folds or 0
    if len(subjects) < k:
        raise DatasetError(f"{spec.name}: {len(subjects)} subjects cannot make {k} folds")
    size = len(subjects) // k
    return {s: min(i // size, k - 1) + 1 for i, s in enumerate(subjects)}, k


def _numbered_folds(spec: DatasetSpec, present: set[str]) -> tuple[dict[str, int], int]:
    """Leave-one-subject-out without an official list: fold ``k`` tests the subject whose id
    carries the number ``k`` (SAMM ``006`` → fold 6, SMIC ``s3`` → fold 3), so a subject keeps
    its fold whichever others a copy lacks."""
    if len(present) < 2:
        raise DatasetError(f"{spec.name}: leave-one-subject-out needs 2+ subjects")
    fold_of: dict[str, int] = {}
    for subject in sorted(present, key=lambda sub: (natural_key(sub), sub)):  # ties: s01, s1
        digits = re.findall(r"\d+", subject)
        if len(digits) != 1:
            raise DatasetError(f"{spec.name}: leave-one-subject-out folds are numbered by the "
                               f"subject ids' numbers; subject {subject!r} has "
                               f"{'no number' if not digits else 'several'}")
        fold_of[subject] = int(digits[0])
    for k, n in Counter(fold_of.values()).items():
        same = ", ".join(sub for sub, f in fold_of.items() if f == k)
        if n > 1:
            raise DatasetError(f"{spec.name}: subjects {same} carry the same number {k}; "
                               "leave-one-subject-out folds need one subject per number")
        if k == 0:
            raise DatasetError(f"{spec.name}: subject {same} is numbered 0; folds count from 1")
    return fold_of, max(fold_of.values())


def official_subjects(spec: DatasetSpec, listed: Sequence[str] = ()) -> list[str]:
    """The protocol's subject list in order: the registry's pinned one, else the label file's
    (``listed``, in natural order); empty where neither exists."""
    return list(spec.protocol.subjects) or sorted(set(listed), key=natural_key)


def missing_subjects(spec: DatasetSpec, present: set[str],
                     listed: Sequence[str] = ()) -> dict[int, list[str]]:
    """Per fold, the official subjects absent from the copy (empty without an official list)."""
    official = official_subjects(spec, listed)
    if not official:
        return {}
    fold_of, _ = subject_folds(spec, present & set(official), listed)
    out: dict[int, list[str]] = {}
    for subject, k in fold_of.items():
        if subject not in present:
            out.setdefault(k, []).append(subject)
    return out


def unrunnable_folds(spec: DatasetSpec, splits: pd.DataFrame, n_folds: int,
                     missing: dict[int, list[str]]) -> dict[int, str]:
    """Folds lacking a test, training or validation part, each with what is missing."""
    out = {}
    for k in range(1, n_folds + 1):
        parts = set(splits.loc[splits["fold"] == k, "part"])
        lacking = [p for p in ("test", "train", "val") if p not in parts]
        if not lacking:
            continue
        why = f"no {' or '.join(lacking)} clips"
        gone = missing.get(k, [])
        if "test" in lacking and gone:
            why += f" (its test subjects {', '.join(gone)} are not in the copy)"
        elif "test" in lacking and spec.protocol.kind == "groups":
            why += f" (no clip of group/session {k} is in the copy)"
        elif "test" in lacking and spec.protocol.kind == "loso" and not spec.protocol.subjects:
            why += f" (no subject numbered {k} is in the copy)"
        elif "test" in lacking:
            why += " (none of its test clips is in the copy)"
        else:
            others = sorted({s for j, g in missing.items() if j != k for s in g}, key=natural_key)
            why += " (too few other subjects to train on" + \
                (f"; missing: {', '.join(others)})" if others else ")")
        out[k] = why
    return out


def check_requested_folds(spec: DatasetSpec, unrunnable: dict[int, str], n_folds: int,
                          requested: list[int]) -> None:
    """A missing part is an error only for a fold the configuration runs (``data.folds``), and
    so is a fold past the last where the copy sets the count (leave-one-subject-out; a fixed
    count is checked with the configuration)."""
    beyond = spec.protocol.n_folds is None
    why = {k: unrunnable[k] if k in unrunnable else f"the protocol has folds 1..{n_folds}"
           for k in requested if k in unrunnable or (beyond and k > n_folds)}
    if why:
        can = [k for k in range(1, n_folds + 1) if k not in unrunnable]
        raise DatasetError(f"{spec.name}: data.folds asks for fold(s) this copy cannot run: "
                           + "; ".join(f"fold {k}: {w}" for k, w in why.items())
                           + f". Folds it can run: {_ranges(can)}; complete the copy or "
                           "change data.folds")


def _ranges(folds: list[int]) -> str:
    """``[1, 2, 3, 5]`` → ``"1-3, 5"``."""
    runs: list[list[int]] = []
    for k in folds:
        if runs and k == runs[-1][-1] + 1:
            runs[-1].append(k)
        else:
            runs.append([k])
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs) or "none"


def _h(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()


def _carve_val(ds: str, fold: int, pool: pd.DataFrame, frac: float,
               subject_independent: bool = False) -> set[str]:
    """Validation clip ids carved from a fold's training pool (deterministic).

    Subject-disjoint when every pool clip has a subject: ``round(frac * n)`` subjects (at least
    one, never all). Otherwise clip-level, stratified by label: ``round(frac * n)`` clips of each
    label (at least one clip overall) — except under a subject-independent protocol, where a
    pool of one subject (a partial copy) gets no validation part.
    """
    if pool.empty:
        return set()
    subjects = sorted(set(pool["subject"]))
    if subject_independent and len(subjects) < 2:
        return set()
    if (pool["subject"] != "").all() and len(subjects) >= 2:
        n_val = min(len(subjects) - 1, max(1, round(frac * len(subjects))))
        chosen = set(sorted(subjects, key=lambda s: _h(ds, fold, s))[:n_val])
        return set(pool.loc[pool["subject"].isin(chosen), "clip_id"])
    val: set[str] = set()
    for _, group in pool.groupby("label", sort=True):
        ids = sorted(group["clip_id"], key=lambda c: _h(ds, fold, c))
        val.update(ids[:round(frac * len(ids))] if len(ids) >= 2 else [])
    if not val and len(pool) >= 2:
        val.add(min(pool["clip_id"], key=lambda c: _h(ds, fold, c)))
    return val


def make_splits(
    spec: DatasetSpec,
    manifest: pd.DataFrame,
    fold_of: dict[str, int],
    n_folds: int,
    val_fraction: float,
    train_lists: dict[int, set[str]] | None = None,
) -> pd.DataFrame:
    """splits.csv rows: per fold, the test clips, then train/val from the other labeled clips
    (restricted to the official training list where the publisher gives one)."""
    lab = manifest.loc[manifest["labeled"]].copy()
    lab["test_fold"] = lab["clip_id"].map(fold_of).fillna(-1).astype(int)
    rows = []
    for k in range(1, n_folds + 1):
        test = lab.loc[lab["test_fold"] == k]
        pool = lab.loc[lab["test_fold"] != k]
        if train_lists and k in train_lists:
            pool = pool.loc[pool["clip_id"].isin(train_lists[k])]
        val = _carve_val(spec.name, k, pool, val_fraction, spec.protocol.subject_independent)
        for cid in pool["clip_id"]:
            rows.append((cid, k, "val" if cid in val else "train"))
        rows.extend((cid, k, "test") for cid in test["clip_id"])
    df = pd.DataFrame(rows, columns=["clip_id", "fold", "part"])
    order = {p: i for i, p in enumerate(PARTS)}
    df = df.assign(_p=df["part"].map(order), _c=df["clip_id"].map(natural_key).map(tuple))
    df = df.sort_values(["fold", "_p", "_c"], kind="stable").drop(columns=["_p", "_c"])
    return df.reset_index(drop=True).astype({"clip_id": str, "fold": int, "part": str})


# ----------------------------------------------------------------------------------------------
# Media that has to be written first
# ----------------------------------------------------------------------------------------------


def _materialize(clips: list[Clip], tmp_media: Path, final_media: Path, res: ParseResult,
                 ) -> list[Clip]:
    """Write image sequences / segments as mp4 files under ``tmp_media``; point the clips at
    their final location. Clips whose media cannot be written are excluded with the reason."""
    todo = [c for c in clips if c.frames is not None or c.segment is not None]
    if not todo:
        return clips
    tmp_media.mkdir(parents=True, exist_ok=True)

    def work(c: Clip) -> None:
        out = tmp_media / f"{c.clip_id}.mp4"
        if out.is_file() and out.stat().st_size > 0:
            return  # finished by an interrupted earlier run
        if c.frames is not None:
            encode_frames(c.frames, out, fps=ME_FPS, silent_audio=True)
        else:
            assert c.video is not None and c.segment is not None
            cut_segment(c.video, c.segment[0], c.segment[1], out)

    failed: dict[str, str] = {}
    workers = max(1, min(8, os.cpu_count() or 1))
    bar = _progress(len(todo), "writing clip videos")
    with ThreadPoolExecutor(workers) as pool:
        futures = {pool.submit(work, c): c for c in todo}
        for fut in as_completed(futures):
            c = futures[fut]
            try:
                fut.result()
            except Exception as err:  # noqa: BLE001 - reported as an exclusion
                failed[c.clip_id] = f"could not write its video: {err}"
            bar.update(1)
    bar.close()
    kept = []
    for c in clips:
        if c.clip_id in failed:
            res.excluded.append((c.clip_id, failed[c.clip_id]))
            continue
        if c.frames is not None or c.segment is not None:
            c.video = final_media / f"{c.clip_id}.mp4"
            c.frames, c.segment = None, None
        kept.append(c)
    return kept


def _progress(total: int, desc: str):
    from avfmae.progress import progress

    return progress(total, desc, unit="clip", disable=total < 20, leave=False)


# ----------------------------------------------------------------------------------------------
# The stage
# ----------------------------------------------------------------------------------------------


def _manifest(spec: DatasetSpec, clips: list[Clip], labels: tuple[str, ...]) -> pd.DataFrame:
    label_index = {name: i for i, name in enumerate(labels)}
    rows = []
    bad = []
    for c in clips:
        if c.label is not None and c.label not in label_index:
            bad.append(f"{c.clip_id}: {c.label!r}")
        bad += [f"{c.clip_id} {dim}: {name!r}" for dim, name in (c.levels or {}).items()
                if name not in label_index]
        row = {
            "clip_id": c.clip_id,
            "dataset": spec.name,
            "video": rel_path(c.video) if c.video is not None else "",
            "audio": rel_path(c.audio) if c.audio is not None else "",
            "subject": c.subject or "",
            "labeled": bool(c.labeled),
            "label": label_index.get(c.label, -1) if c.label is not None else -1,
        }
        for t in spec.targets:
            row[f"t_{t}"] = float(c.targets[t]) if c.targets and t in c.targets else np.nan
        for t, col in zip(spec.targets, spec.level_columns):
            row[col] = label_index.get(c.levels[t], -1) if c.levels and t in c.levels else -1
        rows.append(row)
    if bad:
        raise DatasetError(f"{spec.name}: labels outside {', '.join(labels)}: "
                           + ", ".join(bad[:20]))
    cols = list(MANIFEST_COLUMNS) + list(spec.target_columns) + list(spec.level_columns)
    df = pd.DataFrame(rows, columns=cols)
    df = df.astype({"clip_id": str, "dataset": str, "video": str, "audio": str, "subject": str,
                    "labeled": bool, "label": int, **dict.fromkeys(spec.level_columns, int)})
    for col in spec.target_columns:
        df[col] = df[col].astype(float)
    return df


def _summary(spec: DatasetSpec, manifest: pd.DataFrame, splits: pd.DataFrame, n_folds: int,
             labels: tuple[str, ...], res: ParseResult, root: Path) -> dict:
    def per_label(ids: pd.Series) -> dict[str, int]:
        if not labels:
            return {}
        if spec.levelled:  # a count per level of each dimension: "arousal=3"
            sub = manifest.loc[manifest["clip_id"].isin(ids)]
            return {f"{dim}={name}": int((sub[col] == i).sum())
                    for dim, col in zip(spec.targets, spec.level_columns)
                    for i, name in enumerate(labels)}
        sub = manifest.loc[manifest["clip_id"].isin(ids), "label"]
        counts = Counter(int(v) for v in sub)
        return {labels[i]: counts.get(i, 0) for i in range(len(labels))}

    folds = {}
    for k in range(1, n_folds + 1):
        fk = splits.loc[splits["fold"] == k]
        folds[str(k)] = {
            part: {"clips": int((fk["part"] == part).sum()),
                   "subjects": int(manifest.loc[manifest["clip_id"].isin(
                       fk.loc[fk["part"] == part, "clip_id"]), "subject"].replace("", np.nan)
                       .nunique()),
                   "per_label": per_label(fk.loc[fk["part"] == part, "clip_id"])}
            for part in PARTS
        }
    labeled = manifest["labeled"]
    return {
        "dataset": spec.name,
        "title": spec.title,
        "family": spec.family,
        "labels": list(labels),
        "targets": list(spec.targets),
        "protocol": {"kind": spec.protocol.kind, "n_folds": n_folds,
                     "subject_independent": spec.protocol.subject_independent,
                     "description": spec.protocol.description},
        "source": rel_path(root),
        "clips": int(len(manifest)),
        "labeled": int(labeled.sum()),
        "unlabeled": int((~labeled).sum()),
        "subjects": int(manifest["subject"].replace("", np.nan).nunique()),
        "expected_clips": spec.expected_clips,
        "per_label": per_label(manifest.loc[labeled, "clip_id"]),
        "folds": folds,
        "excluded": [{"clip": n, "reason": r} for n, r in res.excluded],
        "skipped": res.skipped,
    }


def _warn_partial(ds: str, missing: dict[int, list[str]], unrunnable: dict[int, str]) -> None:
    gone = [s for k in sorted(missing) for s in missing[k]]
    if gone:
        log.warning("index %s: %d subject(s) of the protocol are not in the copy: %s; the others "
                    "keep their official folds", ds, len(gone), ", ".join(gone))
    if unrunnable:
        log.warning("index %s: fold(s) left out of splits.csv: %s", ds,
                    "; ".join(f"{k}: {why}" for k, why in sorted(unrunnable.items())))


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    df.to_csv(path, index=False, float_format="%.6g")


def _swap_in(tmp: Path, out: Path) -> None:
    old = out.with_name(f".{out.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if out.exists() or out.is_symlink():
        os.rename(out, old)
    os.rename(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def index(ds: str, params: Params) -> tuple[Path, Path]:
    """Index dataset ``ds``: write ``{data.root}/interim/{ds}/{manifest,splits}.csv`` and
    ``index.json``; return the manifest and splits paths."""
    spec = registry.get(ds)
    raw = pipeline.path("download", "raw", params, ds=ds)
    if not raw.is_dir():
        raise DatasetError(f"{raw} does not exist: run `avfmae download {ds}` first")
    root = locations.media_root(ds, params)
    if not root.is_dir():
        raise DatasetError(f"{root} does not exist: run `avfmae download {ds}` first")
    out = pipeline.path("index", "index", params, ds=ds)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    if tmp.exists():  # keep finished media of an interrupted run, drop the rest
        for child in tmp.iterdir():
            if child.name != "media":
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    tmp.mkdir(exist_ok=True)

    log.info("index %s: parsing %s", ds, root)
    res: ParseResult = load_parser(spec.parser)(root, spec)
    labels = tuple(res.labels) if res.labels is not None else spec.labels
    clips = _materialize(res.clips, tmp / "media", out / "media", res)
    ids = Counter(c.clip_id for c in clips)
    dups = sorted(i for i, n in ids.items() if n > 1)
    if dups:
        raise DatasetError(f"{ds}: duplicate clip ids: {', '.join(dups[:20])}")
    clips.sort(key=lambda c: natural_key(c.clip_id))
    manifest = _manifest(spec, clips, labels)

    missing: dict[int, list[str]] = {}
    unrunnable: dict[int, str] = {}
    if spec.is_pool:
        splits, n_folds = pd.DataFrame({"clip_id": pd.Series(dtype=str),
                                        "fold": pd.Series(dtype=int),
                                        "part": pd.Series(dtype=str)}), 0
    else:
        fold_of, n_folds = assign_folds(spec, clips, res.subjects)
        splits = make_splits(spec, manifest, fold_of, n_folds, params.data.val_fraction,
                             res.train_lists)
        missing = missing_subjects(spec, {c.subject for c in clips if c.labeled}, res.subjects)
        unrunnable = unrunnable_folds(spec, splits, n_folds, missing)
        _warn_partial(ds, missing, unrunnable)
        check_requested_folds(spec, unrunnable, n_folds, list(params.data.folds))
        splits = splits.loc[~splits["fold"].isin(list(unrunnable))].reset_index(drop=True)

    final_prefix = rel_path(out) + os.sep
    tmp_str = str(tmp)

    def resolve(p: str) -> Path:
        return Path(tmp_str + os.sep + p[len(final_prefix):]) if p.startswith(final_prefix) \
            else Path(p)

    validate(spec, manifest, splits, n_folds, len(labels), resolve=resolve,
             incomplete_folds=set(unrunnable), report_path=out.with_name(f".{out.name}.errors.csv"))
    out.with_name(f".{out.name}.errors.csv").unlink(missing_ok=True)

    _write_csv(manifest, tmp / "manifest.csv")
    _write_csv(splits, tmp / "splits.csv")
    summary = _summary(spec, manifest, splits, n_folds, labels, res, root)
    summary["missing_subjects"] = {str(k): v for k, v in sorted(missing.items())}
    summary["unrunnable_folds"] = {str(k): v for k, v in sorted(unrunnable.items())}
    (tmp / "index.json").write_text(json.dumps(summary, indent=2) + "\n")
    if spec.expected_clips and summary["clips"] != spec.expected_clips:
        log.warning("index %s: %d clips indexed, the full dataset has %d", ds, summary["clips"],
                    spec.expected_clips)
    for name, reason in res.excluded:
        log.warning("index %s: excluded %s: %s", ds, name, reason)
    _swap_in(tmp, out)
    log.info("index %s: %d clips (%d labeled), %d folds → %s", ds, summary["clips"],
             summary["labeled"], n_folds, out)
    return out / "manifest.csv", out / "splits.csv"
