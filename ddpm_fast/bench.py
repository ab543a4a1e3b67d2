"""Throughput benchmark of the sampling backends: median and spread, against a measured ceiling.

Library code: it returns dicts and strings; the CLI prints and writes them.
"""
from __future__ import annotations

import platform
import statistics
import time

import torch

from ._timing import spread, synchronize, time_call
from .backends import get_backend
from .samplers import make_plan, plan_sources
from .sampling import sample


def flops_per_point_step(hidden: int = 128) -> int:
    """The cost model of docs/model.md: 2 * (2H + 2H*H + 2H) FLOP (66,560 for H = 128)."""
    return 2 * (2 * hidden + 2 * hidden * hidden + 2 * hidden)


STUDENT = "student"  # a sampler name in the specs: a distilled student's own plan
CPU_CEILING_ROWS = 4096  # the CPU ceiling's matmul: [rows, H] x [H, H], the model's hidden layer on a cache block


def matmul_ceiling(device: torch.device, precision: str, size: int | None = None, repeats: int = 10,
                   hidden: int = 128) -> float:
    """TFLOP/s of a matmul in ``precision``: the ceiling the samplers are held to. On a GPU a large
    square one; on a CPU the model's own shape, [CPU_CEILING_ROWS, hidden] x [hidden, hidden]
    (what a cache-resident row block can reach; a bf16 one runs on the CPU's bf16 matrix units)."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    if device.type == "cuda":
        size = size or 8192
        shape_a, shape_b = (size, size), (size, size)
    else:
        shape_a, shape_b = (size or CPU_CEILING_ROWS, hidden), (hidden, hidden)
    a = torch.randn(*shape_a, device=device, dtype=dtype)
    b = torch.randn(*shape_b, device=device, dtype=dtype)
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    try:
        stats = time_call(lambda: a @ b, device, repeats, warmup=2)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved
    return 2 * shape_a[0] * shape_a[1] * shape_b[1] / stats["median_s"] / 1e12


def environment(device: torch.device) -> dict:
    info = {"device": str(device), "torch": torch.__version__, "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    else:
        info["device_name"] = "cpu"
    try:
        import triton
        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    return info


def time_case(fn, device: torch.device, repeats: int, warmup: int, ranks=None) -> dict:
    """``time_call`` on rank 0 alone (the other ranks wait), then, with several ranks, all of them
    at once: each timed call starts after a barrier, and a call's time is the slowest rank's.
    Adds ``parallel_median_s`` (and its p20/p80) to rank 0's figures. What ``fn`` raises on any
    rank is raised on every rank, after the same collectives (so none is left waiting)."""
    if ranks is None or not ranks.distributed:
        return time_call(fn, device, repeats, warmup)
    stats, error = None, None
    if ranks.is_main:
        try:
            stats = time_call(fn, device, repeats, warmup)
        except Exception as err:  # noqa: BLE001  (re-raised below on every rank)
            error = f"{type(err).__name__}: {err}"
    stats, error = ranks.gather((stats, error))[0]  # the others wait here: rank 0 timed alone
    if error is None and not ranks.is_main:
        error = _quietly(fn, 1 + warmup, ranks.rank)  # their first call (compile, capture) and warm-up
    _raise_first(ranks.gather(error))
    times, error = [], None
    for _ in range(repeats):
        ranks.barrier()
        synchronize(device)
        start = time.perf_counter()
        error = error or _quietly(fn, 1, ranks.rank)  # a failed rank still joins every barrier
        synchronize(device)
        times.append(time.perf_counter() - start)
    gathered = ranks.gather((times, error))
    _raise_first(e for _, e in gathered)
    slowest = [max(column) for column in zip(*(t for t, _ in gathered))]  # [repeats]: the slowest rank each time
    return {**stats, **spread(slowest, "parallel_")}


def _quietly(fn, calls: int, rank: int) -> str | None:
    """Calls ``fn`` ``calls`` times; the first error as text (rank named), else None."""
    try:
        for _ in range(calls):
            fn()
    except Exception as err:  # noqa: BLE001  (every rank learns of it through a gather)
        return f"rank {rank}: {type(err).__name__}: {err}"
    return None


def _raise_first(errors) -> None:
    errors = [e for e in errors if e]
    if errors:
        raise RuntimeError(errors[0])


def run_benchmark(model, schedule, device, ns, backends, precisions=("fp32",), repeats: int = 10,
                  warmup: int = 2, seed: int = 0, on_update=None, cases=None, samplers=None, ranks=None,
                  compile_mode: str = "default") -> dict:
    """Time ``sample`` for every N x precision x backend x sampler that can run here (or for
    ``cases``, a list of (N, precision, backend) in the order to run them: most important
    first; each for every sampler). ``samplers``: a list of ``{"sampler": name, "steps": K}``
    (default: the original 100-step ddpm); sampler "student" is a distilled student's own plan.
    What cannot run is skipped with the reason; a combination that raises is recorded with its
    error under ``failed`` and the sweep goes on.
    ``on_update(result)`` is called after each combination, so a caller can save partial
    results of a long sweep. ``ranks`` (a ``ddpm_fast.distributed.World`` of several ranks, under
    torchrun): each case is timed on rank 0 alone, then on every rank at once with N points
    each, and the rows add the aggregate point-steps/s and the scaling efficiency against one rank.
    ``compile_mode``: torch.compile's mode for backend ``compile`` (recorded in the result).
    """
    device = torch.device(device)
    hidden = model.linears[0].out_features if hasattr(model, "linears") else 128
    samplers = [{"sampler": s["sampler"], "steps": make_plan(schedule, *_plan_args(s), **plan_sources(model)).steps}
                for s in (samplers or [{"sampler": "ddpm", "steps": None}])]
    result = {"environment": environment(device), "n_steps": schedule.n_steps, "samplers": samplers,
              "flops_per_point_step": flops_per_point_step(hidden),
              "matmul_ceiling_tflops": {p: matmul_ceiling(device, p, hidden=hidden) for p in precisions
                                        if p != "tf32" or device.type == "cuda"},
              "rows": [], "skipped": [], "failed": [], "world_size": 1 if ranks is None else ranks.world_size,
              "compile_mode": compile_mode}
    if cases is None:
        cases = [(n, precision, name) for n in ns for precision in precisions for name in backends]
    for n, precision, name in cases:  # each case for every sampler in turn: side by side in a cut sweep
        for spec in samplers:
            _run_case(result, model, schedule, device, spec, n, precision, name, seed, repeats, warmup, ranks)
            if on_update:
                on_update(result)
    return result


def _plan_args(spec: dict) -> tuple:
    """(sampler, steps) for make_plan and sample: (None, None) for a student's own plan."""
    return (None, None) if spec["sampler"] == STUDENT else (spec["sampler"], spec.get("steps"))


def _run_case(result, model, schedule, device, spec, n, precision, name, seed, repeats, warmup, ranks=None):
    case = {"backend": name, "n": n, "precision": precision, **spec}
    reason = _cannot_run(name, device, precision, result["matmul_ceiling_tflops"])
    if ranks is not None and ranks.distributed:  # skipped on every rank if any rank cannot run it
        reason = next((r for r in ranks.gather(reason) if r), None)
    if reason:
        result["skipped"].append({**case, "reason": reason})
        return
    call = lambda: sample(model, n, schedule=schedule, seed=seed, backend=name,  # noqa: E731
                          precision=precision, device=device, chunk_size=None,
                          compile_mode=result["compile_mode"], **dict(zip(("sampler", "steps"), _plan_args(spec))))
    try:
        stats = time_case(call, device, repeats, warmup, ranks)
    except Exception as err:  # noqa: BLE001  (recorded and reported, never counted as a result)
        result["failed"].append({**case, "error": f"{type(err).__name__}: {err}"[:500]})
        return
    tflops = result["flops_per_point_step"] * spec["steps"] * n / stats["median_s"] / 1e12
    result["rows"].append({**case, **stats, "point_steps_per_s": n * spec["steps"] / stats["median_s"],
                           "samples_per_s": n / stats["median_s"], "tflops": tflops,
                           "ceiling_fraction": tflops / result["matmul_ceiling_tflops"][precision]})
    if "parallel_median_s" in stats:  # weak scaling: every rank N points at once
        row, world_size = result["rows"][-1], result["world_size"]
        row["world_size"] = world_size
        row["aggregate_point_steps_per_s"] = world_size * n * spec["steps"] / stats["parallel_median_s"]
        row["scaling_efficiency"] = row["aggregate_point_steps_per_s"] / (world_size * row["point_steps_per_s"])
    _add_speedups(result["rows"])


def _cannot_run(name, device, precision, ceilings):
    try:
        reason = get_backend(name).cannot_run(device, precision)
    except ValueError as err:  # an unknown name: says which names are known
        return str(err)
    if reason is None and precision not in ceilings:
        reason = f"{precision} needs CUDA"
    return reason


def priority_cases(ns, backends, precisions) -> list:
    """(N, precision, backend) most important first, for a sweep that may be cut short: at the
    first two N, eager fp32 (the baseline), then cudagraph and triton-fused in tf32 and bf16,
    then in fp32; then everything else in sweep order."""
    first = []
    for n in list(ns)[:2]:
        first.append((n, "fp32", "eager"))
        for precision in ("tf32", "bf16", "fp32"):
            first += [(n, precision, b) for b in ("triton-fused", "cudagraph")]
    everything = [(n, p, b) for n in ns for p in precisions for b in backends]
    wanted = [case for case in first if case in everything]
    return wanted + [case for case in everything if case not in wanted]


# (header, width, cell of a row): columns joined by two spaces, so no two values ever touch
_COLUMNS = (
    ("backend", 12, lambda r: r["backend"]),
    ("prec", 4, lambda r: r["precision"]),
    ("sampler", 7, lambda r: r.get("sampler", "ddpm")),
    ("K", 3, lambda r: str(r.get("steps", ""))),
    ("N", 9, lambda r: f"{r['n']:,}"),
    ("median ms", 10, lambda r: f"{r['median_s'] * 1e3:.2f}"),
    ("p20-p80 ms", 19, lambda r: f"{r['p20_s'] * 1e3:.2f}-{r['p80_s'] * 1e3:.2f}"),
    ("first s", 8, lambda r: f"{r['first_call_s']:.2f}"),
    ("Mpt-step/s", 10, lambda r: f"{r['point_steps_per_s'] / 1e6:.2f}"),
    ("Msample/s", 9, lambda r: f"{r['n'] / r['median_s'] / 1e6:.3f}"),
    ("TFLOP/s", 8, lambda r: f"{r['tflops']:.3f}"),
    ("ceil %", 6, lambda r: f"{100 * r['ceiling_fraction']:.1f}%"),
    ("vs eager", 8, lambda r: f"{r['speedup_vs_eager']:.1f}x" if r.get("speedup_vs_eager") else "-"),
)


_RANK_COLUMNS = (  # with several ranks: all of them at once, against rank 0 alone
    ("ranks", 5, lambda r: str(r["world_size"])),
    ("agg Mpt-step/s", 14, lambda r: f"{r['aggregate_point_steps_per_s'] / 1e6:.2f}"),
    ("scaling", 7, lambda r: f"{100 * r['scaling_efficiency']:.0f}%"),
)


def _columns(row_or_result: dict) -> tuple:
    return _COLUMNS + (_RANK_COLUMNS if row_or_result.get("world_size", 1) > 1 else ())


def join_columns(cells, columns, left: int) -> str:
    """One table line: the first ``left`` cells left-aligned, the numbers right-aligned, each to its
    column's width, two spaces apart."""
    return "  ".join(cell.ljust(width) if k < left else cell.rjust(width)
                     for k, (cell, (_, width, _)) in enumerate(zip(cells, columns))).rstrip()


def format_row(r: dict) -> str:
    columns = _columns(r)
    return join_columns([cell(r) for _, _, cell in columns], columns, left=3)


def auto_order_from(result: dict) -> dict:
    """{precision: [backend, ...]} fastest first, by the geometric mean of the median times over
    the N that every ranked backend was timed at; for ``backend='auto'`` (backends/auto_order.json)."""
    orders = {}
    first = (result.get("samplers") or [{}])[0]  # ranked on the first sampler benchmarked
    rows = [r for r in result["rows"] if all(r.get(k) == v for k, v in first.items())]
    for precision in sorted({r["precision"] for r in rows}):
        times = {}
        for r in rows:
            if r["precision"] == precision:
                times.setdefault(r["backend"], {})[r["n"]] = r["median_s"]
        common = set.intersection(*(set(t) for t in times.values()))
        if not common:
            continue
        score = {b: statistics.geometric_mean([t[n] for n in common]) for b, t in times.items()}
        orders[precision] = sorted(score, key=score.get)
    return orders


def _add_speedups(rows):
    for row in rows:
        base = next((r for r in rows if r["backend"] == "eager" and r["n"] == row["n"] and r["precision"] == "fp32"
                     and r.get("sampler") == row.get("sampler") and r.get("steps") == row.get("steps")), None)
        row["speedup_vs_eager"] = base["median_s"] / row["median_s"] if base else None


def format_table(result: dict) -> str:
    env = result["environment"]
    lines = [f"device {env['device_name']} | torch {env['torch']} | triton {env['triton']} | "
             f"T = {result['n_steps']} | K = sampler steps | ceilings (TFLOP/s): "
             + ", ".join(f"{p} {v:.2f}" for p, v in result["matmul_ceiling_tflops"].items()),
             join_columns([header for header, _, _ in _columns(result)], _columns(result), left=3)]
    lines += [format_row(r) for r in result["rows"]]
    lines += skipped_and_failed(result,
                                lambda c: f"{c['backend']} {c['precision']} {c.get('sampler', 'ddpm')} N={c['n']}")
    return "\n".join(lines)


def skipped_and_failed(result: dict, describe) -> list:
    """The table's last lines: each case that could not run, with why, and each that raised."""
    return ([f"skipped {describe(c)}: {c['reason']}" for c in result["skipped"]]
            + [f"FAILED {describe(c)}: {c['error']}" for c in result["failed"]])


def plot_throughput(result: dict, path) -> str:
    from .plotting import plot_log_log
    curves = {}
    for r in result["rows"]:
        label = f"{r['backend']} ({r['precision']}), {r.get('sampler', 'ddpm')} {r.get('steps', 0)} steps"
        curves.setdefault(label, []).append((r["n"], r["n"] / r["median_s"]))
    env = result["environment"]
    return plot_log_log(dict(sorted(curves.items())), path, "N (points)", "samples per second",
                        f"sampling throughput, T = {result['n_steps']}: {env['device_name']}, torch {env['torch']}")
