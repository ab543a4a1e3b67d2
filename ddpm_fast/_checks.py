"""Input checks shared by the reference path and the fast backends.

Each check runs on the host before any loop starts, reads only shapes, dtypes and
devices (never tensor values on the device), and raises an error that names the
problem.
"""
from __future__ import annotations

import os

import torch
from torch import nn

from ._values import TooLarge, one_line


def check_points(x: torch.Tensor, name: str = "x") -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2 or x.shape[1] != 2:
        raise ValueError(f"{name} must have shape [N, 2], got {list(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")


def check_generator(generator) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")


def check_flag(value, name: str) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")


def check_timestep(t: int, n_steps: int) -> None:
    if isinstance(t, bool) or not isinstance(t, int):
        raise TypeError(f"t must be a Python int, got {type(t).__name__}")
    if not 0 <= t < n_steps:
        raise ValueError(f"timestep t={t} is outside [0, {n_steps})")


def check_timesteps(t: torch.Tensor, n_rows: int, n_steps: int) -> None:
    """Per-row timesteps: an integer tensor of shape [N] or [1], every value in [0, T).

    The range check reads the values, so it syncs; it is for entry points, never
    for a sampling loop (whose timesteps are Python ints).
    """
    if t.dtype in (torch.bool,) or t.is_floating_point() or t.is_complex():
        raise TypeError(f"t must be an integer tensor, got dtype {t.dtype}")
    if t.dim() != 1 or t.shape[0] not in (1, n_rows):
        raise ValueError(f"t must have shape [{n_rows}] or [1], got {list(t.shape)}")
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= n_steps):
        raise ValueError(f"timesteps must lie in [0, {n_steps}); got values in "
                         f"[{int(t.min())}, {int(t.max())}]")




def check_same_device(**tensors: torch.Tensor) -> None:
    devices = {name: t.device for name, t in tensors.items() if t is not None}
    if len(set(devices.values())) > 1:
        listed = ", ".join(f"{name} on {dev}" for name, dev in devices.items())
        raise ValueError(f"tensors are on different devices: {listed}")


def check_injected_noise(x_T, noise, shape, n_steps: int) -> None:
    """The noise convention of docs/model.md: x_T is [N, 2]; noise is [K, N, 2], noise[i] used at step i
    (for the original sampler K = T and step i is t = T-1-i)."""
    n = shape[0]
    if x_T is not None:
        check_points(x_T, "x_T")
        if tuple(x_T.shape) != tuple(shape):
            raise ValueError(f"x_T must have shape {list(shape)}, got {list(x_T.shape)}")
    if noise is not None:
        if not isinstance(noise, torch.Tensor):
            raise TypeError(f"noise must be a torch.Tensor, got {type(noise).__name__}")
        if tuple(noise.shape) != (n_steps, n, 2):
            raise ValueError(f"noise must have shape [steps, N, 2] = [{n_steps}, {n}, 2], "
                             f"got {list(noise.shape)}")
        if not noise.is_floating_point():
            raise TypeError(f"noise must be a floating-point tensor, got dtype {noise.dtype}")








def check_device(device) -> torch.device:
    """``device`` as a torch.device this machine has; RuntimeError naming what is missing."""
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"not a device: {device!r} ({one_line(err, 200)})") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = ("this torch is a CPU-only build" if torch.version.cuda is None
                   else "no CUDA GPU is visible (check the driver and CUDA_VISIBLE_DEVICES)")
            raise RuntimeError(f"device {str(device)!r} needs CUDA, which is not available: {why}")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RuntimeError(f"device {str(device)!r} does not exist: this machine has "
                               f"{torch.cuda.device_count()} CUDA device(s)")
    return device


def check_model_dtype(model: nn.Module, backend: str) -> torch.dtype:
    """The sampler computes in the model's dtype: float32, or float64 for the eager reference."""
    # The first parameter's dtype: O(1) on every sample() call, where walking all the parameters
    # cost 15 us. A model that mixes dtypes fails in its first matmul (eager) or in the kernels'
    # own check of every parameter.
    first = next(model.parameters(), None)
    dtype = torch.float32 if first is None else first.dtype
    allowed = (torch.float32, torch.float64) if backend == "eager" else (torch.float32,)
    if dtype not in allowed:
        raise TypeError(f"the model's parameters are {dtype}; backend {backend!r} needs a float32 model"
                        + (" (or float64 for the eager reference)" if backend == "eager" else "")
                        + ": convert it with model.float(), and pass precision='bf16' or 'tf32' for "
                        "lower-precision compute")
    return dtype


def to_dtype(dtype: torch.dtype, *tensors):
    """Each tensor (None stays None) in ``dtype``; no copy for one already in it."""
    return tuple(None if t is None else t.to(dtype) for t in tensors)


def available_memory(device: torch.device) -> int | None:
    """Bytes that can still be allocated on ``device``, or None when unknown."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    if device.type == "cpu":
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    return None


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}" if n < 1e5 else f"{n:.2g} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def check_fits(n_bytes: int, device: torch.device, what: str, hint: str = "ask for fewer points") -> None:
    """Refuse up front an allocation that cannot fit, instead of failing (or swapping) later."""
    if n_bytes < 1 << 28:  # 256 MB fits anywhere this runs: no query on a sampler's hot path
        return
    free = available_memory(device)
    if free is not None and n_bytes > free:
        raise TooLarge(f"{what} needs {format_bytes(n_bytes)} on {device}, which has "
                         f"{format_bytes(free)} available; {hint}")
