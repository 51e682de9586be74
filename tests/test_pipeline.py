"""The stage graph: generated files are current and both orchestrators describe the same graph."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from param_files import write_default_params

from avfmae import pipeline
from avfmae.config import Params, load_params
from avfmae.pipeline import CODE_STAMPS, generated_files, stage_code

BIN = Path(sys.executable).parent


def test_generated_files_are_current(repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    params = load_params()
    for path, text in generated_files(params).items():
        assert path.read_text() == text, f"{path} is stale: run `avfmae pipeline`"


def _dvc_jobs(repo: Path) -> set[tuple[str, tuple[str, ...], tuple[str, ...]]]:
    from dvc.repo import Repo

    jobs = set()
    with Repo(str(repo)) as dvc:
        for s in dvc.index.stages:
            if s.name == "check":  # DVC only: Snakemake validates params while parsing
                continue
            deps = tuple(sorted(str(d.def_path) for d in s.deps if d.def_path != "params.yaml"
                                and not d.def_path.startswith(CODE_STAMPS)))
            outs = tuple(sorted(str(o.def_path) for o in s.outs))
            jobs.add((s.cmd, deps, outs))
    return jobs


def _snakemake_jobs(repo: Path) -> set[tuple[str, tuple[str, ...], tuple[str, ...]]]:
    out = subprocess.run(
        [str(BIN / "snakemake"), "--dry-run", "--printshellcmds", "--cores", "1", "--forceall"],
        cwd=repo, capture_output=True, text=True, check=True,
    ).stdout
    jobs = set()
    for block in out.split("\n\n"):
        cmd = re.search(r"^Shell command: (avfmae .*?)(?: --nproc \d+)? > logs/", block, re.M)
        if not cmd:
            continue
        fields = dict(re.findall(r"^    (input|output): (.*)$", block, re.M))
        split = lambda s: tuple(sorted(p.strip() for p in s.split(",") if p.strip()))  # noqa: E731
        jobs.add((cmd.group(1), split(fields.get("input", "")), split(fields.get("output", ""))))
    return jobs


def _expected_job_count(params: Params) -> int:
    per_stage = {(): 1, ("ds",): len(pipeline.datasets_to_prepare(params)),
                 ("ds", "fold"): len(params.data.datasets) * len(params.data.folds)}
    return sum(per_stage[s.wildcards] for s in pipeline.enabled_stages(params))


def test_dvc_and_snakemake_describe_the_same_graph(repo_root):
    dvc, snake = _dvc_jobs(repo_root), _snakemake_jobs(repo_root)
    assert len(dvc) == _expected_job_count(load_params(repo_root / "params.yaml"))
    assert dvc == snake


def test_snakemake_lint_is_clean(repo_root):
    res = subprocess.run([str(BIN / "snakemake"), "--lint"], cwd=repo_root,
                         capture_output=True, text=True)
    report = res.stdout + res.stderr
    assert res.returncode == 0, report
    assert "Lints for" not in report
    assert "your workflow is in a good condition" in report


def test_snakemake_defines_one_rule_per_enabled_stage(repo_root):
    from avfmae.pipeline import enabled_stages

    res = subprocess.run([str(BIN / "snakemake"), "--list-rules"], cwd=repo_root,
                         capture_output=True, text=True, check=True)
    enabled = enabled_stages(load_params(repo_root / "params.yaml"))
    assert set(res.stdout.split()) == {"all", *(s.name for s in enabled)}


def test_snakemake_jobs_print_their_own_stage_command(repo_root):
    res = subprocess.run([str(BIN / "snakemake"), "-n", "-p", "--cores", "1"], cwd=repo_root,
                         capture_output=True, text=True, check=True)
    out = res.stdout + res.stderr
    blocks = (re.search(r"^(?:local)?rule (\w+):.*^Shell command: ([^\n]*)", block, re.S | re.M)
              for block in out.split("\n\n"))
    jobs = [m.groups() for m in blocks if m and m.group(1) != "all"]
    assert {rule for rule, _ in jobs} == {s.name for s in pipeline.enabled_stages(
        load_params(repo_root / "params.yaml"))}
    for rule, command in jobs:
        stage = pipeline.stage(rule)
        assert command.startswith(stage.cmd.split("{")[0]), (rule, command)
        assert ("--nproc" in command) == bool(stage.gpu), (rule, command)


def test_a_snakemake_job_runs_its_own_stage(repo_root, tmp_path):
    """Rules are defined in a loop, and Snakemake evaluates a rule's shell expression again when
    the job runs (not in a dry run): one naming the loop variable would run the last stage's
    command in every job. An ``avfmae`` stand-in records what the download job ran."""
    stub = tmp_path / "bin" / "avfmae"
    stub.parent.mkdir()
    stub.write_text('#!/bin/sh\necho "avfmae $*"\n')
    stub.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    write_default_params(work / "params.yaml")
    env = {**os.environ, "PATH": f"{stub.parent}{os.pathsep}{BIN}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run([str(BIN / "snakemake"), "-s", str(repo_root / "workflow/Snakefile"),
                    "--cores", "1", "data/raw/synthetic"], cwd=work, env=env,
                   capture_output=True, text=True)  # fails: the stand-in writes no output
    log = work / pipeline.snakemake_log("download").format(ds="synthetic")
    assert log.read_text() == "avfmae download synthetic\n"


def test_preprocessing_depends_on_the_media_it_reads(repo_root):
    # regenerated media keep their paths, so the index alone does not change with them
    deps = {cmd: deps for cmd, deps, _ in _dvc_jobs(repo_root)}
    assert deps["avfmae preprocess synthetic"] == ("data/interim/synthetic", "data/raw/synthetic")


def _dvc_stages(repo: Path) -> dict[str, dict]:
    import yaml

    return yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]


def test_every_dvc_stage_runs_after_the_params_check(repo_root):
    # DVC deletes a stage's outputs before its command runs: params must fail before that
    stages = _dvc_stages(repo_root)
    assert list(stages)[0] == "check"
    assert set(stages["check"]["params"]) == set(load_params(repo_root / "params.yaml").__dict__)
    for name, body in list(stages.items())[1:]:
        assert body["deps"][0] == f"{CODE_STAMPS}/{name}", name
    assert stages["check"]["outs"] == [f"{CODE_STAMPS}/{name}" for name in list(stages)[1:]]
    assert set(stages["check"]["deps"]) >= {str(f) for n in list(stages)[1:]
                                            for f in stage_code(n)}


def test_stage_code_is_the_import_closure():
    report = {str(f) for f in stage_code("report")}
    assert {"avfmae/eval/report.py", "avfmae/cli.py", "avfmae/config.py"} <= report
    assert not [f for f in report if f.startswith(("avfmae/models/", "avfmae/train/"))]
    pretrain = {str(f) for f in stage_code("pretrain")}
    assert {"avfmae/models/encoder.py", "avfmae/masking.py", "avfmae/train/loop.py"} <= pretrain
    assert "avfmae/eval/report.py" not in pretrain
    # parsers are loaded by name from the registry
    assert "avfmae/data/parsers/ravdess.py" in {str(f) for f in stage_code("index")}


def test_code_fingerprint_ignores_docstrings_and_comments(tmp_path):
    from avfmae.codegraph import code_fingerprint

    mod = tmp_path / "m.py"
    mod.write_text('"""Doc."""\n\ndef f(x):\n    """Say."""\n    return x + 1  # why\n')
    before = code_fingerprint([Path("m.py")], repo=tmp_path)
    mod.write_text('"""Other doc."""\n\ndef f(x):\n    # reworded\n    return x + 1\n')
    assert code_fingerprint([Path("m.py")], repo=tmp_path) == before
    mod.write_text('"""Doc."""\n\ndef f(x):\n    return x + 2\n')
    assert code_fingerprint([Path("m.py")], repo=tmp_path) != before


def test_cached_outputs_are_ignored_by_static_rules(repo_root, tmp_path):
    # DVC's per-folder .gitignore entries are not restored after some failed runs, so the root
    # file alone must cover every cached output: checked in a repository holding only it.
    shutil.copy(repo_root / ".gitignore", tmp_path / ".gitignore")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    cached, uncached = [], []
    for body in _dvc_stages(repo_root).values():
        for out in body["outs"]:  # a path, or {path: {cache: false}} for a record kept in git
            (cached.append(out) if isinstance(out, str) else uncached.extend(out))
        for entry in body.get("metrics", []) + body.get("plots", []):
            uncached += list(entry)
    fill = lambda p: p.replace("${item.ds}", "synthetic").replace("${item.fold}", "1")  # noqa: E731
    res = subprocess.run(["git", "check-ignore", "--no-index", "-v", *map(fill, cached)],
                         cwd=tmp_path, capture_output=True, text=True)
    ignored = {line.split("\t")[-1] for line in res.stdout.splitlines()
               if line.startswith(".gitignore:")}
    assert ignored == set(map(fill, cached))
    res = subprocess.run(["git", "check-ignore", "--no-index", *map(fill, uncached)],
                         cwd=tmp_path, capture_output=True, text=True)
    assert res.stdout == ""  # metrics, records and plots are tracked by git


def _code_strings(tree: ast.AST) -> list[str]:
    """String constants of a module that are not docstrings or prose (help texts, messages):
    the ones that could be a path. f-string parts included."""
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)
            and isinstance(node.value, str) and id(node) not in docstrings
            and " " not in node.value]


def test_stage_output_paths_are_spelled_only_in_the_stage_table():
    prefixes = {p.split("{")[0].rstrip("/").split("/")[0] + "/"
                for s in pipeline.STAGES for p in pipeline.stage_outputs(s.name, Params())
                .values() if not p.startswith("data/")}
    prefixes |= {"runs/", "processed/", "interim/", "raw/"}
    assert {"metrics/", "models/", "plots/", "predictions/", "reports/"} <= prefixes
    offenders = []
    for path in Path("avfmae").rglob("*.py"):
        if path.as_posix() == "avfmae/pipeline.py":
            continue
        for text in _code_strings(ast.parse(path.read_text())):
            if text.startswith(tuple(prefixes)) or any(f"/{p}" in text for p in prefixes):
                offenders.append(f"{path}: {text!r}")
    assert offenders == []
