"""Checks of plain values (counts, seeds, messages) that import nothing, so that the torch-free
modules (``training.config``, the CLI's parser) share them with the rest of the package."""
from __future__ import annotations

import operator


class TooLarge(ValueError):
    """A request larger than the memory or disk this machine (this rank, under torchrun) has free."""


def one_line(text, limit: int = 300) -> str:
    """A message of torch's (often many lines long) as one line, cut at a word."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " ..."


def check_count(value, name: str = "n", minimum: int = 0) -> int:
    """An integral count (int, NumPy or 0-d integer tensor; never bool or float) >= ``minimum``."""
    if isinstance(value, bool) or isinstance(value, float):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    try:
        count = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None
    if count < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {count}")
    return count


def check_seed(seed) -> int | None:
    """None, or an integer in [0, 2**63): the range every backend's generator takes."""
    if seed is None:
        return None
    seed = check_count(seed, "seed")
    if seed >= 2 ** 63:
        raise ValueError(f"seed must be below 2**63, got {seed}")
    return seed
