"""The GPU check's measurements, first and cheapest: what a lease must bring back even if
everything after it fails. Writes OUTDIR/measure.json after every item.

    python benchmarks/gpu_measure.py OUTDIR [--dry-run]

Items, in order: environment (versions, GPU name, clocks); the first launch (compile) and
the time at N = 1e6 of the fused sampler in each precision and two block shapes; for every backend x precision
at N = 4096 on injected noise, the first-call seconds (compile or capture), the max-abs,
90%-quantile (the parity rule's bulk, tests/tolerances.py) and relative-norm error against the
float64 reference, end-to-end wall time and device time
(CUDA events; for the Triton backends also the kernel launch alone); then, for every Triton
kernel that was compiled, its registers, spills and shared memory. ``--dry-run`` runs the
same items on the CPU at N = 64 (Triton in its interpreter), to prove the script.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

DRY_RUN = "--dry-run" in sys.argv
if DRY_RUN:
    os.environ.setdefault("TRITON_INTERPRET", "1")
else:  # a cold Triton cache of our own, so first-call times include the compile a user pays
    os.environ.setdefault("TRITON_CACHE_DIR", tempfile.mkdtemp(prefix="ddpm_fast_gpu_check_"))

import torch  # noqa: E402

import ddpm_fast as D  # noqa: E402
from ddpm_fast.backends import get_backend  # noqa: E402
from ddpm_fast.bench import environment  # noqa: E402
from ddpm_fast.samplers import make_plan  # noqa: E402

# the float64 reference the parity tests use
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from helpers import point_errors, reference_trajectory_f64  # noqa: E402
from tolerances import BULK_QUANTILE  # noqa: E402

BACKENDS = ("eager", "compile", "cudagraph", "triton-step", "triton-fused")
PRECISIONS = ("fp32", "tf32", "bf16")


class Report:
    """measure.json, rewritten whole (to a temporary name, then renamed) after every item."""

    def __init__(self, path):
        self.path, self.data = path, {"dry_run": DRY_RUN, "items": {}}

    def put(self, key, value):
        self.data["items"][key] = value
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.data, f, indent=1, default=str)
        os.replace(tmp, self.path)
        print(f"[measure] {key}: {json.dumps(value, default=str)[:300]}", flush=True)


def gpu_environment(device):
    info = environment(device)
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(sm_count=props.multi_processor_count, memory_gib=props.total_memory / 2**30,
                    capability=f"{props.major}.{props.minor}")
        query = "name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,power.draw"
        try:
            info["nvidia_smi"] = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv"],
                                                capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.TimeoutExpired) as err:
            info["nvidia_smi"] = f"unavailable: {err}"
    return info


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _times(fn, device, repeats):
    """(median wall seconds, median device seconds by CUDA events or None) over ``repeats`` calls."""
    wall, events = [], []
    for _ in range(repeats):
        _sync(device)
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
        begin = time.perf_counter()
        fn()
        if device.type == "cuda":
            end.record()
        _sync(device)
        wall.append(time.perf_counter() - begin)
        if device.type == "cuda":
            events.append(start.elapsed_time(end) / 1e3)
    return statistics.median(wall), (statistics.median(events) if events else None)


def _kernel_only(backend, model, sched, x_T, noise, precision, final_noise=True):
    """The Triton launch alone, inputs prepared: what the kernel costs without the Python around it."""
    from ddpm_fast.kernels import mlp_weights, new_state, sample_fused, sampler_step
    weights, plan = mlp_weights(model), make_plan(sched, final_noise=final_noise)
    if backend == "triton-fused":
        return lambda: sample_fused(weights, x_T, plan, precision=precision, noise=noise)

    def steps():
        state = new_state(x_T)
        for i in range(plan.steps):
            state = sampler_step(weights, state, i, plan, precision=precision, noise=noise)
        return state[0]
    return steps


def _error_and_time(call, exact, device, repeats) -> dict:
    """The first call's time and its error against ``exact`` (float64), then wall and device time."""
    _sync(device)
    begin = time.perf_counter()
    out = call()
    _sync(device)
    first = time.perf_counter() - begin
    diff = out.double().cpu() - exact
    points = point_errors(out, exact)  # the figures the parity rule reads (tests/tolerances.py)
    item = {"first_call_s": first, "max_abs_error": diff.abs().max().item(),
            "bulk_error": torch.quantile(points, BULK_QUANTILE, interpolation="higher").item(),
            "rel_norm_error": (diff.norm() / exact.norm()).item(), "finite": bool(torch.isfinite(out).all())}
    item["wall_s"], item["device_s"] = _times(call, device, repeats)
    return item


def parity_and_timing(report, device, n, repeats):
    model, sched = D.load_pretrained(device)
    gen = torch.Generator("cpu").manual_seed(1234)
    x_T, noise = torch.randn(n, 2, generator=gen).to(device), torch.randn(sched.n_steps, n, 2, generator=gen).to(device)
    exact = reference_trajectory_f64(model, sched, x_T, noise)[-1]
    for precision in PRECISIONS:
        for backend in BACKENDS:
            key = f"parity {backend} {precision} N={n}"
            reason = get_backend(backend).cannot_run(device, precision)
            if reason is not None:
                report.put(key, {"skipped": reason})
                continue
            call = lambda: D.sample(model, n, schedule=sched, x_T=x_T, noise=noise, backend=backend,  # noqa: E731
                                    precision=precision)
            try:
                item = _error_and_time(call, exact, device, repeats)
                if backend.startswith("triton"):
                    launch = _kernel_only(backend, model, sched, x_T, noise, precision)
                    item["kernel_wall_s"], item["kernel_device_s"] = _times(launch, device, repeats)
            except Exception as err:  # recorded; the check goes on
                item = {"error": f"{type(err).__name__}: {err}"[:800]}
            report.put(key, item)


def sampler_parity(report, device, n, repeats):
    """The 10-step DPM-Solver++(2M) and UniPC on the fast backends: error against their float64
    reference and time, beside the 100-step ddpm rows above (a compile or capture per structure)."""
    from helpers import reference_plan_f64
    model, sched = D.load_pretrained(device)
    gen = torch.Generator("cpu").manual_seed(4321)
    for sampler in ("dpm++2m", "unipc"):
        plan = make_plan(sched, sampler, 10)
        x_T = (torch.randn(n, 2, generator=gen) * plan.prior_std).to(device)
        exact = reference_plan_f64(model, sched, x_T, None, sampler=sampler, steps=10)[-1]
        for precision in ("fp32", "bf16"):
            for backend in ("triton-fused", "cudagraph", "triton-step"):
                key = f"parity {sampler} 10 steps {backend} {precision} N={n}"
                reason = get_backend(backend).cannot_run(device, precision)
                if reason is not None:
                    report.put(key, {"skipped": reason})
                    continue
                call = lambda: D.sample(model, n, schedule=sched, x_T=x_T, sampler=sampler, steps=10,  # noqa: E731
                                        backend=backend, precision=precision)
                try:
                    item = _error_and_time(call, exact, device, repeats)
                except Exception as err:  # recorded; the check goes on
                    item = {"error": f"{type(err).__name__}: {err}"[:800]}
                report.put(key, item)


def triton_kernel_stats():
    """Registers, spills and shared memory of every compiled Triton kernel of the package."""
    import importlib
    stats = []
    for module, name in (("sampler", "_sampler_kernel"), ("sampler_step", "_sampler_step_kernel"),
                         ("mlp", "_mlp_kernel"), ("q_sample", "_q_sample_kernel")):
        fn = getattr(importlib.import_module(f"ddpm_fast.kernels.{module}"), name)
        for entry in getattr(fn, "device_caches", {}).values():
            for compiled in entry[0].values():
                meta = compiled.metadata
                stats.append({"kernel": meta.name, "num_warps": meta.num_warps, "shared": meta.shared,
                              "regs": getattr(compiled, "n_regs", None), "spills": getattr(compiled, "n_spills", None),
                              "constants": {str(k): str(v) for k, v in getattr(compiled.src, "constants", {}).items()}
                              if hasattr(compiled, "src") else None})
    return stats


def compile_times(report, device):
    """Seconds of a first launch of each fused-sampler variant, on the cold cache."""
    from ddpm_fast.kernels import mlp_weights, sample_fused
    model, sched = D.load_pretrained(device)
    plan = make_plan(sched)
    x_T = torch.randn(1000 if device.type == "cuda" else 64, 2, device=device)
    n_timed = 1_000_000 if device.type == "cuda" else 64
    for precision in PRECISIONS if device.type == "cuda" else ("fp32",):
        for block_m, warps in ((64, 4), (128, 8)):
            key = f"first launch sampler {precision} BLOCK_M={block_m} warps={warps}"
            try:
                _sync(device)
                begin = time.perf_counter()
                sample_fused(mlp_weights(model), x_T, plan, precision=precision, seed=0, block_m=block_m,
                             num_warps=warps)
                _sync(device)
                first = time.perf_counter() - begin
                x_big = torch.randn(n_timed, 2, device=device)
                call = lambda: sample_fused(mlp_weights(model), x_big, plan, precision=precision,  # noqa: E731
                                            seed=0, block_m=block_m, num_warps=warps)
                wall, dev = _times(call, device, 5 if device.type == "cuda" else 1)
                report.put(key, {"first_call_s": first, "n_timed": n_timed, "wall_s": wall, "device_s": dev})
            except Exception as err:
                report.put(key, {"error": f"{type(err).__name__}: {err}"[:800]})


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    report = Report(os.path.join(out_dir, "measure.json"))
    device = torch.device("cpu" if DRY_RUN else "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        report.put("environment", {"error": "no CUDA GPU is available"})
        return 1
    report.put("environment", gpu_environment(device))
    compile_times(report, device)  # first: the Triton cache is still cold
    parity_and_timing(report, device, n=64 if DRY_RUN else 4096, repeats=1 if DRY_RUN else 10)
    sampler_parity(report, device, n=64 if DRY_RUN else 4096, repeats=1 if DRY_RUN else 10)
    report.put("triton kernels", triton_kernel_stats() or "none compiled (interpreter)")
    return 0


if __name__ == "__main__":
    sys.exit(main([a for a in sys.argv[1:] if not a.startswith("--")][0]))
