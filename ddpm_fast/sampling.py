"""``sample``: final points from any backend, in O(N) memory, chunked for very large N."""
from __future__ import annotations

import torch
from torch import nn
from tqdm.auto import tqdm

from ._checks import (check_count, check_device, check_fits, check_flag, check_generator, check_injected_noise,
                      check_model_dtype, check_model_steps, check_same_device, check_seed, to_dtype)
from .backends import SamplingJob, resolve_backend
from .model import model_device, model_n_steps
from .samplers import SamplerPlan, make_plan
from .schedule import Schedule, make_schedule

DEFAULT_CHUNK = 1 << 20  # rows per chunk: bounds eager's [chunk, 128] activations to 512 MB


def run_backend(backend: str, model: nn.Module, betas: torch.Tensor,
                one_minus_alphas_bar_sqrt: torch.Tensor, shape, *, x_T=None, noise=None,
                final_noise=True, generator=None, seed=None, precision="fp32",
                trajectory=False, row_offset=0, dtype: torch.dtype | None = None,
                plan: SamplerPlan | None = None) -> torch.Tensor:
    """Run one backend on already-checked inputs; x_0 [N, 2] or trajectory [K+1, N, 2].

    ``plan``: the sampler (default: the original T-step DDPM with ``final_noise``).

    Computes in the model's dtype (float32; float64 for the eager reference, tables
    included): injected ``x_T``/``noise`` of another floating dtype are converted to it.
    ``dtype``: that dtype when the caller has already checked it (once per request).
    """
    device = betas.device
    chosen = resolve_backend(backend, device, precision, bare_generator=generator is not None and seed is None)
    dtype = dtype or check_model_dtype(model, chosen.name)
    plan = plan or make_plan(betas, final_noise=final_noise, one_minus_alphas_bar_sqrt=one_minus_alphas_bar_sqrt)
    betas, one_minus_alphas_bar_sqrt, x_T, noise = to_dtype(dtype, betas, one_minus_alphas_bar_sqrt, x_T, noise)
    job = SamplingJob(model=model, betas=betas, one_minus_alphas_bar_sqrt=one_minus_alphas_bar_sqrt,
                      shape=tuple(shape), device=device, x_T=x_T, noise=noise, final_noise=final_noise,
                      generator=generator, seed=seed, precision=precision, trajectory=trajectory,
                      row_offset=row_offset, dtype=dtype, plan=plan)
    if shape[0] == 0:
        empty = torch.empty(tuple(shape), device=device, dtype=dtype)
        return empty.expand(plan.steps + 1, *shape) if trajectory else empty
    with torch.no_grad():
        return chosen.run(job)


def _resolve_device(model: nn.Module, device) -> torch.device:
    params_on = model_device(model)
    if device is None:
        return params_on or torch.device("cpu")
    device = check_device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if params_on is not None and params_on != device:
        raise ValueError(f"the model is on {params_on} but device={device} was asked for; "
                         f"move the model with model.to({str(device)!r})")
    return device


def _as_schedule(schedule, model: nn.Module) -> Schedule:
    """A Schedule; None is the default kind and a string a kind, both for the model's step count."""
    if schedule is None or isinstance(schedule, str):
        return make_schedule(model_n_steps(model) or 100, schedule or "sigmoid")
    if not isinstance(schedule, Schedule):
        raise TypeError(f"schedule must be a Schedule (from make_schedule) or a kind name, got "
                        f"{type(schedule).__name__}")
    return schedule


def sample(model: nn.Module, n: int, *, sampler: str = "ddpm", steps: int | None = None,
           prior: str | None = None, eta: float | None = None, grid=None,
           schedule: Schedule | None = None, x_T=None, noise=None,
           seed: int | None = None, final_noise: bool = True, backend: str = "auto",
           precision: str = "fp32", device=None, generator: torch.Generator | None = None,
           chunk_size: int | None = DEFAULT_CHUNK, progress: bool = False) -> torch.Tensor:
    """Draw ``n`` points x_0 ~ p_θ, returning only them: [n, 2] float32.

    ``sampler`` ("ddpm", "ddim", "dpm++2m", "unipc"), ``steps``, ``prior`` ("unit" or
    "matched"), ``eta`` (ddim) and ``grid`` (a grid name, "tuned" or a list of timesteps)
    choose the sampler (``ddpm_fast.samplers.make_plan``); the default is the original
    100-step DDPM from N(0, I), seed-exact on ``eager``. A few-step sampler defaults to 10
    steps, the matched prior, and the grid tuned for the model if it carries one.
    ``x_T`` ([n, 2], the start itself) and ``noise`` ([K, n, 2], noise[i] the z of step i;
    read only at steps that add noise) inject the randomness (SPEC's convention),
    which is how every backend reproduces the reference's numbers; otherwise each backend
    draws its own, from ``seed`` when given (the fast ones do not reproduce
    ``torch.randn``'s stream; see README). Rows are processed ``chunk_size`` at a time
    (None: all at once). ``schedule`` may also be a kind name ("sigmoid", "linear", "cosine").
    A result that cannot fit in the device's free memory is refused before any work.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    n = check_count(n, "n")
    seed = check_seed(seed)
    check_generator(generator)
    check_flag(final_noise, "final_noise")
    if chunk_size is not None:
        chunk_size = check_count(chunk_size, "chunk_size", minimum=1)
    device = _resolve_device(model, device)
    schedule = _as_schedule(schedule, model)
    schedule = schedule.to(device)
    check_model_steps(model, schedule.n_steps)
    plan = make_plan(schedule, sampler, steps, grid=grid, prior=prior, eta=eta, final_noise=final_noise,
                     tuned_grids=getattr(model, "tuned_grids", None))
    check_injected_noise(x_T, noise, (n, 2), plan.steps)
    check_same_device(schedule=schedule.betas, x_T=x_T, noise=noise)
    if generator is not None and seed is not None:
        raise ValueError("pass either seed or generator, not both")
    if generator is None and seed is not None:
        generator = torch.Generator(device).manual_seed(seed)

    check_fits(n * 2 * 4, device, f"the result of sample(n={n}) ([n, 2] float32)")
    # resolved and checked once per request, not per chunk ('auto' warns once)
    backend = resolve_backend(backend, device, precision, bare_generator=generator is not None and seed is None).name
    dtype = check_model_dtype(model, backend)
    chunk = n if chunk_size is None or n <= chunk_size else chunk_size
    starts = range(0, n, chunk) if n else [0]
    parts = []
    for lo in tqdm(starts, desc="sample", unit="chunk", disable=not progress or len(starts) < 2):
        hi = min(lo + chunk, n)
        parts.append(run_backend(
            backend, model, schedule.betas, schedule.one_minus_alphas_bar_sqrt, (hi - lo, 2),
            x_T=None if x_T is None else x_T[lo:hi],
            noise=None if noise is None else noise[:, lo:hi],
            final_noise=final_noise, generator=generator, seed=seed, precision=precision,
            row_offset=lo, dtype=dtype, plan=plan))
    return parts[0] if len(parts) == 1 else torch.cat(parts)
