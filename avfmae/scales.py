"""Named model scales: every size field of AVF-MAE++ in one frozen dataclass.

``base``/``large``/``huge`` are the published B/L/H (docs/model.md §2); ``tiny`` and ``small``
are ours, for CPU work and tests. The input geometry (16×160×160 video, 256×128 fbank, patch 16,
tubelet 2, LG regions (2, 5, 10) / (4, 4)) is part of the scale so a test can shrink it, but
every registered scale uses the published geometry.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = ["ModelScale", "SCALES", "get_scale", "scale_names"]


@dataclass(frozen=True)
class ModelScale:
    """Every size field of the model.

    ``skip_layers``: 0-based encoder layers whose (LN'd) features feed the hierarchical
    contrastive loss and the decoder skip connections, shallow → deep; the last entry must be
    the final encoder layer, and the decoder has one plain block plus one skip block per entry
    (``decoder_depth = len(skip_layers) + 1``). ``drop_path_rate`` applies to fine-tuning,
    ``pretrain_drop_path_rate`` to pretraining.
    """

    name: str
    embed_dim: int
    num_heads: int
    video_depth: int
    audio_depth: int
    fusion_depth: int
    fusion_num_heads: int
    decoder_embed_dim: int
    decoder_num_heads: int
    decoder_depth: int
    skip_layers: tuple[int, ...]
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    drop_path_rate: float = 0.1
    pretrain_drop_path_rate: float = 0.0
    num_frames: int = 16
    image_size: int = 160
    patch_size: int = 16
    tubelet_size: int = 2
    audio_size: tuple[int, int] = (256, 128)
    audio_patch_size: int = 16
    video_region: tuple[int, int, int] = (2, 5, 10)
    audio_region: tuple[int, int] = (4, 4)

    def __post_init__(self) -> None:
        for name in ("skip_layers", "audio_size", "video_region", "audio_region"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.embed_dim % self.num_heads or self.embed_dim % self.fusion_num_heads:
            raise ValueError(f"scale {self.name!r}: embed_dim must be divisible by the head counts")
        if self.decoder_embed_dim % self.decoder_num_heads:
            raise ValueError(f"scale {self.name!r}: decoder_embed_dim must be divisible by heads")
        last = min(self.video_depth, self.audio_depth) - 1
        layers = self.skip_layers
        if not layers or list(layers) != sorted(set(layers)) or layers[0] < 0 or layers[-1] != last:
            raise ValueError(
                f"scale {self.name!r}: skip_layers {layers} must be ascending, distinct, and end "
                f"at the last encoder layer {last}"
            )
        if self.video_depth != self.audio_depth:
            raise ValueError(
                f"scale {self.name!r}: the contrastive loss pairs video and audio layers, so "
                "video_depth must equal audio_depth"
            )
        if self.decoder_depth != len(layers) + 1:
            raise ValueError(
                f"scale {self.name!r}: decoder_depth must be len(skip_layers) + 1 = "
                f"{len(layers) + 1}, got {self.decoder_depth}"
            )

    @property
    def video_input_size(self) -> tuple[int, int, int]:
        return (self.num_frames, self.image_size, self.image_size)

    @property
    def video_patch(self) -> tuple[int, int, int]:
        return (self.tubelet_size, self.patch_size, self.patch_size)

    @property
    def audio_patch(self) -> tuple[int, int]:
        return (self.audio_patch_size, self.audio_patch_size)

    def replace(self, **changes: object) -> ModelScale:
        """A copy with some fields changed. ``depth`` sets both encoder depths; when the depth
        changes and ``skip_layers`` is not given, the skip layers are rescaled proportionally."""
        if "depth" in changes:
            depth = changes.pop("depth")
            changes.setdefault("video_depth", depth)
            changes.setdefault("audio_depth", depth)
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown scale field(s) {sorted(unknown)}; known: {field_names()}")
        new_depth = changes.get("video_depth", self.video_depth)
        if new_depth != self.video_depth and "skip_layers" not in changes:
            changes["skip_layers"] = _rescale_layers(self.skip_layers, self.video_depth, new_depth)
            changes.setdefault("decoder_depth", len(changes["skip_layers"]) + 1)
        return dataclasses.replace(self, **changes)


def _rescale_layers(layers: tuple[int, ...], old: int, new: int) -> tuple[int, ...]:
    scaled = sorted({min(new - 1, round((i + 1) * new / old) - 1) for i in layers} | {new - 1})
    return tuple(i for i in scaled if i >= 0)


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(ModelScale)] + ["depth"]


SCALES: dict[str, ModelScale] = {
    s.name: s
    for s in (
        ModelScale("tiny", 64, 4, 2, 2, 2, 4, 32, 2, 3, (0, 1)),
        ModelScale("small", 192, 3, 4, 4, 2, 3, 96, 3, 4, (1, 2, 3)),
        ModelScale("base", 512, 8, 10, 10, 2, 8, 384, 6, 4, (3, 6, 9)),
        ModelScale("large", 640, 10, 12, 12, 2, 10, 512, 8, 4, (3, 7, 11)),
        ModelScale("huge", 768, 12, 15, 15, 2, 12, 640, 8, 4, (4, 9, 14)),
    )
}


def scale_names() -> list[str]:
    return list(SCALES)


def get_scale(scale: str | ModelScale, **overrides: object) -> ModelScale:
    """The registered scale ``scale`` (or the given one) with ``overrides`` applied."""
    if isinstance(scale, str):
        if scale not in SCALES:
            raise ValueError(f"unknown model scale {scale!r}; registered: {scale_names()}")
        scale = SCALES[scale]
    return scale.replace(**overrides) if overrides else scale
