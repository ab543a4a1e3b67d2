"""The whole MLP with its step embeddings in one launch: activations never leave the chip."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import _mlp_eps
from ._runtime import DEFAULT_BLOCK_M, DEFAULT_NUM_STAGES, DEFAULT_NUM_WARPS, as_float32_rows, check_launch
from .weights import MLPWeights, dot_mode


# N and the stride are runtime values: one compile serves every N (no ==1 / %16 variants).
@triton.jit(do_not_specialize=["t_stride", "N"])
def _mlp_kernel(x_ptr,  # [N, 2] float32
                t_ptr,  # [N] int64 timesteps (stride 0: one for all rows)
                t_stride,
                w1_ptr, b1_ptr, e1_ptr, w2_ptr, b2_ptr, e2_ptr, w3_ptr, b3_ptr, e3_ptr, w4_ptr, b4_ptr,  # MLPWeights
                eps_ptr,  # [N, 2] float32, output
                N, H: tl.constexpr, DOT: tl.constexpr, BLOCK_M: tl.constexpr):
    rows = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    mask = rows < N
    x0 = tl.load(x_ptr + rows * 2, mask=mask, other=0.0)
    x1 = tl.load(x_ptr + rows * 2 + 1, mask=mask, other=0.0)
    t = tl.load(t_ptr + rows * t_stride, mask=mask, other=0)
    eps0, eps1 = _mlp_eps(x0, x1, t[:, None] * H, 0, w1_ptr, b1_ptr, e1_ptr, w2_ptr, b2_ptr, e2_ptr,
                          w3_ptr, b3_ptr, e3_ptr, w4_ptr, b4_ptr, H, DOT, PER_ROW_T=True)
    tl.store(eps_ptr + rows * 2, eps0, mask=mask)
    tl.store(eps_ptr + rows * 2 + 1, eps1, mask=mask)


def mlp_forward(weights: MLPWeights, x: torch.Tensor, t, precision: str = "fp32", block_m: int = DEFAULT_BLOCK_M,
                num_warps: int = DEFAULT_NUM_WARPS) -> torch.Tensor:
    """Predicted noise [N, 2] for points ``x`` [N, 2] at timesteps ``t`` (int, or tensor [N] or [1]).

    Tensor timesteps are range-checked here (a host sync): an out-of-range t would read
    outside the embedding table.
    """
    device = x.device
    dot = dot_mode(precision)
    check_launch(device, weights=weights.w2, t=t if isinstance(t, torch.Tensor) else None)
    x = as_float32_rows(x, "x")
    n = x.shape[0]
    t = torch.as_tensor(t, dtype=torch.long, device=device).reshape(-1)
    if t.shape[0] not in (1, n):
        raise ValueError(f"t must have shape [{n}] or [1], got {list(t.shape)}")
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= weights.n_steps):
        raise ValueError(f"timesteps must lie in [0, {weights.n_steps})")
    eps = torch.empty_like(x)
    if n:
        _mlp_kernel[(triton.cdiv(n, block_m),)](
            x, t, 0 if t.shape[0] == 1 else 1, *weights.pointers(), eps, n,
            H=weights.hidden, DOT=dot, BLOCK_M=block_m, num_warps=num_warps, num_stages=DEFAULT_NUM_STAGES)
    return eps
