"""``eager``: the reference loop, one PyTorch op at a time."""
from __future__ import annotations

from dataclasses import replace
from functools import partial

import torch

from ..diffusion import eager_loop
from ._step import draw_x_T, run_plan, solver_step, step_noise
from .registry import Backend, SamplingJob, register_backend


def _run(job: SamplingJob) -> torch.Tensor:
    if job.generator is None and job.seed is not None:
        job = replace(job, generator=torch.Generator(job.device).manual_seed(job.seed))
    plan = job.plan
    if plan.reference:  # the original sampler: the original code's operations, bit for bit
        out = eager_loop(job.model, job.shape, job.betas, job.one_minus_alphas_bar_sqrt, job.x_T,
                         job.noise, job.final_noise, job.generator, keep=job.trajectory, dtype=job.dtype)
        return torch.stack(out) if job.trajectory else out
    x = draw_x_T(job)  # x_T first, then each step's z: the reference's order of draws
    timesteps, coefficients = plan.tables(job.device, job.dtype)
    step = partial(solver_step, job.model, history=plan.history, corrector=plan.corrector)
    return run_plan(step, plan, x, timesteps, coefficients,
                    lambda i: step_noise(job.noise, i, plan, x, job.generator), job.trajectory)


register_backend(Backend("eager", _run, lambda device: None, ("fp32",),
                         "the reference loop (bit-exact with the original code); runs any sampler plan"))
