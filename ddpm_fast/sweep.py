"""Quality against the number of steps, per sampler: the table and picture a user picks a sampler from.

Library code: it returns rows and strings and writes the picture; the CLI prints.
"""
from __future__ import annotations

import statistics
from functools import partial

import torch

from ._timing import timed
from .metrics import swd_report
from .samplers import make_plan, plan_sources
from .sampling import sample

DEFAULT_SAMPLERS = ("ddpm", "ddim", "dpm++2m", "unipc")
DEFAULT_STEPS = (5, 10, 20, 50, 100)


def median_swd(model, schedule, *, draws: int = 3, n: int = 10_000, dataset: str = "s_curve",
               backend: str = "eager", **sampler) -> float:
    """The quality bar's measure: median over seeds 0..draws-1 of the SWD of n samples to fresh data
    (the tests' and the figure in docs/samplers.md)."""
    scores = [swd_report(sample(model, n, schedule=schedule, seed=draw, backend=backend, **sampler), dataset,
                         seed=draw)["swd"] for draw in range(draws)]
    return statistics.median(scores)


def quality_sweep(model, schedule, samplers=DEFAULT_SAMPLERS, steps=DEFAULT_STEPS, *, n: int = 10_000,
                  draws: int = 3, dataset: str = "s_curve", backend: str = "auto", precision: str = "fp32",
                  device=None, seed: int = 0, on_row=None, compile_mode: str = "default", students=()) -> list:
    """One row per (sampler, steps): the median over ``draws`` seeds of the SWD to fresh data,
    its floor, and the median wall time of the ``sample`` call (the first call of each backend
    and plan structure is made, untimed, before). Each sampler takes its default prior and
    grid (the model's tuned grid where it has one). ``students``: distilled students (models with
    a ``student_plan``), a row each on its own plan, as sampler "student". ``on_row(row)`` after
    every row."""
    device = torch.device(device) if device is not None else None
    options = dict(n=n, draws=draws, dataset=dataset, backend=backend, precision=precision, device=device, seed=seed,
                   compile_mode=compile_mode)
    cases = [(model, {"sampler": sampler, "steps": k}) for sampler in samplers for k in steps]
    cases += [(student, {}) for student in students]
    rows = []
    for case_model, sampler in cases:
        rows.append(_sweep_row(case_model, schedule, sampler, **options))
        if on_row:
            on_row(rows[-1])
    return rows


def _sweep_row(model, schedule, sampler: dict, *, n, draws, dataset, backend, precision, device, seed,
               compile_mode) -> dict:
    """One sampler (``{}``: a student's own plan) scored over ``draws`` seeds, and timed."""
    plan = make_plan(schedule, **sampler, **plan_sources(model))
    kwargs = dict(schedule=schedule, backend=backend, precision=precision, device=device, compile_mode=compile_mode,
                  **sampler)
    sample(model, min(n, 64), seed=seed, **kwargs)  # compile / capture / warm up, not timed
    swd, floor, seconds = [], [], []
    for draw in range(draws):
        points, wall_s = timed(partial(sample, model, n, seed=seed + draw, **kwargs), device)
        seconds.append(wall_s)
        report = swd_report(points, dataset, seed=draw)
        swd.append(report["swd"])
        floor.append(report["swd_floor"])
    return {"sampler": sampler.get("sampler", "student"), "steps": plan.steps, "grid": plan.grid,
            "timesteps": list(plan.timesteps), "prior_std": plan.prior_std, "swd": statistics.median(swd),
            "swd_each": swd, "swd_floor": statistics.median(floor), "seconds": statistics.median(seconds), "n": n,
            "draws": draws}


def format_sweep(rows: list) -> str:
    """A Markdown table: SWD (x 1e-3) per sampler (rows) and steps (columns), then the floor."""
    steps = sorted({r["steps"] for r in rows})
    samplers = list(dict.fromkeys(r["sampler"] for r in rows))
    cell = {(r["sampler"], r["steps"]): r for r in rows}
    lines = ["| SWD x 1e-3 (wall s) | " + " | ".join(f"{k} steps" for k in steps) + " |",
             "|---|" + "---|" * len(steps)]
    for sampler in samplers:
        cells = [f"{cell[sampler, k]['swd'] * 1e3:.2f} ({cell[sampler, k]['seconds']:.2f})"
                 if (sampler, k) in cell else "-" for k in steps]
        lines.append(f"| {sampler} | " + " | ".join(cells) + " |")
    floor = statistics.median(r["swd_floor"] for r in rows)
    lines.append(f"\ndata-vs-data floor: {floor * 1e3:.2f}e-3 (median SWD between two fresh draws of the data)")
    return "\n".join(lines)


def plot_sweep(rows: list, path) -> str:
    from .plotting import plt, save_figure
    fig, (ax_q, ax_t) = plt.subplots(1, 2, figsize=(10, 4))
    for sampler in dict.fromkeys(r["sampler"] for r in rows):
        mine = sorted((r["steps"], r["swd"], r["seconds"]) for r in rows if r["sampler"] == sampler)
        ks, swd, seconds = zip(*mine)
        label = "distilled students" if sampler == "student" else sampler
        ax_q.plot(ks, [v * 1e3 for v in swd], marker="o", label=label)
        ax_t.plot(ks, seconds, marker="o", label=label)
    floor = statistics.median(r["swd_floor"] for r in rows) * 1e3
    ax_q.axhline(floor, color="gray", linestyle="--", label="data-vs-data floor")
    for ax in (ax_q, ax_t):
        ax.set_xscale("log")
        ax.set_xlabel("sampler steps K (model calls)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    ax_q.set_yscale("log")
    ax_q.set_ylabel("SWD to fresh data (x 1e-3), median of draws")
    ax_t.set_ylabel("seconds per sample() call")
    n = rows[0]["n"] if rows else 0
    ax_q.set_title(f"quality vs steps ({n:,} points)", fontsize=9)
    ax_t.set_title("wall time vs steps", fontsize=9)
    return save_figure(fig, path)
