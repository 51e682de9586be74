"""pandera schemas of ``manifest.csv`` and ``splits.csv``, and the checks that need both.

Validation is lazy: every failed check is collected, and :class:`IndexValidationError` lists
every offending row (the message shows up to ``MAX_ROWS_SHOWN`` per check and points at a CSV
with all of them when there are more).

manifest.csv: ``clip_id`` unique and filesystem-safe; ``dataset`` the registry name; ``video``
an existing file; ``audio`` empty or an existing file; ``subject`` a string (empty = unknown);
``labeled`` bool; ``label`` in ``[-1, K)``, ``>= 0`` exactly for labeled clips of a categorical
dataset and ``-1`` otherwise; one float ``t_<target>`` column per regression target, finite for
labeled clips and NaN for unlabeled ones; for a levelled dataset also one int ``l_<target>``
column per dimension, its level index in ``[0, K)`` for labeled clips and ``-1`` otherwise
(``label`` is then ``-1``: a clip has a level per dimension, not one class).

splits.csv: ``clip_id`` a labeled clip of the manifest; ``fold`` in ``[1, n_folds]``; ``part`` in
{train, val, test}; each clip at most once per fold; test parts disjoint across folds and (for
cross-validation protocols) covering every labeled clip of the protocol; every fold has train,
val and test clips; in subject-independent protocols no subject in two parts of one fold.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa

from avfmae.data.registry import DatasetError, DatasetSpec

__all__ = [
    "IndexValidationError",
    "manifest_schema",
    "splits_schema",
    "validate",
    "MANIFEST_COLUMNS",
    "SPLITS_COLUMNS",
    "PARTS",
]

MANIFEST_COLUMNS = ("clip_id", "dataset", "video", "audio", "subject", "labeled", "label")
SPLITS_COLUMNS = ("clip_id", "fold", "part")
PARTS = ("train", "val", "test")
SAFE_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
MAX_ROWS_SHOWN = 200


class IndexValidationError(DatasetError):
    """The manifest or splits break the contract; ``failures`` holds one row per offending row
    (table, check, column, row, clip_id, value)."""

    def __init__(self, message: str, failures: pd.DataFrame):
        super().__init__(message)
        self.failures = failures


def _exists(resolve: Callable[[str], Path]) -> Callable[[pd.Series], pd.Series]:
    def check(s: pd.Series) -> pd.Series:
        return s.map(lambda p: bool(p) and resolve(p).is_file()).astype(bool)

    return check


def manifest_schema(
    spec: DatasetSpec,
    num_classes: int,
    check_files: bool = True,
    resolve: Callable[[str], Path] = Path,
) -> pa.DataFrameSchema:
    """The manifest schema of one dataset (``num_classes`` = its label count, 0 for none)."""
    video_checks = [pa.Check.str_length(min_value=1, name="non-empty path")]
    audio_checks = []
    if check_files:
        video_checks.append(pa.Check(_exists(resolve), name="file exists",
                                     error="video file does not exist"))
        audio_checks.append(pa.Check(
            lambda s: (s == "") | _exists(resolve)(s), name="file exists or empty",
            error="audio file does not exist",
        ))
    columns = {
        "clip_id": pa.Column(str, pa.Check.str_matches(SAFE_ID, name="filesystem-safe id"),
                             unique=True),
        "dataset": pa.Column(str, pa.Check.isin([spec.name], name="registry name")),
        "video": pa.Column(str, video_checks),
        "audio": pa.Column(str, audio_checks),
        "subject": pa.Column(str),
        "labeled": pa.Column(bool),
        "label": pa.Column(int, pa.Check.in_range(-1, max(num_classes - 1, -1),
                                                  name="label in range")),
    }
    for col in spec.target_columns:
        columns[col] = pa.Column(float, nullable=True)
    for col in spec.level_columns:
        columns[col] = pa.Column(int, pa.Check.in_range(-1, max(num_classes - 1, -1),
                                                        name="level in range"))

    categorical = num_classes > 0 and not spec.levelled

    def label_consistent(df: pd.DataFrame) -> pd.Series:
        if categorical:
            return (df["labeled"] & (df["label"] >= 0)) | (~df["labeled"] & (df["label"] == -1))
        return df["label"] == -1

    checks = [pa.Check(label_consistent, name="label matches labeled",
                       error="labeled clips need a class index >= 0, unlabeled ones -1")]
    if spec.level_columns:
        levels = list(spec.level_columns)

        def levels_consistent(df: pd.DataFrame) -> pd.Series:
            known = (df[levels] >= 0).all(axis=1)
            return (df["labeled"] & known) | (~df["labeled"] & (df[levels] == -1).all(axis=1))

        checks.append(pa.Check(levels_consistent, name="levels match labeled",
                               error="labeled clips need a level >= 0 per dimension, "
                                     "unlabeled ones -1"))
    if spec.target_columns:
        cols = list(spec.target_columns)

        def targets_consistent(df: pd.DataFrame) -> pd.Series:
            vals = df[cols].to_numpy(dtype=float)
            finite = np.isfinite(vals).all(axis=1)
            missing = np.isnan(vals).all(axis=1)
            ok = np.where(df["labeled"].to_numpy(dtype=bool), finite,
                          missing if not num_classes else (missing | finite))
            return pd.Series(ok, index=df.index)

        checks.append(pa.Check(targets_consistent, name="targets match labeled",
                               error="labeled clips need finite targets, unlabeled ones NaN"))
    return pa.DataFrameSchema(columns, checks=checks, strict=True, ordered=True,
                              coerce=False)


def splits_schema(manifest: pd.DataFrame, n_folds: int) -> pa.DataFrameSchema:
    """The splits schema given the (already validated) manifest."""
    labeled = set(manifest.loc[manifest["labeled"].astype(bool), "clip_id"])

    def test_disjoint(df: pd.DataFrame) -> pd.Series:
        test = df["part"] == "test"
        dup = df.loc[test, "clip_id"].duplicated(keep=False)
        out = pd.Series(True, index=df.index)
        out.loc[dup.index] = ~dup
        return out

    return pa.DataFrameSchema(
        {
            "clip_id": pa.Column(str, pa.Check(lambda s: s.isin(labeled),
                                               name="labeled clip of the manifest")),
            "fold": pa.Column(int, pa.Check.in_range(1, max(n_folds, 1), name="fold in range")),
            "part": pa.Column(str, pa.Check.isin(list(PARTS), name="part")),
        },
        checks=[pa.Check(test_disjoint, name="test parts disjoint across folds",
                         error="a clip is in the test part of two folds")],
        unique=["clip_id", "fold"],
        report_duplicates="all",
        strict=True, ordered=True,
    )


def _check_name(schema: pa.DataFrameSchema, rec: dict) -> str:
    """The ``name`` we gave a check (pandera reports its error text or repr instead)."""
    num, column = rec.get("check_number"), rec.get("column")
    try:
        if num is not None and not pd.isna(num):
            if rec.get("schema_context") == "DataFrameSchema":
                return schema.checks[int(num)].name
            if column in schema.columns:
                return schema.columns[column].checks[int(num)].name
    except (IndexError, KeyError, TypeError):
        pass
    return str(rec.get("check"))


def _pandera_failures(table: str, df: pd.DataFrame, err: pa.errors.SchemaErrors,
                      schema: pa.DataFrameSchema) -> list[dict]:
    out = []
    fc = err.failure_cases
    seen = set()
    for rec in fc.to_dict("records"):
        idx = rec.get("index")
        check = _check_name(schema, rec)
        column = rec.get("column")
        if isinstance(column, float) and np.isnan(column):
            column = None
        row = None if idx is None or (isinstance(idx, float) and np.isnan(idx)) else int(idx)
        if check.startswith("multiple_fields_uniqueness"):
            check, column = "unique (clip_id, fold)", "clip_id"
        elif check.startswith("field_uniqueness"):
            check = f"unique {column}"
        value = rec.get("failure_case")
        if rec.get("schema_context") == "DataFrameSchema" and not check.startswith("unique") \
                and row is not None and row in df.index:
            column = None
            keep = [c for c in df.columns if c not in ("video", "audio", "dataset")]
            value = {c: _plain(df.at[row, c]) for c in keep}
        key = (check, row, column if row is None else None)
        if key in seen:
            continue
        seen.add(key)
        clip = df.at[row, "clip_id"] if row is not None and row in df.index and \
            "clip_id" in df.columns else None
        out.append({"table": table, "check": check, "column": column, "row": row,
                    "clip_id": clip, "value": value})
    return out


def _plain(v: object) -> object:
    return v.item() if hasattr(v, "item") else v


def _row(table: str, check: str, column: str | None, row: int | None, clip: object,
         value: object) -> dict:
    return {"table": table, "check": check, "column": column, "row": row, "clip_id": clip,
            "value": value}


def _relational_failures(spec: DatasetSpec, manifest: pd.DataFrame, splits: pd.DataFrame,
                         n_folds: int, incomplete_folds: Collection[int] = ()) -> list[dict]:
    out: list[dict] = []
    # every fold has every part (except those the index reported as not runnable)
    for k in range(1, n_folds + 1):
        if k in incomplete_folds:
            continue
        parts = set(splits.loc[splits["fold"] == k, "part"])
        for part in PARTS:
            if part not in parts:
                out.append(_row("splits", f"fold has a {part} part", "part", None, None,
                                f"fold {k}"))
    # the test parts cover the protocol's labeled clips (of a complete copy)
    if spec.protocol.cross_validation and not incomplete_folds:
        tested = set(splits.loc[splits["part"] == "test", "clip_id"])
        for i, row in manifest.loc[manifest["labeled"].astype(bool)].iterrows():
            if row["clip_id"] not in tested:
                out.append(_row("manifest", "labeled clip in a test part", "clip_id", int(i),
                                row["clip_id"], row["clip_id"]))
    # subject independence
    if spec.protocol.subject_independent:
        subj = dict(zip(manifest["clip_id"], manifest["subject"]))
        s = splits.assign(subject=splits["clip_id"].map(lambda c: subj.get(c, "")))
        for i, row in s.loc[s["subject"] == ""].iterrows():
            out.append(_row("splits", "subject known (subject-independent protocol)",
                            "subject", int(i), row["clip_id"], ""))
        known = s.loc[s["subject"] != ""]
        nparts = known.groupby(["fold", "subject"])["part"].transform("nunique")
        for i, row in known.loc[nparts > 1].iterrows():
            out.append(_row("splits", "subject in one part per fold", "subject", int(i),
                            row["clip_id"], f"fold {row['fold']} {row['part']}: {row['subject']}"))
    return out


def validate(
    spec: DatasetSpec,
    manifest: pd.DataFrame,
    splits: pd.DataFrame,
    n_folds: int,
    num_classes: int,
    check_files: bool = True,
    resolve: Callable[[str], Path] = Path,
    report_path: Path | None = None,
    incomplete_folds: Collection[int] = (),
) -> None:
    """Validate both tables; raise :class:`IndexValidationError` listing every failure.
    ``incomplete_folds`` (a partial copy's folds the index left out) lift the checks that
    every fold has every part and that the test parts cover every labeled clip."""
    failures: list[dict] = []
    schema = manifest_schema(spec, num_classes, check_files, resolve)
    try:
        schema.validate(manifest, lazy=True)
    except pa.errors.SchemaErrors as err:
        failures += _pandera_failures("manifest", manifest, err, schema)
    if {"clip_id", "labeled", "subject"} <= set(manifest.columns):
        schema = splits_schema(manifest, n_folds)
        try:
            schema.validate(splits, lazy=True)
        except pa.errors.SchemaErrors as err:
            failures += _pandera_failures("splits", splits, err, schema)
        if not spec.is_pool:
            failures += _relational_failures(spec, manifest, splits, n_folds, incomplete_folds)
    if failures:
        table = pd.DataFrame(failures, columns=["table", "check", "column", "row", "clip_id",
                                                "value"])
        raise IndexValidationError(_message(spec.name, table, report_path), table)


def _message(name: str, table: pd.DataFrame, report_path: Path | None) -> str:
    lines = [f"index of {name!r} failed validation: {len(table)} problem(s)"]
    truncated = False
    for (tab, check), group in table.groupby(["table", "check"], sort=False):
        lines.append(f"- {tab}.csv: check '{check}' failed for {len(group)} row(s):")
        for rec in group.head(MAX_ROWS_SHOWN).to_dict("records"):
            has_row = rec["row"] is not None and not pd.isna(rec["row"])
            clip = rec["clip_id"]
            clip = f" clip {clip}" if clip is not None and not pd.isna(clip) and clip != "" else ""
            col = f" [{rec['column']}]" if rec["column"] and not pd.isna(rec["column"]) else ""
            if has_row:
                lines.append(f"    row {int(rec['row'])}{clip}{col}: {rec['value']!r}")
            else:
                lines.append(f"    {rec['value']}")
        if len(group) > MAX_ROWS_SHOWN:
            truncated = True
            lines.append(f"    ... and {len(group) - MAX_ROWS_SHOWN} more")
    if report_path is not None:
        report_path.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(report_path, index=False)
        lines.append(f"every offending row is listed in {report_path}" if truncated
                     else f"(also written to {report_path})")
    return "\n".join(lines)
