"""CUDA code paths: bf16 autocast and the fp16 gradient scaler, the fused attention kernels,
pinned batches with non-blocking copies, NCCL DDP. They run where CUDA is present (a GPU
machine: ``benchmarks/gpu_check.sh``); elsewhere pytest lists them as skipped with the reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from avfmae.models import create_model
from avfmae.models.attention import attention_backend
from avfmae.train import amp, distributed
from tiny_train import run_in_process

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

HERE = Path(__file__).resolve().parent
TORCHRUN = Path(sys.executable).with_name("torchrun")
CUDA = torch.device("cuda")


def _classifier_inputs(batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return (torch.randn(batch, 3, 16, 160, 160, generator=g).to(CUDA),
            torch.randn(batch, 1, 256, 128, generator=g).to(CUDA))


def test_amp_auto_on_cuda_is_bf16_without_scaler():
    precision = amp.Precision.create("auto", CUDA)
    assert precision.name == "bf16" and precision.scaler is None


def test_cuda_fp32_matches_cpu_fp32():
    torch.manual_seed(0)
    model = create_model("tiny", num_classes=5, head_init_scale=1.0).eval()
    video, audio = _classifier_inputs()
    with torch.no_grad():
        expected = model(video.cpu(), audio.cpu())
        torch.backends.cudnn.allow_tf32 = False  # the patch embedding is a convolution
        try:
            got = model.to(CUDA)(video, audio).cpu()
        finally:
            torch.backends.cudnn.allow_tf32 = True
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_bf16_training_steps_reduce_the_loss():
    torch.manual_seed(0)
    model = create_model("tiny", num_classes=5, head_init_scale=1.0).to(CUDA).train()
    video, audio = _classifier_inputs(4)
    target = torch.tensor([0, 1, 2, 3], device=CUDA)
    precision = amp.Precision.create("auto", CUDA)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(20):
        with precision.autocast():
            loss = torch.nn.functional.cross_entropy(model(video, audio).float(), target)
        amp.optimizer_step(loss, opt, precision)
        losses.append(loss.item())
    assert all(np.isfinite(losses)) and losses[-1] < 0.7 * losses[0]


def test_fp16_scaler_skips_a_step_with_non_finite_gradients():
    layer = torch.nn.Linear(4, 4).to(CUDA)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    precision = amp.Precision.create("fp16", CUDA)
    before = layer.weight.detach().clone()
    scale = precision.scaler.get_scale()
    with precision.autocast():
        loss = layer(torch.full((2, 4), float("inf"), device=CUDA)).sum()
    amp.optimizer_step(loss, opt, precision)
    assert torch.equal(layer.weight, before) and precision.scaler.get_scale() < scale
    with precision.autocast():
        loss = layer(torch.ones(2, 4, device=CUDA)).sum()
    amp.optimizer_step(loss, opt, precision)
    assert not torch.equal(layer.weight, before)


@pytest.mark.parametrize("backend", [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION])
def test_fused_attention_kernels_train_the_model(backend):
    """The fused kernels accept every attention shape of the model, forward and backward, and
    agree with the matrix-product form in bf16."""
    torch.manual_seed(0)
    model = create_model("tiny", num_classes=5, head_init_scale=1.0).to(CUDA).train()
    video, audio = _classifier_inputs()

    def grads() -> torch.Tensor:
        model.zero_grad(set_to_none=True)
        torch.manual_seed(1)  # the same drop-path draws
        with torch.autocast("cuda", dtype=torch.bfloat16):
            model(video, audio).float().square().sum().backward()
        return torch.cat([p.grad.flatten().float() for p in model.parameters()
                          if p.grad is not None])

    with sdpa_kernel(backend):
        fused = grads()
    with attention_backend("matmul"):
        reference = grads()
    relative = ((fused - reference).norm() / reference.norm()).item()
    assert relative < 0.05


def test_pinned_batches_and_non_blocking_copies():
    data = torch.utils.data.TensorDataset(torch.arange(16.0).view(8, 2))
    sampler = distributed.ResumableDistributedSampler(data, seed=0)
    loader = distributed.ResumableLoader(data, sampler=sampler, batch_size=4)
    (batch,) = next(iter(loader))
    assert batch.is_pinned()
    moved = distributed.to_device(batch, CUDA)
    torch.cuda.synchronize()
    assert moved.device.type == "cuda" and torch.equal(moved.cpu(), batch)


def test_tiny_training_on_cuda_matches_the_cpu_run(tmp_path):
    run_in_process(tmp_path / "cpu", "--batch", "8")
    run_in_process(tmp_path / "cuda", "--batch", "8", "--device", "cuda")

    def log(name: str) -> list[float]:
        return [json.loads(x)["loss"] for x in (tmp_path / name / "losses.jsonl").open()]

    # bf16 autocast on the GPU against fp32 on the CPU: the same trajectory, loosely
    np.testing.assert_allclose(log("cuda"), log("cpu"), rtol=0.05, atol=0.05)
    metrics = json.loads((tmp_path / "cuda" / "metrics.json").read_text())
    assert metrics["index"] == list(range(13))


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL DDP needs two GPUs")
def test_two_gpu_nccl_ddp_matches_one_gpu(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [str(TORCHRUN), "--standalone", "--nproc_per_node", "2", str(HERE / "tiny_train.py"),
           "--out", str(tmp_path / "ddp"), "--batch", "4", "--device", "cuda"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    run_in_process(tmp_path / "one", "--batch", "8", "--device", "cuda")

    def log(name: str) -> list[float]:
        return [json.loads(x)["loss"] for x in (tmp_path / name / "losses.jsonl").open()]

    np.testing.assert_allclose(log("ddp"), log("one"), rtol=0, atol=2e-2)
    metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["index"] == list(range(13))


def test_predict_on_cuda_matches_the_cpu(tmp_path):
    """`avfmae predict --device cuda` gives the CPU's class probabilities (fp32 both ways; cuDNN
    may use TF32 for the patch embedding, hence the tolerance)."""
    import dataclasses

    import avfmae
    from avfmae.config import Params, SyntheticConfig
    from avfmae.data import registry
    from avfmae.data.synthetic import generate
    from avfmae.tasks import Task
    from avfmae.train.checkpoint import export_weights
    from avfmae.models.build import build_classifier
    from avfmae.train.finetune import checkpoint_metadata

    params = Params()
    params = dataclasses.replace(params, model=dataclasses.replace(params.model, scale="tiny"))
    task = Task("synthetic", "CEA", tuple(registry.get("synthetic").labels))
    ckpt = export_weights(build_classifier(params, {task.dataset: task.outputs}),
                          tmp_path / "tiny.safetensors",
                          metadata=checkpoint_metadata(params, task, "s3", 1, 0))
    videos = generate(SyntheticConfig(n_speakers=2, n_pool_speakers=0, pool_clips_per_speaker=0),
                      tmp_path / "videos", progress=False) / "labeled"
    on = {dev: avfmae.predict(videos, ckpt, device=dev, workers=2, progress=False).clips
          for dev in ("cpu", "cuda")}
    probs = [c for c in on["cpu"].columns if c.startswith("prob_")]
    assert (on["cuda"]["status"] == "ok").all() and len(on["cuda"]) == 12
    np.testing.assert_allclose(on["cuda"][probs].to_numpy(float), on["cpu"][probs].to_numpy(float),
                               atol=1e-2)
