"""The claims computation on synthetic experiment records: side statistics, pairing by seed and
fold, wins, the paired test against hand-computed values, runs without figures listed, and the
parsing of ``dvc exp show --json``."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from avfmae.config import params_from_dict, with_overrides
from avfmae.eval.ablations import (ABLATIONS, CLAIMS, ablation, parse_experiment_name,
                                   seed_overrides)
from avfmae.eval.claims import (MIN_PAIRS, _modality_table, _stage_gain, evaluate_claim,
                                modality_cells, not_used, paired_p_value, write_claims)
from avfmae.eval.experiments import Run, _cli_value, runs_from_exp_show
from avfmae.eval.report import fold_scores
from avfmae.pipeline import CLAIMS_OUTPUTS
from param_files import default_params

AV_VS_VIDEO = next(c for c in CLAIMS if c.name == "av_vs_video")
MACHINE = {"cpu": "Test CPU", "amx": False, "threads": 2, "torch": "2.x", "device": "cpu",
           "precision": "fp32"}


def run(config: str, seed: int, folds: dict[int, float], state: str = "success",
        val: dict[str, float] | None = None, test: dict[str, float] | None = None) -> Run:
    o = ablation(config).overrides
    pretrained = "none" if o.get("finetune.init") == "random" else o.get("pretrain.modality", "av")
    modalities = (pretrained, o.get("finetune.modality", "av"))
    return Run(f"{config}-seed{seed}", config, seed, state,
               scores={("synthetic", f): v for f, v in folds.items()},
               metric={"synthetic": "uar"}, machine=MACHINE, modalities=modalities,
               val_by_stage={"synthetic": _every_fold(val, folds)} if val else {},
               test_by_stage={"synthetic": _every_fold(test, folds)} if test else {})


def _every_fold(by_stage: dict[str, float], folds: dict[int, float]
                ) -> dict[str, dict[int, float]]:
    return {st: {f: v for f in folds} for st, v in by_stage.items()}


def test_sides_pairs_and_wins():
    runs = [run("av", 0, {1: 0.5, 2: 0.7}), run("av", 1, {1: 0.6, 2: 0.6}),
            run("video", 0, {1: 0.4, 2: 0.7}), run("video", 1, {1: 0.5}),  # fold 2 missing
            run("video", 2, {1: 0.1, 2: 0.1}),  # no av partner: in the mean, not in a pair
            run("video", 3, {1: 0.9}, state="failed")]  # never counted
    result = evaluate_claim(AV_VS_VIDEO, runs, "synthetic")
    assert result.better.runs == 4
    assert result.better.mean == pytest.approx(0.6)
    assert result.better.std == pytest.approx(pd.Series([0.5, 0.7, 0.6, 0.6]).std())
    assert result.worse.runs == 5
    assert result.worse.mean == pytest.approx((0.4 + 0.7 + 0.5 + 0.1 + 0.1) / 5)
    # pairs: seed 0 folds 1, 2 and seed 1 fold 1 → +0.1, 0, +0.1
    assert (result.pairs, result.wins, result.ties, result.losses) == (3, 2, 1, 0)
    assert result.p_value is None and "too few paired runs (3" in result.verdict


def test_paired_test_against_hand_computed_values():
    # n = 5, all positive: W+ = 15 is the largest of 2^5 equally likely sign patterns
    assert paired_p_value([0.01, 0.02, 0.03, 0.04, 0.05]) == pytest.approx(1 / 32)
    # the largest difference negative: W+ = 10; 10 of the 32 subsets of {1..5} sum to ≥ 10
    assert paired_p_value([0.01, 0.02, 0.03, 0.04, -0.05]) == pytest.approx(10 / 32)
    # a tie is dropped (zero differences carry no sign)
    assert paired_p_value([0.01, 0.02, 0.03, 0.04, 0.05, 0.0]) == pytest.approx(1 / 32)
    assert paired_p_value([0.0] * 6) == 1.0


def test_enough_pairs_give_a_verdict():
    av = [run("av", s, {1: 0.6 + 0.01 * s}) for s in range(MIN_PAIRS)]
    video = [run("video", s, {1: 0.5}) for s in range(MIN_PAIRS)]
    result = evaluate_claim(AV_VS_VIDEO, av + video, "synthetic")
    assert result.wins == MIN_PAIRS and result.p_value == pytest.approx(1 / 32)
    assert result.verdict.startswith("holds (p = 0.0312")
    flipped = evaluate_claim(AV_VS_VIDEO, [run("av", s, {1: 0.5}) for s in range(5)] + [
        run("video", s, {1: 0.6 + 0.01 * s}) for s in range(5)], "synthetic")
    assert flipped.losses == 5 and flipped.verdict.startswith("not shown (p = 1")


def test_runs_without_figures_are_listed():
    runs = [run("av", 0, {1: 0.5}), run("video", 0, {}, state="failed"),
            run("audio", 1, {}, state="queued")]
    listed = {s["experiment"]: s["state"] for s in not_used(runs)}
    assert listed["video-seed0"] == "failed" and listed["audio-seed1"] == "queued"
    assert listed["random-seed0"] == listed["random-seed1"] == "missing"
    assert listed["av-seed1"] == "missing" and "av-seed0" not in listed


def _exp(name: str, state: str, params: dict, summary: dict | None, error: dict | None = None):
    metrics = {"metrics/summary.json": {"data": summary}} if summary is not None else {}
    return {"name": name, "executor": {"state": state},
            "revs": [{"rev": "abc", "name": name, "error": error,
                      "data": {"params": {"params.yaml": {"data": params}}, "metrics": metrics}}]}


def test_exp_show_json_is_parsed_into_runs():
    params = {"finetune": {"seed": 1, "modality": "video"}, "pretrain": {"seed": 1}}
    summary = {"synthetic": {"test": {}, "test_by_fold": {"uar": {"1": 0.5, "2": 0.25}},
                             "val_by_stage": {"s1": {"1": 0.5}, "s3": {"1": 0.75}},
                             "test_by_stage": {"s1": {"1": 0.25, "2": 0.5}, "s3": {"1": 0.5,
                                                                                    "2": 0.5}}},
               "machine": MACHINE}
    seed4 = {"finetune": {"seed": 4, "modality": "video"}, "pretrain": {"seed": 4}}
    means_only = {**summary, "synthetic": {**summary["synthetic"],
                                           "test_by_stage": {"s1": 0.25, "s3": 0.5}}}
    data = [{"rev": "workspace", "data": {}},
            {"rev": "0123456789abcdef", "name": "main", "experiments": [
                _exp("video-seed1", "success", params, summary),
                _exp("video-seed2", "failed", params, None, {"msg": "Experiment run failed"}),
                _exp("audio-seed1", "queued", params, None),
                _exp("audio-seed3", "success", params, summary),  # its params say video
                _exp("my-lr-test", "success", params, summary),  # not an ablation run
                _exp("video-seed4", "success", seed4, means_only)]}]
    runs, baseline = runs_from_exp_show(data)
    assert baseline == "0123456789abcdef"
    by_name = {r.experiment: r for r in runs}
    assert set(by_name) == {"video-seed1", "video-seed2", "audio-seed1", "audio-seed3",
                            "video-seed4"}
    # stage means without folds (summaries made before they were kept per fold): no stage data
    assert by_name["video-seed4"].usable and by_name["video-seed4"].test_by_stage == {}
    ok = by_name["video-seed1"]
    assert ok.usable and ok.scores == {("synthetic", 1): 0.5, ("synthetic", 2): 0.25}
    assert ok.metric == {"synthetic": "uar"} and ok.machine == MACHINE
    assert ok.val_by_stage == {"synthetic": {"s1": {1: 0.5}, "s3": {1: 0.75}}}
    assert ok.test_by_stage == {"synthetic": {"s1": {1: 0.25, 2: 0.5}, "s3": {1: 0.5, 2: 0.5}}}
    assert by_name["video-seed2"].state == "failed"
    assert by_name["audio-seed1"].state == "queued"
    assert by_name["audio-seed3"].state == "params differ from its name"
    assert "finetune.modality is 'video', not 'audio'" in by_name["audio-seed3"].detail


@pytest.mark.parametrize("config", [a.name for a in ABLATIONS])
def test_every_configuration_is_a_valid_params_edit(config: str):
    params = params_from_dict(with_overrides(default_params(),
                                             {**ablation(config).overrides, **seed_overrides(3)}))
    for key, value in ablation(config).overrides.items():
        section, *rest = key.split(".")
        node = getattr(params, section)
        for part in rest:
            node = getattr(node, part)
        assert node == value or list(node) == value
    assert params.pretrain.seed == params.finetune.seed == 3


def test_every_claim_compares_two_configurations_of_the_set():
    names = {a.name for a in ABLATIONS}
    assert all({c.better, c.worse} <= names and c.better != c.worse for c in CLAIMS)
    assert len({c.name for c in CLAIMS}) == len(CLAIMS)


def test_modality_table_places_each_run_by_what_it_pretrained_and_fine_tuned():
    runs = [run("av", 0, {1: 0.6, 2: 0.8}), run("video", 0, {1: 0.5}),
            run("unimodal_video", 0, {1: 0.3}), run("unimodal_video", 1, {1: 0.4}),
            run("random", 0, {1: 0.2}), run("s3only", 0, {1: 0.9})]
    cells = modality_cells(runs, "synthetic")
    assert cells == {("av", "av"): [0.6, 0.8], ("av", "video"): [0.5],
                     ("video", "video"): [0.3, 0.4], ("none", "av"): [0.2]}  # s3only: a recipe
    lines = "\n".join(_modality_table(runs, "synthetic"))
    assert "| av | 0.700 ± 0.141 (2) | 0.500 ± 0.000 (1) | – |" in lines
    assert "| video | – | 0.350 ± 0.071 (2) | – |" in lines
    assert "| nothing (random init) | 0.200 ± 0.000 (1) | – | – |" in lines
    assert "\n| audio |" not in lines  # no audio-pretrained run: no row


def test_a_run_reads_its_modalities_from_its_params():
    params = {"finetune": {"seed": 0, "modality": "video", "init": "pretrained"},
              "pretrain": {"seed": 0, "modality": "video"}}
    summary = {"synthetic": {"test": {}, "test_by_fold": {"uar": {"1": 0.5}}}}
    data = [{"rev": "0123456789abcdef", "experiments": [
        _exp("unimodal_video-seed0", "success", params, summary)]}]
    assert runs_from_exp_show(data)[0][0].modalities == ("video", "video")


def test_names_and_override_values():
    assert parse_experiment_name("pretrain_video-seed12") == ("pretrain_video", 12)
    assert parse_experiment_name("bogus-seed1") is None
    assert parse_experiment_name(None) is None
    assert _cli_value(["s3"]) == "[s3]" and _cli_value(True) == "true"


def test_report_summary_keeps_the_selection_metric_per_fold():
    test = pd.DataFrame({"uar": [0.5, 0.25], "war": [0.4, 0.3]}, index=[1, 3])
    assert fold_scores(test, {"selected": {"metric": "uar"}}) == {
        "uar": {"1": 0.5, "3": 0.25}}
    assert fold_scores(test, {}) == {}


def test_claims_files_are_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    runs = [run("av", s, {1: 0.6, 2: 0.7}, val={"s1": 0.5, "s2": 0.5, "s3": 0.5 + s / 10},
                test={"s1": 0.7 - s / 10, "s2": 0.6, "s3": 0.65}) for s in range(3)] + [
        run("video", s, {1: 0.4, 2: 0.5}) for s in range(3)] + [
        run("audio", 0, {}, state="failed")]
    report = write_claims(runs, "0123456789abcdef")
    text = report.read_text()
    assert "| audio-visual beats video only | 0.650 ± 0.055 (6 runs, `av`) |" in text
    assert "6 / 0 / 0 of 6 | holds (p = 0.0156 < 0.05) |" in text
    assert "- `audio-seed0`: failed" in text and "- `random-seed2`: missing" in text
    assert "Test CPU (AMX: no), 2 threads, torch 2.x, cpu, fp32 (6 runs)" in text
    assert ("| av | 3 | s1 0.500 ± 0.000 → s2 0.500 ± 0.000 → s3 0.600 ± 0.100 | "
            "+0.100, higher in 2 of 3 | 4 / 2 / 0 of 6, p = 0.0625 |") in text
    assert "### Test by fine-tuning stage" in text
    assert ("| av | 3 | s1 0.600 ± 0.100 → s2 0.600 ± 0.000 → s3 0.650 ± 0.000 | "
            "+0.050, higher in 2 of 3 | 4 / 0 / 2 of 6, p = ") in text
    claims = json.loads(Path(CLAIMS_OUTPUTS["metrics"]).read_text())
    first = next(c for c in claims["claims"] if c["claim"] == "av_vs_video")
    assert first["wins"] == 6 and first["p_value"] == pytest.approx(1 / 64)
    audio = next(c for c in claims["claims"] if c["claim"] == "av_vs_audio")
    assert audio["pairs"] == 0 and audio["p_value"] is None
    assert (Path(CLAIMS_OUTPUTS["plots"]) / "synthetic.png").stat().st_size > 1000


def test_stage_gain_pairs_folds_as_well_as_seeds():
    """A seed whose mean rises can hide a fold that falls; the fold pairs show it."""
    by_run = [{"s1": {1: 0.5, 2: 0.5, 3: 0.5}, "s3": {1: 0.75, 2: 0.75, 3: 0.25}},
              {"s1": {1: 0.5, 2: 0.5, 3: 0.5}, "s3": {1: 0.5, 2: 0.75, 3: 0.75}}]
    cells = _stage_gain(by_run, "s1", "s3")
    assert cells.startswith("+0.125, higher in 2 of 2 | 4 / 1 / 1 of 6, p = ")
    assert cells.endswith(f"p = {paired_p_value([0.25, 0.25, -0.25, 0.0, 0.25, 0.25]):.3g}")
    assert _stage_gain(by_run[:1], "s1", "s3").endswith("2 / 0 / 1 of 3, no test below 5 pairs")


def test_a_machine_record_names_the_vector_isa_its_numerics_depend_on():
    """AMD EPYC names both Zen 3 (AVX2) and Zen 4 (AVX512), whose float results differ."""
    import torch

    from avfmae.machine import cpu_label, describe_machine

    m = describe_machine("off")
    assert m["vector_isa"] == torch.backends.cpu.get_cpu_capability()
    assert m["precision"] == "fp32"
    assert cpu_label({**MACHINE, "vector_isa": "AVX2"}) == "Test CPU (AVX2, AMX: no)"
    assert cpu_label(MACHINE) == "Test CPU (AMX: no)"  # records made before the ISA was
