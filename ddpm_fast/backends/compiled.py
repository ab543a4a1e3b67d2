"""``compile``: ``torch.compile`` of the per-step function (fullgraph), reused for all K steps.

The timestep enters as a [1] tensor and the step's coefficients as a [N_COLUMNS] row (views
into the plan's tables), so one graph serves every step of every plan of one structure
(history, corrector, noise): no recompiles and no graph breaks. Noise is drawn outside the
compiled step from the job's generator in the reference's order, so with a seed this
backend uses the same random numbers as ``eager``.
"""
from __future__ import annotations

import time
import types
import weakref

import torch

from ..constants import COMPILE_MODES
from ._step import draw_x_T, precision_context, run_plan, solver_step, step_noise
from .registry import Backend, SamplingJob, register_backend

_compiled: "weakref.WeakKeyDictionary[torch.nn.Module, dict]" = weakref.WeakKeyDictionary()
compile_times: dict = {}  # (mode, precision, device, N) -> seconds of the first (compiling) call


def check_compile_mode(name: str) -> str:
    if name not in COMPILE_MODES:
        raise ValueError(f"unknown compile mode {name!r}; known modes: {', '.join(COMPILE_MODES)}")
    return name


def compiled_step(model: torch.nn.Module, precision: str, device: torch.device, compile_mode: str,
                  history: int = 0, corrector: bool = False, noisy: bool = True):
    """The compiled ``solver_step`` for one plan structure (``noisy``: it takes a z at every
    step); cached per model, one graph each."""
    per_model = _compiled.setdefault(model, {})
    key = (compile_mode, precision, device, history, corrector, noisy)
    if key not in per_model:
        def step(x, carry, t_index, coef, z):
            return solver_step(model, x, carry, t_index, coef, z, history, corrector)
        per_model[key] = torch.compile(own_code(step), fullgraph=True, mode=compile_mode)
    return per_model[key]


def own_code(fn):
    """``fn`` with a code object of its own. Dynamo caches graphs, and counts recompiles against
    its limit of 8, per code object: without this, every model and plan structure would share
    the one code object of ``step`` above and, past 8, stop compiling."""
    return types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)


def _run(job: SamplingJob) -> torch.Tensor:
    compile_mode, plan = job.compile_mode, job.plan
    compiled = compiled_step(job.model, job.precision, job.device, compile_mode, plan.history, plan.corrector,
                             plan.has_noise)
    timesteps, coefficients = plan.tables(job.device)
    x = draw_x_T(job)
    noise = None if job.noise is None else job.noise.float()  # no copy when already float32
    # A noiseless step of a noisy plan gets zeros, so the graph with a z serves all its steps.
    zeros = torch.zeros_like(x) if plan.has_noise else None
    key = (compile_mode, job.precision, str(job.device), job.shape[0], plan.history, plan.corrector, plan.has_noise)
    first = [key not in compile_times]

    def step(x, carry, t_index, coef, z):
        start = time.perf_counter() if first[0] else 0.0
        x, carry = compiled(x, carry, t_index, coef, zeros if z is None else z)
        if compile_mode == "reduce-overhead":  # its outputs live in a CUDA-graph pool the next replay overwrites
            x, carry = x.clone(), tuple(None if c is None else c.clone() for c in carry)
        if first[0]:  # the compiling call, timed once per key
            compile_times[key], first[0] = time.perf_counter() - start, False
        return x, carry

    with precision_context(job.precision, job.device):
        return run_plan(step, plan, x, timesteps, coefficients,
                        lambda i: step_noise(noise, i, plan, x, job.generator), job.trajectory)


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
