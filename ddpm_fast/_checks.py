"""Input checks shared by the reference path and the fast backends.

Each check runs on the host before any loop starts, reads only shapes, dtypes and
devices (never tensor values on the device), and raises an error that names the
problem.
"""
from __future__ import annotations

import torch
from torch import nn

from .model import model_n_steps


def check_points(x: torch.Tensor, name: str = "x") -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2 or x.shape[1] != 2:
        raise ValueError(f"{name} must have shape [N, 2], got {list(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")


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


def check_model_steps(model: nn.Module, n_steps: int) -> None:
    model_steps = model_n_steps(model)
    if model_steps is not None and model_steps != n_steps:
        raise ValueError(f"the model's step embeddings hold {model_steps} timesteps but the "
                         f"schedule has {n_steps}")


def check_same_device(**tensors: torch.Tensor) -> None:
    devices = {name: t.device for name, t in tensors.items() if t is not None}
    if len(set(devices.values())) > 1:
        listed = ", ".join(f"{name} on {dev}" for name, dev in devices.items())
        raise ValueError(f"tensors are on different devices: {listed}")


def check_injected_noise(x_T, noise, shape, n_steps: int) -> None:
    """SPEC's noise convention: x_T is [N, 2]; noise is [T, N, 2], noise[i] used at t = T-1-i."""
    n = shape[0]
    if x_T is not None:
        check_points(x_T, "x_T")
        if tuple(x_T.shape) != tuple(shape):
            raise ValueError(f"x_T must have shape {list(shape)}, got {list(x_T.shape)}")
    if noise is not None:
        if not isinstance(noise, torch.Tensor):
            raise TypeError(f"noise must be a torch.Tensor, got {type(noise).__name__}")
        if tuple(noise.shape) != (n_steps, n, 2):
            raise ValueError(f"noise must have shape [T, N, 2] = [{n_steps}, {n}, 2], "
                             f"got {list(noise.shape)}")
        if not noise.is_floating_point():
            raise TypeError(f"noise must be a floating-point tensor, got dtype {noise.dtype}")
