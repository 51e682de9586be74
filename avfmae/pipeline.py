"""The stage graph: one source of truth for both orchestrators.

Every stage names its command, wildcards, inputs, outputs and the ``params.yaml`` keys it reads.
``dvc.yaml`` is rendered from this table by :func:`render_dvc_yaml` (``avfmae pipeline``), and
``workflow/rules/stages.smk`` defines one rule per enabled stage from it, so the two cannot drift.

Paths are templates over ``{root}`` (``data.root``) and the wildcards ``{ds}`` (dataset),
``{fold}`` and ``{stage}`` (fine-tuning stage), relative to the repository root. This table is
the only place they are spelled: stage code asks :func:`path` for them.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from avfmae.config import Params

__all__ = ["Stage", "STAGES", "stage", "path", "enabled_stages", "stage_inputs",
           "render_dvc_yaml", "init_checkpoint", "CLAIMS_OUTPUTS", "PROBE_OUTPUTS"]

PRETRAIN_ENCODER = "models/pretrain/encoder.safetensors"
# The data layout: what download, index and preprocess write under data.root.
RAW, INDEX, CLIPS = "{root}/raw/{ds}", "{root}/interim/{ds}", "{root}/processed/{ds}"
# The first DVC stage writes one code fingerprint per stage here once params.yaml and dvc.yaml
# are checked (see _dvc_check_stage); each stage depends on its own.
CODE_STAMPS = ".avfmae/code"

# Not a stage: `avfmae claims` writes these from the finished ablation experiments
# (avfmae/eval/claims.py); they are committed like the metrics, not cached.
CLAIMS_OUTPUTS = {"report": "reports/claims.md", "metrics": "metrics/claims.json",
                  "plots": "plots/claims"}
# What `avfmae probe` writes (a tool run on a finished pretraining, not a stage).
PROBE_OUTPUTS = {"report": "reports/probe.md", "metrics": "metrics/probe.json"}

# Keys any stage may read without declaring them: they change where or how fast work runs, never
# its result (the data root is in every stage's paths, so moving it reruns everything anyway).
RESULT_NEUTRAL_PARAMS = ("data.root", "preprocess.workers", "pretrain.num_workers",
                         "finetune.num_workers")


def _section_keys(section: str, without: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Every key of a params section except the result-neutral ones and ``without``."""
    cls = typing.get_type_hints(Params)[section]
    keys = (f"{section}.{f.name}" for f in dataclasses.fields(cls))
    return tuple(k for k in keys if k not in RESULT_NEUTRAL_PARAMS and k not in without)


@dataclass(frozen=True)
class Stage:
    """One pipeline stage.

    ``deps``/``outs`` map a role name to a path template (``outs`` are cached by DVC;
    ``metrics`` are the headline figures ``dvc metrics show`` lists; ``files`` are small records
    kept in git, read by later stages; ``plots`` are drawn by ``dvc plots show``); ``params`` are
    dotted ``params.yaml``
    keys whose edits rerun it; ``module`` is the entry module whose import closure is the
    stage's code (see :mod:`avfmae.codegraph`). ``run`` is where a long stage keeps its
    resumable state, under ``runs/``, which is deliberately not an output: neither orchestrator
    deletes undeclared folders before a rerun, so an interrupted stage resumes, and a fresh
    clone has nothing missing after ``dvc pull`` (an uncached ``persist`` out would show as
    deleted in ``dvc status``).
    """

    name: str
    cmd: str
    module: str = ""
    wildcards: tuple[str, ...] = ()
    deps: dict[str, str] = field(default_factory=dict)
    outs: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    plots: dict[str, str] = field(default_factory=dict)
    run: str = ""
    params: tuple[str, ...] = ()
    threads: int = 1
    mem_mb: int = 4000
    runtime_min: int = 30
    gpu: int = 0
    local: bool = False


def _finetune_stage(name: str) -> Stage:
    return Stage(
        name=f"finetune_{name}",
        cmd=f"avfmae finetune --stage {name} --dataset {{ds}} --fold {{fold}}",
        module="avfmae.train.finetune",
        wildcards=("ds", "fold"),
        deps={"clips": CLIPS, "splits": INDEX},
        outs={"model": f"models/finetune/{{ds}}/fold{{fold}}/{name}"},
        files={"selection": f"metrics/{{ds}}/fold{{fold}}/{name}.json",
               "curves_summary": f"live/finetune/{{ds}}/fold{{fold}}/{name}/metrics.json"},
        plots={"curves": f"live/finetune/{{ds}}/fold{{fold}}/{name}/plots/metrics"},
        run=f"runs/finetune/{{ds}}/fold{{fold}}/{name}",
        params=("model", "data.datasets", "finetune.init", "finetune.modality",
                "finetune.mix_audio", "finetune.regression_loss", "finetune.head_init_scale",
                "finetune.head_standardize",
                "finetune.amp", "finetune.seed", f"finetune.{name}",
                # which stage comes before this one (its start) and which stages run
                "finetune.stages",
                # model selection predicts the validation split with the test-time protocol
                "eval.num_windows", "eval.batch_size",
                # the checkpoint's model card records the training data's preprocessing
                *_section_keys("preprocess", without=("preprocess.max_reject_fraction",)),
                *(("data.s1_pool",) if name == "s1" else ())),
        threads=2, mem_mb=16000, runtime_min=600, gpu=1,
    )


STAGES: tuple[Stage, ...] = (
    Stage(
        name="download",
        cmd="avfmae download {ds}",
        module="avfmae.data.download",
        wildcards=("ds",),
        outs={"raw": RAW},
        params=("data.synthetic", "data.licensed_root", "data.folder_path",
                "data.local_copies"),
        threads=2, mem_mb=4000, runtime_min=240, local=True,
    ),
    Stage(
        name="index",
        cmd="avfmae index {ds}",
        module="avfmae.data.index",
        wildcards=("ds",),
        deps={"raw": RAW},
        outs={"index": INDEX},
        # data.folds: a partial copy fails here only when a fold it cannot run is requested
        params=("data.val_fraction", "data.folds", "data.local_copies"),
        threads=1, mem_mb=4000, runtime_min=30,
    ),
    Stage(
        name="preprocess",
        cmd="avfmae preprocess {ds}",
        module="avfmae.preprocess.stage",
        wildcards=("ds",),
        # the media themselves, not only the index: regenerated or re-downloaded clips keep
        # their paths, so an unchanged index alone would leave stale faces in the store
        deps={"index": INDEX, "media": RAW},
        outs={"clips": CLIPS},
        run="runs/preprocess/{ds}",
        params=_section_keys("preprocess"),
        threads=2, mem_mb=8000, runtime_min=600,
    ),
    Stage(
        name="pretrain",
        cmd="avfmae pretrain",
        module="avfmae.train.pretrain",
        outs={"encoder": PRETRAIN_ENCODER},
        metrics={"summary": "metrics/pretrain.json"},
        files={"curves_summary": "live/pretrain/metrics.json"},
        plots={"figures": "plots/pretrain", "curves": "live/pretrain/plots/metrics"},
        run="runs/pretrain",
        params=("model", *_section_keys("pretrain"), "data.pretrain_pool"),
        threads=2, mem_mb=16000, runtime_min=1440, gpu=1,
    ),
    _finetune_stage("s1"),
    _finetune_stage("s2"),
    _finetune_stage("s3"),
    Stage(
        name="evaluate",
        cmd="avfmae evaluate --dataset {ds} --fold {fold}",
        module="avfmae.eval.evaluate",
        wildcards=("ds", "fold"),
        deps={"clips": CLIPS, "splits": INDEX},
        outs={"predictions": "predictions/{ds}/fold{fold}.npz"},
        files={"test": "metrics/{ds}/fold{fold}/test.json"},
        plots={"confusion": "plots/evaluate/{ds}/fold{fold}.csv"},
        # every one of finetune.stages is scored; the classifier is built (head init
        # included) before its weights are loaded
        params=("model", "eval", "finetune.modality", "finetune.stages",
                "finetune.head_init_scale", "finetune.head_standardize"),
        threads=2, mem_mb=8000, runtime_min=60, gpu=1,
    ),
    Stage(
        name="report",
        cmd="avfmae report",
        module="avfmae.eval.report",
        deps={"test": "metrics/{ds}/fold{fold}/test.json",
              "predictions": "plots/evaluate/{ds}/fold{fold}.csv",
              "selection": "metrics/{ds}/fold{fold}/{stage}.json",
              "curves": "live/finetune/{ds}/fold{fold}/{stage}/plots/metrics"},
        outs={"report": "reports/report.md"},
        metrics={"summary": "metrics/summary.json"},
        plots={"figures": "plots/report"},
        # the report's header describes the run (finetune.amp: the precision it was made at)
        params=("data.datasets", "data.folds", "data.s1_pool", "finetune.stages",
                "finetune.init", "finetune.modality", "finetune.amp", "model.scale"),
        threads=1, mem_mb=2000, runtime_min=10, local=True,
    ),
)


def stage(name: str) -> Stage:
    """Look a stage up by name."""
    for s in STAGES:
        if s.name == name:
            return s
    raise KeyError(f"no pipeline stage {name!r}; stages: {[s.name for s in STAGES]}")


def path(name: str, role: str, params: Params, **wildcards: object) -> Path:
    """The path of ``role`` (an input, output, metric, plot or ``run``) of stage ``name`` for
    these wildcard values, e.g. ``path("evaluate", "test", params, ds="ravdess", fold=1)``."""
    s = stage(name)
    roles = {**s.deps, **s.outs, **s.metrics, **s.files, **s.plots, "run": s.run}
    if not roles.get(role):
        raise KeyError(f"stage {name} has no path {role!r}; it has {sorted(roles)}")
    return Path(_fill(roles[role], params, **wildcards))


def _fill(template: str, params: Params, **wildcards: object) -> str:
    return template.format(root=params.data.root, **wildcards)


def enabled_stages(params: Params) -> list[Stage]:
    """The stages of this configuration's graph, in order."""
    tuned = {f"finetune_{name}" for name in params.finetune.stages}
    pretrain = params.finetune.init == "pretrained"  # else nothing reads the encoder
    return [s for s in STAGES if (s.name in tuned or not s.name.startswith("finetune_"))
            and (pretrain or s.name != "pretrain")]


def datasets_to_prepare(params: Params) -> list[str]:
    """Every dataset that is downloaded, indexed and preprocessed: labeled ones and pools."""
    return list(dict.fromkeys([*params.data.datasets, *params.data.s1_pool,
                               *params.data.pretrain_pool]))


def stage_inputs(name: str, params: Params, wildcards: dict[str, str]) -> dict[str, Any]:
    """Input paths of stage ``name`` for given wildcard values (or DVC placeholders).

    Role → path, or role → list of paths. Encodes the graph's fan-in: pretraining reads every
    pool, s1 pools the training data of every enabled dataset, each fine-tuning stage starts from
    the previous enabled one, evaluation reads the last one, the report reads every evaluation.
    """
    s = stage(name)
    if name == "pretrain":
        return {"pool": [_fill(CLIPS, params, ds=ds) for ds in params.data.pretrain_pool]}
    if name == "report":
        runs = [(ds, k) for ds in params.data.datasets for k in params.data.folds]
        per_fold = {role: [_fill(s.deps[role], params, ds=ds, fold=k) for ds, k in runs]
                    for role in ("test", "predictions")}
        per_stage = {role: [_fill(s.deps[role], params, ds=ds, fold=k, stage=st)
                            for ds, k in runs for st in params.finetune.stages]
                     for role in ("selection", "curves")}
        return {**per_fold, **per_stage}
    deps: dict[str, Any] = {role: _fill(p, params, **wildcards) for role, p in s.deps.items()}
    if name == "finetune_s1":
        # s1 pools every enabled and s1_pool dataset of the family (the target is one of them)
        pooled = list(dict.fromkeys([*params.data.datasets, *params.data.s1_pool]))
        deps = {"clips": [_fill(CLIPS, params, ds=ds) for ds in pooled],
                "splits": [_fill(INDEX, params, ds=ds) for ds in pooled]}
    if name.startswith("finetune_"):
        init = _previous_model(name.removeprefix("finetune_"), params)
        if init:
            deps["init"] = _fill(init, params, **wildcards)
    if name == "evaluate":  # every stage's selected model is scored on test
        deps["model"] = [_fill(stage(f"finetune_{st}").outs["model"], params, **wildcards)
                         for st in params.finetune.stages]
    return deps


def _previous_model(stage_name: str, params: Params) -> str:
    """The model a fine-tuning stage starts from: the previous enabled stage, else pretraining."""
    order = list(params.finetune.stages)
    at = order.index(stage_name)
    if at > 0:
        return stage(f"finetune_{order[at - 1]}").outs["model"]
    return init_checkpoint(params)


def init_checkpoint(params: Params) -> str:
    """The file the first fine-tuning stage starts from: the pretraining stage's encoder, the
    checkpoint ``finetune.init`` names, or ``""`` for random initialisation."""
    init = params.finetune.init
    if init == "random":
        return ""
    return PRETRAIN_ENCODER if init == "pretrained" else init


def _flat(values: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for v in values.values():
        out.extend(v if isinstance(v, list) else [v])
    return list(dict.fromkeys(out))


# ----------------------------------------------------------------------------------------------
# DVC
# ----------------------------------------------------------------------------------------------

# How `dvc plots show` draws each kind of plot output (by role name).
PLOT_STYLE: dict[str, dict[str, str]] = {
    # as the report draws it: true classes down, predicted across
    "confusion": {"template": "confusion", "x": "predicted", "y": "actual"},
    "curves": {"x": "step"},
}

_DVC_ITEM = {"ds": "${item.ds}", "fold": "${item.fold}"}


def _dvc_stage(s: Stage, params: Params) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if "fold" in s.wildcards:
        body["matrix"] = {"ds": list(params.data.datasets), "fold": list(params.data.folds)}
    elif "ds" in s.wildcards:
        body["matrix"] = {"ds": datasets_to_prepare(params)}
    fill = _DVC_ITEM if s.wildcards else {}
    body["cmd"] = s.cmd.format(**fill)
    body["deps"] = [code_stamp(s.name), *_flat(stage_inputs(s.name, params, fill))]
    if s.params:
        body["params"] = list(s.params)
    outs: list[Any] = [_fill(o, params, **fill) for o in s.outs.values()]
    outs += [{_fill(f, params, **fill): {"cache": False}} for f in s.files.values()]
    body["outs"] = outs
    if s.metrics:
        body["metrics"] = [{_fill(m, params, **fill): {"cache": False}}
                           for m in s.metrics.values()]
    if s.plots:
        body["plots"] = [{_fill(p, params, **fill): {"cache": False, **PLOT_STYLE.get(role, {})}}
                         for role, p in s.plots.items()]
    return body


def stage_code(name: str) -> list[Path]:
    """The package files a stage runs: its entry module's import closure and the CLI."""
    from avfmae.codegraph import module_files

    return sorted({*module_files((stage(name).module,)), Path("avfmae/cli.py")})


def code_stamp(name: str) -> str:
    return f"{CODE_STAMPS}/{name}"


def _dvc_check_stage(params: Params) -> dict[str, Any]:
    """The stage every other DVC stage depends on: validates every params section, refuses a
    stale ``dvc.yaml``, and writes each stage's code fingerprint.

    DVC deletes a stage's outputs just before running its command, so a stage that validated
    params itself would already have lost its previous outputs; this one runs first after any
    params or code edit. A stage's fingerprint changes only with the code it imports (not with
    docstrings or comments), so passing the check reruns only the stages whose code changed.
    """
    names = [s.name for s in enabled_stages(params)]
    code = sorted({str(f) for n in names for f in stage_code(n)}
                  | {"avfmae/codegraph.py", "avfmae/pipeline.py"})
    return {"cmd": f"avfmae pipeline --check --stamp {CODE_STAMPS}",
            "deps": code,
            "params": [f.name for f in dataclasses.fields(Params)],
            "outs": [code_stamp(n) for n in names]}


def write_code_stamps(params: Params, folder: Path) -> list[Path]:
    """The check stage's outputs: one code fingerprint per enabled stage."""
    from avfmae.codegraph import code_fingerprint
    from avfmae.io import atomic_write_text

    return [atomic_write_text(folder / s.name, code_fingerprint(stage_code(s.name)))
            for s in enabled_stages(params)]


def render_dvc_yaml(params: Params) -> str:
    """The full text of ``dvc.yaml`` for this configuration."""
    header = (
        "# GENERATED by `avfmae pipeline` from avfmae/pipeline.py and params.yaml: do not edit.\n"
        "# Regenerate after changing which datasets, folds or stages run, finetune.init or\n"
        "# data.root (the check stage refuses to run a stale file).\n"
    )
    stages = {"check": _dvc_check_stage(params),
              **{s.name: _dvc_stage(s, params) for s in enabled_stages(params)}}
    return header + yaml.safe_dump({"stages": stages}, sort_keys=False, width=100)


# ----------------------------------------------------------------------------------------------
# Snakemake
# ----------------------------------------------------------------------------------------------


def is_directory(path: str) -> bool:
    """Outputs without a file suffix are directories (``directory()`` in Snakemake)."""
    return not Path(path).suffix


def stage_outputs(name: str, params: Params) -> dict[str, str]:
    """Every artifact a stage produces (its resumable run folder excepted), as Snakemake
    patterns over the stage's wildcards."""
    s = stage(name)
    keep = {w: f"{{{w}}}" for w in s.wildcards}
    produced = {**s.outs, **s.metrics, **s.files, **s.plots}
    return {role: _fill(p, params, **keep) for role, p in produced.items()}


def snakemake_resources(name: str) -> dict[str, int]:
    """Per-rule resources; partition/account/GPU syntax belong to the profile."""
    s = stage(name)
    return {"mem_mb": s.mem_mb, "runtime": s.runtime_min, "gpu": s.gpu}


def snakemake_params(name: str, params: Params) -> dict[str, Any]:
    """The config values a rule depends on, keyed by a rule-safe name, so edits rerun it."""
    values = {}
    for dotted in stage(name).params:
        value: Any = params
        for part in dotted.split("."):
            value = getattr(value, part)
        values[dotted.replace(".", "__")] = (
            dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value)
    return values


def snakemake_log(name: str) -> str:
    """Log path template of a rule."""
    s = stage(name)
    suffix = "_".join(f"{{{w}}}" for w in s.wildcards) if s.wildcards else name
    return f"logs/snakemake/{name}/{suffix}.log"


def snakemake_command(name: str, wildcards: dict[str, str], gpus: int) -> str:
    """The CLI call of one job of a rule.

    GPU stages run one process per requested GPU (``--nproc``: torchrun DDP inside the job,
    which is why the SLURM profile gives them ``tasks: 0``).
    """
    s = stage(name)
    cmd = s.cmd.format(**{w: wildcards[w] for w in s.wildcards})
    return f"{cmd} --nproc {gpus}" if s.gpu else cmd


def all_targets(params: Params) -> list[str]:
    """What a full run produces (Snakemake's ``rule all``)."""
    return [stage("report").outs["report"], *stage("report").metrics.values()]


def generated_files(params: Params) -> dict[Path, str]:
    """Files rendered from this module and the config dataclasses, with their expected text."""
    import json

    from avfmae.config import json_schema

    return {
        Path("dvc.yaml"): render_dvc_yaml(params),
        Path("workflow/schemas/params.schema.json"): json.dumps(json_schema(), indent=2) + "\n",
    }


def sync_generated_files(params: Params, check: bool = False) -> list[str]:
    """Rewrite stale generated files (or only list them with ``check``); returns the stale ones."""
    stale = []
    for path, text in generated_files(params).items():
        if not path.is_file() or path.read_text() != text:
            stale.append(str(path))
            if not check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
    return stale
