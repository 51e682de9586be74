"""Loading weights into a model.

Every load goes through :func:`load_matching` (name and shape must match); the callers differ
only in what they require of the result: an encoder (the start of fine-tuning) or any tensor
(a previous fine-tuning stage, evaluation).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor, nn

from avfmae.errors import UserError
from avfmae.models.convert import convert_state_dict, is_published, unwrap_state_dict
from avfmae.train.checkpoint import load_weights

__all__ = ["LoadReport", "load_matching", "load_pretrained_encoder", "load_weights_into"]


@dataclass
class LoadReport:
    """Result of :func:`load_pretrained_encoder`."""

    loaded: list[str]
    missing: list[str]
    unused: list[str]
    shape_mismatches: list[str]

    def parts(self) -> str:
        """One line naming the top-level modules that were loaded and those that start from
        their fresh initialisation, e.g. ``loaded video_encoder (52 tensors); random init:
        audio_encoder (52 tensors), fusion (40 tensors), heads (2 tensors)``; a module only
        partly loaded is counted on both sides."""
        def grouped(names: list[str]) -> str:
            counts: dict[str, int] = {}
            for name in names:
                top = name.split(".")[0]
                counts[top] = counts.get(top, 0) + 1
            return ", ".join(f"{top} ({n} tensors)" for top, n in counts.items()) or "nothing"

        return f"loaded {grouped(self.loaded)}; random init: {grouped(self.missing)}"

    def __str__(self) -> str:
        lines = [f"loaded {len(self.loaded)} tensors"]
        for title, items in (
            ("freshly initialised (not in the checkpoint)", self.missing),
            ("checkpoint tensors not used", self.unused),
            ("shape mismatches (kept initialised)", self.shape_mismatches),
        ):
            if items:
                lines.append(f"  {title} ({len(items)}): " + ", ".join(items[:12])
                             + (" …" if len(items) > 12 else ""))
        return "\n".join(lines)


def load_pretrained_encoder(model: nn.Module, checkpoint: Mapping[str, object]) -> LoadReport:
    """Load the encoders (and fusion, when present) of a checkpoint into ``model``.

    ``checkpoint``: a state dict (or ``{'model': …}``) of our pretraining or classifier model, or
    a published one (converted first, to the model's ER norm). Every tensor whose name and shape
    match is copied except classification heads (``head``/``heads``); so a pretraining
    checkpoint fills encoders and fusion, and a classifier checkpoint (e.g. from the previous
    fine-tuning stage) also brings ``fc_norm`` and the layer weights. Raises ValueError when no
    encoder tensor matches.
    """
    state = unwrap_state_dict(checkpoint)
    if is_published(state):
        bn = any(isinstance(m, nn.BatchNorm1d) for m in model.modules())
        state, _ = convert_state_dict(state, scale=model.scale, reference_compatible=bn)
    report = load_matching(model, state, heads=False)
    if not any(k.startswith(("video_encoder.", "audio_encoder.")) for k in report.loaded):
        raise ValueError("the checkpoint holds no encoder tensor of this model")
    return report


#: name prefixes of the classification heads (fine-tuning's unimodal heads included)
HEAD_PREFIXES = ("head.", "heads.", "unimodal_heads.")


def load_matching(model: nn.Module, state: Mapping[str, Tensor], *, heads: bool) -> LoadReport:
    """Copy every tensor of ``state`` whose name and shape match into ``model``; classification
    heads (``head``/``heads``/``unimodal_heads``) only with ``heads``. The one loader behind
    every other."""
    own = model.state_dict()
    loadable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape
                and (heads or not k.startswith(HEAD_PREFIXES))}
    model.load_state_dict(loadable, strict=False)
    return LoadReport(
        loaded=sorted(loadable),
        missing=[k for k in own if k not in loadable],
        unused=[k for k in state if k not in own],
        shape_mismatches=[f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                          for k, v in state.items() if k in own and own[k].shape != v.shape],
    )


def load_weights_into(model: nn.Module, path: Path, *, heads: bool,
                      complete: bool = False) -> list[str]:
    """Load the matching tensors of our checkpoint ``path`` (see :func:`load_matching`);
    returns the loaded names. No matching tensor at all is a user error (another scale or
    modality); with ``complete`` so is any tensor of ``model`` the checkpoint does not fill
    (a model to be scored must not keep freshly initialised parts)."""
    report = load_matching(model, load_weights(path), heads=heads)
    if not report.loaded:
        raise UserError(f"{path}: no tensor matches this model (different scale or modality?)")
    if complete and report.missing:
        raise UserError(f"{path}: does not fill this model ({report.parts()}); was it "
                        "trained with other model or finetune params?")
    return report.loaded
