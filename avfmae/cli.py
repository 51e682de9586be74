"""``avfmae <stage> [options]``: one subcommand per pipeline stage, plus a few tools.

Commands that use the project run from any folder inside it: they find its root (the nearest
folder up holding ``params.yaml`` and ``dvc.yaml``), work there, validate ``params.yaml`` first,
then make one call into the library. ``datasets``, ``convert`` and ``predict`` need no project.
Errors a user can fix (:class:`avfmae.errors.UserError`) print one line and exit with status 2;
the traceback goes only to the stage's log, ``logs/<stage>/<key>.log`` at the root.
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from avfmae.config import Params, load_params
from avfmae.errors import UserError
from avfmae.lock import LOCK_PATH, claim, current_run, release

log = logging.getLogger("avfmae")

EXIT_USER_ERROR = 2
# commands that write pipeline outputs: one run at a time per checkout (avfmae/lock.py)
PIPELINE_STAGES = {"download", "index", "preprocess", "pretrain", "finetune", "evaluate", "report"}
# commands that read no params.yaml, so they run anywhere and paths are the caller's
STANDALONE = {"datasets", "convert", "predict"}
PROJECT_FILE = "params.yaml"
# log records only the stage's log file gets (tracebacks behind a one-line error)
_FILE_ONLY = {"file_only": True}
_handlers: list[logging.Handler] = []


def _cmd_params(args: argparse.Namespace, params: Params) -> None:
    from avfmae.config import explain

    print(explain(params) if args.explain else "params.yaml is valid")


def _cmd_pipeline(args: argparse.Namespace, params: Params) -> None:
    from avfmae.pipeline import sync_generated_files, write_code_stamps

    stale = sync_generated_files(params, check=args.check)
    if args.check and stale:
        raise UserError(f"stale generated files: {', '.join(stale)}; run `avfmae pipeline`")
    if args.stamp:
        write_code_stamps(params, Path(args.stamp))
    print("up to date" if not stale else f"wrote {', '.join(stale)}")


def _cmd_datasets(args: argparse.Namespace, params: None) -> None:
    from avfmae.data.registry import describe_all

    print(describe_all())


def _cmd_download(args: argparse.Namespace, params: Params) -> None:
    from avfmae.data.download import download

    print(download(args.dataset, params))


def _cmd_index(args: argparse.Namespace, params: Params) -> None:
    from avfmae.data.index import index

    for path in index(args.dataset, params):
        print(path)


def _cmd_preprocess(args: argparse.Namespace, params: Params) -> None:
    from avfmae.preprocess import preprocess

    print(preprocess(args.dataset, params))


def _cmd_pretrain(args: argparse.Namespace, params: Params) -> None:
    from avfmae.train.pretrain import pretrain

    print(pretrain(params, resume=args.resume))


def _cmd_finetune(args: argparse.Namespace, params: Params) -> None:
    from avfmae.train.finetune import finetune

    print(finetune(params, stage=args.stage, dataset=args.dataset, fold=args.fold,
                   resume=args.resume))


def _cmd_evaluate(args: argparse.Namespace, params: Params) -> None:
    from avfmae.eval.evaluate import evaluate

    print(evaluate(params, dataset=args.dataset, fold=args.fold))


def _cmd_report(args: argparse.Namespace, params: Params) -> None:
    from avfmae.eval.report import report

    print(report(params))


def _cmd_ablate(args: argparse.Namespace, params: Params) -> None:
    from avfmae.eval.ablations import ABLATIONS

    if args.action == "list":
        for a in ABLATIONS:
            print(f"{a.name:15s} {a.overrides or '{}'}: {a.meaning}")
        return
    from avfmae.eval.experiments import queue_ablations

    # experiments start from the project's params.yaml, whatever --params says
    names = queue_ablations(Path("params.yaml"), args.set or ablation_names(), args.seeds)
    print(f"queued {len(names)} DVC experiment(s): {', '.join(names)}\n"
          "run them with `dvc queue start -j 1` (or `dvc exp run --run-all -j 1`), "
          "then `avfmae claims`")


def _cmd_claims(args: argparse.Namespace, params: Params) -> None:
    from avfmae.eval.claims import write_claims
    from avfmae.eval.experiments import read_runs

    print(write_claims(*read_runs()))


def _cmd_probe(args: argparse.Namespace, params: Params) -> None:
    from avfmae.eval.probe import probe

    print(probe(params, dataset=args.dataset, encoder=args.encoder))


def _cmd_convert(args: argparse.Namespace, params: None) -> None:
    from avfmae.models.convert import convert_checkpoint

    print(convert_checkpoint(Path(args.src), Path(args.dst), scale=args.scale,
                             sizes=dict(args.size)))


def _scale_field(text: str) -> tuple[str, object]:
    """``FIELD=VALUE`` of ``--size``; the value is YAML, as in params.yaml (``[0, 2, 3]``)."""
    import yaml

    field, sep, value = text.partition("=")
    if not sep or not field:
        raise argparse.ArgumentTypeError(f"{text!r} is not FIELD=VALUE")
    try:
        return field, yaml.safe_load(value)
    except yaml.YAMLError:
        raise argparse.ArgumentTypeError(f"{text!r}: the value is not YAML") from None


def _cmd_predict(args: argparse.Namespace, params: None) -> None:
    from avfmae.eval.predict import predict

    result = predict(args.inputs, args.model, device=args.device, batch_size=args.batch_size,
                     hop_s=args.hop, workers=args.workers)
    paths = result.save(Path(args.out), plots=args.plot)
    ok = int((result.clips["status"] == "ok").sum())
    skipped = result.clips.loc[result.clips["status"] != "ok", "reason"].value_counts()
    print(f"{ok} of {len(result.clips)} clip(s) predicted"
          + "".join(f", {n} skipped ({reason})" for reason, n in skipped.items())
          + f" → {', '.join(str(p) for p in paths[:3])}"
          + (f" and {len(paths) - 3} plot(s)" if len(paths) > 3 else ""))


def _add_resume(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--resume", default="auto",
        help="'auto' continues from the latest checkpoint of this run when its settings match "
             "(default), 'never' starts over, or a checkpoint path",
    )
    _add_nproc(p)


def _add_nproc(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--nproc", type=int, default=0, metavar="N",
        help="GPUs to use, one torchrun DDP process each (CPU processes where CUDA is absent); "
             "0 (default) or 1 = this process only",
    )


def _relaunch_under_torchrun(args: argparse.Namespace, argv: Sequence[str],
                             params_file: Path | None) -> int | None:
    """Run this same command as ``torchrun --nproc_per_node N`` when ``--nproc N`` > 1.

    Says once when the N GPUs asked for are CPUs here. The processes start in the project root,
    so they get the params file as an absolute path.
    """
    nproc = getattr(args, "nproc", 0)
    if "LOCAL_RANK" in os.environ:
        return None
    if nproc >= 1:
        _note_cpu_fallback(nproc)
    if nproc <= 1:
        return None
    rest = _without_option(_without_option(argv, "--nproc"), "--params")
    params = ["--params", str(params_file)] if params_file else []
    # one job = one node: a standalone rendezvous on the job's node, one process per GPU the
    # job was given (the rule passes its GPU count as --nproc)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", "-m", "avfmae", *params, *rest]
    log.info("launching %s", " ".join(cmd))
    return subprocess.call(cmd)


def _without_option(argv: Sequence[str], option: str) -> list[str]:
    """``argv`` without ``option VALUE`` and ``option=VALUE``."""
    rest, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(f"{option}="):
            rest.append(arg)
    return rest


def _note_cpu_fallback(nproc: int) -> None:
    """One log line when GPU processes were asked for on a machine without CUDA."""
    import torch

    if not torch.cuda.is_available():
        log.warning("%d GPU process(es) requested but CUDA is not available on %s: running "
                    "%d CPU process(es) (gloo)", nproc, os.uname().nodename, nproc)


def _claim_checkout() -> None:
    """Refuse to start while another pipeline run writes this checkout (avfmae/lock.py)."""
    run = current_run()
    claim(run)
    if run.pid == os.getpid():  # run by hand: nothing else ends the claim
        atexit.register(release, run, LOCK_PATH.resolve())


def ablation_names() -> list[str]:
    from avfmae.eval.ablations import ABLATIONS

    return [a.name for a in ABLATIONS]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="avfmae",
        description="AVF-MAE++ audio-visual masked autoencoders for affective video analysis: "
                    "the pipeline stages download → index → preprocess → pretrain → "
                    "finetune (s1, s2, s3) → evaluate → report, and tools.",
    )
    parser.add_argument("--params", default=None, metavar="FILE",
                        help="params file, relative to the current folder (default: the "
                             "project's params.yaml)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging, and the traceback behind an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="<stage>")

    def add(name: str, func: Callable, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

    p = add("params", _cmd_params, "validate params.yaml (fails naming the bad key)")
    p.add_argument("--explain", action="store_true", help="list every key, its value and range")
    p = add("pipeline", _cmd_pipeline,
            "regenerate dvc.yaml and the Snakemake config schema from avfmae/pipeline.py")
    p.add_argument("--check", action="store_true", help="fail if a generated file is stale")
    p.add_argument("--stamp", default="", help="after the checks pass, write each stage's code "
                   "fingerprint into this folder (the dvc.yaml check stage)")
    add("datasets", _cmd_datasets, "list the dataset registry: task, labels, protocol, source")
    for name, func, help in (
        ("download", _cmd_download,
         "fetch (public), check (licensed, user-placed) or generate (synthetic) a dataset"),
        ("index", _cmd_index,
         "parse a dataset's layout into data/interim/<ds>/manifest.csv and splits.csv"),
        ("preprocess", _cmd_preprocess,
         "detect and crop faces, extract 16 kHz audio into data/processed/<ds>"),
    ):
        add(name, func, help).add_argument("dataset", help="registry name, e.g. synthetic")
    _add_resume(add("pretrain", _cmd_pretrain,
                    "self-supervised audio-visual pretraining of model.scale on the pool"))
    p = add("finetune", _cmd_finetune,
            "one progressive fine-tuning stage (s1 pooled, s2 frozen encoders, s3 full)")
    p.add_argument("--stage", required=True, choices=["s1", "s2", "s3"])
    p.add_argument("--dataset", required=True)
    p.add_argument("--fold", required=True, type=int)
    _add_resume(p)
    p = add("evaluate", _cmd_evaluate,
            "evaluate the selected model once on the fold's test split (deterministic views)")
    p.add_argument("--dataset", required=True)
    p.add_argument("--fold", required=True, type=int)
    _add_nproc(p)
    add("report", _cmd_report, "tables across folds and datasets, plots, reports/report.md")
    p = add("ablate", _cmd_ablate,
            "queue the ablation set behind the paper's claims as DVC experiments "
            "(<config>-seed<k>), or list it")
    p.add_argument("action", choices=["queue", "list"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0], metavar="K",
                   help="seeds (pretrain.seed and finetune.seed alike; default: 0)")
    p.add_argument("--set", nargs="+", metavar="NAME", default=None, choices=ablation_names(),
                   help="configurations to queue (default: all; see `avfmae ablate list`)")
    p = add("claims", _cmd_claims,
            "table the paper's claims from the finished ablation experiments: "
            "reports/claims.md, metrics/claims.json, plots/claims/")
    p = add("probe", _cmd_probe,
            "linear probe of the frozen encoders on held-out speakers, pretrained against "
            "random init: reports/probe.md, metrics/probe.json")
    p.add_argument("--dataset", default=None,
                   help="labeled dataset (default: the first of data.datasets)")
    p.add_argument("--encoder", default=None,
                   help="pretrained encoder (default: the pretrain stage's output)")
    p = add("convert", _cmd_convert,
            "map a published AVF-MAE++ checkpoint onto avfmae's modules")
    p.add_argument("src", help="published checkpoint ({'model': state_dict})")
    p.add_argument("dst", help="output .safetensors")
    p.add_argument("--scale", default=None,
                   help="registered scale the checkpoint has, or whose sizes --size changes "
                        "(default: the registered scale matching the tensor shapes)")
    p.add_argument("--size", type=_scale_field, action="append", default=[],
                   metavar="FIELD=VALUE",
                   help="a size of the checkpoint that differs from --scale's, named as in "
                        "model.overrides (repeatable), e.g. --size embed_dim=48 --size "
                        "num_heads=3 --size skip_layers=[0,2,3]")
    p = add("predict", _cmd_predict,
            "apply a fine-tuned model to your own videos: one prediction per clip and a "
            "per-window timeline (needs no params.yaml: the checkpoint carries its settings)")
    p.add_argument("inputs", nargs="+", metavar="VIDEO_OR_FOLDER",
                   help="video files, or folders searched recursively for video files")
    p.add_argument("--model", required=True,
                   help="fine-tuned checkpoint (.safetensors) or its run folder, e.g. "
                        "models/finetune/synthetic/fold1 (its last stage's best weights)")
    p.add_argument("--out", default="predictions.csv",
                   help="per-clip table (default: %(default)s); <stem>.json and "
                        "<stem>.timeline.csv are written beside it")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--batch-size", type=int, default=16, metavar="N",
                   help="windows per forward pass (default: %(default)s)")
    p.add_argument("--hop", type=float, default=None, metavar="SECONDS",
                   help="most seconds between window starts on long videos (default: one "
                        "window, 2.56 s at the published geometry)")
    p.add_argument("--workers", type=int, default=0, metavar="N",
                   help="preprocessing and window-loading processes; 0 = all cores (default)")
    p.add_argument("--plot", action="store_true",
                   help="also write one timeline PNG per clip into <stem>.timeline/")
    return parser


def find_project_root(start: Path) -> Path:
    """The nearest folder from ``start`` up that holds ``params.yaml`` (``dvc.yaml`` is
    generated from it, so a project may not have one yet)."""
    for folder in (start, *start.parents):
        if (folder / PROJECT_FILE).is_file():
            return folder
    raise UserError(f"not inside an avfmae project: no folder from {start} up holds "
                    f"{PROJECT_FILE}")


def _enter_project(args: argparse.Namespace) -> Path:
    """Change into the project root; returns the params file to read (``--params`` is
    relative to the folder the command was started in)."""
    here = Path.cwd()
    root = find_project_root(here)
    os.chdir(root)
    return here / args.params if args.params else root / "params.yaml"


def _log_file(args: argparse.Namespace) -> Path:
    key = "_".join(str(getattr(args, k)) for k in ("stage", "dataset", "fold") if
                   getattr(args, k, None) is not None) or args.command
    return Path("logs") / args.command / f"{key}.log"


def _use_handler(handler: logging.Handler) -> None:
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    _handlers.append(handler)


def _log_to_stderr(verbose: bool) -> None:
    root = logging.getLogger()
    for old in _handlers:  # an earlier main() in this process
        root.removeHandler(old)
        old.close()
    _handlers.clear()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    if not verbose:  # -v shows the tracebacks behind one-line errors
        handler.addFilter(lambda record: not getattr(record, "file_only", False))
    _use_handler(handler)


def _log_to_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _use_handler(logging.FileHandler(path))


def _run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    params, params_file = None, None
    if args.command not in STANDALONE:
        params_file = _enter_project(args)
        if args.command in PIPELINE_STAGES:
            _log_to_file(_log_file(args))
        params = load_params(params_file)
    if args.command in PIPELINE_STAGES and "LOCAL_RANK" not in os.environ:
        _claim_checkout()
    relaunched = _relaunch_under_torchrun(args, argv, params_file)
    if relaunched is not None:
        return relaunched
    args.func(args, params)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``avfmae`` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    _log_to_stderr(args.verbose)
    try:
        return _run(args, argv)
    except UserError as err:
        log.error("%s", err, exc_info=True, extra=_FILE_ONLY)
        print(f"avfmae {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        print(f"avfmae {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception:
        # Python prints the traceback on stderr; the stage log would otherwise lack it
        log.critical("unexpected error", exc_info=True, extra=_FILE_ONLY)
        raise


if __name__ == "__main__":
    sys.exit(main())
