"""``create_model`` and the timm entries ``avfmae_<scale>`` / ``avfmae_pretrain_<scale>``."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from timm.models import register_model

from avfmae.models.classifier import AVFClassifier
from avfmae.models.pretrain import AVFPretrain
from avfmae.scales import ModelScale, get_scale

__all__ = ["create_model"]

_SCALE_FIELDS = {f.name for f in dataclasses.fields(ModelScale)} | {"depth"}
# Keyword arguments timm.create_model adds for every entry point.
_TIMM_KWARGS = ("pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")


def create_model(
    scale: str | ModelScale,
    *,
    pretrain: bool = False,
    num_classes: int | Mapping[str, int] = 11,
    **overrides: object,
) -> AVFClassifier | AVFPretrain:
    """Build the classifier (default) or the pretraining model at a registered scale.

    ``overrides`` may name scale fields (``embed_dim``, ``video_depth``, ``depth`` for both
    encoders, ``skip_layers``, … — see :class:`ModelScale`) and model options:
    classifier — ``modality``, ``reference_compatible``, ``er_norm``, ``drop_path_rate``,
    ``head_init_scale``; pretraining — ``modality``, ``reference_compatible``, ``partition``,
    ``er_norm``, ``drop_path_rate``, ``contrastive_temperature``. Examples::

        create_model("base", num_classes=11)
        create_model("tiny", pretrain=True, partition="rank")
        create_model("tiny", pretrain=True, modality="video")  # video-only masked autoencoder
        create_model("small", num_classes={"mafw": 11, "dfew": 7}, modality="video", depth=6)
    """
    scale_changes = {k: overrides.pop(k) for k in list(overrides) if k in _SCALE_FIELDS}
    resolved = get_scale(scale, **scale_changes)
    if pretrain:
        return AVFPretrain(resolved, **overrides)
    return AVFClassifier(resolved, num_classes, **overrides)


def _timm_entry(scale: str, pretrain: bool, kwargs: dict) -> AVFClassifier | AVFPretrain:
    if kwargs.pop("pretrained", False):
        raise ValueError(
            "avfmae models have no hub weights; convert a published checkpoint with "
            "`avfmae convert` and load it with avfmae.models.load_pretrained_encoder"
        )
    for key in _TIMM_KWARGS:
        kwargs.pop(key, None)
    return create_model(scale, pretrain=pretrain, **kwargs)


@register_model
def avfmae_tiny(**kwargs) -> AVFClassifier:
    return _timm_entry("tiny", False, kwargs)


@register_model
def avfmae_small(**kwargs) -> AVFClassifier:
    return _timm_entry("small", False, kwargs)


@register_model
def avfmae_base(**kwargs) -> AVFClassifier:
    return _timm_entry("base", False, kwargs)


@register_model
def avfmae_large(**kwargs) -> AVFClassifier:
    return _timm_entry("large", False, kwargs)


@register_model
def avfmae_huge(**kwargs) -> AVFClassifier:
    return _timm_entry("huge", False, kwargs)


@register_model
def avfmae_pretrain_tiny(**kwargs) -> AVFPretrain:
    return _timm_entry("tiny", True, kwargs)


@register_model
def avfmae_pretrain_small(**kwargs) -> AVFPretrain:
    return _timm_entry("small", True, kwargs)


@register_model
def avfmae_pretrain_base(**kwargs) -> AVFPretrain:
    return _timm_entry("base", True, kwargs)


@register_model
def avfmae_pretrain_large(**kwargs) -> AVFPretrain:
    return _timm_entry("large", True, kwargs)


@register_model
def avfmae_pretrain_huge(**kwargs) -> AVFPretrain:
    return _timm_entry("huge", True, kwargs)
