"""The classifier a ``params.yaml`` configuration describes.

Kept apart from the model code, which never reads params: :mod:`avfmae.config` builds models to
validate ``model.overrides``, so the models must not import it back.
"""

from __future__ import annotations

from typing import Any

from avfmae.config import Params
from avfmae.models.classifier import AVFClassifier
from avfmae.models.factory import create_model

__all__ = ["build_classifier"]


def build_classifier(params: Params, heads: dict[str, int], drop_path: float | None = None,
                     unimodal_heads: bool = False) -> AVFClassifier:
    """The classifier of ``model.scale`` and ``finetune.modality`` with one head per dataset
    (name → outputs), and with ``unimodal_heads`` those of the unimodal loss terms."""
    kwargs: dict[str, Any] = dict(params.model.overrides)
    if drop_path is not None:
        kwargs["drop_path_rate"] = drop_path
    return create_model(params.model.scale, num_classes=heads,
                        modality=params.finetune.modality,
                        head_init_scale=params.finetune.head_init_scale,
                        head_standardize=params.finetune.head_standardize,
                        unimodal_heads=unimodal_heads,
                        reference_compatible=params.model.reference_compatible, **kwargs)
