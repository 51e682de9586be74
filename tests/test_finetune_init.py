"""Where a fine-tuning stage starts: ``finetune.init`` as a checkpoint path (sizes checked
against the model, one-line errors) and the previous stage's weights and heads."""

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
from avfmae.train.checkpoint import export_weights
from avfmae.train.finetune import initialise, load_init_checkpoint, model_dir


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


def _with_s2(**changes: object) -> Params:
    finetune = FinetuneConfig()
    return dataclasses.replace(Params(), finetune=dataclasses.replace(
        finetune, s2=dataclasses.replace(finetune.s2, **changes)))


@pytest.mark.parametrize("fresh", [False, True])
def test_s2_continues_the_targets_s1_head_unless_fresh(tmp_path, monkeypatch, fresh):
    monkeypatch.chdir(tmp_path)
    params = _with_s2(fresh_head=fresh)
    s1 = create_model("tiny", num_classes={"synthetic": 6, "synthetic4": 4})
    export_weights(s1, model_dir(params, "synthetic", 1, "s1") / "best.safetensors")
    s2 = create_model("tiny", num_classes={"synthetic": 6})
    before = s2.heads["synthetic"].weight.detach().clone()
    origin = initialise(s2, params, "synthetic", 1, "s2")
    assert origin.startswith("s1 weights") and origin.endswith(", new heads") == fresh
    torch.testing.assert_close(s2.video_encoder.state_dict(), s1.video_encoder.state_dict())
    expected = before if fresh else s1.heads["synthetic"].weight
    torch.testing.assert_close(s2.heads["synthetic"].weight, expected)
