"""params.yaml validation: every bad input fails before compute, naming the key."""

from __future__ import annotations

import dataclasses
import typing

import pytest
import yaml

from avfmae.config import ConfigError, Params, load_params


def test_committed_params_are_valid(repo_root):
    assert isinstance(load_params(repo_root / "params.yaml"), Params)


def _leaf_keys(cls: type, prefix: str = "") -> list[str]:
    """Dotted keys of every non-section field of a config dataclass."""
    keys = []
    for f in dataclasses.fields(cls):
        tp = typing.get_type_hints(cls)[f.name]
        nested = dataclasses.is_dataclass(tp)
        keys += _leaf_keys(tp, f"{prefix}{f.name}.") if nested else [f"{prefix}{f.name}"]
    return keys


def test_committed_params_spell_out_every_key(repo_root):
    """params.yaml owns the values, whatever they are, but holds every key: DVC tracks params
    by key, so a key missing from the file could not rerun the stages that read it."""
    raw = yaml.safe_load((repo_root / "params.yaml").read_text())

    def present(dotted: str) -> bool:
        node = raw
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    keys = _leaf_keys(Params)
    assert "finetune.s1.epochs" in keys and "data.local_copies" in keys
    assert [k for k in keys if not present(k)] == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"pretrain.bogus": 1}, r"pretrain\.bogus: unknown key; allowed keys are epochs, "),
        ({"finetune.s3.base_lr": "fast"}, r"finetune\.s3\.base_lr: expected a number, got str 'fast'"),
        ({"pretrain.epochs": 2.5}, r"pretrain\.epochs: expected an integer, got float 2\.5"),
        ({"preprocess.margin": 1.5}, r"preprocess\.margin: 1\.5 is out of range; allowed \[0, 1\]"),
        ({"pretrain.base_lr": 0}, r"pretrain\.base_lr: 0\.0 is out of range; allowed \(0, inf\]"),
        ({"finetune.modality": "smell"},
         r"finetune\.modality: 'smell' is not allowed; choose one of \['av', 'video', 'audio'\]"),
        ({"finetune.stages": ["s1", "s4"]}, r"finetune\.stages\[1\]: 's4' is not allowed"),
        ({"preprocess.align": "yes"}, r"preprocess\.align: expected true or false, got str 'yes'"),
        ({"data.synthetic.n_speakers": True},
         r"data\.synthetic\.n_speakers: expected an integer, got bool True"),
        ({"eval": [1, 2]}, r"eval: expected a mapping, got list"),
        ({"pretrain.mask_ratio_audio": 0.8},
         r"pretrain\.mask_ratio_audio: 0\.8 is not allowed; .*Nearest allowed: 0\.75 or 0\.8125"),
        ({"data.datasets": ["synthetic", "affectnet"]},
         r"data\.datasets\[1\]: unknown dataset 'affectnet'; registry names are "),
        ({"data.folds": [1, 7]}, r"data\.folds: fold 7 does not exist for synthetic \(folds 1\.\.3\)"),
        ({"data.datasets": ["voxceleb2"]}, r"data\.datasets\[0\]: 'voxceleb2' is an unlabeled"),
        ({"finetune.stages": ["s3", "s1"]}, r"finetune\.stages: \['s3', 's1'\] must be"),
        ({"finetune.s2.rand_augment": "rand-m7-q4"},
         r"finetune\.s2\.rand_augment: bad rand augment"),
        ({"finetune.s1.min_crop_area": 0}, r"finetune\.s1\.min_crop_area: 0\.0 is out of range"),
        ({"model.scale": "tinyy"}, r"model\.scale: 'tinyy' is not registered; choose one of "),
        ({"model.overrides": {"depthh": 4}}, r"model\.overrides\.depthh: unknown scale field"),
        ({"model.overrides": {"depth": "four"}},
         r"model\.overrides\.depth: expected an integer, got str 'four'"),
        ({"model.overrides": {"depth": 0}}, r"model\.overrides\.depth: 0 is out of range"),
        ({"model.overrides": {"audio_size": [256]}},
         r"model\.overrides\.audio_size: expected a list of 2 integers"),
        ({"model.overrides": {"embed_dim": 65}}, r"model\.overrides: .*divisible by the head"),
        ({"model.overrides": {"image_size": 150}}, r"model\.overrides: input size .* patch"),
        ({"pretrain.betas": [0.9]}, r"pretrain\.betas: expected a list of 2 values, got 1"),
        ({"pretrain.betas": [1.5, 0.95]},
         r"pretrain\.betas\[0\]: 1\.5 is out of range; allowed \[0, 1\)"),
        ({"data.mirrors": {"dfeww": "http://x"}}, r"data\.mirrors\.dfeww: unknown dataset"),
        ({"data.folds": [1, 1]}, r"data\.folds: 1 is listed twice"),
        ({"data.datasets": []}, r"data\.datasets: list at least one"),
    ],
)
def test_bad_values_name_the_key(write_params, changes, message):
    with pytest.raises(ConfigError, match=message):
        load_params(write_params(changes))


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="no such params file"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)


def test_partial_stage_section_keeps_that_stage_defaults(write_params):
    """Setting one s2 key must not reset s2's own defaults to the generic StageConfig ones."""
    path = write_params(drop="finetune.s2")
    params = load_params(path)
    assert params.finetune.s2.freeze_encoders is True
    params = load_params(write_params({"finetune.s2": {"epochs": 7}}))
    assert params.finetune.s2.epochs == 7
    assert params.finetune.s2.freeze_encoders is True


def test_omitted_keys_take_defaults(write_params):
    params = load_params(write_params(drop="pretrain.epochs"))
    assert params.pretrain.epochs == Params().pretrain.epochs


def test_validating_params_imports_no_torch(repo_root):
    """Snakemake validates params.yaml while it parses the workflow, on every dry run too:
    validation must not pay for importing torch, timm or torchvision."""
    import subprocess
    import sys

    code = ("import sys; from avfmae.config import load_params; load_params('params.yaml'); "
            "print(sorted(m for m in ('torch', 'timm', 'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "[]"
