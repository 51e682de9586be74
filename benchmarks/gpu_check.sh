#!/usr/bin/env bash
# The checks that need a CUDA machine, in one go, from the repository root: the CUDA tests, the
# GPU benchmark matrix and, on two of the host's cores beside it, the CPU benchmark (ours
# against the published computation, fp32 and bf16). Results go to $OUT (default
# benchmarks/results): cuda_tests.log, gpu.jsonl, cpu.jsonl, machine.txt.
#
#     bash benchmarks/gpu_check.sh            # needs python3 with torch (CUDA), timm, pytest
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-benchmarks/results}
mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
cores=$(nproc)

{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  lscpu | grep -E 'Model name|^CPU\(s\)|Flags' | cut -c1-200
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
} > "$out/machine.txt" 2>&1

# CPU figures on the last two cores, away from the GPU driver threads below.
taskset -c "$((cores - 2)),$((cores - 1))" python3 benchmarks/bench_model.py --scales base \
  --batch-sizes 2 --runs 3 --threads 2 > "$out/cpu.jsonl" 2> "$out/cpu.err" &
cpu_job=$!

gpu_cores="0-$((cores - 3))"
taskset -c "$gpu_cores" python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py \
  tests/test_attention_backends.py tests/test_bench_baseline.py > "$out/cuda_tests.log" 2>&1
echo "cuda tests: rc $?"; tail -n 3 "$out/cuda_tests.log"
taskset -c "$gpu_cores" python3 benchmarks/bench_gpu.py "$@" > "$out/gpu.jsonl" 2> "$out/gpu.err"
echo "gpu bench: rc $?"; tail -n 2 "$out/gpu.err"
wait "$cpu_job"
echo "cpu bench: rc $?"; tail -n 2 "$out/cpu.err"
