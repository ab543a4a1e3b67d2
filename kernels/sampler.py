"""All K steps of any sampler plan in one launch: each program keeps its points, and the
plan's history (previous estimates, corrected point), on chip for the whole trajectory."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import N_COLS, _mlp_eps, _solver_step, _step_noise
from ._runtime import (
    DEFAULT_BLOCK_M,
    DEFAULT_NUM_STAGES,
    DEFAULT_NUM_WARPS,
    as_float32_rows,
    check_launch,
    check_plan_noise,
    seed_tensor,
)
from .weights import MLPWeights, dot_mode


# N and the chunk's row offset are runtime values: one compile serves every N.
@triton.jit(do_not_specialize=["N", "row_offset"])
def _sampler_kernel(x_ptr,  # [N, 2] float32, x_T
                    out_ptr,  # [N, 2] float32, x_0
                    traj_ptr,  # [K // KEEP_EVERY + 1, N, 2] float32 when KEEP_EVERY > 0
                    noise_ptr,  # [K, N, 2] float32 when NOISE_GIVEN; noise[i] is the z of step i
                    seed_ptr,  # [1] int64, key of the drawn z
                    t_ptr,  # [K] int64, the plan's timesteps
                    coef_ptr,  # [K, N_COLUMNS] float32, the plan's coefficients
                    w1_ptr, b1_ptr, e1_ptr, w2_ptr, b2_ptr, e2_ptr, w3_ptr, b3_ptr, e3_ptr, w4_ptr, b4_ptr,  # noqa: E501  (MLPWeights)
                    N, row_offset,
                    w_step_stride,  # 0: every step reads the same weights (see below)
                    K: tl.constexpr,  # steps: a constant trip count (and triton 3.6's interpreter
                                      # cannot loop to a runtime bound with numpy 2)
                    H: tl.constexpr, DOT: tl.constexpr, NOISE_GIVEN: tl.constexpr, NOISY: tl.constexpr,
                    HISTORY: tl.constexpr, CORRECTOR: tl.constexpr, KEEP_EVERY: tl.constexpr,
                    BLOCK_M: tl.constexpr):
    rows = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    mask = rows < N
    seed = tl.load(seed_ptr)
    x0 = tl.load(x_ptr + rows * 2, mask=mask, other=0.0)
    x1 = tl.load(x_ptr + rows * 2 + 1, mask=mask, other=0.0)
    # The plan's registers, two coordinates each; the first step gives them zero weight.
    s0, s1 = tl.zeros_like(x0), tl.zeros_like(x1)  # corrected point of the previous step (UniPC)
    m1_0, m1_1 = tl.zeros_like(x0), tl.zeros_like(x1)  # estimate of the previous step
    m2_0, m2_1 = tl.zeros_like(x0), tl.zeros_like(x1)  # estimate of the step before
    if KEEP_EVERY > 0:
        tl.store(traj_ptr + rows * 2, x0, mask=mask)
        tl.store(traj_ptr + rows * 2 + 1, x1, mask=mask)
    for i in range(0, K):
        t = tl.load(t_ptr + i)
        # The weights' address moves by w_step_stride (0) per step. As a runtime value it stops
        # the compiler from hoisting the weight reads out of the loop. Hoisted, the TF32 hi/lo
        # operands of both layers would need 256 KB of shared memory (a block may have 227 KB),
        # and the bias and layer-1/4 vectors would pin 32 registers each for the whole loop
        # (kilobytes of spills); re-read from L2 at each step, one [H, H] operand at a time is held.
        eps0, eps1 = _mlp_eps(x0, x1, t * H, i * w_step_stride, w1_ptr, b1_ptr, e1_ptr, w2_ptr, b2_ptr, e2_ptr,
                              w3_ptr, b3_ptr, e3_ptr, w4_ptr, b4_ptr, H, DOT)
        z0, z1 = 0.0, 0.0
        if NOISY:
            z0, z1 = _step_noise(noise_ptr, i, N, rows, mask, seed, t, row_offset, NOISE_GIVEN)
        x0, x1, c0, c1, m0_0, m0_1 = _solver_step(x0, x1, eps0, eps1, s0, s1, m1_0, m1_1, m2_0, m2_1, z0, z1,
                                                  coef_ptr + i * N_COLS, HISTORY, CORRECTOR, NOISY)
        # Only the registers the plan reads are updated; the others stay the loop's invariant zeros.
        if CORRECTOR:
            s0, s1 = c0, c1
        if HISTORY >= 2:
            m2_0, m2_1 = m1_0, m1_1
        if HISTORY >= 1:
            m1_0, m1_1 = m0_0, m0_1
        if KEEP_EVERY > 0:
            if (i + 1) % KEEP_EVERY == 0:
                state = traj_ptr + (tl.cast((i + 1) // KEEP_EVERY, tl.int64) * N + rows) * 2  # int64
                tl.store(state, x0, mask=mask)
                tl.store(state + 1, x1, mask=mask)
    tl.store(out_ptr + rows * 2, x0, mask=mask)
    tl.store(out_ptr + rows * 2 + 1, x1, mask=mask)


def sample_fused(weights: MLPWeights, x_T: torch.Tensor, plan, *, precision: str = "fp32",
                 noise: torch.Tensor | None = None, seed: torch.Tensor | int | None = None, keep_every: int = 0,
                 row_offset: int = 0, out: torch.Tensor | None = None, block_m: int = DEFAULT_BLOCK_M,
                 num_warps: int = DEFAULT_NUM_WARPS):
    """Run all K steps of ``plan`` (a ``ddpm_fast.samplers.SamplerPlan``) from x_T [N, 2] in one launch.

    Returns x_0 [N, 2], and with ``keep_every = k > 0`` also the trajectory
    [K // k + 1, N, 2] of the states after 0, k, 2k, ... steps (x_T first). ``noise``
    [K, N, 2] is injected (read at the steps that add noise), or None to draw z in the
    kernel keyed by (seed, t, global row). One compile per (precision, K, plan structure);
    no host sync.
    """
    device = x_T.device
    dot = dot_mode(precision)
    check_launch(device, weights=weights.w2, noise=noise)
    x_T = as_float32_rows(x_T, "x_T")
    n = x_T.shape[0]
    check_plan_noise(plan, weights, noise, n)
    if keep_every < 0:
        raise ValueError(f"keep_every must be >= 0, got {keep_every}")
    timesteps, coefficients = plan.tables(device)
    out = torch.empty_like(x_T) if out is None else out
    traj = torch.empty(plan.steps // keep_every + 1, n, 2, device=device) if keep_every else out
    if n:
        _sampler_kernel[(triton.cdiv(n, block_m),)](
            x_T, out, traj, noise.contiguous() if noise is not None else x_T, seed_tensor(seed, device),
            timesteps, coefficients, *weights.pointers(), n, row_offset, 0, K=plan.steps,
            H=weights.hidden, DOT=dot, NOISE_GIVEN=noise is not None, NOISY=plan.has_noise,
            HISTORY=plan.history, CORRECTOR=plan.corrector, KEEP_EVERY=keep_every,
            BLOCK_M=block_m, num_warps=num_warps, num_stages=DEFAULT_NUM_STAGES)
    return (out, traj) if keep_every else out
