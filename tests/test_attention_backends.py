"""Attention kernels: SDPA and the matrix-product form compute the same function, the automatic
choice follows device and precision, and bf16 autocast stays within a stated bound of fp32."""

from __future__ import annotations

import pytest
import torch
from reference_data import load_reference

from avfmae.models import attention, convert_state_dict, create_model
from avfmae.models.attention import attend, attention_backend, matmul_attention
from avfmae.train.amp import resolve_amp_dtype

FT_SCALE = dict(embed_dim=64, num_heads=4, depth=2, fusion_depth=2, fusion_num_heads=4,
                skip_layers=(0, 1), decoder_depth=3, drop_path_rate=0.0)
# bf16 keeps 8 mantissa bits (relative step 2**-8 ≈ 0.4 %); through the reference model's ~20
# attention and MLP layers its head input moved by 0.56 % (AMD EPYC, torch 2.14.1). 4 % leaves
# room for other CPUs' kernels and still catches a wrong kernel, which moves it by ~100 %.
BF16_RELATIVE_BOUND = 0.04


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    vector = load_reference("vector_finetune_small.pt")
    model = create_model("tiny", num_classes=7, reference_compatible=True, **FT_SCALE)
    sd, report = convert_state_dict(vector["state_dict"], scale=model.scale,
                                    reference_compatible=True)
    assert report.ok, str(report)
    model.load_state_dict(sd, strict=True)
    model.inputs = (vector["inputs"]["video"].float(), vector["inputs"]["audio"].float())
    return model.eval()


def _features(model: torch.nn.Module, bf16: bool = False) -> torch.Tensor:
    feats: list[torch.Tensor] = []
    hook = model.fc_norm.register_forward_hook(lambda m, a, o: feats.append(o.float()))
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            model(*model.inputs)
    finally:
        hook.remove()
    return feats[0]


@pytest.mark.parametrize("shape_q, shape_kv", [((2, 4, 50, 16), (2, 4, 50, 16)),
                                               ((2, 1, 32, 64), (2, 1, 400, 64)),
                                               ((1, 3, 400, 8), (1, 3, 8, 8))])
def test_matmul_attention_equals_sdpa(shape_q, shape_kv):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(shape_q, generator=g)
    k, v = torch.randn(shape_kv, generator=g), torch.randn(shape_kv, generator=g)
    for scale in (None, 0.3):
        expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=scale)
        torch.testing.assert_close(matmul_attention(q, k, v, scale), expected,
                                   rtol=1e-5, atol=1e-6)


def test_model_outputs_do_not_depend_on_the_kernel(model):
    with attention_backend("sdpa"):
        sdpa = _features(model)
    with attention_backend("matmul"):
        matmul = _features(model)
    torch.testing.assert_close(matmul, sdpa, rtol=1e-5, atol=1e-5)


def test_auto_uses_matrix_products_for_bf16_on_the_cpu(monkeypatch):
    calls: list[torch.dtype] = []
    real = attention.matmul_attention

    def spy(q, k, v, scale=None):
        calls.append(q.dtype)
        return real(q, k, v, scale)

    monkeypatch.setattr(attention, "matmul_attention", spy)
    q = torch.randn(1, 2, 8, 4)
    attend(q, q, q)
    assert calls == []
    attend(q.bfloat16(), q.bfloat16(), q.bfloat16())
    assert calls == [torch.bfloat16]
    with attention_backend("sdpa"):
        attend(q.bfloat16(), q.bfloat16(), q.bfloat16())
    assert calls == [torch.bfloat16]
    with pytest.raises(ValueError, match="flash"):
        with attention_backend("flash"):
            pass


def test_bf16_autocast_stays_within_the_stated_bound(model):
    exact = _features(model)
    half = _features(model, bf16=True)
    relative = ((half - exact).norm() / exact.norm()).item()
    assert 0 < relative < BF16_RELATIVE_BOUND


def test_amp_auto_picks_bf16_only_where_the_cpu_has_bf16_matrix_units(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert resolve_amp_dtype("auto", "cpu") is torch.bfloat16
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert resolve_amp_dtype("auto", "cpu") is None
    assert resolve_amp_dtype("off", "cpu") is None
