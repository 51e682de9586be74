"""The preprocess stage: face crops, A/V alignment, bad inputs, resumability, fingerprint."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from avfmae.config import Params, PreprocessConfig
from avfmae.errors import UserError
from avfmae.preprocess import (
    PreprocessError,
    Settings,
    fingerprint,
    preprocess,
    preprocess_manifest,
)
from avfmae.preprocess import clip as clip_mod
from avfmae.preprocess.testclips import SKIN_RGB, make_clip
from clip_frames import rgb_frames

REPO = Path(__file__).resolve().parents[1]


def _manifest(path: Path, rows: list[dict]) -> Path:
    full = [
        {"clip_id": r["clip_id"], "dataset": "t", "video": str(r["video"]),
         "audio": str(r.get("audio", "")), "subject": r.get("subject", "s1"), "labeled": True,
         "label": r.get("label", 0), **({"t_valence": 0.25} if r.get("target") else {})}
        for r in rows
    ]
    pd.DataFrame(full).to_csv(path, index=False)
    return path


def _skin_box(frame: np.ndarray) -> tuple[float, float, float]:
    """Centre x, y and width of the skin-coloured region (the drawn face oval) in pixels."""
    d = np.abs(frame.astype(int) - np.array(SKIN_RGB)).sum(-1)
    ys, xs = np.nonzero(d < 40)
    return (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2, xs.max() - xs.min()


CFG = PreprocessConfig(workers=1, max_reject_fraction=1.0)


def _run(manifest: Path, out: Path, cfg: PreprocessConfig = CFG) -> Path:
    """The stage with its log in ``out``'s parent (``run.log``)."""
    return preprocess_manifest(manifest, out, cfg, progress=False, log_file=out.parent / "run.log")


def _log(out: Path) -> str:
    return (out.parent / "run.log").read_text()


@pytest.fixture(scope="module")
def good_store(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """Clips with known faces and flash/beep times, preprocessed once for several tests."""
    src = tmp_path_factory.mktemp("src")
    specs = {
        # clip_id: make_clip kwargs
        "left_up": dict(face=(0.38, 0.42, 0.3), motion_px=3, duration_s=2.0),
        "right_low_hd": dict(size=(320, 240), face=(0.62, 0.58, 0.22), duration_s=2.0),
        "av25": dict(fps=25, flash_s=1.6, beep_s=1.6, duration_s=3.0),
        "av30": dict(fps=30, flash_s=1.6, beep_s=1.6, duration_s=3.0),
        "av24": dict(fps=24, flash_s=1.2, beep_s=1.2, duration_s=2.5),
    }
    rows = [{"clip_id": k, "video": make_clip(src / f"{k}.mp4", **kw)} for k, kw in specs.items()]
    out = _run(_manifest(src / "m.csv", rows), src / "store")
    return out, pd.read_csv(out / "manifest.csv")


def test_face_comes_out_centred_and_sized(good_store):
    out, man = good_store
    for cid, (cx, cy, fw), (w, h) in [
        ("left_up", (0.38, 0.42, 0.3), (224, 224)),
        ("right_low_hd", (0.62, 0.58, 0.22), (320, 240)),
    ]:
        row = man.set_index("clip_id").loc[cid]
        assert row.face_rate >= 0.95
        # the detector box is centred on the face (a little above the oval's centre: brows→chin)
        assert abs(row.box_cx - cx) < 0.03 and abs(row.box_cy - cy) < 0.05
        frames = rgb_frames(out / "faces" / f"{cid}.mp4")
        assert frames.shape[1:] == (160, 160, 3)
        assert len(frames) == row.n_frames == 50
        for f in frames[::10]:
            x, y, width = _skin_box(f)
            assert abs(x - 80) < 6 and abs(y - 86) < 10, (cid, x, y)
            # the aligned face fills the crop's central 1 / 1.5 (margin 0.25), as a box would
            assert 0.38 * 160 < width < 0.62 * 160, (cid, width)


def test_audio_video_alignment_within_one_frame(good_store):
    out, man = good_store
    for cid in ("av25", "av30", "av24"):
        row = man.set_index("clip_id").loc[cid]
        assert row.fps == 25.0 and row.face_rate >= 0.95
        frames = rgb_frames(out / "faces" / f"{cid}.mp4")
        corner = frames[:, :6, :6].mean(axis=(1, 2, 3))
        flash = int(np.argmax(corner > 200))
        wave, sr = sf.read(out / "audio" / f"{cid}.wav", dtype="int16")
        info = sf.info(out / "audio" / f"{cid}.wav")
        assert (sr, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert len(wave) == row.n_frames * 640  # exactly the video's length
        onset = int(np.argmax(np.abs(wave) > 8000)) / sr
        assert abs(onset - flash / 25) <= 1 / 25 + 1e-3, (cid, onset, flash)


def test_processed_manifest_columns(good_store):
    out, man = good_store
    for col in ("clip_id", "dataset", "subject", "labeled", "label", "src_video", "n_frames",
                "fps", "duration_s", "face_rate", "box_cx", "box_cy", "box_size", "box_jitter",
                "face_conf", "face_jump"):
        assert col in man.columns
    # the quality record: detector probability and the largest jump of the raw box
    assert man.face_conf.between(0.8, 1.0).all() and man.face_jump.between(0.0, 0.3).all()
    assert all(v == str(out / "faces" / f"{c}.mp4") for c, v in zip(man.clip_id, man.video))
    assert all(a == str(out / "audio" / f"{c}.wav") for c, a in zip(man.clip_id, man.audio))
    fp = json.loads((out / "fingerprint.json").read_text())
    assert set(fp["settings"]["detector"]["weights_sha256"]) == {"pnet", "rnet", "onet"}
    assert fp["settings"]["libraries"]["opencv"] == cv2.__version__
    assert fp["outputs"]["n_clips"] == len(man)
    assert not (out / ".work").exists()
    assert "done" in _log(out) and "clip left_up ok" in _log(out)
    assert sorted(p.name for p in out.iterdir()) == [
        "audio", "faces", "fingerprint.json", "manifest.csv", "rejects.csv"]


def test_alignment_levels_the_eyes(tmp_path):
    src = make_clip(tmp_path / "roll.mp4", roll_deg=8, face=(0.5, 0.5, 0.4), duration_s=1.2)
    m = _manifest(tmp_path / "m.csv", [{"clip_id": "roll", "video": src}])
    cfg = dataclasses.replace(CFG, align=True)
    out = _run(m, tmp_path / "store", cfg)
    row = pd.read_csv(out / "manifest.csv").iloc[0]
    assert abs(row.roll_deg - 8) < 3
    f = rgb_frames(out / "faces" / "roll.mp4")[10]
    dark = (cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) < 38).astype(np.uint8)  # pupils, not hair
    dark[90:] = 0  # pupils are in the upper half
    n, _, stats, cents = cv2.connectedComponentsWithStats(dark)
    big = sorted(range(1, n), key=lambda i: -stats[i, cv2.CC_STAT_AREA])[:2]
    (x1, y1), (x2, y2) = cents[big[0]], cents[big[1]]
    assert abs(y1 - y2) < 0.05 * abs(x1 - x2), (cents[big])


def test_each_bad_input_is_rejected_with_its_reason(tmp_path):
    good = make_clip(tmp_path / "good.mp4", duration_s=1.0)
    full = make_clip(tmp_path / "full.mp4", duration_s=2.0)
    truncated = tmp_path / "truncated.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(full), "-c", "copy", "-movflags",
                    "+faststart", str(tmp_path / "fs.mp4")], check=True)
    data = (tmp_path / "fs.mp4").read_bytes()
    truncated.write_bytes(data[: int(len(data) * 0.6)])
    (tmp_path / "garbage.mp4").write_bytes(np.random.default_rng(0).bytes(4000))
    (tmp_path / "empty.mp4").write_bytes(b"")
    sep_audio = tmp_path / "sep.wav"
    sf.write(sep_audio, np.zeros(16000, np.float32), 16000)
    rows = [
        {"clip_id": "good", "video": good},
        {"clip_id": "separate_audio", "video": good, "audio": sep_audio},
        {"clip_id": "truncated", "video": truncated},
        {"clip_id": "garbage", "video": tmp_path / "garbage.mp4"},
        {"clip_id": "empty", "video": tmp_path / "empty.mp4"},
        {"clip_id": "missing", "video": tmp_path / "nope.mp4"},
        {"clip_id": "no_audio", "video": make_clip(tmp_path / "na.mp4", duration_s=1, audio_s=0)},
        {"clip_id": "short_audio",
         "video": make_clip(tmp_path / "sa.mp4", duration_s=1.5, audio_s=0.3)},
        {"clip_id": "no_face", "video": make_clip(tmp_path / "nf.mp4", duration_s=1, face=None)},
        {"clip_id": "empty_audio", "video": good, "audio": tmp_path / "empty.mp4"},
    ]
    m = _manifest(tmp_path / "m.csv", rows)
    out = tmp_path / "store"
    strict = dataclasses.replace(CFG, max_reject_fraction=0.1)
    with pytest.raises(PreprocessError) as err:
        _run(m, out, strict)
    msg = str(err.value)
    assert "8 of 10 clips rejected" in msg and "max_reject_fraction" in msg and "no_face" in msg
    assert (out / "rejects.csv").is_file()
    assert not (out / "manifest.csv").exists() and not (out / "fingerprint.json").exists()
    expected = {
        "truncated": "truncated_video", "garbage": "unreadable_video", "empty": "empty_file",
        "missing": "missing_file", "no_audio": "no_audio", "short_audio": "short_audio",
        "no_face": "no_face", "empty_audio": "empty_file",
    }
    rej = pd.read_csv(out / "rejects.csv").set_index("clip_id")
    assert rej["reason"].to_dict() == expected
    assert rej["detail"].str.len().min() > 5

    # raising the limit completes without redoing any clip
    _run(m, out)
    assert "10 already done, 0 to do" in _log(out)
    assert "clip no_face rejected: no_face" in _log(out)
    man = pd.read_csv(out / "manifest.csv", keep_default_na=False)
    assert sorted(man.clip_id) == ["good", "separate_audio"]
    assert man.set_index("clip_id").loc["separate_audio", "src_audio"] == str(sep_audio)
    assert pd.read_csv(out / "rejects.csv").set_index("clip_id")["reason"].to_dict() == expected


def test_fingerprint_tracks_every_output_setting():
    base = Settings()
    fp0, desc = fingerprint(base)
    assert fingerprint(Settings())[0] == fp0
    changes = dict(face_size=128, margin=0.3, detect_every=3, align=False, min_face=0.2,
                   min_face_rate=0.6, min_audio_s=1.0, sample_rate=22050, fps=30, crf=20,
                   preset="veryfast", min_confidence=0.7, cnn_face_px=64, smooth_sigma=2.0,
                   detector="haar")
    seen = {fp0}
    for k, v in changes.items():
        fp = fingerprint(dataclasses.replace(base, **{k: v}))[0]
        assert fp not in seen, k
        seen.add(fp)
    # run-time policy does not change outputs, so not the fingerprint
    cfg = PreprocessConfig()
    same = dataclasses.replace(cfg, workers=7, max_reject_fraction=0.9)
    assert fingerprint(Settings.from_config(same))[0] == fingerprint(Settings.from_config(cfg))[0]
    assert desc["video"]["codec"] == "libx264" and desc["audio"]["sample_rate"] == 16000


def test_rerun_is_up_to_date_and_settings_change_discards(tmp_path, monkeypatch):
    rows = [{"clip_id": f"c{i}", "video": make_clip(tmp_path / f"c{i}.mp4", duration_s=1.0,
                                                     face=(0.5, 0.5, 0.3 + 0.05 * i))}
            for i in range(2)]
    m = _manifest(tmp_path / "m.csv", rows)
    out = _run(m, tmp_path / "store")
    stamp = (out / "faces" / "c0.mp4").stat().st_mtime_ns
    calls = []
    monkeypatch.setattr(clip_mod, "_process", lambda *a: calls.append(a))  # must not be called
    _run(m, out)
    assert not calls and (out / "faces" / "c0.mp4").stat().st_mtime_ns == stamp
    monkeypatch.undo()

    # one more clip: only that one is processed
    rows.append({"clip_id": "c2", "video": make_clip(tmp_path / "c2.mp4", duration_s=1.0)})
    _run(_manifest(m, rows), out)
    assert "2 already done, 1 to do" in _log(out)
    assert (out / "faces" / "c0.mp4").stat().st_mtime_ns == stamp

    # a different face size: everything is redone at the new size, nothing old is kept
    small = dataclasses.replace(CFG, face_size=96)
    _run(m, out, small)
    assert "discarding the previous store" in _log(out)
    assert rgb_frames(out / "faces" / "c0.mp4").shape[1:3] == (96, 96)
    fp = json.loads((out / "fingerprint.json").read_text())
    assert fp["fingerprint"] == fingerprint(Settings.from_config(small))[0]
    assert fp["settings"]["crop"]["face_size"] == 96

    # a removed clip's outputs go away
    _run(_manifest(m, rows[:1]), out, small)
    assert sorted(p.name for p in (out / "faces").iterdir()) == ["c0.mp4"]


def test_long_clips_take_the_two_pass_path_with_identical_output(tmp_path, monkeypatch):
    src = make_clip(tmp_path / "a.mp4", duration_s=1.6, motion_px=4)
    m = _manifest(tmp_path / "m.csv", [{"clip_id": "a", "video": src}])
    one = _run(m, tmp_path / "one")
    monkeypatch.setattr(clip_mod, "CACHE_BYTES", 0)
    monkeypatch.setattr(clip_mod, "CHUNK_FRAMES", 7)
    two = _run(m, tmp_path / "two")
    assert (one / "faces/a.mp4").read_bytes() == (two / "faces/a.mp4").read_bytes()
    assert (one / "audio/a.wav").read_bytes() == (two / "audio/a.wav").read_bytes()


def test_bad_manifests_fail_clearly(tmp_path):
    params = Params()
    params = dataclasses.replace(params, data=dataclasses.replace(params.data, root=str(tmp_path)))
    with pytest.raises(UserError, match="avfmae index nothing"):
        preprocess("nothing", params)
    bad = _manifest(tmp_path / "m.csv", [{"clip_id": "a/b", "video": "x.mp4"}])
    with pytest.raises(UserError, match="clip_id"):
        preprocess_manifest(bad, tmp_path / "s", CFG, progress=False)


# ----------------------------------------------------------------------------------------------
# kill -9 midway, rerun → identical to an uninterrupted run (which also uses the process pool)
# ----------------------------------------------------------------------------------------------

_RUN = (
    "import sys; from pathlib import Path; from avfmae.config import PreprocessConfig; "
    "from avfmae.preprocess import preprocess_manifest; "
    "preprocess_manifest(Path('m.csv'), Path('store'), "
    "PreprocessConfig(workers=int(sys.argv[1]), max_reject_fraction=1.0), progress=False, "
    "log_file='run.log')"
)


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _descendants(pid: int) -> set[int]:
    kids: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        kids.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = set(), [pid]
    while todo:
        for child in kids.get(todo.pop(), []):
            out.add(child)
            todo.append(child)
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_kill_midway_then_rerun_equals_uninterrupted_run(tmp_path):
    src = tmp_path / "src"
    rows = [{"clip_id": f"k{i:02d}", "video": make_clip(src / f"k{i}.mp4", duration_s=2.0,
                                                         face=(0.45 + 0.01 * i, 0.5, 0.32),
                                                         motion_px=2)}
            for i in range(12)]
    rows.append({"clip_id": "k_bad", "video": src / "missing.mp4"})
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    killed, ref = tmp_path / "killed", tmp_path / "ref"
    for d in (killed, ref):
        d.mkdir()
        _manifest(d / "m.csv", rows)

    # the stage runs on a 2-worker pool in a subprocess; SIGKILL it once 3 clips are recorded
    proc = subprocess.Popen([sys.executable, "-c", _RUN, "2"], cwd=killed, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    done = killed / "store" / ".work" / "done.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if done.is_file() and len(done.read_text().splitlines()) >= 3:
            break
        time.sleep(0.01)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    helpers = _descendants(proc.pid)
    assert len(helpers) >= 2  # forkserver + workers
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_done = len(done.read_text().splitlines())
    assert 3 <= n_done < len(rows)
    assert not (killed / "store" / "manifest.csv").exists()
    assert not (killed / "store" / "fingerprint.json").exists()
    deadline = time.monotonic() + 20  # workers and forkserver die with the stage
    while time.monotonic() < deadline and any(_alive(p) for p in helpers):
        time.sleep(0.05)
    assert not any(_alive(p) for p in helpers)

    # rerun continues where it stopped; the reference runs uninterrupted (both in this process)
    cwd = os.getcwd()
    try:
        os.chdir(killed)
        preprocess_manifest(Path("m.csv"), Path("store"), CFG, progress=False,
                            log_file="run.log")
        assert f"{n_done} already done" in Path("run.log").read_text()
        os.chdir(ref)
        preprocess_manifest(Path("m.csv"), Path("store"), CFG, progress=False)
    finally:
        os.chdir(cwd)
    a, b = _tree(killed / "store"), _tree(ref / "store")
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name] == b[name], name
    assert len([n for n in a if n.startswith("faces/")]) == 12
