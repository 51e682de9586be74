"""The ablation set behind the paper's claims: each configuration once, as ``params.yaml``
overrides of the main job, and each claim as a comparison of two configurations.

A configuration runs as one DVC experiment per seed, named ``<configuration>-seed<k>``
(:func:`experiment_name`); ``avfmae ablate queue`` queues them (:mod:`avfmae.eval.experiments`)
and ``avfmae claims`` reads them back (:mod:`avfmae.eval.claims`). The name is the link between
a finished experiment and its configuration, so it is parsed, never guessed from params.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Ablation", "Claim", "ABLATIONS", "CLAIMS", "MODALITY_KEYS", "ablation",
           "experiment_name", "parse_experiment_name", "seed_overrides", "in_modality_table"]


@dataclass(frozen=True)
class Ablation:
    """One configuration of the set: its name, what it changes and why it is there."""

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    meaning: str = ""


@dataclass(frozen=True)
class Claim:
    """``better`` beats ``worse`` on the test metric, paired by dataset, seed and fold."""

    name: str
    statement: str
    better: str
    worse: str


ABLATIONS: tuple[Ablation, ...] = (
    Ablation("av", {}, "audio-visual pretraining and fine-tuning (the main job)"),
    Ablation("video", {"finetune.modality": "video"}, "fine-tuned on the face video alone"),
    Ablation("audio", {"finetune.modality": "audio"}, "fine-tuned on the voice alone"),
    Ablation("random", {"finetune.init": "random"}, "no pretraining (random initialisation)"),
    # fewer epochs in all than s1 → s2 → s3: the claim is the published recipe against ours,
    # not a compute-matched comparison
    Ablation("s3only", {"finetune.stages": ["s3"]}, "the published single-stage recipe [s3]"),
    Ablation("pretrain_video", {"pretrain.modality": "video"},
             "video-only pretraining, audio-visual fine-tuning"),
    Ablation("pretrain_audio", {"pretrain.modality": "audio"},
             "audio-only pretraining, audio-visual fine-tuning"),
    # with `video` and `audio` these complete the pretraining × fine-tuning table: the same
    # face (or voice) model, pretrained with or without the other modality
    Ablation("unimodal_video", {"pretrain.modality": "video", "finetune.modality": "video"},
             "video-only pretraining and fine-tuning (MAE-DFER's setting)"),
    Ablation("unimodal_audio", {"pretrain.modality": "audio", "finetune.modality": "audio"},
             "audio-only pretraining and fine-tuning"),
    Ablation("no_view", {"pretrain.view_contrastive_weight": 0.0},
             "the published pretraining objective, without the second masked view"),
)

CLAIMS: tuple[Claim, ...] = (
    Claim("av_vs_video", "audio-visual beats video only", "av", "video"),
    Claim("av_vs_audio", "audio-visual beats audio only", "av", "audio"),
    Claim("pretrained_vs_random", "pretraining beats random initialisation", "av", "random"),
    Claim("progressive_vs_s3only", "progressive s1 → s2 → s3 beats [s3] alone", "av", "s3only"),
    Claim("av_vs_video_pretraining", "audio-visual pretraining beats video-only pretraining",
          "av", "pretrain_video"),
    Claim("av_vs_audio_pretraining", "audio-visual pretraining beats audio-only pretraining",
          "av", "pretrain_audio"),
    Claim("av_pretraining_for_faces", "audio-visual pretraining makes a better face model than "
          "video-only pretraining", "video", "unimodal_video"),
    Claim("av_pretraining_for_voices", "audio-visual pretraining makes a better voice model "
          "than audio-only pretraining", "audio", "unimodal_audio"),
    Claim("view_vs_no_view", "the second masked view improves pretraining", "av", "no_view"),
)

#: the keys that place a run in the pretraining × fine-tuning modality table
MODALITY_KEYS = frozenset({"pretrain.modality", "finetune.modality", "finetune.init"})

_NAME = re.compile(r"^(?P<config>[a-z0-9_]+)-seed(?P<seed>\d+)$")


def ablation(name: str) -> Ablation:
    """Look a configuration up by name."""
    for a in ABLATIONS:
        if a.name == name:
            return a
    raise KeyError(f"no ablation {name!r}; the set: {[a.name for a in ABLATIONS]}")


def in_modality_table(config: str) -> bool:
    """Whether the configuration differs from the main job only in what is pretrained and
    fine-tuned (so its runs are a cell of the modality table, not another recipe)."""
    return set(ablation(config).overrides) <= MODALITY_KEYS


def seed_overrides(seed: int) -> dict[str, int]:
    """One seed drives pretraining and fine-tuning alike, so a claim's spread over seeds
    includes the pretraining's own variation."""
    return {"pretrain.seed": seed, "finetune.seed": seed}


def experiment_name(config: str, seed: int) -> str:
    return f"{config}-seed{seed}"


def parse_experiment_name(name: str | None) -> tuple[str, int] | None:
    """``(configuration, seed)`` of an ablation experiment's name, else ``None``."""
    match = _NAME.match(name or "")
    if not match or match["config"] not in {a.name for a in ABLATIONS}:
        return None
    return match["config"], int(match["seed"])
