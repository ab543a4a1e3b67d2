"""``triton-step`` (one launch per step) and ``triton-fused`` (all steps in one launch)."""
from __future__ import annotations

import torch

from . import Backend, SamplingJob, register_backend
from ._step import draw_x_T, step_range, step_tables


def _unavailable(device: torch.device) -> str | None:
    try:
        from ..kernels import triton_unavailable_reason
    except ImportError as err:  # triton missing or broken
        return f"the Triton kernels cannot be imported: {err}"
    return triton_unavailable_reason(device)


def _prepare(job: SamplingJob):
    from ..kernels import pack_mlp
    from ..kernels._runtime import seed_tensor
    if job.precision == "bf16" and job.device.type == "cpu":
        raise RuntimeError("precision 'bf16' needs a GPU: the Triton interpreter has no bfloat16")
    pack = pack_mlp(job.model, job.precision)
    if pack.n_steps != job.n_steps:
        raise ValueError(f"the model's step embeddings hold {pack.n_steps} timesteps but the schedule has "
                         f"{job.n_steps}")
    if pack.emb.device != job.device:
        raise ValueError(f"the model is on {pack.emb.device} but the sampler runs on {job.device}")
    x_T = draw_x_T(job)
    seed = seed_tensor(job.seed, job.device, job.generator)
    noise = None if job.noise is None else job.noise.float()
    return pack, x_T, noise, seed, step_tables(job.betas, job.one_minus_alphas_bar_sqrt, job.final_noise)


def _run_step(job: SamplingJob) -> torch.Tensor:
    from ..kernels import p_sample_step
    pack, x, noise, seed, tables = _prepare(job)
    states = [x]
    for t in reversed(range(job.n_steps)):
        with step_range(t):
            x = p_sample_step(pack, x, t, tables, noise=noise, seed=seed, row_offset=job.row_offset)
        if job.trajectory:
            states.append(x)
    return torch.stack(states) if job.trajectory else x


def _run_fused(job: SamplingJob) -> torch.Tensor:
    from ..kernels import sample_fused
    pack, x_T, noise, seed, tables = _prepare(job)
    if job.trajectory:
        return sample_fused(pack, x_T, tables, noise=noise, seed=seed, keep_every=1, row_offset=job.row_offset)[1]
    return sample_fused(pack, x_T, tables, noise=noise, seed=seed, row_offset=job.row_offset)


_PRECISIONS = ("fp32", "tf32", "bf16")
register_backend(Backend("triton-step", _run_step, _unavailable, _PRECISIONS,
                         "one Triton launch per step (MLP + update fused)"))
register_backend(Backend("triton-fused", _run_fused, _unavailable, _PRECISIONS,
                         "all steps in one Triton launch, points kept on chip"))
