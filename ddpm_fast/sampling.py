"""The public samplers: ``sample`` (final points from any backend, in O(N) memory, chunked for
very large N) and ``p_sample_loop`` (the whole trajectory, the reference's drop-in)."""
from __future__ import annotations

import torch
from torch import nn
from tqdm.auto import tqdm

from ._checks import (
    check_device,
    check_fits,
    check_flag,
    check_generator,
    check_injected_noise,
    check_model_dtype,
    check_same_device,
    to_dtype,
)
from ._values import check_count, check_seed
from .backends import SamplingJob, resolve_backend
from .backends.compiled import check_compile_mode
from .constants import default_chunk
from .diffusion import eager_loop
from .model import check_model_steps, model_device, model_n_steps
from .rows import keyed_draws
from .samplers import SamplerPlan, make_plan, plan_sources
from .schedule import Schedule, make_schedule

KEYED_NOISE_BYTES = 1 << 28  # keyed noise injected into eager/compile/cudagraph, [K, chunk, 2] float32: 256 MB


def run_backend(backend: str, model: nn.Module, betas: torch.Tensor,
                one_minus_alphas_bar_sqrt: torch.Tensor, shape, *, x_T=None, noise=None,
                final_noise=True, generator=None, seed=None, precision="fp32",
                trajectory=False, row_offset=0, dtype: torch.dtype | None = None,
                plan: SamplerPlan | None = None, compile_mode: str = "default") -> torch.Tensor:
    """Run one backend on already-checked inputs; x_0 [N, 2] or trajectory [K+1, N, 2].

    ``plan``: the sampler (default: the original T-step DDPM with ``final_noise``).

    Computes in the model's dtype (float32; float64 for the eager reference, tables
    included): injected ``x_T``/``noise`` of another floating dtype are converted to it.
    ``dtype``: that dtype when the caller has already checked it (once per request).
    """
    device = betas.device
    chosen = resolve_backend(backend, device, precision, bare_generator=generator is not None and seed is None,
                             point_steps=shape[0] * (plan.steps if plan is not None else betas.shape[0]))
    dtype = dtype or check_model_dtype(model, chosen.name)
    plan = plan or make_plan(betas, final_noise=final_noise, one_minus_alphas_bar_sqrt=one_minus_alphas_bar_sqrt)
    betas, one_minus_alphas_bar_sqrt, x_T, noise = to_dtype(dtype, betas, one_minus_alphas_bar_sqrt, x_T, noise)
    job = SamplingJob(model=model, betas=betas, one_minus_alphas_bar_sqrt=one_minus_alphas_bar_sqrt,
                      shape=tuple(shape), device=device, x_T=x_T, noise=noise, final_noise=final_noise,
                      generator=generator, seed=seed, precision=precision, trajectory=trajectory,
                      row_offset=row_offset, dtype=dtype, plan=plan,
                      compile_mode=check_compile_mode(compile_mode))
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


def sample(model: nn.Module, n: int, *, sampler: str | None = None, steps: int | None = None,
           prior: str | None = None, eta: float | None = None, grid=None,
           schedule: Schedule | None = None, x_T=None, noise=None,
           seed: int | None = None, final_noise: bool = True, backend: str = "auto",
           precision: str = "fp32", device=None, generator: torch.Generator | None = None,
           chunk_size: int | str | None = "auto", progress: bool = False, keyed: bool | None = None,
           rows: tuple | None = None, compile_mode: str = "default") -> torch.Tensor:
    """Draw ``n`` points x_0 ~ p_θ, returning only them: [n, 2] float32.

    ``sampler`` ("ddpm", "ddim", "dpm++2m", "unipc"), ``steps``, ``prior`` ("unit" or
    "matched"), ``eta`` (ddim) and ``grid`` (a grid name, "tuned" or a list of timesteps)
    choose the sampler (``ddpm_fast.samplers.make_plan``); the default is the original
    100-step DDPM from N(0, I), seed-exact on ``eager``, or, for a distilled student
    (``ddpm_fast.distill``), its own K-step plan: exactly K model calls. A few-step sampler defaults to 10
    steps, the matched prior, and the grid tuned for the model if it carries one.
    ``x_T`` ([n, 2], the start itself) and ``noise`` ([K, n, 2], noise[i] the z of step i;
    read only at steps that add noise) inject the randomness (docs/model.md's convention),
    which is how every backend reproduces the reference's numbers; otherwise each backend
    draws its own, from ``seed`` when given (the fast ones do not reproduce
    ``torch.randn``'s stream; see docs/backends.md). Rows are processed ``chunk_size`` at a time
    (None: all at once; "auto": 16,384 on a CPU, where a chunk stays in cache, 2^20 on a GPU).
    ``schedule`` may also be a kind name ("sigmoid", "linear", "cosine").
    A result that cannot fit in the device's free memory is refused before any work.

    ``keyed``: draw x_T and every step's z by blocks of rows from ``seed`` (``ddpm_fast.rows``),
    so every row is the same whatever the chunk size, and a shard computes exactly its rows of
    the whole request. Default (None): keyed when a seeded request is cut into chunks (on a CPU,
    by default, more than 16,384 rows); an unchunked request keeps the backend's own stream
    (``eager``: the reference's torch stream).
    ``rows=(lo, hi)``: only rows lo..hi-1 of the n-row request ([hi - lo, 2]; keyed, needs a
    seed): what one rank of a sharded run computes. ``compile_mode``: torch.compile's mode for
    backend ``compile`` ("default", "reduce-overhead" or "max-autotune").
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    n = check_count(n, "n")
    seed = check_seed(seed)
    check_generator(generator)
    check_flag(final_noise, "final_noise")
    check_compile_mode(compile_mode)
    device = _resolve_device(model, device)
    if isinstance(chunk_size, str) and chunk_size == "auto":
        chunk_size = default_chunk(device.type)
    if chunk_size is not None:
        chunk_size = check_count(chunk_size, "chunk_size", minimum=1)
    schedule = _as_schedule(schedule, model)
    schedule = schedule.to(device)
    check_model_steps(model, schedule.n_steps)
    plan = make_plan(schedule, sampler, steps, grid=grid, prior=prior, eta=eta, final_noise=final_noise,
                     **plan_sources(model))
    check_injected_noise(x_T, noise, (n, 2), plan.steps)
    check_same_device(schedule=schedule.betas, x_T=x_T, noise=noise)
    if generator is not None and seed is not None:
        raise ValueError("pass either seed or generator, not both")
    if generator is None and seed is not None:
        generator = torch.Generator(device).manual_seed(seed)

    lo, hi = _check_rows(rows, n)
    keyed = _check_keyed(keyed, rows, seed, x_T, noise, n, chunk_size)
    check_fits((hi - lo) * 2 * 4, device, f"the result of sample(n={hi - lo}) ([n, 2] float32)")
    # resolved and checked once per request, not per chunk ('auto' warns once)
    chosen = resolve_backend(backend, device, precision, bare_generator=generator is not None and seed is None,
                             point_steps=(hi - lo) * plan.steps)
    dtype = check_model_dtype(model, chosen.name)
    if keyed and not chosen.keys_rows:  # bounds the injected noise; the rows do not depend on the chunks
        noise_rows = max(1, KEYED_NOISE_BYTES // (8 * plan.steps))
        chunk_size = noise_rows if chunk_size is None else min(chunk_size, noise_rows)
    chunk = max(1, hi - lo) if chunk_size is None else chunk_size
    starts = range(lo, hi, chunk) if hi > lo else [lo]
    parts = []
    for start in tqdm(starts, desc="sample", unit="chunk", disable=not progress or len(starts) < 2):
        stop = min(start + chunk, hi)
        chunk_x_T = None if x_T is None else x_T[start:stop]
        chunk_noise = None if noise is None else noise[:, start:stop]
        if keyed:  # this chunk's rows of the whole request's noise
            chunk_x_T, chunk_noise = keyed_draws(seed, start, stop, plan, device, with_noise=not chosen.keys_rows)
        parts.append(run_backend(
            chosen.name, model, schedule.betas, schedule.one_minus_alphas_bar_sqrt, (stop - start, 2),
            x_T=chunk_x_T, noise=chunk_noise, final_noise=final_noise,
            generator=None if keyed else generator, seed=seed if chosen.keys_rows or not keyed else None,
            precision=precision, row_offset=start, dtype=dtype, plan=plan, compile_mode=compile_mode))
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def p_sample_loop(model: nn.Module, shape, n_steps: int, betas: torch.Tensor,
                  one_minus_alphas_bar_sqrt: torch.Tensor, *, x_T: torch.Tensor | None = None,
                  noise: torch.Tensor | None = None, final_noise: bool = True,
                  generator: torch.Generator | None = None, backend: str = "eager",
                  precision: str = "fp32", sampler: str | None = None, steps: int | None = None,
                  prior: str | None = None, eta: float | None = None, grid=None,
                  compile_mode: str = "default") -> list[torch.Tensor]:
    """The reverse process from x_T ~ N(0, I) to x_0; returns ``[x_T, x_{T-1}, ..., x_0]``.

    With no ``x_T``/``noise``/``generator`` it draws from the global RNG in the original
    order (x_T, then z for t = T-1, ..., 0), so a seeded run matches the original code.
    ``noise[i]`` is the z of loop iteration i, timestep T-1-i. ``backend`` picks the
    implementation (see ``ddpm_fast.available_backends``); all but ``eager`` return the
    same list computed by a fast path. ``sampler``, ``steps``, ``prior``, ``eta`` and ``grid``
    pick another sampler as in ``sample``: then the list holds its K+1 states, x_T first,
    and ``noise`` is [K, N, 2]. ``compile_mode`` as in ``sample``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    shape = _check_shape(shape)
    n_steps = check_count(n_steps, "n_steps", minimum=1)
    check_generator(generator)
    check_flag(final_noise, "final_noise")
    for name, table in (("betas", betas), ("one_minus_alphas_bar_sqrt", one_minus_alphas_bar_sqrt)):
        if not isinstance(table, torch.Tensor) or not table.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got "
                            f"{getattr(table, 'dtype', type(table).__name__)}")
    if betas.shape != (n_steps,) or one_minus_alphas_bar_sqrt.shape != (n_steps,):
        raise ValueError(f"betas and one_minus_alphas_bar_sqrt must have shape [{n_steps}], got "
                         f"{list(betas.shape)} and {list(one_minus_alphas_bar_sqrt.shape)}")
    check_model_steps(model, n_steps)
    plan = make_plan(betas, sampler, steps, grid=grid, prior=prior, eta=eta, final_noise=final_noise,
                     one_minus_alphas_bar_sqrt=one_minus_alphas_bar_sqrt, **plan_sources(model))
    check_injected_noise(x_T, noise, shape, plan.steps)
    device = x_T.device if x_T is not None else (model_device(model) or betas.device)
    check_fits((plan.steps + 1) * shape[0] * 2 * 4, device,
               f"the {plan.steps + 1} states of p_sample_loop(shape={shape})")
    if backend != "eager" or not plan.reference:
        trajectory = run_backend(backend, model, betas, one_minus_alphas_bar_sqrt, shape,
                                 x_T=x_T, noise=noise, final_noise=final_noise,
                                 generator=generator, precision=precision, trajectory=True, plan=plan,
                                 compile_mode=compile_mode)
        return list(trajectory.unbind(0))
    resolve_backend("eager", device, precision)  # eager runs fp32 only: say so rather than ignore it
    dtype = check_model_dtype(model, "eager")
    betas, one_minus_alphas_bar_sqrt, x_T, noise = to_dtype(dtype, betas, one_minus_alphas_bar_sqrt, x_T, noise)
    return eager_loop(model, shape, betas, one_minus_alphas_bar_sqrt, x_T, noise, final_noise,
                      generator, keep=True, dtype=dtype)


def _check_shape(shape) -> tuple:
    try:
        shape = tuple(shape)
    except TypeError:
        raise TypeError(f"shape must be a pair (N, 2), got {shape!r}") from None
    if len(shape) != 2 or check_count(shape[1], "shape[1]") != 2:
        raise ValueError(f"shape must be (N, 2), got {shape}")
    return (check_count(shape[0], "N (shape[0])"), 2)


def _check_rows(rows, n: int) -> tuple:
    """(lo, hi) of ``rows``, or the whole request."""
    if rows is None:
        return 0, n
    try:
        lo, hi = rows
    except (TypeError, ValueError):
        raise TypeError(f"rows must be a pair (lo, hi), got {rows!r}") from None
    lo, hi = check_count(lo, "rows[0]"), check_count(hi, "rows[1]")
    if not lo <= hi <= n:
        raise ValueError(f"rows ({lo}, {hi}) must satisfy 0 <= lo <= hi <= n = {n}")
    return lo, hi


def _check_keyed(keyed, rows, seed, x_T, noise, n: int, chunk_size) -> bool:
    """Whether this request draws row-keyed noise (see ``sample``)."""
    injected = x_T is not None or noise is not None
    if keyed is None:
        keyed = rows is not None or (seed is not None and not injected and chunk_size is not None and n > chunk_size)
    check_flag(keyed, "keyed")
    if keyed and injected:
        raise ValueError("keyed noise is drawn from the seed; it cannot be combined with injected x_T or noise "
                         "(slice those yourself)")
    if rows is not None and not keyed:
        raise ValueError("rows=(lo, hi) computes its rows of the whole request with keyed noise: keyed=False "
                         "would draw other numbers")
    if keyed and seed is None:
        raise ValueError("keyed noise (rows=, or a chunked request) needs a seed")
    return keyed
