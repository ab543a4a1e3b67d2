"""``eager``: the reference loop, one PyTorch op at a time."""
from __future__ import annotations

import torch

from ..diffusion import eager_loop
from . import Backend, SamplingJob, register_backend


def _run(job: SamplingJob) -> torch.Tensor:
    generator = job.generator
    if generator is None and job.seed is not None:
        generator = torch.Generator(job.device).manual_seed(job.seed)
    out = eager_loop(job.model, job.shape, job.betas, job.one_minus_alphas_bar_sqrt, job.x_T,
                     job.noise, job.final_noise, generator, keep=job.trajectory, dtype=job.dtype)
    return torch.stack(out) if job.trajectory else out


register_backend(Backend("eager", _run, lambda device: None, ("fp32",),
                         "the reference loop (bit-exact with the original code)"))
