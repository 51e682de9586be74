"""pandera schemas of the preprocess stage's input and outputs.

``INPUT``: the index stage's manifest, as far as preprocessing needs it (other columns are
carried through untouched). ``PROCESSED``: the clip store's ``manifest.csv``. ``REJECTS``:
``rejects.csv``. :func:`validate` raises :class:`~avfmae.errors.UserError` listing every failure.
"""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa

from avfmae.errors import UserError

__all__ = ["INPUT", "PROCESSED", "REJECTS", "REASONS", "CLIP_ID_PATTERN", "validate"]

#: clip ids become file names: letters, digits, ``._-`` only, not starting with a dot
CLIP_ID_PATTERN = r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$"

#: reject reasons and what they mean
REASONS = {
    "missing_file": "a media file named in the manifest does not exist",
    "empty_file": "a media file is 0 bytes",
    "unreadable_video": "the video cannot be opened or holds no decodable frames",
    "truncated_video": "the video breaks off: fewer frames than its container declares, or an "
                       "mp4 cut before its 'moov' frame index",
    "no_audio": "the clip has no audio track (and no separate audio file)",
    "unreadable_audio": "the audio track cannot be decoded",
    "short_audio": "the audio covers less than preprocess.min_audio_s of the clip",
    "no_face": "a face was found on fewer keyframes than preprocess.min_face_rate",
    "worker_crash": "the worker processing the clip died twice",
    "error": "an unexpected error (a bug: the stage log holds the traceback)",
}

INPUT = pa.DataFrameSchema(
    {
        "clip_id": pa.Column(str, pa.Check.str_matches(CLIP_ID_PATTERN), unique=True),
        "video": pa.Column(str, pa.Check.str_length(min_value=1)),
        "audio": pa.Column(str, required=False),
    },
    strict=False,
    coerce=False,
)

PROCESSED = pa.DataFrameSchema(
    {
        "clip_id": pa.Column(str, pa.Check.str_matches(CLIP_ID_PATTERN), unique=True),
        "video": pa.Column(str, pa.Check.str_endswith(".mp4")),
        "audio": pa.Column(str, pa.Check.str_endswith(".wav")),
        "src_video": pa.Column(str),
        "src_audio": pa.Column(str),
        "n_frames": pa.Column(int, pa.Check.ge(1)),
        "fps": pa.Column(float, pa.Check.gt(0)),
        "duration_s": pa.Column(float, pa.Check.gt(0)),
        "audio_s": pa.Column(float, pa.Check.ge(0)),
        "src_width": pa.Column(int, pa.Check.ge(1)),
        "src_height": pa.Column(int, pa.Check.ge(1)),
        "src_fps": pa.Column(float, pa.Check.gt(0)),
        "face_rate": pa.Column(float, pa.Check.in_range(0.0, 1.0)),
        "box_cx": pa.Column(float, pa.Check.in_range(-0.5, 1.5)),
        "box_cy": pa.Column(float, pa.Check.in_range(-0.5, 1.5)),
        "box_size": pa.Column(float, pa.Check.gt(0)),
        "box_jitter": pa.Column(float, pa.Check.ge(0)),
        "roll_deg": pa.Column(float, pa.Check.in_range(-90.0, 90.0)),
        # quality record: mean detector probability (NaN: Haar gives none), largest jump of
        # the raw box centre between consecutive detections (share of the box side)
        "face_conf": pa.Column(float, pa.Check.in_range(0.0, 1.0), nullable=True),
        "face_jump": pa.Column(float, pa.Check.ge(0)),
    },
    strict=False,
    coerce=True,
)

REJECTS = pa.DataFrameSchema(
    {
        "clip_id": pa.Column(str, unique=True),
        "reason": pa.Column(str, pa.Check.isin(sorted(REASONS))),
        "detail": pa.Column(str),
        "video": pa.Column(str),
    },
    strict=True,
    coerce=True,
)


def validate(schema: pa.DataFrameSchema, df: pd.DataFrame, what: str) -> pd.DataFrame:
    """Validate lazily; on failure raise :class:`UserError` naming ``what`` and every problem."""
    try:
        return schema.validate(df, lazy=True)
    except pa.errors.SchemaErrors as err:
        cases = err.failure_cases
        lines = [
            f"  column {row.column!r}: {row.check} (e.g. {row.failure_case!r})"
            for row in cases.drop_duplicates(["column", "check"]).head(12).itertuples()
        ]
        raise UserError(f"{what} is malformed:\n" + "\n".join(lines)) from None
