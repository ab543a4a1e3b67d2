"""``triton-step`` (one launch per step) and ``triton-fused`` (all steps in one launch)."""
from __future__ import annotations

import torch

from ..constants import PRECISIONS
from ._step import draw_x_T, step_range
from .registry import Backend, SamplingJob, register_backend


def _unavailable(device: torch.device) -> str | None:
    try:
        from ..kernels import triton_unavailable_reason
    except ImportError as err:  # triton missing or broken
        return f"the Triton kernels cannot be imported: {err}"
    return triton_unavailable_reason(device)


def _prepare(job: SamplingJob):
    from ..kernels import mlp_weights, seed_tensor
    weights = mlp_weights(job.model)  # views of the parameters: read afresh by every launch
    if weights.n_steps != job.plan.n_steps:
        raise ValueError(f"the model's step embeddings hold {weights.n_steps} timesteps but the schedule has "
                         f"{job.plan.n_steps}")
    if weights.device != job.device:
        raise ValueError(f"the model is on {weights.device} but the sampler runs on {job.device}")
    x_T = draw_x_T(job)
    seed = seed_tensor(job.seed, job.device, job.generator)
    noise = None if job.noise is None else job.noise.float().contiguous()  # a chunk's rows: copied once
    return weights, x_T, noise, seed


def _run_step(job: SamplingJob) -> torch.Tensor:
    from ..kernels import new_state, sampler_step
    weights, x_T, noise, seed = _prepare(job)
    state, states = new_state(x_T), [x_T]
    for i, t in enumerate(job.plan.timesteps):
        with step_range(t):
            state = sampler_step(weights, state, i, job.plan, precision=job.precision, noise=noise, seed=seed,
                                 row_offset=job.row_offset)
        if job.trajectory:
            states.append(state[0])
    return torch.stack(states) if job.trajectory else state[0]


def _run_fused(job: SamplingJob) -> torch.Tensor:
    from ..kernels import sample_fused
    weights, x_T, noise, seed = _prepare(job)
    kwargs = dict(precision=job.precision, noise=noise, seed=seed, row_offset=job.row_offset)
    if job.trajectory:
        return sample_fused(weights, x_T, job.plan, keep_every=1, **kwargs)[1]
    return sample_fused(weights, x_T, job.plan, **kwargs)


def _precision_reason(device: torch.device, precision: str) -> str | None:
    if precision == "bf16" and device.type == "cpu":
        return "needs a GPU: the Triton interpreter has no bfloat16"
    return None


register_backend(Backend("triton-step", _run_step, _unavailable, PRECISIONS,
                         "one Triton launch per step (MLP + update fused)", precision_reason=_precision_reason,
                         keys_rows=True))
register_backend(Backend("triton-fused", _run_fused, _unavailable, PRECISIONS,
                         "all steps in one Triton launch, points kept on chip", precision_reason=_precision_reason,
                         keys_rows=True))
