"""``tune_grid``: the integer timesteps of a few-step sampler, searched for one model.

With 5 steps the standard grids (trailing, Karras, log-SNR) leave most of the error to where
the steps fall. The model's step embeddings only exist at integer t, so the grid is a
choice of K integers: a coordinate search moves one timestep at a time by 1, 2, 4, ...
and keeps a move when the sliced Wasserstein distance to held-out data falls. The search
samples with fixed seeds (common random numbers: every candidate sees the same x_T) and
scores against data drawn with seeds that the quality tests and ``evaluate`` never use,
so a tuned grid is judged on fresh draws.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

from .constants import GRIDS
from .data import make_dataset
from .grids import timestep_grid
from .metrics import sliced_wasserstein
from .samplers import make_plan, schedule_tables

log = logging.getLogger(__name__)

# Seeds of the search's own draws: apart from quality_report's 10_000 + seed and 20_000 + seed.
TUNE_SAMPLE_SEEDS = (50_001, 50_002)
TUNE_DATA_SEED = 60_000
MOVES = (1, 2, 4, 8, 16)


@dataclass
class TuneResult:
    sampler: str
    steps: int
    timesteps: list  # the best grid found
    swd: float  # its objective: mean SWD over the search's seeds
    start: list  # the grid the search began from
    start_swd: float
    evaluations: int
    history: list = field(default_factory=list)  # (timesteps, swd) of every accepted move


def grid_objective(model, schedule, sampler: str, timesteps, data: torch.Tensor, n: int, seeds=TUNE_SAMPLE_SEEDS,
                   backend: str = "eager", compile_mode: str = "default") -> float:
    """Mean SWD to ``data`` of ``n`` samples per seed on the grid ``timesteps``."""
    from .sampling import sample
    scores = []
    for seed in seeds:
        points = sample(model, n, schedule=schedule, sampler=sampler, grid=list(timesteps), seed=seed, backend=backend,
                        compile_mode=compile_mode)
        scores.append(sliced_wasserstein(points, data, seed=seed))
    return sum(scores) / len(scores)


def _neighbours(timesteps: tuple, n_steps: int):
    """Grids one move away: one timestep shifted by +-d, staying strictly decreasing in [0, T)."""
    for j in range(len(timesteps)):
        upper = timesteps[j - 1] if j else n_steps
        lower = timesteps[j + 1] if j + 1 < len(timesteps) else -1
        for d in MOVES:
            for moved in (timesteps[j] - d, timesteps[j] + d):
                if lower < moved < upper:
                    yield timesteps[:j] + (moved,) + timesteps[j + 1:]


def tune_grid(model, schedule, sampler: str = "dpm++2m", steps: int = 5, *, n: int = 20_000,
              dataset: str = "s_curve", max_evaluations: int = 400, backend: str = "eager",
              on_step=None, compile_mode: str = "default") -> TuneResult:
    """Search the ``steps`` integer timesteps of ``sampler`` that bring the model's samples
    closest to the data (SWD), starting from the best of the standard grids.

    ``n`` points per seed per evaluation; ``on_step(result)`` is called after every accepted
    move (for progress). Returns the best grid; the caller saves it with the model
    (``ddpm-fast tune-steps`` writes it into the checkpoint's metadata).
    """
    make_plan(schedule, sampler, steps)  # checks the sampler and steps before any work
    data = make_dataset(dataset, n, seed=TUNE_DATA_SEED)
    alphas_bar = schedule_tables(schedule)[1]
    evaluations = 0

    def score(grid):
        nonlocal evaluations
        evaluations += 1
        return grid_objective(model, schedule, sampler, grid, data, n, backend=backend, compile_mode=compile_mode)

    starts = {}
    for name in GRIDS:
        try:
            starts[timestep_grid(alphas_bar, steps, name)] = name
        except ValueError:  # this grid repeats timesteps at this many steps
            continue
    scored = sorted((score(grid), grid) for grid in starts)
    best_swd, best = scored[0]
    result = TuneResult(sampler, steps, list(best), best_swd, list(best), best_swd, evaluations)
    log.info("tune %s %d steps: start %s (%s grid) swd %.5f", sampler, steps, best, starts[best], best_swd)
    improved = True
    while improved and evaluations < max_evaluations:
        improved = False
        for candidate in _neighbours(best, schedule.n_steps):
            if evaluations >= max_evaluations:
                break
            swd = score(candidate)
            if swd < best_swd:
                best, best_swd, improved = candidate, swd, True
                result.history.append((list(best), best_swd))
                result.timesteps, result.swd, result.evaluations = list(best), best_swd, evaluations
                log.info("tune %s %d steps: %s swd %.5f (%d evaluations)", sampler, steps, best, swd, evaluations)
                if on_step is not None:
                    on_step(result)
                break  # first improvement: restart the neighbourhood from the new grid
    result.evaluations = evaluations
    return result


__all__ = ["TuneResult", "tune_grid", "grid_objective"]
