"""Time to quality: a training recipe's sample quality (SWD) against its wall seconds.

Training runs as ``ddpm-fast train`` would; after chosen epochs the model is sampled and
scored (``sweep.median_swd``), with that evaluation's time taken out of the clock. Library
code: it returns rows and writes the picture; the CLI prints.
"""
from __future__ import annotations

import time

from .sweep import median_swd
from .training.config import TrainConfig
from .training.loop import train


def default_eval_epochs(epochs: int, points: int = 6) -> list:
    """``points`` epochs spaced by factors of 2 up to ``epochs`` (the last one included)."""
    return sorted({max(1, round(epochs / 2 ** k)) for k in range(points)})


def time_to_quality(config: TrainConfig, eval_epochs=None, *, device="cpu", backend: str = "eager",
                    draws: int = 3, n: int = 10_000, on_point=None, **sampler) -> list:
    """Train ``config`` and score the model after each of ``eval_epochs``: one row per point with the
    epoch, the training seconds so far (from before the dataset is made; evaluations excluded)
    and the median SWD over ``draws`` draws of ``n`` samples (default sampler: 100-step ddpm)."""
    eval_epochs = set(eval_epochs or default_eval_epochs(config.epochs))
    rows, clock = [], {"paused": 0.0}

    def evaluate(result):
        if result.epochs_done not in eval_epochs:
            return
        now = time.perf_counter()
        row = {"epoch": result.epochs_done, "train_s": now - clock["start"] - clock["paused"],
               "swd": median_swd(result.model, result.schedule, draws=draws, n=n, dataset=config.dataset,
                                 **sampler), "loss": result.losses[-1]}
        rows.append(row)
        if on_point:
            on_point(row)
        clock["paused"] += time.perf_counter() - now

    clock["start"] = time.perf_counter()
    train(config, progress=False, device=device, backend=backend, on_epoch_end=evaluate)
    return rows


def plot_time_to_quality(curves: dict, path, bar: float | None = None, floor: float | None = None,
                         title: str = "time to quality") -> str:
    """``curves``: {label: rows of time_to_quality}; SWD (log) against training seconds (log)."""
    from .plotting import plot_log_log
    hlines = [(y, f"{name} {y:.1e}", style) for y, name, style in
              ((bar, "bar", "--"), (floor, "data-vs-data floor", ":")) if y is not None]
    return plot_log_log({label: [(r["train_s"], r["swd"]) for r in rows] for label, rows in curves.items()},
                        path, "training wall seconds (evaluations excluded)", "SWD to fresh data (median of draws)",
                        title, hlines=hlines)
