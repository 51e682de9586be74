"""The head standardiser: each head-input feature centred and scaled over the batch (running
statistics at evaluation), on by default in the pipeline, absent from the published model."""

from __future__ import annotations

import torch
from torch import nn

from avfmae.config import load_params
from avfmae.models import create_model
from avfmae.models.build import build_classifier
from avfmae.models.classifier import HeadStandardizer


def test_clips_sharing_one_offset_reach_the_head_at_unit_scale():
    torch.manual_seed(0)
    offset = torch.randn(1, 16) * 5
    x = offset + 0.05 * torch.randn(32, 16)  # the spread is 1 % of the offset
    norm = HeadStandardizer(16).train()
    y = norm(x)
    assert torch.allclose(y.mean(0), torch.zeros(16), atol=1e-4)
    assert torch.allclose(y.std(0, unbiased=False), torch.ones(16), atol=1e-2)
    for _ in range(200):  # running statistics follow the batches
        norm(x)
    norm.eval()
    assert torch.allclose(norm(x), y, rtol=0.03, atol=1e-3)  # running variance is unbiased


def test_a_batch_of_one_uses_the_running_statistics_in_training():
    norm = HeadStandardizer(4).train()
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    assert torch.allclose(norm(x), x, atol=1e-4)  # fresh statistics: mean 0, variance 1
    assert torch.equal(norm.running_mean, torch.zeros(4))


def test_on_in_the_pipeline_off_in_the_published_model(write_params):
    params = load_params(write_params({"model.scale": "tiny"}))
    assert isinstance(build_classifier(params, {"synthetic": 6}).head_standardizer,
                      HeadStandardizer)
    off = load_params(write_params({"finetune.head_standardize": False}))
    assert isinstance(build_classifier(off, {"synthetic": 6}).head_standardizer, nn.Identity)
    assert isinstance(create_model("tiny", num_classes=6).head_standardizer, nn.Identity)
