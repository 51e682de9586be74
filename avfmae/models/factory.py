"""``create_model`` and the timm entries ``avfmae_<scale>`` / ``avfmae_pretrain_<scale>``, each
with a ``pretrained_cfg`` that states the input geometry and normalisation the data pipeline
uses."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from timm.models import PretrainedCfg, generate_default_cfgs, register_model

from avfmae.data.audio_features import FBANK_MEAN, FBANK_STD
from avfmae.data.video_transforms import IMAGENET_MEAN, IMAGENET_STD
from avfmae.models.classifier import AVFClassifier
from avfmae.models.pretrain import AVFPretrain
from avfmae.scales import SCALES, ModelScale, get_scale

__all__ = ["create_model", "pretrained_cfg"]

_SCALE_FIELDS = {f.name for f in dataclasses.fields(ModelScale)} | {"depth"}
# Keyword arguments timm.create_model adds for every entry point.
_TIMM_KWARGS = ("pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")
# create_model's head size when none is given; the registered classifier cfgs state it
_DEFAULT_NUM_CLASSES = 11


def create_model(
    scale: str | ModelScale,
    *,
    pretrain: bool = False,
    num_classes: int | Mapping[str, int] = _DEFAULT_NUM_CLASSES,
    **overrides: object,
) -> AVFClassifier | AVFPretrain:
    """Build the classifier (default) or the pretraining model at a registered scale.

    ``overrides`` may name scale fields (``embed_dim``, ``video_depth``, ``depth`` for both
    encoders, ``skip_layers``, … — see :class:`ModelScale`) and model options:
    classifier — ``modality``, ``reference_compatible``, ``er_norm``, ``drop_path_rate``,
    ``head_init_scale``, ``head_standardize``; pretraining — ``modality``,
    ``reference_compatible``, ``partition``, ``er_norm``, ``drop_path_rate``,
    ``contrastive_temperature``. Examples::

        create_model("base", num_classes=11)
        create_model("tiny", pretrain=True, partition="rank")
        create_model("tiny", pretrain=True, modality="video")  # video-only masked autoencoder
        create_model("small", num_classes={"mafw": 11, "dfew": 7}, modality="video", depth=6)
    """
    scale_changes = {k: overrides.pop(k) for k in list(overrides) if k in _SCALE_FIELDS}
    resolved = get_scale(scale, **scale_changes)
    if pretrain:
        model: AVFClassifier | AVFPretrain = AVFPretrain(resolved, **overrides)
        cfg = pretrained_cfg(resolved, num_classes=0)
    else:
        model = AVFClassifier(resolved, num_classes, **overrides)
        cfg = pretrained_cfg(resolved, num_classes=num_classes)
    # timm's data helpers (resolve_data_config) read either name
    model.pretrained_cfg = model.default_cfg = cfg
    return model


def pretrained_cfg(scale: ModelScale, num_classes: int | Mapping[str, int]) -> dict[str, object]:
    """timm's ``pretrained_cfg`` of a model at ``scale``: the inputs the data pipeline makes.

    timm's own keys describe one video frame: ``input_size`` (3, H, W), ImageNet ``mean``/``std``
    on [0, 1] RGB, a bilinear resize of the whole face crop (``crop_pct`` 1). The rest of the
    geometry has keys of its own: ``num_frames`` per clip and the audio input, a log-mel
    filterbank ``audio_input_size`` (1, frames, mel bins) normalised as
    ``(x - audio_mean) / audio_std`` (the AudioSet recipe divides by twice the dataset std).
    ``notes`` repeats them for :func:`timm.models.get_pretrained_cfg`, which keeps timm's keys only.
    ``num_classes`` 0 is the pretraining model (no head); a mapping means one head per task.
    """
    cfg: dict[str, object] = {
        "input_size": (3, scale.image_size, scale.image_size),
        "fixed_input_size": True,  # position tables and LG regions are built for this geometry
        "interpolation": "bilinear",
        "crop_pct": 1.0,
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "first_conv": "video_encoder.patch_embed.proj",
        "classifier": None,
        "num_frames": scale.num_frames,
        "audio_input_size": (1, *scale.audio_size),
        "audio_mean": FBANK_MEAN,
        "audio_std": 2 * FBANK_STD,
        "paper_name": "AVF-MAE++: Scaling Affective Video Facial Masked Autoencoders via "
                      "Efficient Audio-Visual Self-Supervised Learning",
    }
    if isinstance(num_classes, Mapping):
        cfg["classifier"] = "heads"
    elif num_classes:
        cfg.update(num_classes=num_classes, classifier="head")
    else:
        cfg["num_classes"] = 0
    cfg["notes"] = (
        f"video: {scale.num_frames} frames of input_size per clip",
        f"audio: log-mel filterbank {cfg['audio_input_size']}, normalised "
        f"(x - {FBANK_MEAN}) / {2 * FBANK_STD}",
    )
    return cfg


_TIMM_CFG_KEYS = {f.name for f in dataclasses.fields(PretrainedCfg)}


def _registered_cfg(scale: ModelScale, pretrain: bool) -> dict[str, object]:
    cfg = pretrained_cfg(scale, num_classes=0 if pretrain else _DEFAULT_NUM_CLASSES)
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
