"""Planning and writing the synthetic dataset: RAVDESS-like layout, process pool, atomic output.

Layout under ``out_dir``::

    labeled/Actor_XX/01-01-EE-01-SS-RR-XX.mp4   labeled clips (EE = class code, see classes.py)
    pool/Actor_YY/01-01-00-01-SS-RR-YY.mp4      unlabeled pretraining pool (EE = 00)
    synthetic.json                              version, config, class table, actors, counts

RAVDESS fields: modality 01 (audio-visual), vocal channel 01 (speech), emotion EE, intensity 01,
statement SS (01/02), repetition RR, actor (2 digits). Pool actors are numbered after the
labeled ones. Clip ``k`` (0-based) of a speaker/class says statement ``k % 2 + 1`` in repetition
``k // 2 + 1``.

The whole tree is built in a sibling folder ``.<name>.partial`` and renamed into place at the end,
so ``out_dir`` exists only when complete; an interrupted run resumes from the clips already in
the partial folder (each clip is itself written under a temporary name). A complete ``out_dir``
whose ``synthetic.json`` matches the config and generator version is left untouched.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from avfmae.progress import progress as progress_bar

from ...config import ConfigError, SyntheticConfig
from ...io import atomic_write_text
from .classes import (
    CLASSES,
    FACE_PATTERNS,
    POOL_CODE,
    VOICE_PATTERNS,
    audio_only_pairs,
    class_table,
    video_only_pairs,
)
from .encode import encode_batch, ffmpeg_binary, stage_clip
from .face import FaceRenderer, face_track
from .identity import sample_identity
from .voice import STATEMENTS, synthesize

__all__ = [
    "GENERATOR_VERSION",
    "MANIFEST",
    "ClipSpec",
    "clip_name",
    "plan",
    "render_batch",
    "render_clip",
    "synthesize_clip",
    "manifest",
    "generate",
]

GENERATOR_VERSION = "1.0.0"
MANIFEST = "synthetic.json"
_FINGERPRINT = ".fingerprint.json"
MAX_ACTOR = 99  # actor numbers are two digits
_MAX_BATCH = 8  # clips per ffmpeg process


def clip_name(code: int, statement: int, repetition: int, actor: int) -> str:
    """RAVDESS-style file name ``01-01-EE-01-SS-RR-XX.mp4``."""
    return f"01-01-{code:02d}-01-{statement:02d}-{repetition:02d}-{actor:02d}.mp4"


@dataclass(frozen=True)
class ClipSpec:
    """One clip to generate. ``class_index`` is also set (hidden) for pool clips."""

    actor: int
    class_index: int
    labeled: bool
    statement: int
    repetition: int

    @property
    def code(self) -> int:
        return CLASSES[self.class_index].code if self.labeled else POOL_CODE

    @property
    def relpath(self) -> str:
        split = "labeled" if self.labeled else "pool"
        name = clip_name(self.code, self.statement, self.repetition, self.actor)
        return f"{split}/Actor_{self.actor:02d}/{name}"


def _check(cfg: SyntheticConfig) -> None:
    where = "data.synthetic"
    if cfg.n_speakers + cfg.n_pool_speakers > MAX_ACTOR:
        raise ConfigError(
            f"{where}.n_pool_speakers: n_speakers + n_pool_speakers = "
            f"{cfg.n_speakers + cfg.n_pool_speakers} is out of range; actor numbers have two "
            f"digits, so at most {MAX_ACTOR} actors in all"
        )
    if cfg.frame_size % 2:
        raise ConfigError(f"{where}.frame_size: {cfg.frame_size} must be even (yuv420p video)")
    if (cfg.clips_per_class + 1) // 2 > 99 or (cfg.pool_clips_per_speaker + 1) // 2 > 99:
        raise ConfigError(f"{where}.pool_clips_per_speaker: too many clips for a 2-digit "
                          "repetition number (at most 198)")


def class_indices(codes: Sequence[int] | None) -> list[int]:
    """Positions in ``CLASSES`` of the emotion ``codes`` (all classes for ``None``)."""
    if codes is None:
        return list(range(len(CLASSES)))
    known = {c.code: i for i, c in enumerate(CLASSES)}
    unknown = [c for c in codes if c not in known]
    if unknown:
        raise ConfigError(f"emotion codes {unknown} are not in the class table {sorted(known)}")
    return sorted(known[c] for c in codes)


def plan(cfg: SyntheticConfig, codes: Sequence[int] | None = None) -> list[ClipSpec]:
    """Every clip of the dataset, labeled first, in a fixed order; ``codes`` restricts the
    labeled clips to those emotion codes."""
    _check(cfg)
    specs = []
    for actor in range(1, cfg.n_speakers + 1):
        for ci in class_indices(codes):
            for k in range(cfg.clips_per_class):
                specs.append(ClipSpec(actor, ci, True, k % 2 + 1, k // 2 + 1))
    for actor in range(cfg.n_speakers + 1, cfg.n_speakers + cfg.n_pool_speakers + 1):
        # each pool speaker shows every hidden class equally often, in a speaker-specific order
        order = np.random.default_rng(np.random.SeedSequence([cfg.seed, 3, actor])).permutation(
            len(CLASSES))
        for k in range(cfg.pool_clips_per_speaker):
            specs.append(ClipSpec(actor, int(order[k % len(CLASSES)]), False, k % 2 + 1,
                                  k // 2 + 1))
    return specs


def n_frames(cfg: SyntheticConfig) -> int:
    return max(1, int(round(cfg.duration_s * cfg.fps)))


def synthesize_clip(cfg: SyntheticConfig, spec: ClipSpec) -> tuple[Iterator[np.ndarray],
                                                                    np.ndarray]:
    """The frames (a lazy iterator of RGB uint8 arrays) and audio samples of one clip.

    Deterministic in ``cfg.seed`` and ``spec``: the identity comes from (seed, actor), the scene
    (background and hair texture) from (seed, actor), the performance from the whole spec.
    """
    cv2.setNumThreads(1)
    ident = sample_identity(cfg.seed, spec.actor)
    emotion = CLASSES[spec.class_index]
    clip_seq = np.random.SeedSequence(
        [cfg.seed, 2, spec.actor, spec.class_index, int(spec.labeled), spec.statement,
         spec.repetition])
    voice_rng, face_rng = (np.random.default_rng(s) for s in clip_seq.spawn(2))
    scene_rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 4, spec.actor]))
    nf = n_frames(cfg)
    utt = synthesize(ident, emotion.voice, spec.statement, voice_rng, nf, cfg.fps,
                     cfg.sample_rate)
    track = face_track(face_rng, nf, cfg.fps, utt.jaw, emotion.face.sway, ident.tilt_side)
    renderer = FaceRenderer(ident, cfg.frame_size, scene_rng)
    frames = (renderer.frame(track, i, emotion.face) for i in range(nf))
    return frames, utt.audio


def render_batch(cfg: SyntheticConfig, specs: Sequence[ClipSpec], outs: Sequence[Path]) -> None:
    """Synthesize ``specs`` and encode them to ``outs`` with one ffmpeg call."""
    with tempfile.TemporaryDirectory(prefix="avfmae-syn-") as tmp:
        staged = []
        for i, (spec, out) in enumerate(zip(specs, outs)):
            frames, audio = synthesize_clip(cfg, spec)
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            staged.append(stage_clip(frames, audio, cfg.sample_rate, Path(tmp), Path(out), i))
        encode_batch(staged, size=cfg.frame_size, fps=cfg.fps, sample_rate=cfg.sample_rate)


def render_clip(cfg: SyntheticConfig, spec: ClipSpec, out: Path) -> Path:
    """Synthesize and encode one clip to ``out``."""
    render_batch(cfg, [spec], [Path(out)])
    return Path(out)


def manifest(cfg: SyntheticConfig, codes: Sequence[int] | None = None) -> dict:
    """The content of ``synthetic.json`` (no timestamps: same config → same bytes)."""
    specs = plan(cfg, codes)
    kept = {CLASSES[i].code for i in class_indices(codes)}
    labeled = sorted({s.actor for s in specs if s.labeled})
    pool = sorted({s.actor for s in specs if not s.labeled})
    return {
        "generator": "avfmae.data.synthetic",
        "version": GENERATOR_VERSION,
        "config": dataclasses.asdict(cfg),
        "layout": {
            "labeled": "labeled/Actor_XX/01-01-EE-01-SS-RR-XX.mp4",
            "pool": "pool/Actor_YY/01-01-00-01-SS-RR-YY.mp4",
            "fields": ["modality", "vocal_channel", "emotion", "intensity", "statement",
                       "repetition", "actor"],
            "pool_code": POOL_CODE,
        },
        "classes": [
            {**row,
             "face": FACE_PATTERNS[row["face_pattern"]].description,
             "voice": VOICE_PATTERNS[row["voice_pattern"]].description}
            for row in class_table() if row["code"] in kept
        ],
        "separable_only_by_audio": [list(p) for p in audio_only_pairs()],
        "separable_only_by_video": [list(p) for p in video_only_pairs()],
        "statements": {f"{k:02d}": len(v) for k, v in STATEMENTS.items()},
        "labeled_actors": labeled,
        "pool_actors": pool,
        "n_labeled_clips": sum(s.labeled for s in specs),
        "n_pool_clips": sum(not s.labeled for s in specs),
        "video": {"codec": "h264", "pix_fmt": "yuv420p", "fps": cfg.fps,
                  "width": cfg.frame_size, "height": cfg.frame_size, "frames": n_frames(cfg)},
        "audio": {"codec": "aac", "sample_rate": cfg.sample_rate, "channels": 1},
    }


def _dump(obj: dict) -> str:
    return json.dumps(obj, indent=2, sort_keys=False) + "\n"


def _is_complete(out_dir: Path, expected: dict) -> bool:
    try:
        return json.loads((out_dir / MANIFEST).read_text()) == expected
    except (OSError, ValueError):
        return False


def _source_hash() -> str:
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _worker(args: tuple[SyntheticConfig, list[ClipSpec], list[str]]) -> int:
    cfg, specs, outs = args
    render_batch(cfg, specs, [Path(o) for o in outs])
    return len(specs)


def generate(cfg: SyntheticConfig, out_dir: Path, workers: int = 0, progress: bool = True,
             codes: Sequence[int] | None = None) -> Path:
    """Generate the synthetic dataset into ``out_dir`` and return it.

    ``workers``: processes (0 = all cores, 1 = in this process). Deterministic: the same ``cfg``
    gives byte-identical files whatever ``workers`` is. Idempotent: a complete ``out_dir`` for
    the same config is kept as is; an interrupted run resumes.
    """
    out_dir = Path(out_dir)
    expected = manifest(cfg, codes)  # validates cfg before any work
    if _is_complete(out_dir, expected):
        return out_dir
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / MANIFEST).is_file():
        raise FileExistsError(
            f"{out_dir} exists and is not a synthetic dataset (no {MANIFEST}); refusing to "
            "replace it: remove it or choose another folder")
    ffmpeg_binary()
    partial = out_dir.with_name(f".{out_dir.name}.partial")
    # resume only clips made by this very code and config
    fingerprint = _dump({"version": GENERATOR_VERSION, "config": expected["config"],
                         "classes": expected["classes"], "source": _source_hash()})
    fp_file = partial / _FINGERPRINT
    if partial.exists() and not (fp_file.is_file() and fp_file.read_text() == fingerprint):
        shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    fp_file.write_text(fingerprint)
    for stale in partial.rglob("*.part"):
        stale.unlink()

    todo = [s for s in plan(cfg, codes) if not (partial / s.relpath).is_file()]
    n_workers = workers or len(os.sched_getaffinity(0))
    n_workers = max(1, min(n_workers, len(todo)))
    # batches share one ffmpeg process; small enough to keep every worker busy to the end
    size = max(1, min(_MAX_BATCH, -(-len(todo) // (3 * n_workers))))
    jobs = [(cfg, todo[i : i + size], [str(partial / s.relpath) for s in todo[i : i + size]])
            for i in range(0, len(todo), size)]
    bar = progress_bar(len(todo), "synthetic", unit="clip", disable=not progress)
    try:
        if n_workers == 1:
            for job in jobs:
                bar.update(_worker(job))
        else:
            # fork: workers only run numpy/OpenCV/ffmpeg, and unlike spawn it works from a
            # script without a ``__main__`` guard
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
            with ProcessPoolExecutor(n_workers, mp_context=ctx) as pool:
                futures = [pool.submit(_worker, job) for job in jobs]
                try:
                    for fut in as_completed(futures):
                        bar.update(fut.result())  # re-raises a worker's error
                except BaseException:
                    for fut in futures:
                        fut.cancel()
                    raise
    finally:
        bar.close()

    fp_file.unlink()
    atomic_write_text(partial / MANIFEST, _dump(expected))
    old = out_dir.with_name(f".{out_dir.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if out_dir.exists():
        os.replace(out_dir, old)
    os.replace(partial, out_dir)
    shutil.rmtree(old, ignore_errors=True)
    return out_dir
