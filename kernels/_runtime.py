"""Where the Triton kernels can run, and the checks every launcher shares."""
from __future__ import annotations

import os

import torch

# Read once, like triton itself: @triton.jit looks at TRITON_INTERPRET when the kernel
# modules are imported, so setting it later does not make CPU launches possible.
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
# Rows per program and warps on a GPU (benchmarks/compile_report.py shows what they cost in
# registers, shared memory and occupancy). The interpreter pays per program, not per row, so
# it gets fewer, larger blocks; the noise is keyed by row, so results do not depend on this.
GPU_BLOCK_M = 64
GPU_NUM_WARPS = 4
DEFAULT_BLOCK_M = 256 if INTERPRET else GPU_BLOCK_M
DEFAULT_NUM_WARPS = GPU_NUM_WARPS
# No software pipelining: the loop-invariant weight loads of the fused sampler would
# otherwise be multi-buffered, and at 3 stages its shared memory reaches 297-397 KB for
# fp32/tf32 with injected noise, past the 227 KB a block may have on sm_90
# (benchmarks/compile_report.py, triton 3.9).
DEFAULT_NUM_STAGES = 1


def triton_unavailable_reason(device: torch.device) -> str | None:
    """None when the kernels can run on ``device``, else why not."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return "triton is not installed (pip install triton)"
    if device.type == "cuda":
        return None if torch.cuda.is_available() else "no CUDA GPU is available"
    if device.type == "cpu":
        return None if INTERPRET else ("Triton kernels run on CPU tensors only in the interpreter: "
                                       "set TRITON_INTERPRET=1 before triton is imported")
    return f"Triton kernels do not run on {device.type} tensors"


def check_launch(device: torch.device, **tensors) -> None:
    """Raise if the kernels cannot run on ``device`` or a tensor is elsewhere."""
    reason = triton_unavailable_reason(device)
    if reason is not None:
        raise RuntimeError(reason)
    for name, tensor in tensors.items():
        if tensor is not None and tensor.device != device:
            raise ValueError(f"{name} is on {tensor.device} but the kernel runs on {device}")


def as_float32_rows(x: torch.Tensor, name: str, n_rows: int | None = None) -> torch.Tensor:
    """A contiguous float32 [N, 2] tensor (copied only if it is not one already)."""
    if x.dim() != 2 or x.shape[1] != 2 or (n_rows is not None and x.shape[0] != n_rows):
        want = f"[{n_rows}, 2]" if n_rows is not None else "[N, 2]"
        raise ValueError(f"{name} must have shape {want}, got {list(x.shape)}")
    if x.dtype != torch.float32:
        raise TypeError(f"{name} must be float32 for the Triton kernels, got {x.dtype}")
    return x.contiguous()


def seed_tensor(seed, device, generator: torch.Generator | None = None) -> torch.Tensor:
    """The seed as a [1] int64 device tensor; when None, a fresh one drawn on the device from
    ``generator`` (or torch's default), with no host sync."""
    if isinstance(seed, torch.Tensor):
        if seed.numel() != 1 or seed.dtype != torch.int64:
            raise ValueError(f"a seed tensor must be one int64 element, got {seed.dtype} {list(seed.shape)}")
        return seed.reshape(1)
    if seed is None:
        return torch.randint(0, 2**62, (1,), generator=generator, device=device)
    return torch.full((1,), int(seed), dtype=torch.int64, device=device)  # a fill: no host-to-device copy


def check_plan_noise(plan, weights, noise: torch.Tensor | None, n: int) -> None:
    """The plan fits the model's step table, and injected noise is float32 [K, N, 2]."""
    if plan.n_steps != weights.n_steps:
        raise ValueError(f"the plan is for {plan.n_steps} timesteps but the model's step embeddings hold "
                         f"{weights.n_steps}")
    if noise is not None and (tuple(noise.shape) != (plan.steps, n, 2) or noise.dtype != torch.float32):
        raise ValueError(f"noise must be float32 [{plan.steps}, {n}, 2], got {noise.dtype} {list(noise.shape)}")
