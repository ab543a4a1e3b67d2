#!/usr/bin/env bash
# The one prepared GPU check, measurements first, every step time-boxed (under 8 minutes in
# all), nothing from the network. Writes to OUTDIR (the device tool returns at most 8 files):
#   measure.json  versions, GPU, clocks; first-launch (compile) times; per backend x precision
#                 at N = 4096: error against float64, wall and device time; kernel resources
#   bench.json    the benchmark, most important rows first, rewritten after every row
#   bench.png     its throughput plot
#   (training)    `ddpm-fast bench-train` rows: in check.log as measured, and in summary.json
#   (students)    the bundled 1-step student's bench rows and a 2-step distillation run (300 steps): in
#                 summary.json
#   auto_order.json  backends fastest first per precision (benchmarks/auto_order.py installs it)
#   tests.xml, tests.log  pytest on CUDA with per-test timeouts
#   check.log     everything the steps printed
#   summary.json  the above folded together; a short table is printed last
#
#   bash benchmarks/gpu_check.sh [OUTDIR]            # on the GPU; OUTDIR default $OUT
#   bash benchmarks/gpu_check.sh --dry-run OUTDIR    # every step on CPU at tiny sizes (CI runs it)
set -uo pipefail
dry=0
if [ "${1:-}" = "--dry-run" ]; then dry=1; shift; fi
out=${1:-${OUT:-benchmarks/results/latest}}
mkdir -p "$out" && out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
log="$out/check.log"
: >"$log"
if ! python3 -c "import ddpm_fast.kernels" 2>/dev/null; then
  # Not installed: lay the tree out as installed (kernels/ inside the package), no network needed.
  tree=$(mktemp -d) && cp -r ddpm_fast tests benchmarks pytest.ini "$tree"/ && cp -r kernels "$tree"/ddpm_fast/kernels
  cd "$tree" && export PYTHONPATH="$tree"
  echo "gpu_check: running from a copied tree $tree" | tee -a "$log"
fi
# step SECONDS NAME COMMAND...: SIGINT at the limit (Python unwinds and writes), SIGKILL 15 s later
step() {
  local limit=$1 name=$2; shift 2
  echo "== $name (limit ${limit}s): $*" | tee -a "$log"
  timeout -s INT -k 15 "$limit" "$@" >>"$log" 2>&1
  local rc=$?
  echo "== $name exit code $rc" | tee -a "$log"
  return $rc
}
failed=0
work=$(mktemp -d)  # files beyond the 8 the device tool returns (folded into summary.json)
if [ $dry = 1 ]; then
  export DDPM_FAST_DEVICE=cpu TRITON_INTERPRET=1
  step 120 measure python3 benchmarks/gpu_measure.py "$out" --dry-run || failed=1
  # (10 and 5 steps: every flag and code path of the GPU run's bench at a tenth of the interpreter's time)
  step 120 bench python3 -m ddpm_fast bench --device cpu --n 64,256 --backends eager,compile,cudagraph,triton-step,triton-fused \
    --precisions fp32,bf16 --sampler ddpm,dpm++2m --steps 10,5 --repeats 2 --warmup 0 --priority --json "$out/bench.json" --plot "$out/bench.png" || failed=1
  step 120 train python3 -m ddpm_fast bench-train --device cpu --backends eager,cudagraph --batch-sizes 128 \
    --n-points 600 --epochs 2 --warmup-epochs 1 --json "$work/train_bench.json" || failed=1
  step 60 students python3 -m ddpm_fast bench --device cpu --checkpoint distill-1 --n 64 --backends eager,triton-fused \
    --precisions fp32 --repeats 2 --warmup 0 --json "$work/students.json" || failed=1
  step 60 distill sh -c "python3 -m ddpm_fast distill --device cpu --steps 2 --iterations 3 --batch-size 64 \
    --out '$work/distill' --quiet >'$work/distill.json'" || failed=1
  step 120 tests python3 -m pytest tests/test_gpu.py tests/test_errors.py -q -p no:cacheprovider -o timeout=60 \
    -rfE --durations=10 --junitxml="$out/tests.xml" || failed=1
else
  export DDPM_FAST_DEVICE=cuda
  nvidia-smi >>"$log" 2>&1
  step 140 measure python3 benchmarks/gpu_measure.py "$out"
  # The benchmark, most important first (--priority): N = 1e4 and 1e6, eager fp32, then
  # cudagraph and triton-fused in tf32 and bf16, then the rest; each case for the 100-step
  # ddpm and the 10-step DPM-Solver++(2M) side by side (samples/s compares them).
  step 110 bench python3 -m ddpm_fast bench --device cuda --n 10000,1000000,1000 \
    --backends eager,compile,cudagraph,triton-step,triton-fused --precisions fp32,tf32,bf16 \
    --sampler ddpm,dpm++2m --steps 100,10 \
    --repeats 10 --priority --json "$out/bench.json" --plot "$out/bench.png"
  # Training: steps/s per backend at the seed recipe's batch (128) and the fast recipe's (1024),
  # cudagraph first; compile last (its first epoch compiles forward and backward).
  step 65 train python3 -m ddpm_fast bench-train --device cuda --backends cudagraph,eager,compile \
    --batch-sizes 128,1024 --epochs 6 --warmup-epochs 2 --json "$work/train_bench.json"
  # The 1-step student: samples/s of one model call per point, beside the 100-step rows above.
  step 25 students python3 -m ddpm_fast bench --device cuda --checkpoint distill-1 --n 1000000,10000 \
    --backends eager,cudagraph,triton-fused --precisions fp32,bf16 --repeats 10 --json "$work/students.json"
  # A distillation on the GPU: 300 steps of the 2-step student (its wall time is in the report).
  step 30 distill sh -c "python3 -m ddpm_fast distill --device cuda --steps 2 --iterations 300 \
    --out '$work/distill' --quiet >'$work/distill.json'"
  step 100 tests python3 -m pytest tests/kernels tests/test_backends.py tests/test_gpu.py tests/test_errors.py \
    tests/test_samplers.py \
    -q -p no:cacheprovider -o timeout=60 -rfE --durations=15 --junitxml="$out/tests.xml" \
    --deselect tests/kernels/test_compile.py::test_kernels_compile_for_sm90_within_budgets
fi
grep -v "^\[measure\]" "$log" | sed -n '/== tests/,/== tests exit/p' >"$out/tests.log"
python3 benchmarks/summarize_gpu_check.py "$out" "$work/train_bench.json" "$work/students.json" "$work/distill.json" \
  || failed=1
exit $failed
