"""Published AVF-MAE++ checkpoints → our module names.

The published code (``XuecWu/AVF-MAE``) names parameters after its classes (``encoder.blocks.3.
first_attn.q.weight``, ``encoder_fusion.blocks.0.lv1.weight``, …). Our modules carry cleaner
names; :func:`convert_state_dict` maps every published parameter and buffer onto ours:

* renames (``encoder`` → ``video_encoder``, ``first_attn`` → ``local_attn``, …);
* fused self-attention projections ``qkv.weight`` (3C, C) split into ``q.weight`` (C, C) and
  ``kv.weight`` (2C, C) — our attention has separate query and key/value projections;
* the DiER gate pairs ``lv1``/``lv2`` (``la1``/``la2``) concatenated into one Linear(2C, 2C);
* ER's 1×1 ``Conv1d`` weights (C, C, 1) squeezed to Linear weights (C, C).

The fixed sinusoid tables are not in either state dict. :func:`convert_checkpoint` runs the
conversion file → file; :mod:`avfmae.models.loading` loads a checkpoint, ours or published,
into a classifier.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from avfmae.errors import CheckpointError
from avfmae.io import atomic_write, atomic_write_bytes
from avfmae.models.factory import create_model
from avfmae.scales import SCALES, ModelScale, get_scale

__all__ = [
    "ConversionReport",
    "convert_state_dict",
    "convert_checkpoint",
    "load_checkpoint",
    "encoder_size_mismatch",
    "unwrap_state_dict",
]

# Local-name maps per published module; a value of (name, part) marks one of several source
# tensors concatenated (dim 0, in part order) into one of ours.
_LG_BLOCK = {
    "first_attn_norm0": "local_norm",
    "first_attn": "local_attn",
    "second_attn_norm0": "region_norm",
    "second_attn": "region_attn",
    "third_attn_norm0": "inject_norm",
    "third_attn_norm1": "inject_context_norm",
    "third_attn": "inject_attn",
    "fourth_attn_norm0": "aggregate_norm",
    "fourth_attn_norm1": "aggregate_context_norm",
    "fourth_attn": "aggregate_attn",
    "norm2": "mlp_norm",
    "mlp": "mlp",
}
_ENCODER = {"lg_region_tokens": "region_tokens", "patch_embed": "patch_embed", "norm": "norm"}
_DIER = {
    "norm1": "video_self.norm1",
    "attn": "video_self.attn",
    "norm_vsa": "video_self.norm2",
    "mlp_vsa": "video_self.mlp",
    "norm_new": "audio_self.norm1",
    "attn_new": "audio_self.attn",
    "norm_asa": "audio_self.norm2",
    "mlp_asa": "audio_self.mlp",
    "cross_norm1": "video_cross.norm_q",
    "cross_norm2": "video_cross.norm_kv",
    "cross_attn": "video_cross.attn",
    "norm_vcma": "video_cross.norm2",
    "mlp_vcma": "video_cross.mlp",
    "cross_norm1_a": "audio_cross.norm_q",
    "cross_norm2_a": "audio_cross.norm_kv",
    "cross_attn_a": "audio_cross.attn",
    "norm_acma": "audio_cross.norm2",
    "mlp_acma": "audio_cross.mlp",
    "lv1": ("video_gate", 0),
    "lv2": ("video_gate", 1),
    "la1": ("audio_gate", 0),
    "la2": ("audio_gate", 1),
    "norm3": "video_norm",
    "norm3_1": "audio_norm",
}
_REFINEMENT = {
    "post_extract_proj": "input_proj",
    "conv_video.0": "video_proj",
    "conv_video.1": "video_norm",
    "conv_video.2": "video_act",
    "conv_audio.0": "audio_proj",
    "conv_audio.1": "audio_norm",
    "conv_audio.2": "audio_act",
    "layer_norm": "norm",
}
_HAFE = {
    "norm": "video.stage_block.norm1",
    "vadaptiveinteraction": "video.stage_block.attn",
    "norm_att_v": "video.stage_block.norm2",
    "mlp_att_v": "video.stage_block.mlp",
    "vselectfusion": "video.stage_gate",
    "cross_norm_1": "video.query_norm",
    "norm_att_v_IR": "video.out_norm",
    "mlp_att_video_IR": "video.out_mlp",
    "norm_audio": "audio.stage_block.norm1",
    "aadaptiveinteraction": "audio.stage_block.attn",
    "norm_att_a": "audio.stage_block.norm2",
    "mlp_att_a": "audio.stage_block.mlp",
    "aselectfusion": "audio.stage_gate",
    "cross_norm_3": "audio.query_norm",
    "norm_att_a_IR": "audio.out_norm",
    "mlp_att_audio_IR": "audio.out_mlp",
    "cross_norm_2": "context_norm",
    "cross_attn": "cross_attn",
}
_DECODER_BLOCK = {
    "cross_norm1": "norm_q",
    "cross_norm2": "norm_kv",
    "cross_attn": "cross_attn",
    "norm1": "norm1",
    "attn": "attn",
    "norm2": "norm2",
    "mlp": "mlp",
}
_DECODER = {"norm": "norm", "head": "head"}
_TOP = {
    "layer_weights_video": "video_layer_weights",
    "layer_weights_audio": "audio_layer_weights",
    "fc_norm": "fc_norm",
    "head": "head",
    "mask_token": "video_decoder.mask_token",
    "mask_token_audio": "audio_decoder.mask_token",
    "encoder_to_decoder": "video_decoder.embed",
    "encoder_to_decoder_audio": "audio_decoder.embed",
}
# (published prefix regex, our prefix template, local-name map); first match wins.
_SCOPES: list[tuple[re.Pattern[str], str, dict]] = [
    (re.compile(r"encoder\.blocks\.(\d+)\."), r"video_encoder.blocks.\1.", _LG_BLOCK),
    (re.compile(r"encoder_audio\.blocks\.(\d+)\."), r"audio_encoder.blocks.\1.", _LG_BLOCK),
    (re.compile(r"encoder\."), "video_encoder.", _ENCODER),
    (re.compile(r"encoder_audio\."), "audio_encoder.", _ENCODER),
    (re.compile(r"encoder_fusion\.blocks\.(\d+)\."), r"fusion.units.\1.", _DIER),
    (re.compile(r"encoder_fusion\.Iterative_Refinement_Module\."), "fusion.refine.", _REFINEMENT),
    (re.compile(r"encoder_fusion\."), "fusion.hafe.", _HAFE),
    (re.compile(r"decoder\.blocks\.(\d+)\."), r"video_decoder.blocks.\1.", _DECODER_BLOCK),
    (re.compile(r"decoder_audio\.blocks\.(\d+)\."), r"audio_decoder.blocks.\1.", _DECODER_BLOCK),
    (re.compile(r"decoder\."), "video_decoder.", _DECODER),
    (re.compile(r"decoder_audio\."), "audio_decoder.", _DECODER),
    (re.compile(r""), "", _TOP),
]
_BN_STATS = ("running_mean", "running_var", "num_batches_tracked")


def _map_name(name: str) -> tuple[str, int | None] | None:
    """Published name → (our name, concat part or None); None when no rule matches."""
    for pattern, prefix, local_map in _SCOPES:
        m = pattern.match(name)
        if not m:
            continue
        rest = name[m.end():]
        parts = rest.split(".")
        # Longest local module name first (e.g. "conv_video.0" before "conv_video").
        for n in range(len(parts), 0, -1):
            local = ".".join(parts[:n])
            if local in local_map:
                target = local_map[local]
                target, part = target if isinstance(target, tuple) else (target, None)
                leaf = ".".join(parts[n:])
                return m.expand(prefix) + target + ("." + leaf if leaf else ""), part
        return None
    return None


def unwrap_state_dict(checkpoint: Mapping[str, object]) -> dict[str, Tensor]:
    """The state dict inside ``{'model': sd}`` / ``{'module': sd}`` / ``{'state_dict': sd}`` or a
    bare one, with any DDP ``module.`` prefix removed."""
    for key in ("model", "module", "state_dict"):
        if isinstance(checkpoint.get(key), Mapping):
            checkpoint = checkpoint[key]
            break
    out = {}
    for k, v in checkpoint.items():
        if not isinstance(v, Tensor):
            raise ValueError(f"checkpoint entry {k!r} is not a tensor: not a state dict")
        out[k.removeprefix("module.")] = v
    return out


def is_published(state_dict: Mapping[str, Tensor]) -> bool:
    """Whether the names follow the published code (``encoder.…``) rather than ours."""
    return any(k.startswith(("encoder.", "encoder_audio.")) for k in state_dict)


@dataclass
class ConversionReport:
    """What a conversion did. ``ok`` when every source tensor found a home and every tensor of
    the target model was produced with the right shape."""

    source: str
    kind: str
    scale: str
    num_classes: int | None
    reference_compatible: bool
    converted: int = 0
    unmatched_source: list[str] = field(default_factory=list)
    missing_target: list[str] = field(default_factory=list)
    unexpected_target: list[str] = field(default_factory=list)
    shape_mismatches: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.unmatched_source or self.missing_target or self.unexpected_target
            or self.shape_mismatches
        )

    def __str__(self) -> str:
        head = (
            f"{self.source}: {self.kind} checkpoint, scale {self.scale!r}"
            + (f", {self.num_classes} classes" if self.num_classes is not None else "")
            + f", {'reference-compatible' if self.reference_compatible else 'default'} model: "
            + f"{self.converted} tensors converted — {'OK' if self.ok else 'PROBLEMS'}"
        )
        lines = [head]
        for title, items in (
            ("source tensors with no counterpart", self.unmatched_source),
            ("model tensors missing from the checkpoint", self.missing_target),
            ("converted tensors the model does not have", self.unexpected_target),
            ("shape mismatches", self.shape_mismatches),
            ("notes", self.notes),
        ):
            if items:
                lines.append(f"  {title} ({len(items)}):")
                lines.extend(f"    {item}" for item in items[:20])
                if len(items) > 20:
                    lines.append(f"    … and {len(items) - 20} more")
        return "\n".join(lines)


def _infer_scale(sd: Mapping[str, Tensor], kind: str) -> ModelScale:
    """Match a converted state dict's sizes against the registered scales."""
    def count(prefix: str) -> int:
        pat = re.compile(re.escape(prefix) + r"(\d+)\.")
        return len({m.group(1) for k in sd if (m := pat.match(k))})

    dims = {
        "embed_dim": sd["video_encoder.region_tokens"].shape[1],
        "video_depth": count("video_encoder.blocks."),
        "audio_depth": count("audio_encoder.blocks."),
        "fusion_depth": count("fusion.units."),
    }
    if kind == "pretrain":
        dims["decoder_embed_dim"] = sd["video_decoder.mask_token"].shape[-1]
        dims["decoder_depth"] = count("video_decoder.blocks.")
    for scale in SCALES.values():
        if all(getattr(scale, k) == v for k, v in dims.items()):
            return scale
    raise ValueError(
        f"checkpoint sizes {dims} match no registered scale ({list(SCALES)}); pass the scale "
        "(name or ModelScale with the right head counts and skip layers) explicitly"
    )


def convert_state_dict(
    checkpoint: Mapping[str, object],
    *,
    scale: str | ModelScale | None = None,
    reference_compatible: bool = True,
    source: str = "<state dict>",
) -> tuple[dict[str, Tensor], ConversionReport]:
    """Map a published checkpoint (pretraining or fine-tuning; ``{'model': sd}``,
    ``{'module': sd}`` or bare) onto our module names.

    ``reference_compatible`` chooses the target model: True keeps ER's BatchNorm1d with its
    running statistics (the model then reproduces the published outputs); False targets our
    default model, whose ER uses a LayerNorm over channels — the BatchNorm affine weights become
    the LayerNorm's and the running statistics are dropped (noted in the report).

    Returns the converted state dict and a :class:`ConversionReport` that compares it with the
    target model built (on the meta device) at ``scale`` (inferred from the shapes when None).
    """
    src = unwrap_state_dict(checkpoint)
    kind = "pretrain" if any(k.startswith(("decoder.", "mask_token")) for k in src) else "finetune"
    out: dict[str, Tensor] = {}
    parts: dict[str, dict[int, Tensor]] = {}
    unmatched, notes = [], []
    for name, tensor in src.items():
        mapped = _map_name(name)
        if mapped is None:
            unmatched.append(name)
            continue
        target, part = mapped
        if target.startswith("fusion.refine.") and tensor.ndim == 3:  # 1×1 Conv1d → Linear
            tensor = tensor.squeeze(-1)
        if target.endswith(".qkv.weight"):
            dim = tensor.shape[1]
            base = target.removesuffix("qkv.weight")
            out[base + "q.weight"], out[base + "kv.weight"] = tensor[:dim], tensor[dim:]
        elif part is not None:
            parts.setdefault(target, {})[part] = tensor
        else:
            out[target] = tensor
    for target, pieces in parts.items():
        out[target] = torch.cat([pieces[i] for i in sorted(pieces)], dim=0)
    if not reference_compatible:
        stats = [k for k in out if k.startswith("fusion.refine.") and k.endswith(_BN_STATS)]
        for k in stats:
            del out[k]
        if stats:
            notes.append(
                f"dropped {len(stats)} ER BatchNorm statistics: the default model uses a "
                "LayerNorm over channels there; its affine weights start from the BatchNorm's"
            )
    resolved = get_scale(scale) if scale is not None else _infer_scale(out, kind)
    num_classes = int(out["head.weight"].shape[0]) if "head.weight" in out else None
    report = ConversionReport(
        source, kind, resolved.name, num_classes, reference_compatible, len(out),
        unmatched_source=unmatched, notes=notes,
    )
    kwargs = {"reference_compatible": reference_compatible}
    if kind == "finetune":
        kwargs["num_classes"] = num_classes or 1
    with torch.device("meta"):
        model = create_model(resolved, pretrain=kind == "pretrain", **kwargs)
    expected = model.state_dict()
    if kind == "finetune" and num_classes is None:
        expected = {k: v for k, v in expected.items() if not k.startswith("head.")}
    report.missing_target = [k for k in expected if k not in out]
    report.unexpected_target = [k for k in out if k not in expected]
    report.shape_mismatches = [
        f"{k}: checkpoint {tuple(out[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items() if k in out and out[k].shape != v.shape
    ]
    return out, report


def load_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """Read a state dict from ``.safetensors`` or a ``weights_only``-loadable ``.pt``/``.pth``
    (unwrapping ``model``/``module``). Published training checkpoints pickle their argparse
    ``args``; ``argparse.Namespace`` is the only extra type allowed."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    with torch.serialization.safe_globals([argparse.Namespace]):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    return unwrap_state_dict(checkpoint)


def convert_checkpoint(
    src: str | Path,
    dst: str | Path,
    *,
    scale: str | ModelScale | None = None,
    sizes: Mapping[str, object] | None = None,
    reference_compatible: bool = True,
    strict: bool = True,
) -> ConversionReport:
    """Convert the published checkpoint at ``src`` and write it to ``dst``: ``.safetensors``
    (metadata: kind, scale, num_classes, reference_compatible) or a ``weights_only``-loadable
    ``.pt`` holding ``{'model': state_dict, 'avfmae': metadata}``. Written atomically.

    The checkpoint's sizes: ``scale`` (a registered name or a :class:`ModelScale`) with
    ``sizes`` overriding some of its fields (the names of ``model.overrides`` in params.yaml,
    e.g. ``{"embed_dim": 48, "num_heads": 3}``) for a checkpoint no registered scale fits.
    Without either, the registered scale matching the tensor shapes is taken.

    A file that cannot be read, sizes that do not fit it or, with ``strict`` (default), a
    conversion that is not ``ok`` raise :class:`CheckpointError` (a ValueError) naming the
    problem, and nothing is written.
    """
    src, dst = Path(src), Path(dst)
    checkpoint = _read_checkpoint(src)
    try:
        state_dict, report = convert_state_dict(
            checkpoint, scale=_checkpoint_scale(scale, sizes),
            reference_compatible=reference_compatible, source=str(src),
        )
    except ValueError as err:
        raise CheckpointError(f"{src}: {err}") from err
    if strict and not report.ok:
        raise CheckpointError(f"conversion failed:\n{report}")
    meta = {
        "format": "avfmae",
        "kind": report.kind,
        "scale": report.scale,
        "num_classes": "" if report.num_classes is None else str(report.num_classes),
        "reference_compatible": str(report.reference_compatible),
        "source": str(src),
    }
    tensors = {k: v.contiguous().clone() for k, v in state_dict.items()}
    if dst.suffix == ".safetensors":
        from safetensors.torch import save

        atomic_write_bytes(dst, save(tensors, metadata=meta))
    else:
        atomic_write(dst, lambda f: torch.save({"model": tensors, "avfmae": meta}, f))
    return report


def _read_checkpoint(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        return load_checkpoint(path)
    except Exception as err:  # whatever the reader raises, the file is not a checkpoint we read
        # the readers' first sentence says what failed; the rest is advice for other cases
        what = str(err).strip().split(". ")[0].splitlines()[0] if str(err).strip() else ""
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__}"
                              f"{': ' + what if what else ''})") from err


def _checkpoint_scale(scale: str | ModelScale | None,
                      sizes: Mapping[str, object] | None) -> str | ModelScale | None:
    """``scale`` with ``sizes`` applied; ValueError when they do not make a model."""
    if not sizes:
        return scale
    if scale is None:
        raise ValueError(f"sizes {dict(sizes)} override a scale: name the scale they change")
    try:
        return get_scale(scale, **sizes)
    except TypeError as err:  # e.g. a number where a list of layers belongs
        raise ValueError(f"sizes {dict(sizes)}: {err}") from err


def encoder_size_mismatch(state_dict: Mapping[str, Tensor], scale: str | ModelScale) -> str:
    """``""`` when the encoders of a checkpoint (published or ours, pretraining or classifier)
    have the sizes of ``scale``, else one line naming each differing size and the registered
    scale that fits, if any. Decoder sizes are not compared: fine-tuning drops the decoders."""
    want = get_scale(scale)
    sd = convert_state_dict(state_dict, scale=want)[0] if is_published(state_dict) \
        else state_dict
    if "video_encoder.region_tokens" not in sd:
        return "it holds no AVF-MAE++ encoder (no region tokens)"

    def count(prefix: str) -> int:
        pat = re.compile(re.escape(prefix) + r"(\d+)\.")
        return len({m.group(1) for k in sd if (m := pat.match(k))})

    got = {"embed_dim": int(sd["video_encoder.region_tokens"].shape[1]),
           "video_depth": count("video_encoder.blocks."),
           "audio_depth": count("audio_encoder.blocks."),
           "fusion_depth": count("fusion.units.")}
    diff = [f"{k} {v} (model.scale {want.name}: {getattr(want, k)})"
            for k, v in got.items() if v != getattr(want, k)]
    if not diff:
        return ""
    fits = [s.name for s in SCALES.values() if all(getattr(s, k) == v for k, v in got.items())]
    return ", ".join(diff) + (f"; it is a {fits[0]!r} checkpoint" if fits else "")
