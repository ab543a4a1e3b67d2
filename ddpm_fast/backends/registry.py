"""The backend registry: ``SamplingJob``, ``Backend``, ``register_backend`` and the lookups
behind ``sample`` and ``p_sample_loop(..., backend=...)``.

A backend turns a ``SamplingJob`` into x_0 ([N, 2]) or, when ``job.trajectory``, into the
whole trajectory [K+1, N, 2] (x_T first), for any sampler plan (``ddpm_fast.samplers``).
Backends register themselves by name; an
unknown name fails with the list of known ones.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

import torch
from torch import nn

from ..constants import PRECISIONS, SAMPLERS

if TYPE_CHECKING:
    from ..samplers import SamplerPlan



@dataclass(frozen=True)
class SamplingJob:
    model: nn.Module
    betas: torch.Tensor  # [T] float32, on device
    one_minus_alphas_bar_sqrt: torch.Tensor  # [T] float32, on device
    shape: tuple  # (N, 2)
    device: torch.device
    x_T: Optional[torch.Tensor] = None  # [N, 2]
    noise: Optional[torch.Tensor] = None  # [K, N, 2]; noise[i] is the z of step i (timestep plan.timesteps[i])
    final_noise: bool = True
    generator: Optional[torch.Generator] = None
    seed: Optional[int] = None
    precision: str = "fp32"
    trajectory: bool = False
    row_offset: int = 0  # index of the first row in the whole request (keys in-kernel noise)
    dtype: torch.dtype = torch.float32  # the model's: float32, or float64 for the eager reference
    plan: Optional["SamplerPlan"] = None  # the sampler: timesteps and coefficient tables (ddpm_fast.samplers)
    compile_mode: str = "default"  # torch.compile mode of backend "compile" (constants.COMPILE_MODES)

    @property
    def n_steps(self) -> int:
        """K, the plan's number of steps (T for the original sampler)."""
        return self.plan.steps


@dataclass(frozen=True)
class Backend:
    name: str
    run: Callable[[SamplingJob], torch.Tensor]
    # None when the backend can run on the device, else the reason it cannot
    unavailable_reason: Callable[[torch.device], Optional[str]]
    precisions: tuple = ("fp32",)
    description: str = ""
    takes_generator: bool = True  # False: draws its own noise and needs a seed (or injected noise)
    # None when ``precision`` (one of ``precisions``) can run on the device, else why not
    precision_reason: Callable[[torch.device, str], Optional[str]] = lambda device, precision: None
    # True: draws its own step noise keyed by (seed, step, global row), so a chunk or shard
    # with the right row_offset gets the rows of one whole launch (ddpm_fast.rows)
    keys_rows: bool = False
    # None when ``auto`` should take this backend for (device, precision, point-steps of the request;
    # None: not known), else why it passes over it though it can run (too small to pay for a compile)
    auto_reason: Callable[[torch.device, str, Optional[int]], Optional[str]] = lambda device, precision, size: None

    def cannot_run(self, device: torch.device, precision: str) -> Optional[str]:
        """None when this backend can run ``precision`` on ``device``, else the reason."""
        reason = self.unavailable_reason(device)
        if reason is None and precision not in self.precisions:
            reason = f"supports precisions {', '.join(self.precisions)}, not {precision!r}"
        return reason or self.precision_reason(device, precision)


_REGISTRY: dict[str, Backend] = {}
# backend="auto" tries these in order, fastest first. On CPU cpu-fused for requests large enough
# to pay for its first call (its auto_reason), else eager: compile pays the same compilation for
# less, and Triton on CPU is the interpreter, a checking tool. On CUDA the order is the one measured on this card
# (MEASURED_ORDER_FILE, written from benchmarks/gpu_check.sh's results by
# benchmarks/auto_order.py); a card not measured yet gets UNMEASURED_CUDA_ORDER: only
# paths whose first call costs seconds at most (a graph capture, a Triton compile of
# 1-5 s on a 2-core machine, benchmarks/compile_report.py), so never torch.compile, whose
# first call costs tens of seconds or minutes.
AUTO_ORDER = {"cpu": ("cpu-fused", "eager")}
UNMEASURED_CUDA_ORDER = ("cudagraph", "triton-fused", "triton-step", "eager")
MEASURED_ORDER_FILE = Path(__file__).with_name("auto_order.json")


@lru_cache(maxsize=None)
def _measured_orders() -> dict:
    """{device name: {precision: [backend, ...]}} from MEASURED_ORDER_FILE ({} when absent)."""
    try:
        return json.loads(MEASURED_ORDER_FILE.read_text())["orders"]
    except FileNotFoundError:
        return {}


def auto_order(device: torch.device, precision: str) -> tuple:
    """The backends ``auto`` tries on ``device`` for ``precision``, fastest first: the measured
    order, then the unmeasured one's other backends as fallbacks."""
    if device.type != "cuda":
        return AUTO_ORDER.get(device.type, ("eager",))
    name = torch.cuda.get_device_name(device) if torch.cuda.is_available() else None
    measured = tuple(_measured_orders().get(name, {}).get(precision, ()))
    return measured + tuple(b for b in UNMEASURED_CUDA_ORDER if b not in measured)


def register_backend(backend: Backend) -> Backend:
    _REGISTRY[backend.name] = backend
    return backend


def backend_names() -> list[str]:
    return ["auto", *_REGISTRY]


def get_backend(name: str) -> Backend:
    if name not in _REGISTRY:
        raise ValueError(f"unknown backend {name!r}; known backends: {', '.join(backend_names())}")
    return _REGISTRY[name]


def available_backends(device="cpu") -> dict[str, dict]:
    """Each backend's status on ``device``: ``{name: {"available": bool, "reason": str, ...}}``."""
    device = torch.device(device)
    report = {}
    for name, backend in _REGISTRY.items():
        reason = backend.unavailable_reason(device)
        report[name] = {"available": reason is None, "reason": reason or "ok",
                        "precisions": list(backend.precisions), "description": backend.description,
                        "samplers": list(SAMPLERS)}  # every backend executes every sampler's tables
    return report


def resolve_backend(name: str, device: torch.device, precision: str, bare_generator: bool = False,
                    point_steps: int | None = None) -> Backend:
    """The backend to run: ``name`` itself (failing with the reason if it cannot run), or for
    ``auto`` the first of ``auto_order`` that can and suits the request (``point_steps``: rows x
    steps), with one warning if one that should have run could not.
    ``bare_generator``: the caller passed a generator and no seed, which some backends cannot use."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; known precisions: {', '.join(PRECISIONS)}")
    if name != "auto":
        backend = get_backend(name)
        reason = backend.unavailable_reason(device)
        if reason is not None:
            raise RuntimeError(f"backend {name!r} cannot run on {device}: {reason}")
        if precision not in backend.precisions:
            raise ValueError(f"backend {name!r} supports precisions {', '.join(backend.precisions)}, "
                             f"not {precision!r}")
        reason = backend.precision_reason(device, precision)
        if reason is not None:
            raise RuntimeError(f"backend {name!r} cannot run {precision} on {device}: {reason}")
        return backend
    skipped, passed_over = [], {}  # passed_over: name -> why auto chose not to take it
    for candidate in auto_order(device, precision):
        backend = _REGISTRY.get(candidate)
        if backend is None:
            skipped.append(f"{candidate} (not registered)")
            continue
        reason = backend.cannot_run(device, precision)
        if reason is None and bare_generator and not backend.takes_generator:
            reason = "takes a seed, not a generator"
        choice = None if reason is not None else backend.auto_reason(device, precision, point_steps)
        if choice is not None:  # a choice, not a failure: nothing to warn about unless nothing runs
            passed_over[candidate] = choice
            continue
        if reason is None:
            if skipped:
                warnings.warn(f"backend 'auto' on {device} chose {candidate!r}; skipped "
                              + "; ".join(skipped), RuntimeWarning, stacklevel=3)
            return backend
        skipped.append(f"{candidate} ({reason})")
    named = [name for name, b in _REGISTRY.items() if b.cannot_run(device, precision) is None
             and (name not in auto_order(device, precision) or name in passed_over)]
    verb = "can run" if not passed_over else "takes"
    reasons = skipped + [f"{name} ({why})" for name, why in passed_over.items()]
    raise RuntimeError(f"no backend {verb} precision {precision!r} on {device}: " + "; ".join(reasons)
                       + (f" (backend {' or '.join(map(repr, named))} can, when named)" if named else ""))

