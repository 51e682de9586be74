"""Atomic writes: a failed write leaves the old file and no debris; outputs get umask modes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from avfmae import io
from avfmae.io import atomic_directory, atomic_write, atomic_write_text, pyplot, save_figure


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path):
    target = atomic_write_text(tmp_path / "out.json", "old")

    def explode(f):
        f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, explode)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_outputs_get_the_modes_of_the_umask(tmp_path: Path):
    umask = os.umask(0)
    os.umask(umask)
    file = atomic_write_text(tmp_path / "a" / "m.json", "{}")
    assert _mode(file) == 0o666 & ~umask
    with atomic_directory(tmp_path / "folder") as tmp:
        (tmp / "x").write_text("1")
    assert _mode(tmp_path / "folder") == 0o777 & ~umask
    assert (tmp_path / "folder" / "x").read_text() == "1"


def test_save_figure_writes_a_png(tmp_path: Path):
    fig, ax = pyplot().subplots()
    ax.plot([0, 1], [1, 0])
    path = save_figure(fig, tmp_path / "plot.png", dpi=40)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not pyplot().get_fignums()


def test_content_digest_sees_new_content_under_the_same_names(tmp_path):
    store = tmp_path / "store"
    (store / "faces").mkdir(parents=True)
    (store / "faces" / "a.mp4").write_bytes(b"crf18")
    (store / "manifest.csv").write_text("clip_id\na\n")
    before = io.content_digest([store, tmp_path / "splits.csv"])
    assert before[str(tmp_path / "splits.csv")] == "missing"
    (store / "faces" / "a.mp4").write_bytes(b"crf30")
    after = io.content_digest([store, tmp_path / "splits.csv"])
    assert after[str(store)] != before[str(store)]
    (store / "faces" / "a.mp4").write_bytes(b"crf18")
    assert io.content_digest([store])[str(store)] == before[str(store)]
