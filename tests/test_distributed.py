"""Distributed pieces: sampler determinism/resume, gathers, and a real 2-process torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from avfmae.eval.metrics import classification_metrics
from avfmae.train import checkpoint, distributed, losses
from tiny_train import N_EVAL, run_in_process, synthetic

HERE = Path(__file__).resolve().parent
TORCHRUN = Path(sys.executable).with_name("torchrun")


def ranks(size, world, **kw):
    return [distributed.ResumableDistributedSampler(size, num_replicas=world, rank=r, **kw)
            for r in range(world)]


def test_rank_batches_union_is_the_single_process_batch():
    (single,) = ranks(50, 1, seed=4)
    two = ranks(50, 2, seed=4)
    order = list(single)
    per_rank = [list(s) for s in two]
    assert all(len(p) == 25 for p in per_rank)
    for k in range(25 // 4):
        union = sorted(per_rank[0][4 * k:4 * k + 4] + per_rank[1][4 * k:4 * k + 4])
        assert union == sorted(order[8 * k:8 * k + 8])


def test_epochs_reshuffle_deterministically():
    a, b = ranks(30, 1, seed=1)[0], ranks(30, 1, seed=1)[0]
    first = list(a)
    a.set_epoch(1)
    second = list(a)
    assert first != second and sorted(first) == sorted(second) == list(range(30))
    b.set_epoch(1)
    assert list(b) == second
    c = ranks(30, 1, seed=2)[0]
    assert list(c) != first


def test_drop_last_and_padding():
    drop = ranks(11, 2, seed=0)
    assert [len(s) for s in drop] == [5, 5]
    assert len(set(list(drop[0]) + list(drop[1]))) == 10
    pad = ranks(11, 2, seed=0, drop_last=False)
    assert [len(s) for s in pad] == [6, 6]
    assert set(list(pad[0]) + list(pad[1])) == set(range(11))


def test_resume_mid_epoch_continues_the_same_order():
    s = ranks(40, 2, seed=9)[1]
    s.set_epoch(3)
    full = list(s)
    s.advance(6)
    state = s.state_dict()
    fresh = ranks(40, 2, seed=9)[1]
    fresh.load_state_dict(state)
    fresh.set_epoch(3)  # a resumed loop calls this again: position is kept
    assert list(fresh) == full[6:]
    assert len(fresh) == 14
    fresh.set_epoch(4)
    assert fresh.position == 0 and len(list(fresh)) == 20
    # world size change: the global position is kept
    one = ranks(40, 1, seed=9)[0]
    one.load_state_dict(state)
    assert one.position == 12 and one.epoch == 3
    with pytest.raises(ValueError, match="sampler state is for 40 samples"):
        ranks(41, 1, seed=9)[0].load_state_dict(state)


def test_shard_sampler_covers_every_sample_once():
    shards = [list(distributed.ShardSampler(13, num_replicas=3, rank=r)) for r in range(3)]
    assert sorted(sum(shards, [])) == list(range(13))


def test_gather_predictions_single_process_sorts_and_dedups():
    idx, pred = distributed.gather_predictions(torch.tensor([1, 0, 2]),
                                               index=torch.tensor([5, 3, 5]))
    assert idx.tolist() == [3, 5] and pred.tolist() == [0, 1]
    (a,) = distributed.gather_predictions(np.arange(3))
    assert a.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="different lengths"):
        distributed.gather_predictions(np.arange(3), np.arange(2))


def test_single_process_helpers_without_init():
    assert distributed.get_rank() == 0 and distributed.get_world_size() == 1
    assert distributed.is_main_process() and not distributed.is_distributed()
    x = torch.randn(3, 2, requires_grad=True)
    assert distributed.all_gather_with_grad(x) is x
    assert distributed.all_reduce_mean(2.0).item() == 2.0
    info = distributed.init_distributed(device="cpu")
    assert (info.rank, info.world_size, info.backend) == (0, 1, None)


def test_gathered_and_local_contrastive_agree_in_one_process():
    v, a = torch.randn(4, 8), torch.randn(4, 8)
    assert torch.equal(losses.contrastive_loss(v, a, gather=True),
                       losses.contrastive_loss(v, a, gather=False))


def test_two_process_ddp_matches_single_process(tmp_path):
    """torchrun, 2 ranks × batch 4 == 1 process × batch 8: gathered contrastive negatives and
    the reconstruction loss's global denominator make the loss trajectory match."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [str(TORCHRUN), "--standalone", "--nproc_per_node", "2",
           str(HERE / "tiny_train.py"), "--out", str(tmp_path / "ddp"), "--batch", "4"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    run_in_process(tmp_path / "one", "--batch", "8")  # meanwhile, the single-process reference
    out = proc.communicate(timeout=180)[0].decode()
    assert proc.returncode == 0, out

    def log(name):
        return [json.loads(x)["loss"] for x in (tmp_path / name / "losses.jsonl").open()]

    one, ddp = log("one"), log("ddp")
    assert len(one) == len(ddp) == 24
    np.testing.assert_allclose(ddp, one, rtol=0, atol=1e-5)
    a = checkpoint.load_weights(tmp_path / "one" / "final.safetensors")
    b = checkpoint.load_weights(tmp_path / "ddp" / "final.safetensors")
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-5)
    # predictions gathered from 2 ranks: the full eval set, same metrics as 1 process
    m1 = json.loads((tmp_path / "one" / "metrics.json").read_text())
    m2 = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert m2["world_size"] == 2 and m1["world_size"] == 1
    assert m2["index"] == m1["index"] == list(range(13))
    assert m2["pred"] == m1["pred"]
    for key in ("uar", "war", "weighted_f1", "macro_f1", "confusion_matrix"):
        assert m2[key] == m1[key]
    assert sum(map(sum, m2["confusion_matrix"])) == 13
    assert m2["uar"] == classification_metrics(  # recomputed from the gathered lists
        synthetic(N_EVAL, 1).tensors[3].tolist(), m2["pred"], num_classes=3)["uar"]
