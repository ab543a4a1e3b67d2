"""``compile``: ``torch.compile`` of the per-step function (fullgraph), reused for all T steps.

The timestep enters as a [1] tensor (a view into a precomputed [T] table), so one graph
serves every step: no recompiles and no graph breaks. Noise is drawn outside the
compiled step from the job's generator in the reference's order, so with a seed this
backend uses the same random numbers as ``eager``.
"""
from __future__ import annotations

import time
import weakref

import torch

from . import Backend, SamplingJob, register_backend
from ._step import draw_x_T, precision_context, reverse_step, step_noise, step_range, step_tables

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")
_compiled: "weakref.WeakKeyDictionary[torch.nn.Module, dict]" = weakref.WeakKeyDictionary()
compile_times: dict = {}  # (mode, precision, device, N) -> seconds of the first (compiling) call
mode = "default"  # the mode backend "compile" uses; see set_compile_mode


def set_compile_mode(name: str) -> None:
    global mode
    if name not in COMPILE_MODES:
        raise ValueError(f"unknown compile mode {name!r}; known modes: {', '.join(COMPILE_MODES)}")
    mode = name


def compiled_step(model: torch.nn.Module, precision: str, device: torch.device, compile_mode: str):
    per_model = _compiled.setdefault(model, {})
    key = (compile_mode, precision, device)
    if key not in per_model:
        def step(x, t_index, coeff, inv_sqrt_alphas, sigma, z):
            return reverse_step(model, x, t_index, coeff, inv_sqrt_alphas, sigma, z)
        per_model[key] = torch.compile(step, fullgraph=True, mode=compile_mode)
    return per_model[key]


def _run(job: SamplingJob) -> torch.Tensor:
    compile_mode = mode
    step = compiled_step(job.model, job.precision, job.device, compile_mode)
    coeff, inv_sqrt_alphas, sigma = step_tables(job.betas, job.one_minus_alphas_bar_sqrt, job.final_noise)
    timesteps = torch.arange(job.n_steps - 1, -1, -1, device=job.device)  # [T], t for iteration i
    x = draw_x_T(job)
    noise = None if job.noise is None else job.noise.float()  # no copy when already float32
    states = [x]
    key = (compile_mode, job.precision, str(job.device), job.shape[0])
    with precision_context(job.precision, job.device):
        for i in range(job.n_steps):
            z = step_noise(noise, i, job.n_steps, job.final_noise, x, job.generator)
            timing = i == 0 and key not in compile_times  # the compiling call, once per key
            start = time.perf_counter() if timing else 0.0
            with step_range(job.n_steps - 1 - i):
                x = step(x, timesteps[i:i + 1], coeff, inv_sqrt_alphas, sigma, z)
            if compile_mode == "reduce-overhead":
                x = x.clone()  # its outputs live in a CUDA-graph pool the next replay overwrites
            if timing:
                compile_times[key] = time.perf_counter() - start
            if job.trajectory:
                states.append(x)
    return torch.stack(states) if job.trajectory else x


def _unavailable(device: torch.device):
    if device.type == "cuda" and not torch.cuda.is_available():
        return "no CUDA GPU is available"
    if device.type not in ("cpu", "cuda"):
        return f"not set up for {device.type}"
    return None


register_backend(Backend("compile", _run, _unavailable, ("fp32", "tf32", "bf16"),
                         "torch.compile of the per-step function (fullgraph, one graph for all t)",
                         precision_reason=lambda device, precision: "needs a CUDA GPU"
                         if precision == "tf32" and device.type != "cuda" else None))
