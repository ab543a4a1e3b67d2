"""The per-step function of any sampler plan: ``eager`` runs it, ``compile`` compiles it and
``cudagraph`` captures it."""
from __future__ import annotations

from contextlib import contextmanager, nullcontext

import torch

from ..samplers import A_EPS, A_X, C_1, C_2, C_M, C_S, C_X, P_1, P_2, P_M, P_S, P_Z


def solver_step(model, x, carry, t_index, coef, z, history: int, corrector: bool):
    """One step of a ``SamplerPlan`` (see ddpm_fast.samplers): x [N, 2] at ``t_index`` ([1] long
    tensor, so one graph serves every step) to the next timestep.

    ``carry`` is (s', m_1, m_2), the previous corrected point and estimates (None where the
    plan reads none); ``coef`` the step's [N_COLUMNS] row; ``z`` [N, 2] or None (no noise).
    Returns (x, carry). ``history`` and ``corrector`` are the plan's: Python constants, so a
    compiled step has one graph per plan structure.
    """
    s_prev, m_1, m_2 = carry
    # [N, 2]; in x's dtype: under bf16 autocast the model returns bfloat16, and a 0-d float32
    # coefficient times a bfloat16 tensor would stay bfloat16
    eps = model(x, t_index).to(x.dtype)
    m = coef[A_X] * x + coef[A_EPS] * eps  # the estimate: eps (ddpm, ddim) or x_0
    if corrector:
        s = coef[C_S] * s_prev + coef[C_X] * x + coef[C_M] * m + coef[C_1] * m_1 + coef[C_2] * m_2
    else:
        s = x
    x = coef[P_S] * s + coef[P_M] * m
    if history >= 1:
        x = x + coef[P_1] * m_1
    if history >= 2:
        x = x + coef[P_2] * m_2
    if z is not None:
        x = x + coef[P_Z] * z
    return x, (s if corrector else None, m if history >= 1 else None, m_1 if history >= 2 else None)


def initial_carry(plan, x: torch.Tensor) -> tuple:
    """Zeros for the registers the plan reads (its first row gives them zero weight): one tensor
    each, as aliased inputs would make torch.compile guard on the aliasing and compile twice."""
    return (torch.zeros_like(x) if plan.corrector else None, torch.zeros_like(x) if plan.history >= 1 else None,
            torch.zeros_like(x) if plan.history >= 2 else None)


def run_plan(step, plan, x, timesteps, coefficients, noise_of_step, keep: bool):
    """x_0 (or the K+1 states when ``keep``) from x_T, calling ``step`` = solver_step's signature
    without model/history/corrector. ``noise_of_step(i)`` gives step i's z or None."""
    states, carry = [x], initial_carry(plan, x)
    for i in range(plan.steps):
        with step_range(plan.timesteps[i]):
            x, carry = step(x, carry, timesteps[i:i + 1], coefficients[i], noise_of_step(i))
        if keep:
            states.append(x)
    return torch.stack(states) if keep else x


@contextmanager
def _tf32_matmuls():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def precision_context(precision: str, device: torch.device):
    """fp32: as is; tf32: TF32 matmuls (CUDA); bf16: autocast of the MLP to bfloat16, x kept float32."""
    if precision == "fp32":
        return nullcontext()
    if precision == "tf32":
        if device.type != "cuda":
            raise RuntimeError("precision 'tf32' needs a CUDA GPU")
        return _tf32_matmuls()
    # no autocast weight cache, so captured graphs re-read weights that change in place
    return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=False)


def step_noise(noise, i: int, plan, like: torch.Tensor, generator=None):
    """The z of step i: None at a step that adds no noise (nothing drawn, as the reference);
    ``noise[i]`` when injected; else a fresh draw from ``generator``."""
    if not plan.noisy[i]:
        return None
    if noise is not None:
        return noise[i]
    return torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)


_step_ranges = {"on": False}  # inside nvtx_step_ranges() only


@contextmanager
def nvtx_step_ranges():
    """While the block runs, the host-side loops (``compile``, ``triton-step``) mark each step
    with an NVTX range for Nsight Systems, as ``torch.autograd.profiler.emit_nvtx`` marks ops."""
    before, _step_ranges["on"] = _step_ranges["on"], True
    try:
        yield
    finally:
        _step_ranges["on"] = before


def step_range(t: int):
    """An NVTX range named after the timestep inside ``nvtx_step_ranges`` on CUDA, else nothing."""
    if _step_ranges["on"] and torch.cuda.is_available():
        return torch.cuda.nvtx.range(f"step t={t}")
    return nullcontext()


def draw_x_T(job) -> torch.Tensor:
    """The start: the injected x_T as given, else N(0, prior_std^2 I) drawn from the job's generator."""
    if job.x_T is not None:
        return job.x_T
    x = torch.randn(job.shape, generator=job.generator, device=job.device, dtype=job.dtype)
    return x if job.plan.prior_std == 1.0 else x * job.plan.prior_std
