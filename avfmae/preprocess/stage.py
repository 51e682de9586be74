"""The preprocess stage: index manifest → clip store (face clips, WAVs, processed manifest).

Layout of ``{data.root}/processed/{ds}/``::

    faces/{clip_id}.mp4   face-cropped H.264, face_size², constant fps
    audio/{clip_id}.wav   mono 16-bit PCM, sample 0 = face frame 0, n_frames / fps long
    manifest.csv          input columns (video/audio → processed paths) + src_* + stats
    rejects.csv           clip_id, reason, detail, video
    fingerprint.json      settings fingerprint, full settings, inputs, outcome (written last)

Everything in the store is a deterministic function of the inputs and settings (no logs or
timings in it), so an identical rerun gives byte-identical files. The run's log goes to the
``avfmae.preprocess`` logger and, with ``log_file``, to a file (``preprocess()`` uses
``logs/preprocess/{ds}.clips.log``) together with one line per clip.

Resumable: each finished clip's outputs are renamed into place and then a line is appended to
``.work/done.jsonl``; a rerun skips every clip with a record, so a killed run continues where it
stopped and a half-written clip (temp name, no record) is redone. ``.work/fingerprint`` guards
the partial work: when the settings change it is discarded, never mixed. The final files are
written last, atomically; ``.work`` is removed when the stage succeeds. A completed store whose
fingerprint and input manifest match is returned at once; with the same settings but a changed
manifest only new or changed clips are processed. The stage (:func:`preprocess`) builds the
store in ``runs/preprocess/{ds}/`` and moves it into place when complete, because both
orchestrators delete the output folder before they run a stage: a killed run then resumes
under ``dvc repro`` and Snakemake too.
"""

from __future__ import annotations

import concurrent.futures as cf
import fcntl
import hashlib
import json
import logging
import multiprocessing as mp
import os
import shutil
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
from avfmae.progress import progress as progress_bar

from avfmae import pipeline
from avfmae.config import Params, PreprocessConfig
from avfmae.errors import UserError
from avfmae.io import atomic_write_text

from .clip import ClipJob, ClipResult
from .schema import INPUT, PROCESSED, REJECTS, validate
from .settings import Settings, fingerprint
from .worker import WORKER_MODULES, guarded, init_worker, one_thread, run_job, stage_identity

__all__ = ["preprocess", "preprocess_manifest", "PreprocessError", "worker_count", "execute_jobs"]

log = logging.getLogger("avfmae.preprocess")  # summary lines (propagate to the CLI's log)
clip_log = logging.getLogger("avfmae.preprocess.clips")  # one line per clip: the log file only
clip_log.propagate = False

STAT_COLUMNS = [
    "n_frames", "fps", "duration_s", "audio_s", "src_width", "src_height", "src_fps",
    "face_rate", "box_cx", "box_cy", "box_size", "box_jitter", "roll_deg",
    "face_conf", "face_jump",
]


class PreprocessError(UserError):
    """Too many clips were rejected (the message summarises why and where to look)."""


def worker_count(workers: int) -> int:
    """``preprocess.workers`` → process count (0 = every core this process may use)."""
    if workers > 0:
        return workers
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def preprocess(ds: str, params: Params, *, progress: bool = True) -> Path:
    """Run the stage for dataset ``ds``; returns ``{data.root}/processed/{ds}``.

    The summary goes to the ``avfmae.preprocess`` logger (the CLI's ``logs/preprocess/{ds}.log``
    and stderr); the per-clip lines (timings, each reject, tracebacks) to
    ``logs/preprocess/{ds}.clips.log``.
    """
    manifest = pipeline.path("index", "index", params, ds=ds) / "manifest.csv"
    if not manifest.is_file():
        raise UserError(f"{manifest}: no index manifest; run `avfmae index {ds}` first")
    return preprocess_manifest(
        manifest, pipeline.path("preprocess", "clips", params, ds=ds), params.preprocess,
        name=ds, progress=progress, log_file=Path("logs") / "preprocess" / f"{ds}.clips.log",
        staging=pipeline.path("preprocess", "run", params, ds=ds),
    )


# ----------------------------------------------------------------------------------------------
# small file helpers
# ----------------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "w")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise UserError(f"{path.parent.parent}: another preprocess run is working here") from None
    try:
        yield
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


@contextmanager
def _stage_log(path: Path | None) -> Iterator[None]:
    """Send the summary (INFO+) and every per-clip line to ``path`` for the stage's duration."""
    old_level = log.level
    log.setLevel(logging.INFO)
    clip_log.setLevel(logging.DEBUG)
    handler = None
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        clip_log.addHandler(handler)
    try:
        yield
    finally:
        log.setLevel(old_level)
        if handler is not None:
            log.removeHandler(handler)
            clip_log.removeHandler(handler)
            handler.close()


# ----------------------------------------------------------------------------------------------
# the stage
# ----------------------------------------------------------------------------------------------


def _read_manifest(path: Path) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, dtype={"clip_id": str, "video": str, "audio": str})
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: cannot read the manifest: {err}") from None
    if "audio" not in df.columns:
        df["audio"] = ""
    df["audio"] = df["audio"].fillna("")
    validate(INPUT, df, str(path))
    if df.empty:
        raise UserError(f"{path}: the manifest lists no clips")
    return df


def _discard(out: Path) -> None:
    """Remove every output and all partial work (the log and the held lock file stay)."""
    for name in ("faces", "audio"):
        shutil.rmtree(out / name, ignore_errors=True)
    work = out / ".work"
    if work.is_dir():
        for f in work.iterdir():
            if f.name != "lock":
                shutil.rmtree(f) if f.is_dir() else f.unlink()
    for name in ("manifest.csv", "rejects.csv", "fingerprint.json"):
        (out / name).unlink(missing_ok=True)


def _record(res: ClipResult, job: ClipJob) -> dict[str, Any]:
    return {
        "clip_id": res.clip_id,
        "video": job.video,
        "audio": job.audio,
        "ok": res.ok,
        "reason": res.reason,
        "detail": res.detail,
        "stats": res.stats,
    }


def _previous_records(out: Path, fp: str, final_ok: bool) -> dict[str, dict]:
    """Records of clips already done under fingerprint ``fp`` (final store, then the work log)."""
    recs: dict[str, dict] = {}
    if final_ok:
        for name, ok in (("manifest.csv", True), ("rejects.csv", False)):
            p = out / name
            if not p.is_file():
                continue
            df = pd.read_csv(p, dtype=str, keep_default_na=False)
            for row in df.to_dict("records"):
                if ok:
                    stats = {c: row[c] for c in STAT_COLUMNS if c in row}
                    recs[row["clip_id"]] = {
                        "clip_id": row["clip_id"], "video": row["src_video"],
                        "audio": row["src_audio"], "ok": True, "reason": "", "detail": "",
                        "stats": stats,
                    }
                else:
                    recs[row["clip_id"]] = {
                        "clip_id": row["clip_id"], "video": row["video"], "audio": None,
                        "ok": False, "reason": row["reason"], "detail": row["detail"], "stats": {},
                    }
    done = out / ".work" / "done.jsonl"
    if done.is_file():
        for line in done.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:  # a line torn by a kill
                continue
            recs[rec["clip_id"]] = rec
    return recs


def _still_valid(rec: dict | None, job: ClipJob) -> bool:
    if rec is None or rec["video"] != job.video:
        return False
    if rec["audio"] is not None and rec["audio"] != job.audio:
        return False
    if rec["ok"]:
        return os.path.isfile(job.face_out) and os.path.isfile(job.wav_out)
    return rec["reason"] not in ("error", "worker_crash")  # retry those on a rerun


def preprocess_manifest(
    manifest: Path,
    out: Path,
    cfg: PreprocessConfig,
    *,
    name: str = "",
    progress: bool = True,
    log_file: str | Path | None = None,
    staging: Path | None = None,
) -> Path:
    """Build the clip store ``out`` from the index manifest ``manifest`` (see module doc).

    ``log_file``: where the summary and the per-clip lines are appended (none: the summary
    only reaches the ``avfmae.preprocess`` logger's usual handlers). ``staging``: build the
    store there and move it to ``out`` when complete. DVC and Snakemake delete a stage's
    declared output before running it, so partial work kept inside ``out`` would be lost to a
    kill; in ``staging`` (under ``runs/``, which neither deletes) a rerun resumes it.
    """
    manifest, out = Path(manifest), Path(out)
    name = name or out.name
    settings = Settings.from_config(cfg)
    fp, desc = fingerprint(settings)
    df = _read_manifest(manifest)
    in_sha = _sha256(manifest)

    final = _read_json(out / "fingerprint.json")
    if (
        final
        and final.get("fingerprint") == fp
        and final.get("inputs", {}).get("sha256") == in_sha
        and final.get("policy", {}).get("max_reject_fraction") == cfg.max_reject_fraction
        and (out / "manifest.csv").is_file()
        and not (out / ".work").exists()
    ):
        with _stage_log(Path(log_file) if log_file else None):
            log.info("preprocess %s: up to date (fingerprint %s)", name, fp)
        return out

    build = staging or out
    if build != out and not build.exists() and (out / "fingerprint.json").is_file():
        # a complete store of other inputs or settings: _run reuses its still-valid clips
        build.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(out, build)
    build.mkdir(parents=True, exist_ok=True)
    with _locked(build / ".work" / "lock"), _stage_log(Path(log_file) if log_file else None):
        _run(df, manifest, in_sha, build, cfg, settings, fp, desc, name, progress, store=out)
    if build != out:
        shutil.rmtree(out, ignore_errors=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(build, out)
    return out


def _run(
    df: pd.DataFrame, manifest: Path, in_sha: str, out: Path, cfg: PreprocessConfig,
    settings: Settings, fp: str, desc: dict, name: str, progress: bool, store: Path,
) -> None:
    t0 = time.perf_counter()
    work = out / ".work"
    final = _read_json(out / "fingerprint.json")
    final_ok = bool(final and final.get("fingerprint") == fp)
    if final and not final_ok:
        log.info("settings changed (%s → %s): discarding the previous store",
                 final.get("fingerprint"), fp)
        _discard(out)
    wfp = _read_json(work / "fingerprint.json")
    if wfp and wfp.get("fingerprint") != fp:
        log.info("settings changed (%s → %s): discarding partial work", wfp.get("fingerprint"), fp)
        for sub in ("faces", "audio"):
            shutil.rmtree(out / sub, ignore_errors=True)
        (work / "done.jsonl").unlink(missing_ok=True)
        final_ok = False
    for sub in ("faces", "audio"):
        (out / sub).mkdir(parents=True, exist_ok=True)
        for stray in (out / sub).glob(".*.tmp*"):  # temp files of a killed run
            stray.unlink(missing_ok=True)
    work.mkdir(exist_ok=True)
    atomic_write_text(work / "fingerprint.json", json.dumps({"fingerprint": fp}))

    jobs = [
        ClipJob(
            clip_id=r.clip_id, video=r.video, audio=r.audio,
            face_out=str(out / "faces" / f"{r.clip_id}.mp4"),
            wav_out=str(out / "audio" / f"{r.clip_id}.wav"),
        )
        for r in df[["clip_id", "video", "audio"]].itertuples(index=False)
    ]
    prev = _previous_records(out, fp, final_ok)
    records: dict[str, dict] = {}
    todo: list[ClipJob] = []
    for job in jobs:
        rec = prev.get(job.clip_id)
        if _still_valid(rec, job):
            rec["audio"] = job.audio
            records[job.clip_id] = rec
        else:
            todo.append(job)
    # rewrite the work log with exactly the records kept (drops a line torn by a kill)
    atomic_write_text(
        work / "done.jsonl",
        "".join(json.dumps(records[j.clip_id], sort_keys=True) + "\n"
                for j in jobs if j.clip_id in records),
    )

    n_workers = min(worker_count(cfg.workers), max(1, len(todo)))
    log.info(
        "preprocess %s: %d clips, %d already done, %d to do, %d worker(s), fingerprint %s",
        name, len(jobs), len(records), len(todo), n_workers, fp,
    )
    clip_log.info("settings: %s", json.dumps(desc, sort_keys=True))

    cpu = 0.0
    media_s = 0.0
    if todo:
        with open(work / "done.jsonl", "a") as done_fh, progress_bar(
            len(jobs), f"preprocess {name}", initial=len(records), unit="clip",
            disable=not progress, smoothing=0.05,
        ) as bar:
            n_rej = sum(not r["ok"] for r in records.values())
            n_err = 0
            for job, res in execute_jobs(todo, settings, n_workers):
                rec = _record(res, job)
                done_fh.write(json.dumps(rec, sort_keys=True) + "\n")
                done_fh.flush()
                records[job.clip_id] = rec
                timing = dict(res.timing)
                tb = timing.pop("traceback", None)
                if res.ok:
                    cpu += float(timing.get("total", 0.0))
                    media_s += float(res.stats.get("duration_s", 0.0))
                    clip_log.info("clip %s ok %s", job.clip_id, json.dumps(timing, sort_keys=True))
                else:
                    n_rej += 1
                    clip_log.warning("clip %s rejected: %s: %s", job.clip_id, res.reason,
                                     res.detail)
                    if tb:
                        (log if n_err == 0 else clip_log).error(
                            "clip %s failed unexpectedly:\n%s", job.clip_id, tb)
                        n_err += 1
                bar.update(1)
                bar.set_postfix(rejected=n_rej, refresh=False)

    _finish(df, jobs, records, manifest, in_sha, out, store, cfg, fp, desc, name, t0, cpu,
            media_s)


def execute_jobs(todo: list[ClipJob], settings: Settings, n_workers: int):
    """Yield ``(job, result)`` as clips finish; inline for one worker, else a process pool."""
    if n_workers <= 1:
        one_thread()
        for job in todo:
            yield job, guarded(job, settings)
        return
    crashes: Counter[str] = Counter()
    queue = list(reversed(todo))
    while queue:
        # forkserver: one clean process imports the worker modules once, workers fork from it
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(WORKER_MODULES)
        pool = cf.ProcessPoolExecutor(
            n_workers, mp_context=ctx, initializer=init_worker,
            initargs=(settings, *stage_identity()),
        )
        pending: dict[cf.Future, ClipJob] = {}
        broken = False
        try:
            while queue or pending:
                while queue and len(pending) < 2 * n_workers:
                    job = queue.pop()
                    pending[pool.submit(run_job, job)] = job
                finished, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                for fut in finished:
                    job = pending.pop(fut)
                    try:
                        res = fut.result()
                    except cf.process.BrokenProcessPool:
                        broken = True
                        pending[fut] = job
                        break
                    yield job, res
                if broken:
                    break
        finally:
            pool.shutdown(wait=not broken, cancel_futures=True)
        if broken:
            # every clip that was in flight is suspect; retry each, give up after two crashes
            for job in pending.values():
                crashes[job.clip_id] += 1
                if crashes[job.clip_id] >= 2:
                    yield job, ClipResult(job.clip_id, False, "worker_crash",
                                          "the worker process died while processing this clip")
                else:
                    queue.append(job)
            log.warning("a worker process died; restarting the pool (%d clips requeued)",
                        len(pending))


def _finish(
    df: pd.DataFrame, jobs: list[ClipJob], records: dict[str, dict], manifest: Path, in_sha: str,
    out: Path, store: Path, cfg: PreprocessConfig, fp: str, desc: dict, name: str, t0: float,
    cpu: float, media_s: float,
) -> None:
    order = [j.clip_id for j in jobs]
    ok_ids = [c for c in order if records[c]["ok"]]
    rej_ids = [c for c in order if not records[c]["ok"]]

    rejects = pd.DataFrame(
        [
            {"clip_id": c, "reason": records[c]["reason"], "detail": records[c]["detail"],
             "video": records[c]["video"]}
            for c in rej_ids
        ],
        columns=["clip_id", "reason", "detail", "video"],
    )
    rejects = validate(REJECTS, rejects, "rejects")
    atomic_write_text(out / "rejects.csv", rejects.to_csv(index=False))

    reasons = Counter(records[c]["reason"] for c in rej_ids)
    frac = len(rej_ids) / len(order)
    elapsed = time.perf_counter() - t0
    if cpu > 0:
        log.info(
            "processed %.1f s of media in %.1f CPU s (%.1fx real time per core), %.1f s wall",
            media_s, cpu, media_s / cpu, elapsed,
        )
    if rej_ids:
        log.warning("%d of %d clips rejected (%s); see %s", len(rej_ids), len(order),
                    ", ".join(f"{r} {n}" for r, n in reasons.most_common()), out / "rejects.csv")
    if frac > cfg.max_reject_fraction:
        summary = ", ".join(f"{r} {n}" for r, n in reasons.most_common())
        examples = "; ".join(
            f"{c}: {records[c]['reason']} ({records[c]['detail']})" for c in rej_ids[:3]
        )
        msg = (
            f"preprocess {name}: {len(rej_ids)} of {len(order)} clips rejected "
            f"({frac:.0%} > preprocess.max_reject_fraction {cfg.max_reject_fraction:.0%}): "
            f"{summary}. Examples: {examples}. Every reject is listed in {out / 'rejects.csv'}; "
            f"fix those inputs or raise preprocess.max_reject_fraction."
        )
        log.error(msg)
        # keep every record for the next run, and leave nothing that looks complete
        (out / ".work").mkdir(exist_ok=True)
        atomic_write_text(
            out / ".work" / "done.jsonl",
            "".join(json.dumps(records[c], sort_keys=True) + "\n" for c in order),
        )
        (out / "fingerprint.json").unlink(missing_ok=True)
        (out / "manifest.csv").unlink(missing_ok=True)
        raise PreprocessError(msg)

    src = df.set_index("clip_id").loc[ok_ids].reset_index()
    rows = src.copy()
    rows["src_video"] = src["video"]
    rows["src_audio"] = src["audio"]
    rows["video"] = [str(store / "faces" / f"{c}.mp4") for c in ok_ids]
    rows["audio"] = [str(store / "audio" / f"{c}.wav") for c in ok_ids]
    stats = pd.DataFrame([records[c]["stats"] for c in ok_ids], columns=STAT_COLUMNS)
    for col in STAT_COLUMNS:
        rows[col] = stats[col].to_numpy()
    rows = validate(PROCESSED, rows, "processed manifest")
    if rows.empty:
        raise PreprocessError(
            f"preprocess {name}: every clip was rejected; see {out / 'rejects.csv'}"
        )

    # drop outputs of clips that are no longer in the manifest (or now rejected)
    keep = set(ok_ids)
    for sub, ext in (("faces", ".mp4"), ("audio", ".wav")):
        for f in (out / sub).iterdir():
            if f.suffix == ext and f.stem not in keep:
                f.unlink()

    atomic_write_text(out / "manifest.csv", rows.to_csv(index=False))
    info = {
        "fingerprint": fp,
        "settings": desc,
        "policy": {"max_reject_fraction": cfg.max_reject_fraction},
        "inputs": {"manifest": str(manifest), "sha256": in_sha, "n_clips": len(order)},
        "outputs": {
            "n_clips": len(ok_ids),
            "n_rejected": len(rej_ids),
            "reject_reasons": dict(sorted(reasons.items())),
            "media_seconds": round(float(rows["duration_s"].sum()), 3),
        },
    }
    atomic_write_text(out / "fingerprint.json", json.dumps(info, indent=2, sort_keys=True) + "\n")
    shutil.rmtree(out / ".work", ignore_errors=True)
    log.info(
        "preprocess %s done: %d clips, %d rejected (%s) in %.1f s → %s",
        name, len(ok_ids), len(rej_ids), dict(reasons), elapsed, store,
    )
