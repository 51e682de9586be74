"""``finetune.init`` as a checkpoint path: sizes checked against the model, one-line errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from reference_data import load_reference

from avfmae.config import ConfigError, FinetuneConfig, Params, _check_across_keys
from avfmae.errors import UserError
from avfmae.models import create_model
from avfmae.models.convert import encoder_size_mismatch
from avfmae.pipeline import enabled_stages, stage_inputs
from avfmae.train.finetune import load_init_checkpoint


def _published() -> dict[str, torch.Tensor]:
    return load_reference("vector_finetune_small.pt")["state_dict"]  # tiny sizes


def test_encoder_sizes_are_compared_with_the_scale():
    assert encoder_size_mismatch(_published(), "tiny") == ""
    msg = encoder_size_mismatch(_published(), "base")
    assert msg.startswith("embed_dim 64 (model.scale base: 512), video_depth 2")
    assert msg.endswith("it is a 'tiny' checkpoint")
    ours = create_model("tiny", pretrain=True).state_dict()
    assert encoder_size_mismatch(ours, "tiny") == ""
    assert "embed_dim 64 (model.scale small: 192)" in encoder_size_mismatch(ours, "small")


def test_unusable_init_files_are_one_line_errors(tmp_path):
    model = create_model("tiny", num_classes={"synthetic": 6})
    with pytest.raises(UserError, match=r"finetune.init: .*nope.pth does not exist"):
        load_init_checkpoint(model, tmp_path / "nope.pth")
    (tmp_path / "notes.pth").write_text("not a checkpoint")
    with pytest.raises(UserError, match=r"notes.pth is not a usable AVF-MAE\+\+ checkpoint: "):
        load_init_checkpoint(model, tmp_path / "notes.pth")
    torch.save({"model": _published()}, tmp_path / "pub.pth")
    assert load_init_checkpoint(model, tmp_path / "pub.pth").startswith("checkpoint ")


def _with_init(init: str) -> Params:
    return dataclasses.replace(Params(), finetune=dataclasses.replace(FinetuneConfig(), init=init))


def test_init_path_is_the_dependency_and_drops_pretraining():
    p = _with_init("checkpoints/published.pth")
    _check_across_keys(p)
    assert "pretrain" not in [s.name for s in enabled_stages(p)]
    deps = stage_inputs("finetune_s1", p, {"ds": "synthetic", "fold": "1"})
    assert deps["init"] == "checkpoints/published.pth"
    assert "pretrain" in [s.name for s in enabled_stages(_with_init("pretrained"))]
    with pytest.raises(ConfigError, match=r"finetune.init: 'weights.txt' is neither"):
        _check_across_keys(_with_init("weights.txt"))
