"""Checkpoints: atomic writes, full state round trip, rotation, preemption and exact resume."""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from avfmae.errors import UserError
from avfmae.models.loading import load_weights_into
from avfmae.train import amp, checkpoint, distributed, mixup, optim
from tiny_train import run_in_process

HERE = Path(__file__).resolve().parent


def make_state(seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))
    opt = optim.build_optimizer(model, lr=0.1, weight_decay=0.05)
    sched = optim.WarmupCosineSchedule(opt, peak_lr=0.1, min_lr=0.0, warmup_steps=2,
                                       total_steps=10)
    prec = amp.Precision.create("fp16", "cpu")
    sampler = distributed.ResumableDistributedSampler(20, num_replicas=1, rank=0, seed=3)
    return model, opt, sched, prec, sampler


def train_steps(model, opt, sched, n):
    for _ in range(n):
        loss = model(torch.randn(3, 4)).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        sched.step()


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "x.bin"
    checkpoint.atomic_write(target, lambda f: f.write(b"old"))

    def broken(f):
        f.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        checkpoint.atomic_write(target, broken)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]


def test_full_state_round_trip_with_weights_only(tmp_path):
    model, opt, sched, prec, sampler = make_state(0)
    train_steps(model, opt, sched, 3)
    sampler.set_epoch(2)
    sampler.advance(7)
    mix = mixup.MixupCutmix(3, seed=9)
    mix(torch.randn(2, 3, 2, 8, 8), None, torch.tensor([0, 1]))
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    path = checkpoint.save_checkpoint(
        tmp_path / "c.pt", model=model, optimizer=opt, scheduler=sched, scaler=prec,
        sampler=sampler, step=3, epoch=2, rank_state={"mixup": mix.state_dict()},
        extra={"config": {"lr": 0.1, "name": "x"}})
    expect = (random.random(), np.random.rand(), torch.rand(1))
    expect_mix = mix(torch.zeros(2, 3, 2, 8, 8), None, torch.tensor([0, 1]))[2]

    raw = torch.load(path, weights_only=True)  # plain types and tensors only
    assert raw["step"] == 3 and raw["epoch"] == 2

    model2, opt2, sched2, prec2, sampler2 = make_state(1)
    info = checkpoint.load_checkpoint(path, model=model2, optimizer=opt2, scheduler=sched2,
                                      scaler=prec2, sampler=sampler2)
    assert (random.random(), np.random.rand()) == expect[:2]
    assert torch.equal(torch.rand(1), expect[2])
    assert info["step"] == 3 and info["extra"] == {"config": {"lr": 0.1, "name": "x"}}
    mix2 = mixup.MixupCutmix(3, seed=0)
    mix2.load_state_dict(info["rank_state"]["mixup"])
    assert torch.equal(mix2(torch.zeros(2, 3, 2, 8, 8), None, torch.tensor([0, 1]))[2],
                       expect_mix)
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        assert torch.equal(a, b)
    assert sched2.last_step == 3
    assert (sampler2.epoch, sampler2.position) == (2, 7)
    assert list(sampler2) == list(sampler)
    assert prec2.scaler.get_scale() == prec.scaler.get_scale()
    # identical continuation
    torch.manual_seed(5)
    train_steps(model, opt, sched, 2)
    torch.manual_seed(5)
    train_steps(model2, opt2, sched2, 2)
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        assert torch.equal(a, b)


def test_manager_rotation_latest_and_resume(tmp_path):
    model, opt, sched, prec, sampler = make_state()
    mgr = checkpoint.CheckpointManager(tmp_path / "ck", every_steps=2, keep=2)
    assert mgr.latest() is None and mgr.resume(model=model) is None
    assert [s for s in range(7) if mgr.due(s)] == [2, 4, 6]
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / ".checkpoint-000000099.pt.abc.tmp").write_bytes(b"junk")
    for step in (2, 4, 6, 10):
        mgr.save(step, model=model, epoch=0, optimizer=opt)
    assert [p.name for p in mgr.checkpoints()] == ["checkpoint-000000006.pt",
                                                   "checkpoint-000000010.pt"]
    info = mgr.resume(model=model, optimizer=opt)
    assert info["step"] == 10 and info["path"] == mgr.latest()


def test_export_and_load_weights(tmp_path):
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
    model[1].weight = model[0].weight  # tied
    path = checkpoint.export_weights(model, tmp_path / "w.safetensors", {"stage": "pretrain"})
    state = checkpoint.load_weights(path)
    assert set(state) == set(model.state_dict())
    fresh = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
    fresh.load_state_dict(state)
    assert torch.equal(fresh[1].weight, model[0].weight)


def test_a_model_to_be_scored_must_be_filled_by_its_checkpoint(tmp_path):
    path = checkpoint.export_weights(nn.Sequential(nn.Linear(3, 3)), tmp_path / "w.safetensors",
                                     {"stage": "s1"})
    bigger = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2))
    assert load_weights_into(bigger, path, heads=True) == ["0.bias", "0.weight"]
    with pytest.raises(UserError, match=r"does not fill this model .*random init: 1 \(2"):
        load_weights_into(bigger, path, heads=True, complete=True)


def test_unwrap_model_through_compile_wrapper():
    inner = nn.Linear(2, 2)

    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self._orig_mod = inner

    assert checkpoint.unwrap_model(Wrapped()) is inner


def test_preemption_flag_and_handler_restore():
    before = signal.getsignal(signal.SIGUSR1)
    with checkpoint.Preemption() as pre:
        assert not pre.should_stop()
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(0.01)
        assert pre.requested and pre.should_stop() and pre.received == signal.SIGUSR1
    assert signal.getsignal(signal.SIGUSR1) == before


FLAGS = ("--dropout", "0.1", "--global-rng")


def start_child(out: Path, *args: str) -> subprocess.Popen:
    cmd = [sys.executable, str(HERE / "tiny_train.py"), "--out", str(out), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _progress(out: Path) -> int:
    try:
        return int((out / "progress").read_text() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def test_sigterm_checkpoints_and_resume_is_bit_identical(tmp_path):
    """A real child process gets SIGTERM mid-epoch, checkpoints, exits 75; the resumed run ends
    with bit-identical weights and the same loss log as an uninterrupted run."""
    full, cut = tmp_path / "full", tmp_path / "cut"
    proc = start_child(cut, *FLAGS, "--sleep", "0.2")
    run_in_process(full, *FLAGS)  # the uninterrupted reference, meanwhile
    deadline = time.time() + 90
    while _progress(cut) < 8 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGTERM)
    text = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == checkpoint.EXIT_PREEMPTED, text
    stopped = _progress(cut)
    assert 8 <= stopped < 24  # 4 epochs × 6 steps
    latest = checkpoint.CheckpointManager(cut / "ckpt").latest()
    assert latest is not None and latest.name == f"checkpoint-{stopped:09d}.pt"
    assert not (cut / "final.safetensors").exists()

    run_in_process(cut, *FLAGS)  # resumes from the preemption checkpoint
    a = checkpoint.load_weights(full / "final.safetensors")
    b = checkpoint.load_weights(cut / "final.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    full_log = (full / "losses.jsonl").read_text().splitlines()
    cut_log = (cut / "losses.jsonl").read_text().splitlines()
    assert cut_log == full_log


EXPORT_SCRIPT = """
import sys, torch
from avfmae.train.checkpoint import export_weights
g = torch.Generator().manual_seed(0)
export_weights({"b": torch.randn(3, generator=g), "a": torch.randn(2, 2, generator=g)},
               sys.argv[1], metadata={"scale": "tiny", "kind": "x", "epoch": "3", "zz": "1"})
"""


def test_same_tensors_give_the_same_bytes_in_every_process(tmp_path):
    # the metadata map's order was random per process, so a rerun changed the file's hash
    paths = [tmp_path / f"w{i}.safetensors" for i in range(3)]
    for path in paths:
        subprocess.run([sys.executable, "-c", EXPORT_SCRIPT, str(path)], check=True)
    assert len({p.read_bytes() for p in paths}) == 1
    from safetensors import safe_open

    with safe_open(str(paths[0]), "pt") as f:
        assert f.metadata() == {"scale": "tiny", "kind": "x", "epoch": "3", "zz": "1"}
        assert torch.equal(f.get_tensor("b"), torch.randn(3, generator=torch.Generator()
                                                          .manual_seed(0)))


def test_resume_falls_back_past_a_corrupt_checkpoint(tmp_path):
    model, opt, *_ = make_state()
    mgr = checkpoint.CheckpointManager(tmp_path / "ck", keep=3)
    for step in (2, 4, 6):
        mgr.save(step, model=model, epoch=0, optimizer=opt)
    newest, middle = mgr.checkpoints()[-1], mgr.checkpoints()[-2]
    newest.write_bytes(newest.read_bytes()[:1000])  # truncated
    with open(middle, "r+b") as f:  # overwritten in place
        f.seek(200)
        f.write(os.urandom(4096))
    info = mgr.resume(model=model, optimizer=opt)
    assert info["step"] == 2
    assert [p.name for p in mgr.checkpoints()] == ["checkpoint-000000002.pt"]


def test_no_intact_checkpoint_fails_naming_the_file(tmp_path):
    mgr = checkpoint.CheckpointManager(tmp_path / "ck")
    (tmp_path / "ck").mkdir()
    bad = mgr.path_for(5)
    bad.write_bytes(b"\0" * 100)
    with pytest.raises(checkpoint.CorruptCheckpoint, match=str(bad)) as err:
        mgr.resume(model=nn.Linear(2, 2))
    assert "\n" not in str(err.value)
    with pytest.raises(checkpoint.CorruptCheckpoint, match=str(bad)):
        checkpoint.load_checkpoint(bad)


def test_resume_state_is_keyed_by_input_content(tmp_path, monkeypatch):
    from avfmae.io import content_digest
    from avfmae.train.loop import finish_run, prepare_run_dir

    monkeypatch.chdir(tmp_path)
    store = tmp_path / "processed"
    (store / "faces").mkdir(parents=True)
    (store / "faces" / "a.mp4").write_bytes(b"crf 18")
    settings = lambda: {"lr": 1.0, "inputs": content_digest([store])}  # noqa: E731
    model = nn.Linear(2, 2)
    prepare_run_dir(tmp_path / "run", settings(), "auto").save(4, model=model, epoch=0)
    assert prepare_run_dir(tmp_path / "run", settings(), "auto").latest() is not None

    (store / "faces" / "a.mp4").write_bytes(b"crf 30")  # same names, new content
    mgr = prepare_run_dir(tmp_path / "run", settings(), "auto")
    assert mgr.latest() is None and mgr.resume(model=model) is None
    mgr.save(2, model=model, epoch=0)
    finish_run(tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_finetune_state_covers_splits_stores_and_start_weights():
    from avfmae.config import Params
    from avfmae.train.finetune import stage_reads

    params = Params()
    params = dataclasses.replace(params, data=dataclasses.replace(
        params.data, datasets=["synthetic"], s1_pool=["synthetic4"]))
    s1 = [str(p) for p in stage_reads(params, "synthetic", 2, "s1")]
    assert s1 == ["models/pretrain/encoder.safetensors", "data/processed/synthetic",
                  "data/interim/synthetic", "data/processed/synthetic4",
                  "data/interim/synthetic4"]
    s3 = [str(p) for p in stage_reads(params, "synthetic", 2, "s3")]
    assert s3[0] == "models/finetune/synthetic/fold2/s2/best.safetensors"
