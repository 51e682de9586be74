"""The timm entry points ``avfmae_<scale>`` / ``avfmae_pretrain_<scale>``: ``timm.create_model``
builds our models through :func:`avfmae.models.factory.create_model`, each registered with the
``pretrained_cfg`` of its scale.

Imported by ``avfmae`` itself once timm is (see ``avfmae/__init__.py``), never by the pipeline's
own model code, which does not need timm.
"""

from __future__ import annotations

import dataclasses

from timm.models import PretrainedCfg, generate_default_cfgs, register_model

from avfmae.models.classifier import AVFClassifier
from avfmae.models.factory import DEFAULT_NUM_CLASSES, create_model, pretrained_cfg
from avfmae.models.pretrain import AVFPretrain
from avfmae.scales import SCALES, ModelScale

__all__: list[str] = []

# Keyword arguments timm.create_model adds for every entry point.
_TIMM_KWARGS = ("pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")
_TIMM_CFG_KEYS = {f.name for f in dataclasses.fields(PretrainedCfg)}


def _registered_cfg(scale: ModelScale, pretrain: bool) -> dict[str, object]:
    cfg = pretrained_cfg(scale, num_classes=0 if pretrain else DEFAULT_NUM_CLASSES)
    return {k: v for k, v in cfg.items() if k in _TIMM_CFG_KEYS}


# timm's registry keeps one cfg per model name; register_model reads this module's default_cfgs
default_cfgs = generate_default_cfgs({
    f"avfmae_{kind}{name}": _registered_cfg(scale, pretrain=bool(kind))
    for name, scale in SCALES.items() for kind in ("", "pretrain_")
})


def _timm_entry(scale: str, pretrain: bool, kwargs: dict) -> AVFClassifier | AVFPretrain:
    if kwargs.pop("pretrained", False):
        raise ValueError(
            "avfmae models have no hub weights; convert a published checkpoint with "
            "`avfmae convert` and load it with avfmae.models.load_pretrained_encoder"
        )
    overlay = kwargs.pop("pretrained_cfg_overlay", None) or {}
    for key in _TIMM_KWARGS:
        kwargs.pop(key, None)
    # the cfg follows the model built (scale overrides change its geometry), not the registry's
    model = create_model(scale, pretrain=pretrain, **kwargs)
    model.pretrained_cfg = model.default_cfg = {**model.pretrained_cfg, **overlay}
    return model


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
