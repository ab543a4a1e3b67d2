"""One step of any sampler plan in one launch: the MLP, the estimate, the corrector and the update."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import N_COLS, _mlp_eps, _solver_step, _step_noise
from ._runtime import (
    DEFAULT_BLOCK_M,
    DEFAULT_NUM_STAGES,
    DEFAULT_NUM_WARPS,
    check_launch,
    check_plan_noise,
    seed_tensor,
)
from .weights import MLPWeights, dot_mode

STATE_PLANES = 4  # x, s' (the previous corrected point), m_1, m_2 (the previous estimates)


@triton.jit
def _load_plane(ptr, plane, N, rows, mask):
    base = ptr + (plane * tl.cast(N, tl.int64) + rows) * 2  # int64: 4 * N * 2 may pass 2^31
    return tl.load(base, mask=mask, other=0.0), tl.load(base + 1, mask=mask, other=0.0)


@triton.jit
def _store_plane(ptr, plane, N, rows, mask, v0, v1):
    base = ptr + (plane * tl.cast(N, tl.int64) + rows) * 2  # int64: 4 * N * 2 may pass 2^31
    tl.store(base, v0, mask=mask)
    tl.store(base + 1, v1, mask=mask)


# Every integer is a runtime value: one compile serves every step, N and chunk offset.
@triton.jit(do_not_specialize=["i", "N", "row_offset"])
def _sampler_step_kernel(state_ptr,  # [4, N, 2] float32: x, s', m_1, m_2 before step i
                         out_ptr,  # [4, N, 2] float32: the same after step i
                         noise_ptr,  # [K, N, 2] float32 when NOISE_GIVEN (row i is read)
                         seed_ptr,  # [1] int64, key of the drawn z
                         t_ptr,  # [K] int64, the plan's timesteps
                         coef_ptr,  # [K, N_COLUMNS] float32, the plan's coefficients
                         w1_ptr, b1_ptr, e1_ptr, w2_ptr, b2_ptr, e2_ptr, w3_ptr, b3_ptr, e3_ptr, w4_ptr, b4_ptr,  # noqa: E501  (MLPWeights)
                         i, N, row_offset,
                         H: tl.constexpr, DOT: tl.constexpr, NOISE_GIVEN: tl.constexpr, NOISY: tl.constexpr,
                         HISTORY: tl.constexpr, CORRECTOR: tl.constexpr, BLOCK_M: tl.constexpr):
    rows = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    mask = rows < N
    # Every plane is read and written, so the result is defined whatever the plan reads;
    # 6 floats per row beside a [BLOCK_M, 128] MLP.
    x0, x1 = _load_plane(state_ptr, 0, N, rows, mask)
    s0, s1 = _load_plane(state_ptr, 1, N, rows, mask)
    m1_0, m1_1 = _load_plane(state_ptr, 2, N, rows, mask)
    m2_0, m2_1 = _load_plane(state_ptr, 3, N, rows, mask)
    t = tl.load(t_ptr + i)
    eps0, eps1 = _mlp_eps(x0, x1, t * H, 0, w1_ptr, b1_ptr, e1_ptr, w2_ptr, b2_ptr, e2_ptr,
                          w3_ptr, b3_ptr, e3_ptr, w4_ptr, b4_ptr, H, DOT)
    z0, z1 = 0.0, 0.0
    if NOISY:
        z0, z1 = _step_noise(noise_ptr, i, N, rows, mask, tl.load(seed_ptr), t, row_offset, NOISE_GIVEN)
    x0, x1, s0, s1, m0_0, m0_1 = _solver_step(x0, x1, eps0, eps1, s0, s1, m1_0, m1_1, m2_0, m2_1, z0, z1,
                                              coef_ptr + i * N_COLS, HISTORY, CORRECTOR, NOISY)
    _store_plane(out_ptr, 0, N, rows, mask, x0, x1)
    _store_plane(out_ptr, 1, N, rows, mask, s0, s1)  # s (x itself without a corrector)
    _store_plane(out_ptr, 2, N, rows, mask, m0_0, m0_1)  # this step's estimate: the next m_1
    _store_plane(out_ptr, 3, N, rows, mask, m1_0, m1_1)  # the previous one: the next m_2


def new_state(x_T: torch.Tensor) -> torch.Tensor:
    """The [4, N, 2] state before step 0: x_T and zeros (the first step gives them zero weight)."""
    state = torch.zeros(STATE_PLANES, *x_T.shape, device=x_T.device, dtype=torch.float32)
    state[0].copy_(x_T)
    return state


def sampler_step(weights: MLPWeights, state: torch.Tensor, i: int, plan, *, precision: str = "fp32",
                 noise: torch.Tensor | None = None, seed: torch.Tensor | int | None = None,
                 out: torch.Tensor | None = None, row_offset: int = 0, block_m: int = DEFAULT_BLOCK_M,
                 num_warps: int = DEFAULT_NUM_WARPS) -> torch.Tensor:
    """Step ``i`` of ``plan`` (a ``ddpm_fast.samplers.SamplerPlan``) on ``state`` [4, N, 2]
    (from ``new_state(x_T)``), returning the next state; ``out[0]`` is the new x.

    ``noise`` is the whole [K, N, 2] injected noise (row i is read at a step that adds
    noise) or None to draw z in the kernel from ``seed``. No host sync.
    """
    device = state.device
    dot = dot_mode(precision)
    check_launch(device, weights=weights.w2, noise=noise)
    if state.dim() != 3 or state.shape[0] != STATE_PLANES or state.shape[2] != 2 or state.dtype != torch.float32:
        raise ValueError(f"state must be float32 [{STATE_PLANES}, N, 2] (new_state(x_T)), got "
                         f"{state.dtype} {list(state.shape)}")
    n = state.shape[1]
    check_plan_noise(plan, weights, noise, n)
    if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < plan.steps:
        raise ValueError(f"step i={i!r} must be an int in [0, {plan.steps})")
    timesteps, coefficients = plan.tables(device)
    state = state.contiguous()
    out = torch.empty_like(state) if out is None else out
    if n:
        _sampler_step_kernel[(triton.cdiv(n, block_m),)](
            state, out, noise.contiguous() if noise is not None else state, seed_tensor(seed, device),
            timesteps, coefficients, *weights.pointers(), i, n, row_offset,
            H=weights.hidden, DOT=dot, NOISE_GIVEN=noise is not None, NOISY=plan.noisy[i],
            HISTORY=plan.history, CORRECTOR=plan.corrector, BLOCK_M=block_m,
            num_warps=num_warps, num_stages=DEFAULT_NUM_STAGES)
    return out
