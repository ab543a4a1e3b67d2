"""The per-step function that ``compile`` compiles and ``cudagraph`` captures."""
from __future__ import annotations

from contextlib import contextmanager, nullcontext

import torch

from ..schedule import sampler_coefficients


def step_tables(betas: torch.Tensor, one_minus_alphas_bar_sqrt: torch.Tensor, final_noise: bool):
    """(coeff, inv_sqrt_alphas, sigma), float32 [T] each; sigma[0] = 0 without final noise."""
    coeff, inv_sqrt_alphas, sigma = sampler_coefficients(betas.float(), one_minus_alphas_bar_sqrt.float())
    if not final_noise:
        sigma = torch.cat([sigma.new_zeros(1), sigma[1:]])
    return coeff.contiguous(), inv_sqrt_alphas.contiguous(), sigma.contiguous()


def reverse_step(model, x, t_index, coeff, inv_sqrt_alphas, sigma, z):
    """x_{t-1} from x_t [N, 2]; ``t_index`` is a [1] long tensor, so one graph serves every t.

    The reference's operations in its order: with float32 and finite z it gives its bits
    (sigma[0] = 0 makes the last step the mean alone).
    """
    eps = model(x, t_index)  # [N, 2]
    mean = inv_sqrt_alphas[t_index] * (x - coeff[t_index] * eps)
    return mean + sigma[t_index] * z


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


def step_noise(noise, i: int, n_steps: int, final_noise: bool, like: torch.Tensor, generator=None):
    """The z of loop iteration i: ``noise[i]`` when injected; zeros, drawing nothing, at a
    noiseless last step (as the reference); else a fresh draw from ``generator``."""
    if noise is not None:
        return noise[i]
    if i == n_steps - 1 and not final_noise:
        return torch.zeros_like(like)
    return torch.randn(like.shape, generator=generator, device=like.device)


NVTX = {"steps": False}  # set by ddpm-fast profile: one NVTX range per step in host-side loops


def step_range(t: int):
    """An NVTX range named after the timestep when profiling on CUDA, else nothing."""
    if NVTX["steps"] and torch.cuda.is_available():
        return torch.cuda.nvtx.range(f"step t={t}")
    return nullcontext()


def draw_x_T(job) -> torch.Tensor:
    if job.x_T is not None:
        return job.x_T.float()
    return torch.randn(job.shape, generator=job.generator, device=job.device)
