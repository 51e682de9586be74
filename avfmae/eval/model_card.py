"""The model card: what a fine-tuned checkpoint carries so that prediction needs nothing else.

The fine-tune stage writes the card into the safetensors metadata of every ``best``/``last``
checkpoint (key :data:`CARD_KEY`, one JSON string): the task (family, the head's dataset, label
or dimension names), how to build the model (scale, overrides, modality), the input geometry and
test-time protocol of evaluation, the input normalisation, and the preprocessing settings of the
model's training data with their fingerprint. :func:`read_model_card` reads it back; a
checkpoint without a card (or with one this version cannot read) is a :class:`UserError`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from avfmae import pipeline
from avfmae.config import Params
from avfmae.data.audio_features import FBANK_MEAN, FBANK_STD
from avfmae.data.video_transforms import IMAGENET_MEAN, IMAGENET_STD
from avfmae.errors import UserError
from avfmae.eval.inference import eval_dataset
from avfmae.preprocess.settings import Settings, fingerprint

__all__ = ["CARD_KEY", "CARD_FORMAT", "ModelCard", "model_card", "read_model_card",
           "normalisation"]

CARD_KEY = "avfmae_model_card"
CARD_FORMAT = 1

#: ClipDataset attributes that fix what one evaluation window looks like
GEOMETRY = ("num_frames", "sampling_rate", "input_size", "audio_frames", "n_mels", "sample_rate",
            "audio_pad", "num_windows")


def normalisation() -> dict[str, Any]:
    """The input normalisation this version of the loader applies (video and filterbank)."""
    return {"video_mean": list(IMAGENET_MEAN), "video_std": list(IMAGENET_STD),
            "fbank_mean": FBANK_MEAN, "fbank_std": FBANK_STD}


@dataclass(frozen=True)
class ModelCard:
    """Everything prediction needs besides the weights.

    ``task``: ``family`` (CEA | DEA | MER), ``dataset`` (the head's name), ``names`` (labels,
    levels or dimensions), ``regression`` (continuous outputs; a levelled DEA dataset
    classifies), ``dimensions`` (a levelled dataset's dimensions, each classified into the
    levels ``names``; empty otherwise — and absent from cards written before levelled tasks had
    dimensions). ``model``: ``scale``, ``overrides``, ``modality``, ``reference_compatible``,
    ``head_standardize`` (absent from cards written before it existed: false).
    ``geometry``: the evaluation windows (see :data:`GEOMETRY`). ``preprocess``: ``settings``
    (the fields of :class:`avfmae.preprocess.Settings`), ``fingerprint`` and ``description`` of
    the training data's clip store. ``origin``: stage and fold of the checkpoint.
    """

    task: dict[str, Any]
    model: dict[str, Any]
    geometry: dict[str, Any]
    normalisation: dict[str, Any]
    preprocess: dict[str, Any]
    origin: dict[str, Any]
    format: int = CARD_FORMAT

    @property
    def names(self) -> list[str]:
        return list(self.task["names"])

    @property
    def regression(self) -> bool:
        return bool(self.task["regression"])

    @property
    def dimensions(self) -> list[str]:
        return list(self.task.get("dimensions", []))

    @property
    def outputs(self) -> int:
        """The head's size: one logit per name, per dimension for a levelled task."""
        return len(self.names) * max(1, len(self.dimensions))

    @property
    def head(self) -> str:
        return self.task["dataset"]

    def to_metadata(self) -> dict[str, str]:
        """Safetensors metadata (string → string)."""
        return {CARD_KEY: json.dumps(dataclasses.asdict(self), sort_keys=True)}


def model_card(params: Params, task: Any, *, stage: str, fold: int) -> ModelCard:
    """The card of a model fine-tuned for ``task`` (an :class:`avfmae.tasks.Task`)
    under ``params``: geometry from the evaluation dataset, preprocessing from the clip store."""
    empty = pd.DataFrame(columns=["clip_id", "video", "audio", *task.target_columns])
    windows = eval_dataset(params, empty, task)
    settings = Settings.from_config(params.preprocess)
    store = pipeline.path("preprocess", "clips", params, ds=task.dataset) / "fingerprint.json"
    if store.is_file():
        recorded = json.loads(store.read_text())
        fp, desc = recorded["fingerprint"], recorded["settings"]
    else:
        fp, desc = fingerprint(settings)
    return ModelCard(
        task={"family": task.family, "dataset": task.dataset, "names": list(task.names),
              "regression": task.regression, "dimensions": list(task.dimensions)},
        model={"scale": params.model.scale, "overrides": dict(params.model.overrides),
               "modality": params.finetune.modality,
               "reference_compatible": params.model.reference_compatible,
               "head_standardize": params.finetune.head_standardize},
        geometry={k: getattr(windows, k) for k in GEOMETRY},
        normalisation=normalisation(),
        preprocess={"settings": dataclasses.asdict(settings), "fingerprint": fp,
                    "description": desc},
        origin={"stage": stage, "fold": fold},
    )


def read_model_card(path: Path) -> ModelCard:
    """The card of the checkpoint ``path``; :class:`UserError` when it has none or is not a
    safetensors file."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError) as err:
        raise UserError(f"{path}: not a readable safetensors checkpoint ({err})") from None
    if CARD_KEY not in meta:
        raise UserError(
            f"{path}: this checkpoint carries no model card (label names, task, input geometry, "
            "preprocessing settings); prediction needs one: fine-tune it again with this "
            "version of avfmae (`avfmae finetune ...`)")
    try:
        raw = json.loads(meta[CARD_KEY])
        if raw.get("format") != CARD_FORMAT:
            raise ValueError(f"card format {raw.get('format')}, this avfmae reads {CARD_FORMAT}")
        card = ModelCard(**raw)
    except (ValueError, TypeError) as err:
        raise UserError(f"{path}: unreadable model card: {err}") from None
    return card
