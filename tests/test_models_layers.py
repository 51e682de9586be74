"""Building blocks: attention forms, position tables, norms' eps, region partitions, patches."""

from __future__ import annotations


from reference_data import load_reference

import pytest
import torch
from torch import nn

from avfmae.models import create_model
from avfmae.models.attention import Attention
from avfmae.models.patch_embed import PatchEmbed
from avfmae.models.pos_embed import sinusoid_table
from avfmae.models.regions import RegionGrid




@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """One intra-op thread: these models are small, and the test machine's cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _naive_attention(attn: Attention, x: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
    """softmax(QKᵀ/√d)V written out from the module's weights, k bias zero."""
    B, N, C = x.shape
    h, d = attn.num_heads, attn.head_dim
    q = (x @ attn.q.weight.t() + attn.q_bias).view(B, N, h, d).transpose(1, 2)
    k, v = (ctx @ attn.kv.weight.t()).view(B, -1, 2, h, d).permute(2, 0, 3, 1, 4)
    v = v + attn.v_bias.view(h, 1, d)
    p = (q @ k.transpose(-1, -2) * d**-0.5).softmax(-1)
    return attn.proj((p @ v).transpose(1, 2).reshape(B, N, C))


def test_attention_forms_agree():
    torch.manual_seed(0)
    attn = Attention(64, 4)
    for p in attn.parameters():
        nn.init.normal_(p, std=0.2)
    many, few = torch.randn(2, 50, 64), torch.randn(2, 8, 64)
    with torch.no_grad():
        close = dict(rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(attn(many), _naive_attention(attn, many, many), **close)
        expected = _naive_attention(attn, many, few)
        torch.testing.assert_close(attn(many, few), expected, **close)
        torch.testing.assert_close(attn.forward_few_keys(many, few), expected, **close)
        expected = _naive_attention(attn, few, many)
        torch.testing.assert_close(attn.forward_few_queries(few, many), expected, **close)
    assert not any("k_bias" in n for n, _ in attn.named_parameters())


def test_attention_without_bias():
    attn = Attention(32, 2, qkv_bias=False)
    x, c = torch.randn(1, 5, 32), torch.randn(1, 3, 32)
    with torch.no_grad():
        torch.testing.assert_close(attn.forward_few_keys(x, c), attn(x, c), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(attn.forward_few_queries(c, x), attn(c, x), rtol=1e-5, atol=1e-5)


def test_sinusoid_tables_equal_published():
    tables = load_reference("vector_pretrain_small.pt")["fixed_tables"]
    assert set(tables) == {
        "encoder.pos_embed", "encoder_audio.pos_embed", "pos_embed", "pos_embed_audio"
    }
    for table in tables.values():
        assert torch.equal(sinusoid_table(table.shape[1], table.shape[2]), table[0])
    model = create_model("tiny", pretrain=True)
    assert torch.equal(model.video_encoder.pos_embed, sinusoid_table(800, 64))
    assert torch.equal(model.audio_decoder.pos_embed, sinusoid_table(128, 32))
    assert not any("pos_embed" in k for k in model.state_dict())


@pytest.mark.parametrize("reference_compatible", [False, True])
def test_norm_eps(reference_compatible):
    """Every LayerNorm has eps 1e-6 except ER's output norm (1e-5); the published ER BatchNorm
    keeps 1e-5 (README §5)."""
    for model in (
        create_model("tiny", reference_compatible=reference_compatible),
        create_model("tiny", pretrain=True, reference_compatible=reference_compatible),
    ):
        kinds = (nn.LayerNorm, nn.BatchNorm1d)
        norms = {n: m for n, m in model.named_modules() if isinstance(m, kinds)}
        assert norms.pop("fusion.refine.norm").eps == 1e-5
        for part in ("video", "audio"):
            er = norms.pop(f"fusion.refine.{part}_norm")
            assert isinstance(er, nn.BatchNorm1d if reference_compatible else nn.LayerNorm)
            assert er.eps == (1e-5 if reference_compatible else 1e-6)
        assert norms and all(isinstance(m, nn.LayerNorm) and m.eps == 1e-6 for m in norms.values())


def test_window_regions_match_published_layout():
    """Video region r = 2·(t//2) + h//5, slot (t%2)·50 + (h%5)·10 + w; audio region
    2·(tt//4) + f//4, slot (tt%4)·4 + f%4 (reference README §4.3)."""
    order = RegionGrid((8, 10, 10), (2, 5, 10)).window_order()
    for t, h, w in [(0, 0, 0), (3, 7, 2), (7, 9, 9), (4, 4, 5)]:
        r, s = 2 * (t // 2) + h // 5, (t % 2) * 50 + (h % 5) * 10 + w
        assert order[r, s] == t * 100 + h * 10 + w
    order = RegionGrid((16, 8), (4, 4)).window_order()
    for tt, f in [(0, 0), (5, 6), (15, 7), (9, 3)]:
        assert order[2 * (tt // 4) + f // 4, (tt % 4) * 4 + f % 4] == tt * 8 + f
    assert RegionGrid((16, 8), (4, 4)).region_of_token()[5 * 8 + 6] == 2 * 1 + 1


def test_rank_partition_is_published_lg_order():
    perm = load_reference("vector_pretrain_small.pt")["lg_video_order"]
    assert torch.equal(RegionGrid((8, 10, 10), (2, 5, 10)).rank_order(80).flatten(), perm)
    # Audio: consecutive groups of 3 visible tokens, i.e. rank order.
    assert torch.equal(RegionGrid((16, 8), (4, 4)).rank_order(24).flatten(), torch.arange(24))
    with pytest.raises(ValueError, match="multiple of"):
        RegionGrid((16, 8), (4, 4)).rank_order(26)


def test_window_layout_gathers_each_token_into_its_region():
    grid = RegionGrid((16, 8), (4, 4))
    g = torch.Generator().manual_seed(0)
    order = grid.window_order()
    visible = torch.stack([
        torch.cat([order[r, torch.randperm(16, generator=g)[:3]] for r in range(8)]).sort().values
        for _ in range(3)
    ])
    layout = grid.window_layout(visible)
    assert layout.shape == (3, 8, 3)
    region = grid.region_of_token()
    assert torch.equal(region[layout], torch.arange(8).view(1, 8, 1).expand(3, 8, 3))
    assert torch.equal(layout.flatten(1).sort(1).values, visible)
    assert (layout.diff(dim=2) > 0).all()
    unbalanced = torch.arange(24).unsqueeze(0)  # the first 3 time rows: regions 0 and 1 only
    with pytest.raises(ValueError, match="not window-aware"):
        grid.window_layout(unbalanced)


def test_patch_embed_gather_equals_conv():
    torch.manual_seed(0)
    for embed, x in (
        (PatchEmbed(3, (2, 16, 16), 32), torch.randn(2, 3, 16, 160, 160)),
        (PatchEmbed(1, (16, 16), 32), torch.randn(2, 1, 256, 128)),
    ):
        full = embed(x)
        index = torch.stack([torch.randperm(full.shape[1])[:20] for _ in range(2)])
        expected = full.gather(1, index[..., None].expand(-1, -1, 32))
        with torch.no_grad():
            torch.testing.assert_close(embed(x, index), expected, rtol=1e-5, atol=1e-5)
