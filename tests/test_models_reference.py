"""The converted published checkpoints reproduce the published model's outputs
(tests/fixtures/reference/README.md §4–§6), and reference_compatible on/off differ only where
documented."""

from __future__ import annotations


from reference_data import load_reference

import pytest
import torch
from torch import nn

from avfmae.models import convert_state_dict, create_model


FT_SCALE = dict(
    embed_dim=64, num_heads=4, depth=2, fusion_depth=2, fusion_num_heads=4,
    skip_layers=(0, 1), decoder_depth=3, drop_path_rate=0.0,
)
PT_SCALE = dict(
    embed_dim=48, num_heads=3, depth=4, fusion_depth=2, fusion_num_heads=3,
    decoder_embed_dim=32, decoder_num_heads=2, decoder_depth=4, skip_layers=(0, 2, 3),
)

OUT = dict(rtol=1e-5, atol=1e-5)
MID = dict(rtol=0.0, atol=1e-4)
BN_STATS = ("running_mean", "running_var", "num_batches_tracked")


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """One intra-op thread: these models are small, and the test machine's cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _load(name: str) -> dict:
    return load_reference(f"{name}.pt")


@pytest.fixture(scope="module")
def ft_vector() -> dict:
    return _load("vector_finetune_small")


@pytest.fixture(scope="module")
def pt_vector() -> dict:
    return _load("vector_pretrain_small")


@pytest.fixture(scope="module")
def pt_extras() -> dict:
    return _load("vector_pretrain_small_extras")


def _classifier(vector: dict, **kw) -> nn.Module:
    model = create_model("tiny", num_classes=7, **FT_SCALE, **kw)
    sd, report = convert_state_dict(vector["state_dict"], scale=model.scale,
                                    reference_compatible=kw.get("reference_compatible", False))
    assert report.ok, str(report)
    model.load_state_dict(sd, strict=True)
    return model.eval()


def _pretrainer(vector: dict, **kw) -> nn.Module:
    model = create_model("tiny", pretrain=True, **PT_SCALE, **kw)
    bn = isinstance(model.fusion.refine.video_norm, nn.BatchNorm1d)
    sd, report = convert_state_dict(
        vector["state_dict"], scale=model.scale, reference_compatible=bn
    )
    assert report.ok, str(report)
    model.load_state_dict(sd, strict=True)
    return model.eval()


def _capture(module: nn.Module, store: list, pre: bool = False, arg: int = 0) -> None:
    if pre:
        module.register_forward_pre_hook(lambda m, args: store.append(args[arg]))
    else:
        module.register_forward_hook(lambda m, args, out: store.append(out))


def _pretrain_inputs(vector: dict) -> tuple:
    m = vector["masks"]
    return (
        vector["inputs"]["video"].float(), vector["inputs"]["audio"].float(),
        m["encoder_mask_video"], m["encoder_mask_audio"],
        m["decoder_mask_video"], m["decoder_mask_audio"],
    )


def test_finetune_vector(ft_vector):
    model = _classifier(ft_vector, reference_compatible=True)
    cap: dict[str, list] = {
        k: [] for k in ("vb", "ab", "vr", "ar", "q0", "dier", "er", "hafe", "fc")
    }
    for block in model.video_encoder.blocks:
        _capture(block, cap["vb"])
    for block in model.audio_encoder.blocks:
        _capture(block, cap["ab"])
    _capture(model.video_encoder, cap["vr"])
    _capture(model.audio_encoder, cap["ar"])
    _capture(model.fusion.refine.input_proj, cap["q0"], pre=True)
    for unit in model.fusion.units:
        _capture(unit, cap["dier"])
    _capture(model.fusion.refine, cap["er"])
    _capture(model.fusion.hafe, cap["hafe"])
    _capture(model.fc_norm, cap["fc"])
    video, audio = ft_vector["inputs"]["video"].float(), ft_vector["inputs"]["audio"].float()
    with torch.no_grad():
        logits = model(video, audio)
        patches = model.video_encoder.patch_embed(video)
        audio_patches = model.audio_encoder.patch_embed(audio)
    torch.testing.assert_close(logits, ft_vector["outputs"]["logits"], **OUT)

    ref = ft_vector["intermediates"]
    torch.testing.assert_close(patches, ref["video_patch_embed"], **MID)
    torch.testing.assert_close(audio_patches, ref["audio_patch_embed"], **MID)
    depth = len(model.video_encoder.blocks)
    for i in range(depth):
        # The last block skips the MLP of local tokens nobody reads (documented in LGBlock).
        sl = slice(0, 1) if i == depth - 1 else slice(None)
        torch.testing.assert_close(cap["vb"][i][:, sl], ref["video_block_outputs"][i][:, sl], **MID)
        torch.testing.assert_close(cap["ab"][i][:, sl], ref["audio_block_outputs"][i][:, sl], **MID)
    torch.testing.assert_close(cap["vr"][0], ref["video_region_tokens"], **MID)
    torch.testing.assert_close(cap["ar"][0], ref["audio_region_tokens"], **MID)
    torch.testing.assert_close(cap["vr"][0][:, :, -1], ref["fusion_in_video"], **MID)
    torch.testing.assert_close(cap["ar"][0][:, :, -1], ref["fusion_in_audio"], **MID)
    torch.testing.assert_close(cap["q0"][0], ref["er_query_init"], **MID)
    for k in range(2):
        torch.testing.assert_close(cap["dier"][k][0], ref["dier_video"][k], **MID)
        torch.testing.assert_close(cap["dier"][k][1], ref["dier_audio"][k], **MID)
        torch.testing.assert_close(cap["er"][k], ref["er_query"][k], **MID)
    torch.testing.assert_close(cap["hafe"][0][0], ref["hafe_video"], **MID)
    torch.testing.assert_close(cap["hafe"][0][1], ref["hafe_audio"], **MID)
    pooled = torch.cat((cap["hafe"][0][0].mean(1), cap["hafe"][0][1].mean(1)), -1)
    torch.testing.assert_close(pooled, ref["pooled_feature"], **MID)
    torch.testing.assert_close(cap["fc"][0], ref["fc_norm_out"], **MID)

    model.train()
    with torch.no_grad():
        train_logits = model(video, audio)
    torch.testing.assert_close(train_logits, ft_vector["outputs"]["train_mode_logits"], **OUT)


def test_pretrain_vector(pt_vector, pt_extras):
    model = _pretrainer(pt_vector, reference_compatible=True)
    cap: dict[str, list] = {
        k: [] for k in ("vb", "ab", "q0", "dier", "er", "fus", "vin", "ain", "vskip", "askip")
    }
    for block in model.video_encoder.blocks:
        _capture(block, cap["vb"])
    for block in model.audio_encoder.blocks:
        _capture(block, cap["ab"])
    _capture(model.fusion.refine.input_proj, cap["q0"], pre=True)
    for unit in model.fusion.units:
        _capture(unit, cap["dier"])
    _capture(model.fusion.refine, cap["er"])
    _capture(model.fusion, cap["fus"])
    _capture(model.video_decoder.blocks[0], cap["vin"], pre=True)
    _capture(model.audio_decoder.blocks[0], cap["ain"], pre=True)
    for block in model.video_decoder.blocks[1:]:
        _capture(block, cap["vskip"], pre=True, arg=1)
    for block in model.audio_decoder.blocks[1:]:
        _capture(block, cap["askip"], pre=True, arg=1)
    inputs = _pretrain_inputs(pt_vector)
    with torch.no_grad():
        out = model(*inputs)
        index = model.index_masks(*inputs[2:])
        feats = model.video_encoder.forward_masked(inputs[0], index.video.layout, (0, 2, 3))
        audio_feats = model.audio_encoder.forward_masked(inputs[1], index.audio.layout, (0, 2, 3))
    ref_out, ref = pt_vector["outputs"], pt_vector["intermediates"]
    torch.testing.assert_close(out.video_recon, ref_out["video_recon"], **OUT)
    torch.testing.assert_close(out.audio_recon, ref_out["audio_recon"], **OUT)
    for i in range(3):
        torch.testing.assert_close(out.logits_per_video[i], ref_out["logits_per_video"][i], **OUT)
        torch.testing.assert_close(out.logits_per_audio[i], ref_out["logits_per_audio"][i], **OUT)

    # Decoded rows: ascending positions; the loss mask is decoded ∩ encoder-masked.
    masks = pt_vector["masks"]
    for b in range(2):
        expected = (~masks["decoder_mask_video"][b]).nonzero().flatten()
        torch.testing.assert_close(out.video_decoded[b], expected)
    assert out.video_loss_mask.sum(1).tolist() == [360, 360]
    assert out.audio_loss_mask.sum(1).tolist() == [50, 52]

    for i in range(4):
        torch.testing.assert_close(cap["vb"][i], ref["video_block_outputs"][i], **MID)
        torch.testing.assert_close(cap["ab"][i], ref["audio_block_outputs"][i], **MID)
    torch.testing.assert_close(feats[-1], ref["video_encoder_out"], **MID)
    torch.testing.assert_close(audio_feats[-1], ref["audio_encoder_out"], **MID)
    for i in range(3):
        torch.testing.assert_close(feats[i], ref["video_encoder_intermediate"][i], **MID)
        torch.testing.assert_close(audio_feats[i], ref["audio_encoder_intermediate"][i], **MID)
    torch.testing.assert_close(cap["q0"][0], ref["er_query_init"], **MID)
    for k in range(2):
        torch.testing.assert_close(cap["dier"][k][0], ref["dier_video"][k], **MID)
        torch.testing.assert_close(cap["dier"][k][1], ref["dier_audio"][k], **MID)
        torch.testing.assert_close(cap["er"][k], ref["er_query"][k], **MID)
    torch.testing.assert_close(cap["fus"][0].video, ref["fusion_out_video"], **MID)
    torch.testing.assert_close(cap["fus"][0].audio, ref["fusion_out_audio"], **MID)
    torch.testing.assert_close(cap["vin"][0], ref["decoder_in_video"], **MID)
    torch.testing.assert_close(cap["ain"][0], ref["decoder_in_audio"], **MID)
    for j in range(3):  # decoder block j+1 reads skips[-(j+1)]
        torch.testing.assert_close(cap["vskip"][j], ref["decoder_skips_video"][-(j + 1)], **MID)
        torch.testing.assert_close(cap["askip"][j], ref["decoder_skips_audio"][-(j + 1)], **MID)

    # The published LG order of visible video tokens (README §6.1).
    layout_rank = torch.searchsorted(
        (~masks["encoder_mask_video"][0]).nonzero().flatten(), index.video.layout[0].flatten()
    )
    torch.testing.assert_close(layout_rank, pt_vector["lg_video_order"])

    model.train()
    with torch.no_grad():
        out = model(*inputs)
    train = pt_vector["train_mode_outputs"]
    torch.testing.assert_close(out.audio_recon, train["audio_recon"], **OUT)
    torch.testing.assert_close(out.video_recon, pt_extras["train_mode_video_recon"], **OUT)
    for i in range(3):
        torch.testing.assert_close(out.logits_per_video[i], train["logits_per_video"][i], **OUT)
        torch.testing.assert_close(out.logits_per_audio[i], train["logits_per_audio"][i], **OUT)


def test_fixed_position_pairing_matches_extras(pt_vector, pt_extras):
    """Our default pairing (each token with its own position) on the published rank partition,
    with the published BatchNorm kept so only the pairing differs."""
    model = _pretrainer(pt_vector, partition="rank", er_norm="batch")
    with torch.no_grad():
        out = model(*_pretrain_inputs(pt_vector))
    fixed = pt_extras["not_official_fixed_pos_pairing"]["video_recon"]
    torch.testing.assert_close(out.video_recon, fixed, **OUT)
    torch.testing.assert_close(out.audio_recon, pt_vector["outputs"]["audio_recon"], **OUT)


def test_reference_switch_changes_only_documented_parts(pt_vector):
    """Pretraining: the pairing changes video reconstructions only; the ER norm changes the fusion
    and what follows, never the encoders or the contrastive logits."""
    inputs = _pretrain_inputs(pt_vector)
    official = _pretrainer(pt_vector, reference_compatible=True)
    own_pairing = _pretrainer(pt_vector, partition="rank", er_norm="batch")
    default = _pretrainer(pt_vector, partition="rank")
    assert isinstance(official.fusion.refine.video_norm, nn.BatchNorm1d)
    assert isinstance(default.fusion.refine.video_norm, nn.LayerNorm)
    with torch.no_grad():
        a, b, c = official(*inputs), own_pairing(*inputs), default(*inputs)
    assert torch.equal(a.audio_recon, b.audio_recon)
    assert (a.video_recon - b.video_recon).abs().max() > 1e-2
    for x, y, z in zip(a.logits_per_video, b.logits_per_video, c.logits_per_video):
        assert torch.equal(x, y) and torch.equal(x, z)
    assert (b.audio_recon - c.audio_recon).abs().max() > 1e-3


def test_classifier_reference_switch_only_changes_er_norm(ft_vector):
    official = _classifier(ft_vector, reference_compatible=True)
    default = _classifier(ft_vector)
    diff = set(official.state_dict()) ^ set(default.state_dict())
    assert diff and all(k.startswith("fusion.refine.") and k.endswith(BN_STATS) for k in diff)
    video, audio = ft_vector["inputs"]["video"].float(), ft_vector["inputs"]["audio"].float()
    with torch.no_grad():
        torch.testing.assert_close(official.video_encoder(video), default.video_encoder(video))
        assert (official(video, audio) - default(video, audio)).abs().max() > 1e-3
