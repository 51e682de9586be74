"""AVF-MAE++ models: LG encoders, IAV-CLM fusion, pretraining and classifier models, the scale
registry, published-checkpoint conversion and weight loading.

It does not import timm: ``avfmae_<scale>`` / ``avfmae_pretrain_<scale>`` register with timm
when timm is imported (``avfmae/__init__.py``, :mod:`avfmae.models.timm_entries`).
"""

from avfmae.models.classifier import AVFClassifier, Modality, layer_id
from avfmae.models.convert import (
    ConversionReport,
    convert_checkpoint,
    convert_state_dict,
    load_checkpoint,
)
from avfmae.models.factory import create_model
from avfmae.models.loading import LoadReport, load_pretrained_encoder
from avfmae.models.pretrain import AVFPretrain, ModalityIndex, PretrainIndex, PretrainOutput
from avfmae.scales import SCALES, ModelScale, get_scale, scale_names

__all__ = [
    "AVFClassifier",
    "AVFPretrain",
    "ConversionReport",
    "LoadReport",
    "ModalityIndex",
    "Modality",
    "ModelScale",
    "PretrainIndex",
    "PretrainOutput",
    "SCALES",
    "convert_checkpoint",
    "convert_state_dict",
    "create_model",
    "get_scale",
    "layer_id",
    "load_checkpoint",
    "load_pretrained_encoder",
    "scale_names",
]
