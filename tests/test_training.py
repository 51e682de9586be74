"""The real pretrain / finetune / evaluate stages on the micro synthetic store: leakage guard,
frozen encoders in s2, every stage scored on test, deterministic evaluation, exact resume after SIGTERM, and DDP (2 × gloo
through real torchrun) matching one process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from param_files import edit_params
from safetensors.torch import load_file

from avfmae.config import load_params
from avfmae.curves import read_curves
from avfmae.train.finetune import training_rows

BIN = Path(sys.executable).parent
AVFMAE = [sys.executable, "-m", "avfmae"]


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run([*AVFMAE, *args], capture_output=True, text=True)
    if check and res.returncode != 0:
        raise AssertionError(f"avfmae {' '.join(args)} failed:\n{res.stderr[-3000:]}")
    return res


def test_s1_training_data_excludes_the_target_folds_held_out_clips(micro_work: Path):
    params = load_params()
    rows = training_rows(params, "synthetic", 1, "s1")
    splits = pd.read_csv("data/interim/synthetic/splits.csv", dtype={"clip_id": str})
    held = set(splits[(splits.fold == 1) & splits.part.isin(["val", "test"])].clip_id)
    assert held and not held & set(rows.clip_id)
    # every training clip that preprocessing kept (a rejected clip is recorded, not trained on)
    kept = set(pd.read_csv("data/processed/synthetic/manifest.csv", dtype={"clip_id": str}).clip_id)
    train = set(splits[(splits.fold == 1) & (splits.part == "train")].clip_id)
    assert sorted(rows.clip_id) == sorted(train & kept)

    leaked = splits[(splits.fold == 1) & (splits.part == "test")].iloc[[0]].assign(part="train")
    pd.concat([splits, leaked]).to_csv("data/interim/synthetic/splits.csv", index=False)
    with pytest.raises(RuntimeError, match="contains 1 held-out clip"):
        training_rows(params, "synthetic", 1, "s1")


def test_s2_trains_fusion_and_head_with_encoders_frozen(micro_work: Path):
    edit_params(Path("params.yaml"), {"finetune.init": "random", "finetune.stages": ["s1", "s2"]})
    cli("finetune", "--stage", "s1", "--dataset", "synthetic", "--fold", "1")
    cli("finetune", "--stage", "s2", "--dataset", "synthetic", "--fold", "1")
    before = load_file("models/finetune/synthetic/fold1/s1/best.safetensors")
    after = load_file("models/finetune/synthetic/fold1/s2/last.safetensors")
    encoder = [k for k in after if k.startswith(("video_encoder.", "audio_encoder."))]
    trained = [k for k in after if k.startswith(("fusion.", "heads.", "fc_norm."))]
    assert encoder and trained
    assert all(torch.equal(before[k], after[k]) for k in encoder)
    changed = [k for k in trained if k in before and not torch.equal(before[k], after[k])]
    assert any(k.startswith("fusion.") for k in changed)
    assert any(k.startswith("fc_norm.") for k in changed)

    cli("evaluate", "--dataset", "synthetic", "--fold", "1")
    result = json.loads(Path("metrics/synthetic/fold1/test.json").read_text())
    by_stage = result["test_by_stage"]
    assert list(by_stage) == ["s1", "s2"]
    assert by_stage["s2"] == {"epoch": result["selected"]["epoch"], **result["test"]}
    s1 = json.loads(Path("metrics/synthetic/fold1/s1.json").read_text())
    assert by_stage["s1"]["epoch"] == s1["best_epoch"]
    assert set(by_stage["s1"]) == set(by_stage["s2"])


def _pretrain_then_evaluate_setup() -> None:
    edit_params(Path("params.yaml"), {"finetune.stages": ["s3"]})
    cli("pretrain")
    cli("finetune", "--stage", "s3", "--dataset", "synthetic", "--fold", "1")


def test_evaluation_is_deterministic_and_ddp_matches_one_process(micro_work: Path):
    _pretrain_then_evaluate_setup()
    cli("evaluate", "--dataset", "synthetic", "--fold", "1")
    first = dict(np.load("predictions/synthetic/fold1.npz", allow_pickle=False))
    one = json.loads(Path("metrics/synthetic/fold1/test.json").read_text())
    cli("evaluate", "--dataset", "synthetic", "--fold", "1")
    second = dict(np.load("predictions/synthetic/fold1.npz", allow_pickle=False))
    assert first.keys() == second.keys()
    assert all(np.array_equal(first[k], second[k]) for k in first)

    res = cli("evaluate", "--dataset", "synthetic", "--fold", "1", "--nproc", "2")
    assert "torch.distributed.run --standalone --nproc_per_node=2" in res.stderr
    two = json.loads(Path("metrics/synthetic/fold1/test.json").read_text())
    assert two["n_test"] == one["n_test"] > 0
    for key, value in one["test"].items():
        assert two["test"][key] == pytest.approx(value, abs=1e-6), key
    assert two["confusion_matrix"] == one["confusion_matrix"]


def _wait_for(path_glob: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not list(Path().glob(path_glob)):
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, f"nothing matched {path_glob}"
        time.sleep(0.2)


def test_sigterm_checkpoint_and_resume_is_bit_identical(micro_work: Path, tmp_path: Path):
    edit_params(Path("params.yaml"), {"pretrain.epochs": 3, "pretrain.checkpoint_every_steps": 1})
    cli("pretrain")
    reference = load_file("models/pretrain/encoder.safetensors")
    Path("models/pretrain/encoder.safetensors").unlink()
    assert not Path("runs/pretrain").exists()  # a finished run leaves nothing to resume

    proc = subprocess.Popen([*AVFMAE, "pretrain"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _wait_for("runs/pretrain/checkpoints/checkpoint-*.pt", proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 75, err[-3000:]
    assert "stop signal received: checkpoint written" in err
    assert not Path("models/pretrain/encoder.safetensors").exists()

    resumed = cli("pretrain")
    assert "resumed from" in resumed.stderr
    resumed_weights = load_file("models/pretrain/encoder.safetensors")
    assert resumed_weights.keys() == reference.keys()
    assert all(torch.equal(resumed_weights[k], reference[k]) for k in reference)


def test_two_process_ddp_pretraining_follows_the_single_process_losses(micro_work: Path):
    edit_params(Path("params.yaml"), {"pretrain.batch_size": 4, "pretrain.epochs": 2})
    cli("pretrain")
    single = read_curves(Path("live/pretrain"))
    edit_params(Path("params.yaml"), {"pretrain.batch_size": 2})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2",
                          "-m", "avfmae", "pretrain", "--resume", "never"],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    double = read_curves(Path("live/pretrain"))
    assert len(single) == len(double) >= 2
    np.testing.assert_allclose(double["loss"], single["loss"], rtol=2e-4, atol=2e-5)
