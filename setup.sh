#!/usr/bin/env bash
# Installs everything avfmae needs on a fresh Debian/Ubuntu machine: system packages (ffmpeg,
# and with --slurm a single-node SLURM for the cluster-profile test), then a virtual environment
# in .venv with the pinned Python stack. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")"

want_slurm=0
for arg in "$@"; do
  case "$arg" in
    --slurm) want_slurm=1 ;;
    *) echo "usage: $0 [--slurm]" >&2; exit 2 ;;
  esac
done

apt_packages=(ffmpeg)
[ "$want_slurm" = 1 ] && apt_packages+=(slurmctld slurmd slurm-client munge)

missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "setup: installing system packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  python3.11 -m venv .venv 2>/dev/null || python3 -m venv .venv
fi
# torch's CUDA build with its nvidia and triton wheels takes ~5.3 GB (the whole venv 6.1 GB);
# without the room pip fails midway with ENOSPC.
check_room_for_torch() {
  .venv/bin/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is None)" \
    && return 0
  local need_gib=7 free_gib mount
  read -r free_gib mount < <(df -P -BG .venv | awk 'NR == 2 { sub("G", "", $4); print $4, $6 }')
  if [ "$free_gib" -lt "$need_gib" ]; then
    echo "setup: only ${free_gib} GiB free on ${mount}; the Python stack needs about ${need_gib} GiB" >&2
    exit 1
  fi
}

stamp=.venv/.avfmae-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  check_room_for_torch
  echo "setup: installing the Python stack into .venv (a few minutes the first time)"
  .venv/bin/python -m pip install -q --upgrade "pip==26.3"
  .venv/bin/python -m pip install -q -e '.[test]'
  touch "$stamp"
fi
echo "setup: done ($(.venv/bin/python -c 'import avfmae, torch; print("avfmae", avfmae.__version__, "torch", torch.__version__)'))"
