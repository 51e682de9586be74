"""The stage graph: generated files are current and both orchestrators describe the same graph."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from avfmae.config import load_params
from avfmae.pipeline import CHECK_STAMP, generated_files

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
            deps = tuple(sorted(str(d.def_path) for d in s.deps
                                if d.def_path not in ("params.yaml", CHECK_STAMP)))
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


def test_dvc_and_snakemake_describe_the_same_graph(repo_root):
    dvc, snake = _dvc_jobs(repo_root), _snakemake_jobs(repo_root)
    assert len(dvc) >= 9
    assert dvc == snake


def test_snakemake_lint_is_clean(repo_root):
    res = subprocess.run([str(BIN / "snakemake"), "--lint"], cwd=repo_root,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


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
    assert stages["check"]["outs"] == [CHECK_STAMP]
    assert set(stages["check"]["params"]) == set(load_params(repo_root / "params.yaml").__dict__)
    for name, body in list(stages.items())[1:]:
        assert body["deps"][0] == CHECK_STAMP, name


def test_cached_outputs_are_ignored_by_static_rules(repo_root):
    # DVC's per-folder .gitignore entries are not restored after some failed runs
    cached, uncached = [CHECK_STAMP], []
    for body in _dvc_stages(repo_root).values():
        cached += body["outs"]
        for entry in body.get("metrics", []) + body.get("plots", []):
            uncached += list(entry)
    fill = lambda p: p.replace("${item.ds}", "synthetic").replace("${item.fold}", "1")  # noqa: E731
    res = subprocess.run(["git", "check-ignore", "--no-index", "-v", *map(fill, cached)],
                         cwd=repo_root, capture_output=True, text=True)
    ignored = {line.split("\t")[-1] for line in res.stdout.splitlines()
               if line.startswith(".gitignore:")}
    assert ignored == set(map(fill, cached))
    res = subprocess.run(["git", "check-ignore", "--no-index", *map(fill, uncached)],
                         cwd=repo_root, capture_output=True, text=True)
    assert res.stdout == ""  # metrics and plots are tracked by git
