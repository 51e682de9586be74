"""A stand-in for the classifier in loss tests: every call returns the given logits per head."""

from __future__ import annotations

import torch


class FixedHeads(torch.nn.Module):
    """``forward(video, audio, head=None, unimodal=False)`` → ``outputs`` (dataset → logits),
    whatever the inputs: the objective under test sees exactly these head outputs (give them
    as (3, B, K) where it asks for the unimodal heads' too, which ``asked_unimodal`` records)."""

    def __init__(self, outputs: dict[str, torch.Tensor]):
        super().__init__()
        self.outputs = outputs

    def forward(self, video, audio, head=None, unimodal=False):
        self.asked_unimodal = unimodal
        return self.outputs
