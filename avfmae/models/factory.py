"""``create_model``: the classifier or pretraining model at a registered scale, with a
``pretrained_cfg`` that states the input geometry and normalisation the data pipeline uses.

timm is not imported here (with torchvision it slows every stage's start, see docs/speed.md):
the timm entry points live in :mod:`avfmae.models.timm_entries`, registered when timm is
imported."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from avfmae.data.audio_features import FBANK_MEAN, FBANK_STD
from avfmae.data.video_transforms import IMAGENET_MEAN, IMAGENET_STD
from avfmae.models.classifier import AVFClassifier
from avfmae.models.pretrain import AVFPretrain
from avfmae.scales import ModelScale, get_scale

__all__ = ["DEFAULT_NUM_CLASSES", "create_model", "pretrained_cfg"]

_SCALE_FIELDS = {f.name for f in dataclasses.fields(ModelScale)} | {"depth"}
#: create_model's head size when none is given; the registered classifier cfgs state it
DEFAULT_NUM_CLASSES = 11


def create_model(
    scale: str | ModelScale,
    *,
    pretrain: bool = False,
    num_classes: int | Mapping[str, int] = DEFAULT_NUM_CLASSES,
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
