"""Throughput benchmark of the training backends: optimizer steps and samples per second.

Each case is a real ``train`` run of ``warmup_epochs + epochs`` epochs (draws, steps, loss
read-back: everything an epoch does). The warm-up epochs (compiling, capturing) are timed
apart; the timed epochs are measured between CUDA events on a GPU (no host sync between
them) or the host clock on a CPU. Library code: it returns dicts and strings; the CLI prints
and writes them.
"""
from __future__ import annotations

import time

import torch

from ._timing import spread, synchronize
from .bench import environment, join_columns, skipped_and_failed
from .training.config import RECIPES, TrainConfig
from .training.loop import train
from .training.steps import batch_counts, train_backend_unavailable

SEED_RECIPE_STEPS = RECIPES["seed"].epochs * len(batch_counts(RECIPES["seed"].n_points, RECIPES["seed"].batch_size))


def time_training(backend: str, device: torch.device, batch_size: int, n_points: int, epochs: int,
                  warmup_epochs: int, seed: int = 0) -> dict:
    """Median, p20 and p80 seconds per epoch after ``warmup_epochs`` (their wall time apart).
    ``cudagraph`` warms up for at least 2 epochs: its first runs eagerly, its second captures."""
    warmup_epochs = max(warmup_epochs, 2 if backend == "cudagraph" else 1)
    stamps, cuda = [], device.type == "cuda"
    config = TrainConfig(n_points=n_points, batch_size=batch_size, epochs=warmup_epochs + epochs,
                         snapshot_every=0, seed=seed)
    marks = {}

    def tick(result):
        if result.epochs_done == warmup_epochs:  # the timed epochs start here
            synchronize(device)
            marks["warm"] = time.perf_counter()
        if result.epochs_done >= warmup_epochs:
            if cuda:
                event = torch.cuda.Event(enable_timing=True)
                event.record()
                stamps.append(event)
            else:
                stamps.append(time.perf_counter())

    synchronize(device)
    start = time.perf_counter()
    result = train(config, progress=False, device=device, backend=backend, on_epoch_end=tick)
    synchronize(device)
    if cuda:
        times = [a.elapsed_time(b) / 1e3 for a, b in zip(stamps, stamps[1:])]
    else:
        times = [b - a for a, b in zip(stamps, stamps[1:])]
    if not times:
        raise ValueError("need at least 2 timed epochs")
    return {**spread(times), "epochs_timed": len(times), "warmup_epochs": warmup_epochs,
            "warmup_s": marks["warm"] - start,
            "compile_s": result.compile_s,
            "final_loss": result.losses[-1]}


def run_train_benchmark(device, backends, batch_sizes, n_points: int = 10_000, epochs: int = 6,
                        warmup_epochs: int = 2, on_update=None) -> dict:
    """Time every backend x batch size that can run here; what cannot is skipped with the reason,
    what raises is recorded under ``failed``. ``on_update(result)`` after each case."""
    device = torch.device(device)
    result = {"environment": environment(device), "n_points": n_points, "rows": [], "skipped": [], "failed": [],
              "seed_recipe_steps": SEED_RECIPE_STEPS}
    for backend in backends:  # in the order given: most important first, for a sweep that may be cut short
        for batch_size in batch_sizes:
            case = {"backend": backend, "batch_size": batch_size, "n_points": n_points,
                    "steps_per_epoch": len(batch_counts(n_points, batch_size))}
            reason = train_backend_unavailable(backend, device)
            if reason:
                result["skipped"].append({**case, "reason": reason})
            else:
                try:
                    stats = time_training(backend, device, batch_size, n_points, epochs, warmup_epochs)
                except Exception as err:  # noqa: BLE001  (recorded and reported, never counted as a result)
                    result["failed"].append({**case, "error": f"{type(err).__name__}: {err}"[:500]})
                else:
                    steps_per_s = case["steps_per_epoch"] / stats["median_s"]
                    seed_batch = batch_size == RECIPES["seed"].batch_size  # its 316,000 steps are of this batch
                    result["rows"].append({**case, **stats, "steps_per_s": steps_per_s,
                                           "samples_per_s": n_points / stats["median_s"],
                                           "seed_recipe_steps_s": SEED_RECIPE_STEPS / steps_per_s if seed_batch
                                           else None})
            if on_update:
                on_update(result)
    return result


# (header, width, cell of a row): columns joined by two spaces
_COLUMNS = (
    ("backend", 9, lambda r: r["backend"]),
    ("batch", 6, lambda r: str(r["batch_size"])),
    ("steps/ep", 8, lambda r: str(r["steps_per_epoch"])),
    ("epoch ms", 9, lambda r: f"{r['median_s'] * 1e3:.1f}"),
    ("p20-p80 ms", 15, lambda r: f"{r['p20_s'] * 1e3:.1f}-{r['p80_s'] * 1e3:.1f}"),
    ("warm-up s", 9, lambda r: f"{r['warmup_s']:.2f}"),
    ("steps/s", 9, lambda r: f"{r['steps_per_s']:,.0f}"),
    ("ksample/s", 9, lambda r: f"{r['samples_per_s'] / 1e3:,.0f}"),
    ("316k steps s", 12, lambda r: "-" if r["seed_recipe_steps_s"] is None else f"{r['seed_recipe_steps_s']:,.1f}"),
)


def format_train_row(r: dict) -> str:
    return join_columns((cell(r) for _, _, cell in _COLUMNS), _COLUMNS, left=1)


def format_train_table(result: dict) -> str:
    env = result["environment"]
    lines = [f"device {env['device_name']} | torch {env['torch']} | {env['threads']} threads | "
             f"{result['n_points']:,} points | epoch times from "
             + ("CUDA events" if env["device"].startswith("cuda") else "the host clock")
             + f" | '316k steps s': the seed recipe's {result['seed_recipe_steps']:,} steps (batch 128) at this rate",
             join_columns((header for header, _, _ in _COLUMNS), _COLUMNS, left=1)]
    lines += [format_train_row(r) for r in result["rows"]]
    lines += skipped_and_failed(result, lambda c: f"{c['backend']} batch {c['batch_size']}")
    return "\n".join(lines)


def plot_train_throughput(result: dict, path) -> str:
    from .plotting import plot_log_log
    curves = {}
    for r in result["rows"]:
        curves.setdefault(r["backend"], []).append((r["batch_size"], r["samples_per_s"]))
    env = result["environment"]
    return plot_log_log(curves, path, "batch size", "training samples per second",
                        f"training throughput: {env['device_name']}, torch {env['torch']}", x_base=2)
