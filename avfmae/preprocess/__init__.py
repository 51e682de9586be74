"""Face detection/tracking/cropping and audio extraction into the clip store.

Entry point: :func:`preprocess` (``avfmae preprocess <ds>``) — see :mod:`.stage` for the store
layout, resumability and reject handling, :mod:`.faces` for the face track, :mod:`.media` for
decoding/encoding and :mod:`.settings` for the fingerprint.
"""

from .schema import REASONS
from .settings import Settings, fingerprint
from .stage import PreprocessError, preprocess, preprocess_manifest, worker_count

__all__ = [
    "preprocess",
    "preprocess_manifest",
    "PreprocessError",
    "Settings",
    "fingerprint",
    "worker_count",
    "REASONS",
]
