"""One whole reverse step in one launch: the MLP, the mean and sigma_t * z."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import _mlp_eps, _reverse_update, _step_noise
from ._runtime import DEFAULT_BLOCK_M, DEFAULT_NUM_STAGES, DEFAULT_NUM_WARPS, as_float32_rows, check_launch, seed_tensor
from .weights import MLPWeights, dot_mode


# Every integer is a runtime value: one compile serves every t, N and chunk offset.
@triton.jit(do_not_specialize=["t", "i", "N", "row_offset"])
def _p_sample_kernel(x_ptr,  # [N, 2] float32, x_t
                     out_ptr,  # [N, 2] float32, x_{t-1}
                     noise_ptr,  # [T, N, 2] float32 when NOISE_GIVEN (row i = T-1-t is read)
                     seed_ptr,  # [1] int64, key of the drawn z
                     coeff_ptr, inv_sqrt_alphas_ptr, sigma_ptr,  # [T] float32 step tables
                     w1_ptr, b1_ptr, e1_ptr, w2_ptr, b2_ptr, e2_ptr, w3_ptr, b3_ptr, e3_ptr, w4_ptr, b4_ptr,  # MLPWeights
                     t, i, N, row_offset,
                     H: tl.constexpr, DOT: tl.constexpr, NOISE_GIVEN: tl.constexpr,
                     BLOCK_M: tl.constexpr):
    rows = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    mask = rows < N
    x0 = tl.load(x_ptr + rows * 2, mask=mask, other=0.0)
    x1 = tl.load(x_ptr + rows * 2 + 1, mask=mask, other=0.0)
    eps0, eps1 = _mlp_eps(x0, x1, t * H, 0, w1_ptr, b1_ptr, e1_ptr, w2_ptr, b2_ptr, e2_ptr,
                          w3_ptr, b3_ptr, e3_ptr, w4_ptr, b4_ptr, H, DOT)
    z0, z1 = _step_noise(noise_ptr, i, N, rows, mask, tl.load(seed_ptr), t, row_offset, NOISE_GIVEN)
    tl.store(out_ptr + rows * 2, _reverse_update(x0, eps0, z0, t, coeff_ptr, inv_sqrt_alphas_ptr, sigma_ptr),
             mask=mask)
    tl.store(out_ptr + rows * 2 + 1, _reverse_update(x1, eps1, z1, t, coeff_ptr, inv_sqrt_alphas_ptr, sigma_ptr),
             mask=mask)


def p_sample_step(weights: MLPWeights, x: torch.Tensor, t: int, tables, *, precision: str = "fp32",
                  noise: torch.Tensor | None = None, seed: torch.Tensor | int | None = None,
                  out: torch.Tensor | None = None, row_offset: int = 0, block_m: int = DEFAULT_BLOCK_M,
                  num_warps: int = DEFAULT_NUM_WARPS) -> torch.Tensor:
    """x_{t-1} from x_t [N, 2] at the Python-int timestep ``t``.

    ``tables`` is ``(coeff, inv_sqrt_alphas, sigma)`` from ``sampler_coefficients`` (set
    sigma[0] = 0 for DDPM's noiseless last step). ``noise`` is the whole [T, N, 2] injected
    noise (row T-1-t is used) or None to draw z in the kernel from ``seed``. No host sync.
    """
    coeff, inv_sqrt_alphas, sigma = tables
    device = x.device
    dot = dot_mode(precision)
    check_launch(device, weights=weights.w2, coeff=coeff, noise=noise)
    x = as_float32_rows(x, "x")
    n, n_steps = x.shape[0], weights.n_steps
    if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < n_steps:
        raise ValueError(f"timestep t={t!r} must be an int in [0, {n_steps})")
    if noise is not None and (tuple(noise.shape) != (n_steps, n, 2) or noise.dtype != torch.float32):
        raise ValueError(f"noise must be float32 [{n_steps}, {n}, 2], got {noise.dtype} {list(noise.shape)}")
    out = torch.empty_like(x) if out is None else out
    if n:
        _p_sample_kernel[(triton.cdiv(n, block_m),)](
            x, out, noise.contiguous() if noise is not None else x, seed_tensor(seed, device),
            coeff, inv_sqrt_alphas, sigma, *weights.pointers(), t, n_steps - 1 - t, n, row_offset,
            H=weights.hidden, DOT=dot, NOISE_GIVEN=noise is not None, BLOCK_M=block_m,
            num_warps=num_warps, num_stages=DEFAULT_NUM_STAGES)
    return out
