"""Timestep grids of the few-step samplers: K integer timesteps, strictly decreasing in [0, T).

Integers because the model's step embeddings exist only there (docs/samplers.md, "Grids").
"""
from __future__ import annotations

import operator

import numpy as np

from .constants import GRIDS


def _nearest_timesteps(values: np.ndarray, table: np.ndarray) -> np.ndarray:
    """The integer t whose ``table[t]`` (increasing in t) is nearest each value, in log space."""
    log_table, log_values = np.log(table), np.log(values)
    t = np.interp(log_values, log_table, np.arange(len(table)))
    return np.round(t).astype(np.int64)


def timestep_grid(alphas_bar: np.ndarray, steps: int, grid, unique: bool = True) -> tuple:
    """K integer timesteps, strictly decreasing in [0, T).

    ``grid``: "trailing" (T-1 down by T/K: diffusers' trailing), "leading" (multiples of
    T//K, from 0 up), "linspace" (T-1 to 0 evenly, rounded), "karras" (Karras et al. 2022's
    rho = 7 spacing of sigma = sqrt((1 - abar) / abar)), "lu" (even in log-SNR, Lu et al.
    2022), or an explicit sequence of ints. A grid whose rounding repeats a timestep is an
    error (``unique=False``: returned as is).
    """
    n = len(alphas_bar)
    if not isinstance(grid, str):
        return check_explicit_grid(grid, n)
    if grid == "trailing":  # diffusers' round(arange(T, 0, -T/K)) - 1, without arange's extra float step
        t = n - 1 - np.round(np.arange(steps) * n / steps).astype(np.int64)
    elif grid == "leading":
        t = (np.arange(steps) * (n // steps))[::-1]
    elif grid == "linspace":
        t = np.round(np.linspace(n - 1, 0, steps)).astype(np.int64)
    elif grid in ("karras", "lu"):
        sigmas = np.sqrt((1 - alphas_bar) / alphas_bar)  # increasing in t
        lo, hi = sigmas[0], sigmas[-1]
        if grid == "karras":
            rho = 7.0
            ramp = np.linspace(0, 1, steps)
            wanted = (hi ** (1 / rho) + ramp * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho
        else:
            wanted = np.exp(np.linspace(np.log(hi), np.log(lo), steps))  # lambda = -log(sigma)
        t = _nearest_timesteps(wanted, sigmas)
    else:
        raise ValueError(f"unknown grid {grid!r}; known grids: {', '.join(GRIDS)}, 'tuned', or a list of ints")
    t = tuple(int(v) for v in t)
    if unique and len(set(t)) != len(t):
        repeated = sorted({v for v in t if t.count(v) > 1})
        shown = ", ".join(map(str, repeated[:5])) + (", ..." if len(repeated) > 5 else "")
        raise ValueError(f"grid {grid!r} with {steps} steps repeats timesteps ({shown}) at T = {n}: "
                         f"use fewer steps or the trailing grid")
    return check_explicit_grid(t, n) if unique else t


def check_explicit_grid(grid, n_steps: int) -> tuple:
    try:
        t = tuple(operator.index(v) for v in grid)
    except TypeError:
        raise TypeError(f"grid must be a name ({', '.join(GRIDS)}, 'tuned') or a sequence of ints, "
                        f"got {grid!r}") from None
    if not t:
        raise ValueError("grid is empty: a sampler needs at least one timestep")
    if any(not 0 <= v < n_steps for v in t):
        raise ValueError(f"grid timesteps must lie in [0, {n_steps}), got {list(t)}")
    if any(a <= b for a, b in zip(t, t[1:])):
        raise ValueError(f"grid timesteps must be strictly decreasing, got {list(t)}")
    return t
