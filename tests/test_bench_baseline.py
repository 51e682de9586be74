"""The speed baseline (benchmarks/published_compute.py) does the published computation's whole
work: with it, our model reproduces the published reference outputs block by block, the last
block's local tokens included, and it costs more operations than our own forward."""

from __future__ import annotations

import pytest
import torch
from published_compute import published_computation
from reference_data import load_reference
from torch.utils.flop_counter import FlopCounterMode

from avfmae.models import attention, convert_state_dict, create_model
from avfmae.models.lg_block import LGBlock

FT_SCALE = dict(embed_dim=64, num_heads=4, depth=2, fusion_depth=2, fusion_num_heads=4,
                skip_layers=(0, 1), decoder_depth=3, drop_path_rate=0.0)
MID = dict(rtol=0.0, atol=1e-4)


@pytest.fixture(scope="module")
def vector() -> dict:
    return load_reference("vector_finetune_small.pt")


@pytest.fixture(scope="module")
def model(vector):
    model = create_model("tiny", num_classes=7, reference_compatible=True, **FT_SCALE)
    sd, report = convert_state_dict(vector["state_dict"], scale=model.scale,
                                    reference_compatible=True)
    assert report.ok, str(report)
    model.load_state_dict(sd, strict=True)
    return model.eval()


def _block_outputs(model, video, audio) -> tuple[torch.Tensor, list[torch.Tensor]]:
    outs: list[torch.Tensor] = []
    hooks = [b.register_forward_hook(lambda m, a, o: outs.append(o))
             for b in model.video_encoder.blocks]
    try:
        with torch.no_grad():
            logits = model(video, audio)
    finally:
        for h in hooks:
            h.remove()
    return logits, outs


def test_published_computation_reproduces_the_reference_outputs(model, vector):
    video, audio = vector["inputs"]["video"].float(), vector["inputs"]["audio"].float()
    with published_computation():
        logits, blocks = _block_outputs(model, video, audio)
    ref = vector["intermediates"]["video_block_outputs"]
    assert len(blocks) == len(ref)
    for ours, theirs in zip(blocks, ref):  # every token of every block, the last one included
        torch.testing.assert_close(ours, theirs, **MID)
    torch.testing.assert_close(logits, vector["outputs"]["logits"], rtol=1e-5, atol=1e-5)


def test_published_computation_is_undone_on_exit(model, vector):
    before = (LGBlock.forward, attention.Attention.forward_few_keys)
    with published_computation():
        assert LGBlock.forward is not before[0]
    assert (LGBlock.forward, attention.Attention.forward_few_keys) == before
    video, audio = vector["inputs"]["video"].float(), vector["inputs"]["audio"].float()
    _, blocks = _block_outputs(model, video, audio)
    last_local = blocks[-1][:, 1:]
    ref_local = vector["intermediates"]["video_block_outputs"][-1][:, 1:]
    assert not torch.allclose(last_local, ref_local, atol=1e-4)  # our last block skips that MLP


def test_published_computation_costs_more_operations(model, vector):
    video, audio = vector["inputs"]["video"].float(), vector["inputs"]["audio"].float()

    def flops() -> int:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(video, audio)
        return counter.get_total_flops()

    ours = flops()
    with published_computation():
        published = flops()
    assert published > 1.05 * ours
