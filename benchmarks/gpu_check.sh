#!/usr/bin/env bash
# The one prepared GPU check: every CUDA parity test, then the benchmark sweep, in one call
# (under 8 minutes on an H100 by its timeouts). Writes 8 files to OUTDIR (the device tool
# returns at most 8): nvidia-smi.csv, tests.xml, tests.log, bench.json, bench_1e7.json,
# bench.log, bench.png, summary.json; prints a short table last.
#
#   bash benchmarks/gpu_check.sh [OUTDIR]      # default: $OUT, else benchmarks/results/latest
#
# Needs torch with CUDA, triton, scikit-learn, matplotlib, pytest and pytest-benchmark already
# installed; it installs this repo in editable mode without touching the network.
set -uo pipefail
out=${1:-${OUT:-benchmarks/results/latest}}
mkdir -p "$out" && out=$(cd "$out" && pwd)
export DDPM_FAST_DEVICE=cuda PYTHONUNBUFFERED=1
if ! python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . >/tmp/ddpm_fast_install.log 2>&1; then
  # No editable install: run from a copy laid out as installed (kernels/ inside the package).
  echo "gpu_check: editable install failed ($(tail -n 1 /tmp/ddpm_fast_install.log)); using a copied tree"
  tree=/tmp/ddpm_fast_tree && rm -rf "$tree" && mkdir -p "$tree"
  cp -r ddpm_fast tests benchmarks pytest.ini "$tree"/ && cp -r kernels "$tree"/ddpm_fast/kernels && cd "$tree"
fi
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv >"$out/nvidia-smi.csv" 2>&1

# 1. Tests on CUDA: kernel parity at full sizes in every precision, every backend, no host sync.
#    (The CPU-only reference, training and CLI tests run in CI and are left out here.)
timeout 270 python3 -m pytest tests/kernels tests/test_backends.py tests/test_gpu.py tests/test_errors.py -q -p no:cacheprovider --junitxml="$out/tests.xml" >"$out/tests.log" 2>&1
echo "tests exit code $?" >>"$out/tests.log"
tail -n 25 "$out/tests.log"

# 2. Benchmark sweep: every backend x N x precision against eager, with the matmul ceiling.
timeout 150 python3 -m ddpm_fast bench --device cuda --n 1000,10000,100000,1000000 \
  --backends eager,compile,cudagraph,triton-step,triton-fused --precisions fp32,tf32,bf16 \
  --repeats 10 --json "$out/bench.json" --plot "$out/bench.png" >"$out/bench.log" 2>&1
echo "bench exit code $?" >>"$out/bench.log"
# N = 1e7 for the two fastest paths only (eager at 1e7 alone would take most of a minute).
timeout 45 python3 -m ddpm_fast bench --device cuda --n 10000000 --backends cudagraph,triton-fused \
  --precisions fp32,bf16 --repeats 3 --json "$out/bench_1e7.json" >>"$out/bench.log" 2>&1
echo "bench 1e7 exit code $?" >>"$out/bench.log"

python3 benchmarks/summarize_gpu_check.py "$out"
