"""Fine-tuning model: LG encoders → IAV-CLM on region tokens → pooled linear head(s)
(docs/model.md §6.1, §7)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avfmae.models.encoder import LGEncoder
from avfmae.models.fusion import IAVCLM
from avfmae.models.refinement import ERNorm
from avfmae.models.weight_init import trunc_normal_
from avfmae.scales import ModelScale

__all__ = ["AVFClassifier", "HeadStandardizer", "Modality", "UnimodalHeads"]

Modality = Literal["av", "video", "audio"]


class AVFClassifier(nn.Module):
    """AVF-MAE++ fine-tuning model.

    **Audio-visual** (``modality="av"``, the published model):
    each encoder returns the LN'd region tokens of every layer, V, A (B, 8, d, C). The fusion
    gets the last layer's region tokens ``X_v = V[:, :, -1]``, ``X_a = A[:, :, -1]`` (B, 8, C)
    and the joint query ``F⁰ = [Σ_l softmax(w_v)_l V_l ; Σ_l softmax(w_a)_l A_l]`` (B, 8, 2C);
    the head sees ``LN([mean_n Z_v ; mean_n Z_a])`` (B, 2C).

    **One modality** (``"video"`` / ``"audio"``, for ablations): only that encoder is built and
    there is no fusion (IAV-CLM needs both streams). The head sees
    ``LN(mean_r Σ_l softmax(w)_l R_l)`` (B, C): the layer-weighted region tokens that seed the
    joint query in the AV model. Every parameter that exists is used.

    **Heads**: ``num_classes`` an int gives one head ``head``; a mapping name → K gives one head
    per name (``heads.<name>``), e.g. one per dataset in the s1 stage. ``forward(..., head=name)``
    returns that head's logits; ``head=None`` returns a dict of every head's logits (use this
    under DDP and put every head in the loss, with zero weight for absent datasets, so each
    head gets a gradient and ``find_unused_parameters`` stays off). Heads are linear with no
    activation (regression targets use the same head with K = number of dimensions).

    ``reference_compatible=True`` uses the published BatchNorm1d in the ER refinement
    (``er_norm="batch"``); our default is a LayerNorm over channels (``"layer"``) — see
    :class:`~avfmae.models.refinement.Refinement`. Nothing else differs in fine-tuning.

    Inputs: ``video`` (B, 3, 16, 160, 160) ImageNet-normalised; ``audio`` (B, 1, 256, 128)
    normalised log-mel fbank (time × mel).

    Submodules (names shared with :class:`~avfmae.models.pretrain.AVFPretrain`, so a pretraining
    state dict loads directly): ``video_encoder``, ``audio_encoder``, ``fusion``, then
    ``video_layer_weights``/``audio_layer_weights``, ``fc_norm``, ``head``/``heads``. Freezing the
    encoders (stage s2) is ``model.video_encoder.requires_grad_(False)`` and likewise for audio.
    ``head_init_scale`` multiplies the fresh heads' trunc-normal(0.02) weights (the published AV
    head ignored ``--init_scale``, docs/model.md F6).

    ``head_standardize=True`` puts a :class:`HeadStandardizer` (``head_standardizer``) between
    ``fc_norm`` and the heads; the published model has none (``False``, an identity).

    ``unimodal_heads=True`` (AV only; not in the published model) adds ``unimodal_heads.video``
    and ``unimodal_heads.audio`` (:class:`UnimodalHeads`), read by ``forward(...,
    unimodal=True)`` for the unimodal loss terms of fine-tuning and by nothing else.
    """

    def __init__(
        self,
        scale: ModelScale,
        num_classes: int | Mapping[str, int] = 11,
        *,
        modality: Modality = "av",
        reference_compatible: bool = False,
        er_norm: ERNorm | None = None,
        drop_path_rate: float | None = None,
        head_init_scale: float = 1e-3,
        head_standardize: bool = False,
        unimodal_heads: bool = False,
    ) -> None:
        super().__init__()
        if modality not in ("av", "video", "audio"):
            raise ValueError(f"modality must be 'av', 'video' or 'audio', got {modality!r}")
        if unimodal_heads and modality != "av":
            raise ValueError(f"a {modality!r}-only model's head already reads one modality: "
                             "unimodal heads are for the AV model")
        self.scale = scale
        self.modality = modality
        self.reference_compatible = reference_compatible
        er_norm = er_norm or ("batch" if reference_compatible else "layer")
        dp = scale.drop_path_rate if drop_path_rate is None else drop_path_rate
        C = scale.embed_dim
        common = dict(
            dim=C, num_heads=scale.num_heads, mlp_ratio=scale.mlp_ratio, qkv_bias=scale.qkv_bias,
            drop_path_rate=dp,
        )
        if modality in ("av", "video"):
            self.video_encoder = LGEncoder(
                3, scale.video_input_size, scale.video_patch, scale.video_region,
                depth=scale.video_depth, **common,
            )
            self.video_layer_weights = _uniform_layer_weights(scale.video_depth)
        if modality in ("av", "audio"):
            self.audio_encoder = LGEncoder(
                1, scale.audio_size, scale.audio_patch, scale.audio_region,
                depth=scale.audio_depth, **common,
            )
            self.audio_layer_weights = _uniform_layer_weights(scale.audio_depth)
        if modality == "av":
            if self.video_encoder.num_regions != self.audio_encoder.num_regions:
                raise ValueError("the AV model pairs video and audio regions: counts must match")
            self.fusion = IAVCLM(
                C, scale.fusion_depth, scale.fusion_num_heads, scale.mlp_ratio, scale.qkv_bias,
                dp, er_norm,
            )
        self.num_features = 2 * C if modality == "av" else C
        self.fc_norm = nn.LayerNorm(self.num_features, eps=1e-6)
        self.head_standardizer = (HeadStandardizer(self.num_features) if head_standardize
                                  else nn.Identity())
        self.has_unimodal_heads = unimodal_heads
        self._init_weights()
        self.reset_classifier(num_classes, head_init_scale)

    def _init_weights(self) -> None:
        for name, m in self.named_modules():
            if isinstance(m, nn.Linear):
                # Encoders: ViT-style trunc-normal; fusion: Xavier (as published).
                if name.startswith("fusion."):
                    nn.init.xavier_uniform_(m.weight)
                else:
                    trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def reset_classifier(
        self, num_classes: int | Mapping[str, int], init_scale: float = 1e-3
    ) -> None:
        """Replace the head(s), and the unimodal heads where the model has them, with fresh ones
        (trunc-normal 0.02 × ``init_scale``, zero bias)."""
        self.num_classes = num_classes if isinstance(num_classes, int) else dict(num_classes)
        for attr in ("head", "heads", "unimodal_heads"):
            if hasattr(self, attr):
                delattr(self, attr)
        device = self.fc_norm.weight.device
        if isinstance(num_classes, int):
            self.head = _new_head(self.num_features, num_classes, init_scale).to(device)
        else:
            if not num_classes:
                raise ValueError("num_classes mapping is empty")
            self.heads = nn.ModuleDict(
                {name: _new_head(self.num_features, k, init_scale)
                 for name, k in num_classes.items()}
            ).to(device)
        if self.has_unimodal_heads:
            self.unimodal_heads = nn.ModuleDict({
                m: UnimodalHeads(self.scale.embed_dim, num_classes, init_scale,
                                 isinstance(self.head_standardizer, HeadStandardizer))
                for m in ("video", "audio")
            }).to(device)

    @staticmethod
    def _layer_mix(tokens: Tensor, weights: Tensor) -> Tensor:
        """(B, R, d, C) per-layer tokens → (B, R, C) softmax-layer-weighted sum."""
        return torch.einsum("brlc,l->brc", tokens, weights.softmax(0).to(tokens.dtype))

    def forward_features(self, video: Tensor | None = None, audio: Tensor | None = None) -> Tensor:
        """The head input after ``fc_norm``: (B, 2C) for AV, (B, C) for one modality."""
        return self._features(video, audio)[0]

    def _features(self, video: Tensor | None,
                  audio: Tensor | None) -> tuple[Tensor, dict[str, Tensor]]:
        """The head input (B, F) and each encoder's own pooled features (B, C) by modality:
        the layer-weighted region tokens averaged over regions, before any fusion."""
        for name, x in (("video", video), ("audio", audio)):
            if x is None and self.modality in ("av", name):
                raise ValueError(f"the {self.modality!r} model needs the {name} input")
        tokens, mixed = {}, {}
        for name, x in (("video", video), ("audio", audio)):
            if self.modality in ("av", name):
                tokens[name] = getattr(self, f"{name}_encoder")(x)
                mixed[name] = self._layer_mix(tokens[name], getattr(self, f"{name}_layer_weights"))
        own = {name: m.mean(1) for name, m in mixed.items()}
        if self.modality != "av":
            return self.fc_norm(own[self.modality]), own
        v, a = tokens["video"], tokens["audio"]
        fused = self.fusion(v[:, :, -1], a[:, :, -1], torch.cat((mixed["video"], mixed["audio"]),
                                                                dim=-1))
        return self.fc_norm(torch.cat((fused.video.mean(1), fused.audio.mean(1)), dim=-1)), own

    def forward_head(self, features: Tensor, head: str | None = None) -> Tensor | dict[str, Tensor]:
        features = self.head_standardizer(features)
        if hasattr(self, "head"):
            if head is not None:
                raise ValueError("this model has a single head; call without head=")
            return self.head(features)
        return _run_heads(self.heads, features, head)

    def forward(
        self, video: Tensor | None = None, audio: Tensor | None = None, head: str | None = None,
        *, unimodal: bool = False,
    ) -> Tensor | dict[str, Tensor]:
        """Logits (B, K), or a dict name → (B, K_name) for a multi-head model with ``head=None``.

        ``unimodal=True`` (a model built with ``unimodal_heads``) gives (3, B, K) per head: the
        logits, then those of the video encoder's and of the audio encoder's unimodal head, each
        reading that encoder's own pooled features as a one-modality model's head does.
        """
        features, own = self._features(video, audio)
        logits = self.forward_head(features, head)
        if not unimodal:
            return logits
        if not self.has_unimodal_heads:
            raise ValueError("this model was built without unimodal heads")
        video_logits, audio_logits = (self.unimodal_heads[m](own[m], head)
                                      for m in ("video", "audio"))
        if isinstance(logits, Tensor):
            return torch.stack((logits, video_logits, audio_logits))
        return {name: torch.stack((logits[name], video_logits[name], audio_logits[name]))
                for name in logits}

    # --- optimiser helpers -------------------------------------------------------------------

    @property
    def num_layers(self) -> int:
        """``max(d_v, d_a) + fusion_depth``: layer ids run 0 … num_layers + 1
        (docs/model.md §6.3)."""
        depth = max(self.scale.video_depth, self.scale.audio_depth)
        return depth + (self.scale.fusion_depth if self.modality == "av" else 0)

    def layer_id(self, name: str) -> int:
        """Layer id of parameter ``name`` for layer-wise LR decay (docs/model.md §6.3).

        0: patch embeddings; ``i + 1``: encoder block i (either modality);
        ``max(d_v, d_a) + k + 1``: fusion DiER unit k; ``num_layers + 1`` (the top, LR scale 1):
        everything else — region tokens, encoder norms, ER, HAFE, layer weights, fc_norm, heads.
        The LR scale of layer i is ``decay ** (num_layers + 1 - i)``.
        """
        return layer_id(name, max(self.scale.video_depth, self.scale.audio_depth), self.num_layers)

    def no_weight_decay(self) -> set[str]:
        """Parameters exempt from weight decay besides biases and norms (matched by suffix)."""
        keep = ("region_tokens", "layer_weights")
        return {n for n, _ in self.named_parameters() if n.split(".")[-1].endswith(keep)}


class UnimodalHeads(nn.Module):
    """One modality's training-only heads: LN → standardiser → linear, per dataset head, on that
    encoder's own pooled features (B, C), like a one-modality model's head. They give each
    encoder a loss of its own (``finetune.<stage>.unimodal_loss``), so the face encoder is
    trained to predict even once the voice fits the labels; predictions never use them."""

    def __init__(self, dim: int, num_classes: int | Mapping[str, int], init_scale: float,
                 standardize: bool) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.standardizer = HeadStandardizer(dim) if standardize else nn.Identity()
        self.single = isinstance(num_classes, int)
        classes = {"head": num_classes} if isinstance(num_classes, int) else num_classes
        self.heads = nn.ModuleDict({name: _new_head(dim, k, init_scale)
                                    for name, k in classes.items()})

    def forward(self, pooled: Tensor, head: str | None = None) -> Tensor | dict[str, Tensor]:
        x = self.standardizer(self.norm(pooled))
        if self.single:
            return self.heads["head"](x)
        return _run_heads(self.heads, x, head)


def _run_heads(heads: nn.ModuleDict, x: Tensor, head: str | None) -> Tensor | dict[str, Tensor]:
    """Head ``head``'s logits (B, K), or every head's by name for ``head=None``."""
    if head is None:
        return {name: h(x) for name, h in heads.items()}
    if head not in heads:
        raise KeyError(f"no head {head!r}; heads: {list(heads)}")
    return heads[head](x)


def _new_head(dim: int, k: int, init_scale: float) -> nn.Linear:
    head = nn.Linear(dim, k)
    trunc_normal_(head.weight, std=0.02)
    with torch.no_grad():
        head.weight.mul_(init_scale)
    nn.init.zeros_(head.bias)
    return head


def _uniform_layer_weights(depth: int) -> nn.Parameter:
    """Learnable per-layer weights, softmax-normalised when used; start uniform (1/d each)."""
    return nn.Parameter(torch.full((depth,), 1.0 / depth))


_ENCODER_BLOCK = re.compile(r"^(?:video|audio)_encoder\.blocks\.(\d+)\.")
_FUSION_UNIT = re.compile(r"^fusion\.units\.(\d+)\.")


def layer_id(name: str, encoder_depth: int, num_layers: int) -> int:
    """Layer id of parameter ``name`` (our naming) — see :meth:`AVFClassifier.layer_id`."""
    if re.match(r"^(?:video|audio)_encoder\.patch_embed\.", name):
        return 0
    if m := _ENCODER_BLOCK.match(name):
        return int(m.group(1)) + 1
    if m := _FUSION_UNIT.match(name):
        return encoder_depth + int(m.group(1)) + 1
    return num_layers + 1


class HeadStandardizer(nn.BatchNorm1d):
    """Standardise each head-input feature over the batch, no affine: (B, F) → (B, F).

    LayerNorm normalises a clip's feature vector as a whole; when every clip's vector is mostly
    one shared offset (after a short pretraining the clip-to-clip spread was ~4 % of it), the
    head must read tiny differences. Centring and scaling each feature across clips, as MAE's
    linear probe does, gives the head those differences at unit scale (docs/results.md,
    2026-12-06). Running statistics at evaluation, and in training for a batch of one.
    """

    def __init__(self, num_features: int) -> None:
        super().__init__(num_features, affine=False)

    def forward(self, x: Tensor) -> Tensor:
        if self.training and x.shape[0] == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, training=False,
                                eps=self.eps)
        return super().forward(x)
