"""Row-keyed noise: the same rows for the same seed, whatever the world size and chunk size.

A seeded request of n rows is cut into key blocks of ``ROW_BLOCK`` rows. Block b draws from
its own generator, seeded by ``block_seed(seed, b)``, in one fixed order: x_T for all its
rows (``randn(ROW_BLOCK, 2)``), then the z of every noisy step at once
(``randn(noisy_steps, ROW_BLOCK, 2)``). A row's numbers therefore depend on (seed, row) only;
a chunk or a shard takes the blocks it overlaps and slices its rows out, so splitting a
request across chunks or ranks never changes a row's noise. The points computed from it agree
within float32 rounding, not bit for bit: a BLAS may round a row by the row count of the matrix
it sits in; the same pieces again give the same bits. The Triton backends key their in-kernel
noise by global row already (Philox, ``kernels/_runtime.py``): they take x_T from here and
draw their own z; ``eager``, ``compile`` and ``cudagraph`` take both as injected noise.

Draws are float32 on the sampling device (a float64 model gets them converted), so rows
agree across float32 and float64 runs but not across device types (CPU and CUDA generators
differ).
"""
from __future__ import annotations

import numpy as np
import torch

ROW_BLOCK = 1 << 14  # rows per key block: 16,384 (a block's z for 100 steps is 13 MB)


def derive_seed(seed: int, key: int) -> int:
    """A 63-bit seed for ``key`` (a block, a chunk's first row) of a request seeded with ``seed``:
    NumPy's SeedSequence of the pair, so different keys give independent streams."""
    words = np.random.SeedSequence([seed, key]).generate_state(2, np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


def block_seed(seed: int, block: int) -> int:
    """The seed of key block ``block`` of a request seeded with ``seed``."""
    return derive_seed(seed, block)


def shard_rows(n: int, rank: int, world_size: int) -> tuple:
    """Rank ``rank``'s contiguous row range [lo, hi) of n rows split as evenly as possible."""
    return n * rank // world_size, n * (rank + 1) // world_size


def keyed_draws(seed: int, lo: int, hi: int, plan, device: torch.device, dtype: torch.dtype = torch.float32,
                with_noise: bool = True) -> tuple:
    """x_T [hi-lo, 2] and, when ``with_noise``, the injected noise [K, hi-lo, 2] of rows [lo, hi).

    Noiseless steps get zeros (never read). x_T is scaled by the plan's prior std.
    """
    rows = hi - lo
    noisy = [i for i, flag in enumerate(plan.noisy) if flag]
    x_T = torch.empty(rows, 2, device=device)  # [rows, 2]
    noise = torch.zeros(plan.steps, rows, 2, device=device) if with_noise else None  # [K, rows, 2]
    for block in range(lo // ROW_BLOCK, (hi - 1) // ROW_BLOCK + 1 if rows else 0):
        start = block * ROW_BLOCK
        a, b = max(lo, start) - start, min(hi, start + ROW_BLOCK) - start  # this request's rows in the block
        generator = torch.Generator(device).manual_seed(block_seed(seed, block))
        x_T[start + a - lo:start + b - lo] = torch.randn(ROW_BLOCK, 2, generator=generator, device=device)[a:b]
        if with_noise and noisy:
            z = torch.randn(len(noisy), ROW_BLOCK, 2, generator=generator, device=device)  # [noisy, ROW_BLOCK, 2]
            if noisy == list(range(len(noisy))):  # the usual case: every step but maybe the last
                noise[:len(noisy), start + a - lo:start + b - lo] = z[:, a:b]
            else:  # step by step: a list index would copy an index tensor to the device
                for j, step in enumerate(noisy):
                    noise[step, start + a - lo:start + b - lo] = z[j, a:b]
    if plan.prior_std != 1.0:
        x_T = x_T * plan.prior_std
    return x_T.to(dtype), None if noise is None else noise.to(dtype)
