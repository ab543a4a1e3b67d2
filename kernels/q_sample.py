"""Fused forward process: x_t = alphas_bar_sqrt[t] * x_0 + one_minus_alphas_bar_sqrt[t] * eps."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import STREAM_Q_SAMPLE, _gaussian_pair
from ._runtime import as_float32_rows, check_launch, seed_tensor


# N, the stride and the offset are runtime values: one compile serves every N.
@triton.jit(do_not_specialize=["t_stride", "N", "row_offset"])
def _q_sample_kernel(x0_ptr,  # [N, 2] float32, x_0
                     t_ptr,  # [N] int64 timesteps (stride 0: one for all rows)
                     t_stride,
                     alphas_bar_sqrt_ptr, one_minus_alphas_bar_sqrt_ptr,  # [T] float32
                     eps_ptr,  # [N, 2] float32: read when EPS_GIVEN, else written
                     seed_ptr,  # [1] int64, key of the drawn eps
                     xt_ptr,  # [N, 2] float32, output x_t
                     N, row_offset,
                     EPS_GIVEN: tl.constexpr, BLOCK: tl.constexpr):
    rows = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = rows < N
    t = tl.load(t_ptr + rows * t_stride, mask=mask, other=0)
    scale_x = tl.load(alphas_bar_sqrt_ptr + t, mask=mask, other=0.0)
    scale_eps = tl.load(one_minus_alphas_bar_sqrt_ptr + t, mask=mask, other=0.0)
    x0 = tl.load(x0_ptr + rows * 2, mask=mask, other=0.0)
    x1 = tl.load(x0_ptr + rows * 2 + 1, mask=mask, other=0.0)
    if EPS_GIVEN:
        e0 = tl.load(eps_ptr + rows * 2, mask=mask, other=0.0)
        e1 = tl.load(eps_ptr + rows * 2 + 1, mask=mask, other=0.0)
    else:
        e0, e1 = _gaussian_pair(tl.load(seed_ptr), 0, rows + row_offset, STREAM_Q_SAMPLE)
        tl.store(eps_ptr + rows * 2, e0, mask=mask)
        tl.store(eps_ptr + rows * 2 + 1, e1, mask=mask)
    tl.store(xt_ptr + rows * 2, scale_x * x0 + scale_eps * e0, mask=mask)
    tl.store(xt_ptr + rows * 2 + 1, scale_x * x1 + scale_eps * e1, mask=mask)


def q_sample(x_0: torch.Tensor, t, alphas_bar_sqrt: torch.Tensor, one_minus_alphas_bar_sqrt: torch.Tensor,
             noise: torch.Tensor | None = None, seed: torch.Tensor | int | None = None,
             block: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns ``(x_t, eps)``; eps is ``noise`` when given, else drawn in the kernel from ``seed``.

    ``t`` is an int or an integer tensor [N] or [1]; values must lie in [0, T) (checked
    here, which reads them: do not call this inside a captured loop with unchecked t).
    """
    device = x_0.device
    check_launch(device, t=t if isinstance(t, torch.Tensor) else None, alphas_bar_sqrt=alphas_bar_sqrt,
                 one_minus_alphas_bar_sqrt=one_minus_alphas_bar_sqrt, noise=noise,
                 seed=seed if isinstance(seed, torch.Tensor) else None)
    x_0 = as_float32_rows(x_0, "x_0")
    n, n_steps = x_0.shape[0], alphas_bar_sqrt.shape[0]
    t = torch.as_tensor(t, dtype=torch.long, device=device).reshape(-1)
    if t.shape[0] not in (1, n):
        raise ValueError(f"t must have shape [{n}] or [1], got {list(t.shape)}")
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= n_steps):
        raise ValueError(f"timesteps must lie in [0, {n_steps})")
    eps = torch.empty_like(x_0) if noise is None else as_float32_rows(noise, "noise", n)
    seed_t = seed_tensor(seed, device)
    x_t = torch.empty_like(x_0)
    if n:
        _q_sample_kernel[(triton.cdiv(n, block),)](
            x_0, t, 0 if t.shape[0] == 1 else 1, alphas_bar_sqrt.float().contiguous(),
            one_minus_alphas_bar_sqrt.float().contiguous(), eps, seed_t, x_t, n, 0,
            EPS_GIVEN=noise is not None, BLOCK=block)
    return x_t, eps

