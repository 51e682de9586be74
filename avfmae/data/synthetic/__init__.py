"""The embedded synthetic audio-visual emotion dataset (see ``data/README.md``).

``generate(cfg, out_dir)`` writes RAVDESS-like MP4 clips (H.264 + AAC) of rendered, animated
faces speaking with a synthetic voice: six emotion classes from three face patterns × two voice
patterns, so some class pairs are separable only by sound and some only by sight.
"""

from .classes import (
    CLASSES,
    FACE_PATTERNS,
    POOL_CODE,
    VOICE_PATTERNS,
    EmotionClass,
    audio_only_pairs,
    class_table,
    video_only_pairs,
)
from .dataset import GENERATOR_VERSION, MANIFEST, ClipSpec, clip_name, generate, manifest, plan

__all__ = [
    "CLASSES",
    "FACE_PATTERNS",
    "VOICE_PATTERNS",
    "POOL_CODE",
    "EmotionClass",
    "GENERATOR_VERSION",
    "MANIFEST",
    "ClipSpec",
    "audio_only_pairs",
    "class_table",
    "clip_name",
    "generate",
    "manifest",
    "plan",
    "video_only_pairs",
]
