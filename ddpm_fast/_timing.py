"""Wall-clock timing with the device synchronized, and the median and p20-p80 spread of the
times: the one way every benchmark, sweep and command of the package measures."""
from __future__ import annotations

import statistics
import time

import torch


def synchronize(device) -> None:
    """Wait for the device's queued work (a no-op off CUDA), so a clock read covers it."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def spread(times: list, prefix: str = "") -> dict:
    """``{prefix}median_s``, ``{prefix}p20_s`` and ``{prefix}p80_s`` of ``times`` (seconds; a single
    time is its own spread)."""
    quantiles = statistics.quantiles(times, n=5) if len(times) > 1 else [times[0]] * 4
    return {f"{prefix}median_s": statistics.median(times), f"{prefix}p20_s": quantiles[0],
            f"{prefix}p80_s": quantiles[3]}


def timed(fn, device):
    """``(fn(), seconds)``, the device synchronized before and after the call."""
    synchronize(device)
    start = time.perf_counter()
    result = fn()
    synchronize(device)
    return result, time.perf_counter() - start


def time_call(fn, device, repeats: int, warmup: int) -> dict:
    """Wall time of ``fn()`` with the device synchronized around each call.

    The first call (compilation, capture, autotuning) is reported apart as
    ``first_call_s``; then ``warmup`` untimed calls, then ``repeats`` timed ones.
    """
    _, first = timed(fn, device)
    for _ in range(warmup):
        fn()
    times = [timed(fn, device)[1] for _ in range(repeats)]
    return {"first_call_s": first, **spread(times), "repeats": repeats}
