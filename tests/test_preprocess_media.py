"""Reject reasons of broken media, and frame decoding, on files made by the real ffmpeg."""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from avfmae.preprocess.media import MediaError, frame_times, frames_shown_at, probe_video


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("media")
    src = ["-f", "lavfi", "-i", "testsrc=size=96x64:rate=25", "-f", "lavfi", "-i",
           "sine=frequency=440:sample_rate=16000", "-t", "2", "-c:v", "libx264", "-preset",
           "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest"]
    _ffmpeg(*src, str(d / "plain.mp4"))  # moov after the media data (ffmpeg's default)
    _ffmpeg(*src, "-movflags", "+faststart", str(d / "faststart.mp4"))
    _ffmpeg(*src[:4], "-t", "2", "-c:v", "mpeg4", str(d / "clip.avi"))
    out = {}
    for name in ("plain", "faststart"):
        data = (d / f"{name}.mp4").read_bytes()
        out[f"{name}_cut"] = d / f"{name}_cut.mp4"
        out[f"{name}_cut"].write_bytes(data[: int(len(data) * 0.6)])
    data = (d / "clip.avi").read_bytes()
    out["avi_head"] = d / "avi_head.avi"
    out["avi_head"].write_bytes(data[:100])
    out["text"] = d / "notes.mp4"
    out["text"].write_text("these are my notes, not a video\n" * 20)
    out["plain"] = d / "plain.mp4"
    return out


def _reason(path: Path) -> MediaError:
    with pytest.raises(MediaError) as err:
        probe_video(path)
    return err.value


def test_an_intact_mp4_opens(clips):
    info = probe_video(clips["plain"])
    assert info.n_frames == 50


def test_mp4_cut_before_its_moov_box_is_truncated(clips):
    err = _reason(clips["plain_cut"])
    assert err.reason == "truncated_video"
    assert "'mdat'" in str(err) and "'moov' box (the frame index) is missing" in str(err)


def test_faststart_mp4_cut_in_its_media_data_is_truncated(clips):
    err = _reason(clips["faststart_cut"])
    assert err.reason == "truncated_video", str(err)


def test_a_text_file_named_mp4_is_not_media(clips):
    err = _reason(clips["text"])
    assert err.reason == "unreadable_video"
    assert "not a media file (it starts with b'these ar')" in str(err)


def test_a_cut_avi_is_unreadable_but_known_media(clips):
    err = _reason(clips["avi_head"])
    assert err.reason == "unreadable_video" and "not a media file" not in str(err)


def test_an_mp4_header_followed_by_garbage_is_unreadable_not_truncated(tmp_path):
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 200)
    err = _reason(damaged)
    assert err.reason == "unreadable_video", str(err)


@pytest.mark.parametrize("size, rate, pix_fmt", [("96x64", 10, "yuv420p"),
                                                 ("97x63", 25, "yuv444p"),
                                                 ("96x64", 50, "yuvj420p")])
def test_frames_shown_at_the_output_rate(tmp_path: Path, size: str, rate: int, pix_fmt: str):
    """Each output time gets the frame shown then, whatever the source rate (slower sources
    repeat frames), pixel format or parity of the frame's sides. The test source draws the
    frame number, so a frame is identified by its pixels."""
    path = tmp_path / "v.mp4"
    _ffmpeg("-f", "lavfi", "-i", f"testsrc=size={size}:rate={rate}", "-t", "2", "-c:v",
            "libx264", "-preset", "ultrafast", "-qp", "0", "-pix_fmt", pix_fmt, str(path))
    info = probe_video(path)
    times = frame_times(info, 25)
    frames = list(frames_shown_at(path, times, info))
    w, h = (int(x) & ~1 for x in size.split("x"))
    assert len(frames) == 50 and frames[0].shape == (h * 3 // 2, w)
    shown = np.floor((times - info.begin_s) * rate).astype(int)  # source frame index
    for i in range(1, len(frames)):
        same = np.array_equal(frames[i], frames[i - 1])  # lossless: only a repeat is equal
        assert same == (shown[i] == shown[i - 1]), (i, shown[i - 1 : i + 1])
    assert cv2.cvtColor(frames[0], cv2.COLOR_YUV2RGB_I420).shape == (h, w, 3)
