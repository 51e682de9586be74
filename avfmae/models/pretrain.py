"""Pretraining model: masked LG encoders, IAV-CLM, skip decoders, contrastive logits
(docs/model.md §5); or one modality's masked autoencoder alone."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from avfmae.models.classifier import Modality
from avfmae.models.decoder import SkipDecoder
from avfmae.models.encoder import LGEncoder
from avfmae.models.fusion import IAVCLM
from avfmae.models.refinement import ERNorm
from avfmae.models.regions import RegionGrid
from avfmae.scales import ModelScale

__all__ = ["AVFPretrain", "Partition", "ModalityIndex", "PretrainIndex", "PretrainOutput"]

Partition = Literal["window", "rank"]


@dataclass
class ModalityIndex:
    """Token bookkeeping for one modality, built from its masks by :meth:`AVFPretrain.index_masks`.

    ``layout`` (B, R, S'): flat index of the visible token in each LG region slot.
    ``position`` (B, R·S'): position index the decoder gives each visible token (layout order).
    ``decoded`` (B, Nd): positions to reconstruct, ascending.
    ``loss_mask`` (B, Nd) bool: True where the decoded position was hidden from the encoder.
    """

    layout: Tensor
    position: Tensor
    decoded: Tensor
    loss_mask: Tensor

    def to(self, device: torch.device | str) -> ModalityIndex:
        return ModalityIndex(*(getattr(self, f.name).to(device) for f in fields(self)))


@dataclass
class PretrainIndex:
    """Per-modality indices; None for a modality the model does not have.

    ``video_view`` (B, R, S'): the region layout of a second encoder mask over the same video
    (the second masked view, docs/model.md §5.6); None when no second view is encoded.
    """

    video: ModalityIndex | None
    audio: ModalityIndex | None
    video_view: Tensor | None = None

    def to(self, device: torch.device | str) -> PretrainIndex:
        return PretrainIndex(*(None if m is None else m.to(device)
                               for m in (self.video, self.audio, self.video_view)))


@dataclass
class PretrainOutput:
    """What :meth:`AVFPretrain.forward` returns. L = number of skip levels (``scale.skip_layers``).

    ``video_recon`` (B, Nd_v, 1536) / ``audio_recon`` (B, Nd_a, 256): predictions for the decoded
    positions in ascending patch order. Published checkpoints were trained against targets
    flattened ``(t h w c)`` within the 2×16×16 tubelet (video) and ``(h w)`` within the 16×16
    patch (audio) — build targets the same way.
    ``video_decoded`` / ``audio_decoded`` (B, Nd) long: the patch index of each prediction row.
    ``video_loss_mask`` / ``audio_loss_mask`` (B, Nd) bool: the decoded position was masked for
    the encoder — the published loss averages the per-row MSE over these rows only.
    ``video_embeddings`` / ``audio_embeddings``: L tensors (B, C), the L2-normalised token means
    of the encoder features at each skip level (for contrastive losses with gathered negatives).
    ``logits_per_video``: L tensors (B, B) = ``v · aᵀ / τ``; ``logits_per_audio`` their
    transposes. The published HCMCL is ``Σ_ℓ ½[CE(logits_ℓ, arange B) + CE(logits_ℓᵀ, arange B)]``.
    ``video_view_embedding`` (B, C): the L2-normalised token mean of the last skip level of the
    second masked view, when the index has one (else None).

    A one-modality model leaves the other modality's tensors None and its embeddings empty, and
    has no logits (empty lists).
    """

    video_recon: Tensor | None
    audio_recon: Tensor | None
    video_decoded: Tensor | None
    audio_decoded: Tensor | None
    video_loss_mask: Tensor | None
    audio_loss_mask: Tensor | None
    video_embeddings: list[Tensor]
    audio_embeddings: list[Tensor]
    logits_per_video: list[Tensor]
    logits_per_audio: list[Tensor]
    video_view_embedding: Tensor | None = None


class AVFPretrain(nn.Module):
    """AVF-MAE++ audio-visual masked autoencoder.

    **Forward.** ``forward(video, audio, video_mask, audio_mask, video_decoder_mask=None,
    audio_decoder_mask=None)`` with ``video`` (B, 3, 16, 160, 160), ``audio`` (B, 1, 256, 128)
    and boolean masks, **True = masked**: ``video_mask`` (B, 800) / ``audio_mask`` (B, 128) hide
    tokens from the encoder (every sample must keep the same number visible); the decoder masks
    (same shapes) mark positions that are *not* reconstructed (VideoMAE-V2 dual masking; decoded =
    ``~decoder_mask``). A missing decoder mask decodes every encoder-masked position. Returns a
    :class:`PretrainOutput`. :meth:`index_masks` turns masks into a :class:`PretrainIndex`, which
    ``forward(video, audio, index=...)`` also accepts, so indices can be built on the CPU (e.g.
    in data-loader workers) and the forward has no data-dependent shapes. An optional
    ``video_view_mask`` (B, 800) encodes the video a second time under another encoder mask (the
    second masked view, docs/model.md §5.6) and returns its pooled last-level embedding.

    **Steps.** (1) The visible tokens are split into the 8 LG regions per modality and encoded;
    the LN'd local tokens of the ``skip_layers`` are kept (the last is the encoder output).
    (2) Contrastive logits per skip level from token means. (3) IAV-CLM on the encoder outputs
    with the joint query ``[mean X_v ; mean X_a]`` (B, 1, 2C). (4) One :class:`SkipDecoder` per
    modality on the fused tokens with the skip features.

    **Region partition** (``partition``): ``"window"`` (default) expects window-aware masks —
    every region keeps the same number of visible tokens — and gathers each token into its own
    region (docs/model.md F3); masks that are not window-balanced raise ValueError.
    ``"rank"`` is the published partition by rank among the ascending visible tokens (works with
    tube / random masks whose visible count divides evenly, docs/model.md §3.2).

    **reference_compatible=True** reproduces the published model: rank partition, BatchNorm1d in
    ER (needs batch ≥ 2 in training), and the published position pairing in the decoder — the
    visible token at sequence position o gets the position of the o-th *ascending* visible patch
    rather than its own (docs/model.md §5.3, F2). The pairing only differs for video under the rank
    partition (audio's rank layout is ascending). With the default ``False``, each visible token
    gets its own position and ER uses a LayerNorm over channels (``er_norm`` can override this
    choice independently, e.g. to load published ER BatchNorm statistics).

    **Gradients.** Every parameter takes part in the graph (DDP needs no
    ``find_unused_parameters``), but two groups get exactly zero gradient in pretraining, as in
    the published model, and are only trained by fine-tuning: the last LG block's local → region
    step (``*_encoder.blocks.<last>.aggregate_*``: region tokens are dropped after the last
    block) and the query side of HAFE's cross-attention (``fusion.hafe.cross_attn.q*``,
    ``fusion.hafe.*.query_norm``: the joint query is a single token, so that softmax is
    constant). The contrastive logits need a batch of at least 2 to mean anything.

    **One modality** (``modality="video"`` / ``"audio"``, the unimodal ablation): only that
    modality's encoder and decoder are built; there is no fusion and no contrastive logits, and
    the decoder reads the encoder output directly. Pass None for the absent modality's input and
    masks. Its parameter names are a subset of the audio-visual model's, so the exported encoder
    loads into any classifier by name. The last LG block's local → region step still gets zero
    gradient; nothing else does.
    """

    def __init__(
        self,
        scale: ModelScale,
        *,
        reference_compatible: bool = False,
        partition: Partition | None = None,
        er_norm: ERNorm | None = None,
        drop_path_rate: float | None = None,
        contrastive_temperature: float = 0.07,
        modality: Modality = "av",
    ) -> None:
        super().__init__()
        if modality not in ("av", "video", "audio"):
            raise ValueError(f"modality must be 'av', 'video' or 'audio', got {modality!r}")
        partition = partition or ("rank" if reference_compatible else "window")
        if partition not in ("window", "rank"):
            raise ValueError(f"partition must be 'window' or 'rank', got {partition!r}")
        if reference_compatible and partition != "rank":
            raise ValueError("reference_compatible=True implies the published rank partition")
        self.scale = scale
        self.modality = modality
        self.reference_compatible = reference_compatible
        self.partition = partition
        self.temperature = contrastive_temperature
        er_norm = er_norm or ("batch" if reference_compatible else "layer")
        dp = scale.pretrain_drop_path_rate if drop_path_rate is None else drop_path_rate
        C, D = scale.embed_dim, scale.decoder_embed_dim
        common = dict(
            dim=C, num_heads=scale.num_heads, mlp_ratio=scale.mlp_ratio, qkv_bias=scale.qkv_bias,
            drop_path_rate=dp,
        )
        # registration order = initialisation order: the audio-visual model keeps its weights
        skips = len(scale.skip_layers)
        dec = dict(mlp_ratio=scale.mlp_ratio, qkv_bias=scale.qkv_bias)
        if self.has("video"):
            self.video_encoder = LGEncoder(
                3, scale.video_input_size, scale.video_patch, scale.video_region,
                depth=scale.video_depth, **common,
            )
        if self.has("audio"):
            self.audio_encoder = LGEncoder(
                1, scale.audio_size, scale.audio_patch, scale.audio_region,
                depth=scale.audio_depth, **common,
            )
        if modality == "av":
            self.fusion = IAVCLM(
                C, scale.fusion_depth, scale.fusion_num_heads, scale.mlp_ratio, scale.qkv_bias,
                dp, er_norm,
            )
        if self.has("video"):
            self.video_decoder = SkipDecoder(
                C, D, skips, scale.decoder_num_heads, self.video_encoder.regions.num_tokens,
                3 * scale.tubelet_size * scale.patch_size**2, **dec,
            )
        if self.has("audio"):
            self.audio_decoder = SkipDecoder(
                C, D, skips, scale.decoder_num_heads, self.audio_encoder.regions.num_tokens,
                scale.audio_patch_size**2, **dec,
            )
        self._init_weights()

    def has(self, name: str) -> bool:
        """Whether this model encodes modality ``name`` ("video" or "audio")."""
        return self.modality in ("av", name)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def no_weight_decay(self) -> set[str]:
        """Parameters exempt from weight decay besides biases and norms (matched by suffix,
        docs/model.md F19): the region tokens and the mask tokens."""
        keep = ("region_tokens", "mask_token")
        return {n for n, _ in self.named_parameters() if n.split(".")[-1] in keep}

    # --- masks → indices ---------------------------------------------------------------------

    def _layout(self, grid: RegionGrid, mask: Tensor, name: str) -> tuple[Tensor, Tensor]:
        """(layout (B, R, S'), visible (B, n) ascending) of a bool encoder mask."""
        B, N = mask.shape
        if N != grid.num_tokens:
            raise ValueError(f"{name} mask has {N} tokens, the model expects {grid.num_tokens}")
        visible_counts = (~mask).sum(1)
        num_visible = int(visible_counts[0])
        if not bool((visible_counts == num_visible).all()):
            raise ValueError(f"every sample's {name} mask must keep the same number visible")
        visible = torch.sort(mask.to(torch.uint8), dim=1, stable=True).indices[:, :num_visible]
        layout = grid.window_layout(visible) if self.partition == "window" \
            else grid.rank_layout(visible)
        return layout, visible

    def _index_modality(
        self, grid: RegionGrid, mask: Tensor, decoder_mask: Tensor | None, name: str
    ) -> ModalityIndex:
        mask = mask.bool()
        layout, visible = self._layout(grid, mask, name)
        position = visible if self.reference_compatible else layout.flatten(1)
        decode = mask if decoder_mask is None else ~decoder_mask.bool()
        decoded_counts = decode.sum(1)
        num_decoded = int(decoded_counts[0])
        if not bool((decoded_counts == num_decoded).all()):
            raise ValueError(f"every sample's {name} decoder mask must decode the same count")
        decoded = torch.sort((~decode).to(torch.uint8), dim=1, stable=True).indices[:, :num_decoded]
        return ModalityIndex(layout, position, decoded, mask.gather(1, decoded))

    def index_masks(
        self,
        video_mask: Tensor | None,
        audio_mask: Tensor | None,
        video_decoder_mask: Tensor | None = None,
        audio_decoder_mask: Tensor | None = None,
        video_view_mask: Tensor | None = None,
    ) -> PretrainIndex:
        """Token indices for :meth:`forward_indexed` from boolean masks (True = masked); the
        masks of a modality the model does not have are ignored."""
        index = {}
        for name, mask, decoder_mask in (("video", video_mask, video_decoder_mask),
                                         ("audio", audio_mask, audio_decoder_mask)):
            if not self.has(name):
                index[name] = None
                continue
            if mask is None:
                raise ValueError(f"the {self.modality!r} model needs the {name} encoder mask")
            grid = getattr(self, f"{name}_encoder").regions
            index[name] = self._index_modality(grid, mask, decoder_mask, name)
        if video_view_mask is not None and self.has("video"):
            index["video_view"], _ = self._layout(self.video_encoder.regions,
                                                  video_view_mask.bool(), "video view")
        return PretrainIndex(**index)

    # --- forward -----------------------------------------------------------------------------

    def forward(
        self,
        video: Tensor | None,
        audio: Tensor | None,
        video_mask: Tensor | None = None,
        audio_mask: Tensor | None = None,
        video_decoder_mask: Tensor | None = None,
        audio_decoder_mask: Tensor | None = None,
        *,
        video_view_mask: Tensor | None = None,
        index: PretrainIndex | None = None,
    ) -> PretrainOutput:
        """Masks as described in the class docstring, or a prebuilt ``index`` instead (e.g. from
        :meth:`index_masks` in a data-loader worker; this also keeps the call free of
        data-dependent shapes for ``torch.compile``)."""
        if index is None:
            masks = {"video_mask": video_mask, "audio_mask": audio_mask}
            needed = [f"{name}_mask" for name in ("video", "audio") if self.has(name)]
            if any(masks[n] is None for n in needed):
                raise ValueError(f"pass the encoder masks ({', '.join(needed)}) or an index")
            index = self.index_masks(video_mask, audio_mask, video_decoder_mask, audio_decoder_mask,
                                     video_view_mask)
        device = next(self.parameters()).device
        return self.forward_indexed(video, audio, index.to(device))

    def forward_indexed(
        self, video: Tensor | None, audio: Tensor | None, index: PretrainIndex
    ) -> PretrainOutput:
        for name, x in (("video", video), ("audio", audio)):
            if x is None and self.has(name):
                raise ValueError(f"the {self.modality!r} model needs the {name} input")
        if self.modality != "av":
            return self._forward_one(video if self.modality == "video" else audio, index)
        layers = self.scale.skip_layers
        video_feats = self.video_encoder.forward_masked(video, index.video.layout, layers)
        audio_feats = self.audio_encoder.forward_masked(audio, index.audio.layout, layers)

        video_emb = [F.normalize(f.mean(1), dim=-1) for f in video_feats]
        audio_emb = [F.normalize(f.mean(1), dim=-1) for f in audio_feats]
        logits = [v @ a.t() / self.temperature for v, a in zip(video_emb, audio_emb)]

        x_video, x_audio = video_feats[-1], audio_feats[-1]
        query = torch.cat((x_video.mean(1), x_audio.mean(1)), dim=-1).unsqueeze(1)
        fused = self.fusion(x_video, x_audio, query)

        video_recon = self.video_decoder(
            fused.video, video_feats, index.video.position, index.video.decoded
        )
        audio_recon = self.audio_decoder(
            fused.audio, audio_feats, index.audio.position, index.audio.decoded
        )
        return PretrainOutput(
            video_recon=video_recon,
            audio_recon=audio_recon,
            video_decoded=index.video.decoded,
            audio_decoded=index.audio.decoded,
            video_loss_mask=index.video.loss_mask,
            audio_loss_mask=index.audio.loss_mask,
            video_embeddings=video_emb,
            audio_embeddings=audio_emb,
            logits_per_video=logits,
            logits_per_audio=[l.t() for l in logits],
            video_view_embedding=self._view_embedding(video, index.video_view),
        )

    def _forward_one(self, x: Tensor, index: PretrainIndex) -> PretrainOutput:
        """One modality's masked autoencoder: encoder, then its decoder on the encoder output."""
        name = self.modality
        idx: ModalityIndex = getattr(index, name)
        encoder, decoder = getattr(self, f"{name}_encoder"), getattr(self, f"{name}_decoder")
        feats = encoder.forward_masked(x, idx.layout, self.scale.skip_layers)
        recon = decoder(feats[-1], feats, idx.position, idx.decoded)
        emb = [F.normalize(f.mean(1), dim=-1) for f in feats]
        out = {f"{m}_{k}": None for m in ("video", "audio")
               for k in ("recon", "decoded", "loss_mask")}
        out.update({f"{name}_recon": recon, f"{name}_decoded": idx.decoded,
                    f"{name}_loss_mask": idx.loss_mask})
        return PretrainOutput(
            **out,
            video_embeddings=emb if name == "video" else [],
            audio_embeddings=emb if name == "audio" else [],
            logits_per_video=[],
            logits_per_audio=[],
            video_view_embedding=self._view_embedding(x, index.video_view),
        )

    def _view_embedding(self, video: Tensor, layout: Tensor | None) -> Tensor | None:
        """(B, C) L2-normalised token mean of the last skip level of ``video`` encoded under
        the second view's ``layout``; None without one."""
        if layout is None:
            return None
        last = self.scale.skip_layers[-1]
        feats = self.video_encoder.forward_masked(video, layout, [last])[-1]
        return F.normalize(feats.mean(1), dim=-1)
