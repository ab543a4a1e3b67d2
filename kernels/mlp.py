"""The whole MLP with its step embeddings in one launch: activations never leave the chip."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import _mlp_eps
from ._runtime import DEFAULT_BLOCK_M, DEFAULT_NUM_STAGES, DEFAULT_NUM_WARPS, as_float32_rows, check_launch
from .pack import MLPPack


@triton.jit
def _mlp_kernel(x_ptr,  # [N, 2] float32
                t_ptr,  # [N] int64 timesteps (stride 0: one for all rows)
                t_stride,
                w1_ptr, emb_ptr, w2_ptr, w3_ptr, w4_ptr, b4_ptr,  # the MLPPack
                eps_ptr,  # [N, 2] float32, output
                N, T, H: tl.constexpr, DOT: tl.constexpr, BLOCK_M: tl.constexpr):
    rows = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    mask = rows < N
    x0 = tl.load(x_ptr + rows * 2, mask=mask, other=0.0)
    x1 = tl.load(x_ptr + rows * 2 + 1, mask=mask, other=0.0)
    t = tl.load(t_ptr + rows * t_stride, mask=mask, other=0)
    eps0, eps1 = _mlp_eps(x0, x1, t[:, None] * H, w1_ptr, emb_ptr, w2_ptr, w3_ptr, w4_ptr, b4_ptr,
                          T, H, DOT)
    tl.store(eps_ptr + rows * 2, eps0, mask=mask)
    tl.store(eps_ptr + rows * 2 + 1, eps1, mask=mask)


def mlp_forward(pack: MLPPack, x: torch.Tensor, t, block_m: int = DEFAULT_BLOCK_M,
                num_warps: int = DEFAULT_NUM_WARPS) -> torch.Tensor:
    """Predicted noise [N, 2] for points ``x`` [N, 2] at timesteps ``t`` (int, or tensor [N] or [1]).

    Tensor timesteps are range-checked here (a host sync): an out-of-range t would read
    outside the embedding table.
    """
    device = x.device
    check_launch(device, weights=pack.emb, t=t if isinstance(t, torch.Tensor) else None)
    x = as_float32_rows(x, "x")
    n = x.shape[0]
    t = torch.as_tensor(t, dtype=torch.long, device=device).reshape(-1)
    if t.shape[0] not in (1, n):
        raise ValueError(f"t must have shape [{n}] or [1], got {list(t.shape)}")
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= pack.n_steps):
        raise ValueError(f"timesteps must lie in [0, {pack.n_steps})")
    eps = torch.empty_like(x)
    if n:
        _mlp_kernel[(triton.cdiv(n, block_m),)](
            x, t, 0 if t.shape[0] == 1 else 1, *pack.pointers(), eps, n, pack.n_steps,
            H=pack.hidden, DOT=pack.dot_mode, BLOCK_M=block_m, num_warps=num_warps, num_stages=DEFAULT_NUM_STAGES)
    return eps
