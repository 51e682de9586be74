"""The cross-orchestrator run lock: refuse a live holder, take over a dead one."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from avfmae import lock
from avfmae.errors import UserError


def test_a_live_holder_is_named_and_a_dead_one_taken_over(tmp_path: Path):
    path = tmp_path / "run.lock"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        other = lock.holder_of(sleeper.pid, "dvc")
        me = lock.holder_of(os.getpid(), "snakemake")
        lock.claim(other, path)
        with pytest.raises(UserError, match=rf"dvc \(pid {sleeper.pid} on "):
            lock.claim(me, path)
        lock.claim(other, path)  # the holder's own jobs pass
    finally:
        sleeper.kill()
        sleeper.wait()
    lock.claim(me, path)
    assert lock.Holder.from_json(path.read_text()) == me
    lock.release(other, path)
    assert path.exists(), "a former holder released someone else's claim"
    lock.release(me, path)
    assert not path.exists()


def test_a_reused_pid_is_stale_and_another_host_is_trusted(tmp_path: Path):
    path = tmp_path / "run.lock"
    me = lock.holder_of(os.getpid(), "avfmae")
    reused = dataclasses.replace(me, started=me.started + "0")
    assert not reused.alive()
    lock.claim(reused, path)
    lock.claim(me, path)
    remote = dataclasses.replace(me, host="node-elsewhere", pid=1)
    path.write_text(remote.to_json())
    with pytest.raises(UserError, match="on node-elsewhere"):
        lock.claim(me, path)


def test_a_stage_command_joins_its_dvc_ancestor(tmp_path: Path):
    fake = tmp_path / "dvc"
    fake.write_text(f"#!{sys.executable}\nimport subprocess, sys\n"
                    "sys.exit(subprocess.call([sys.executable, '-c', "
                    "'from avfmae.lock import current_run; print(current_run().to_json())']))\n")
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != lock.RUN_ENV}
    out = subprocess.run([str(fake), "repro"], capture_output=True, text=True, check=True,
                         env=env).stdout
    holder = lock.Holder.from_json(out)
    assert holder.tool == "dvc" and holder.command.startswith(f"{Path(sys.executable).name} ")
