"""A real single-node SLURM cluster (munge + slurmctld + slurmd) on 127.0.0.1 for tests.

The node advertises ``GPUS`` GPUs as generic resources, so GPU requests are scheduled and
accounted as on a GPU cluster while the jobs run on CPU. Each GPU is a stand-in device file (a
character device like ``/dev/null``): SLURM 22.05's slurmd drops GPUs configured without
``File=`` ("Removing file-less GPU"), and no cgroup or CUDA ever opens the files. There is no
accounting daemon: finished jobs stay in the controller for an hour (``MinJobAge``), and
:func:`job_records` reads them with ``scontrol show job``.

Needs root and Debian's ``slurmctld slurmd slurm-client munge`` (``setup.sh --slurm``). The
config must live at ``/etc/slurm/slurm.conf``: the SLURM executor plugin strips ``SLURM_CONF``
before its inner ``srun``. Daemons are stopped by their pid files on exit.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

SLURM_CONF = Path("/etc/slurm/slurm.conf")
GRES_CONF = SLURM_CONF.parent / "gres.conf"
GPUS = 2
DAEMONS = ("munged", "slurmctld", "slurmd", "sinfo", "sbatch", "squeue")


def missing_requirements() -> str | None:
    """Why a cluster cannot be started here, or None."""
    if os.geteuid() != 0:
        return "starting SLURM daemons needs root"
    absent = [d for d in DAEMONS if shutil.which(d) is None]
    if absent:
        return f"SLURM is not installed (missing {', '.join(absent)}; run ./setup.sh --slurm)"
    return None


def _config(state: Path) -> str:
    host = socket.gethostname().split(".")[0]
    mem_mb = int(Path("/proc/meminfo").read_text().split()[1]) // 1024 - 2048
    return "\n".join([
        "ClusterName=avfmaetest",
        f"SlurmctldHost={host}(127.0.0.1)",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        "SlurmUser=root",
        f"StateSaveLocation={state}/ctld",
        f"SlurmdSpoolDir={state}/d",
        f"SlurmctldPidFile={state}/slurmctld.pid",
        f"SlurmdPidFile={state}/slurmd.pid",
        f"SlurmctldLogFile={state}/slurmctld.log",
        f"SlurmdLogFile={state}/slurmd.log",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        "ReturnToService=2",
        "MinJobAge=3600",
        "SlurmctldPort=6817",
        "SlurmdPort=6818",
        "GresTypes=gpu",
        f"NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory={mem_mb} "
        f"Gres=gpu:{GPUS} State=UNKNOWN",
        f"PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP",
        "",
    ])


def _gres_config(state: Path) -> str:
    for i in range(GPUS):
        dev = state / f"gpu{i}"
        if not dev.exists():
            os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    host = socket.gethostname().split(".")[0]
    return f"NodeName={host} Name=gpu File={state}/gpu[0-{GPUS - 1}]\n"


def _link(target: Path, text: str, state: Path) -> bytes | None:
    """Write ``text`` under ``state`` and link ``target`` to it; returns the file it replaced."""
    own = state / target.name
    own.write_text(text)
    target.parent.mkdir(parents=True, exist_ok=True)
    previous = target.read_bytes() if target.is_file() and not target.is_symlink() else None
    target.unlink(missing_ok=True)
    target.symlink_to(own)
    return previous


def _restore(target: Path, previous: bytes | None) -> None:
    target.unlink(missing_ok=True)
    if previous is not None:
        target.write_bytes(previous)


def job_records() -> list[dict[str, str]]:
    """Every job the controller still knows: ``scontrol show job --details`` fields, one dict
    per job (``JOB_GRES``: the generic resources allocated, ``TresPerJob``: those requested)."""
    out = subprocess.run(["scontrol", "show", "job", "--details", "--oneliner"],
                         capture_output=True, text=True, check=True).stdout
    return [dict(f.split("=", 1) for f in line.split() if "=" in f)
            for line in out.splitlines() if line.startswith("JobId=")]


def _start_munge(state: Path) -> Path:
    run = Path("/run/munge")
    run.mkdir(parents=True, exist_ok=True)
    shutil.chown(run, "munge", "munge")
    key = Path("/etc/munge/munge.key")
    if not key.exists():
        subprocess.run(["mungekey", "--create", "--keyfile", str(key)], check=True)
        shutil.chown(key, "munge", "munge")
        key.chmod(0o400)
    pid = run / "munged.pid"
    if not (pid.exists() and _alive(int(pid.read_text() or 0))):
        subprocess.run(["runuser", "-u", "munge", "--", "munged"], check=True)
    return pid


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop(pidfile: Path) -> None:
    with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
        os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)


def _wait_idle(timeout: float) -> None:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        res = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
        state = res.stdout.strip()
        if state == "idle":
            return
        time.sleep(0.5)
    raise RuntimeError(f"SLURM node not idle after {timeout:.0f} s (state {state!r})")


@contextlib.contextmanager
def slurm_cluster(state: Path, timeout: float = 60.0) -> Iterator[Path]:
    """Start a one-node cluster with its state under ``state``; yields the state folder."""
    for sub in ("ctld", "d"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    previous = {SLURM_CONF: _link(SLURM_CONF, _config(state), state),
                GRES_CONF: _link(GRES_CONF, _gres_config(state), state)}
    _start_munge(state)
    try:
        subprocess.run(["slurmctld", "-c"], check=True)  # -c: start clean, no old state
        subprocess.run(["slurmd", "-c"], check=True)
        _wait_idle(timeout)
        yield state
    finally:
        _stop(state / "slurmd.pid")
        _stop(state / "slurmctld.pid")
        time.sleep(0.5)
        for target, before in previous.items():
            _restore(target, before)
