"""``ddpm-fast profile``: a torch.profiler trace of one sampling call and its top kernels."""
from __future__ import annotations

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from ._io import atomic_path
from ._timing import synchronize
from .backends._step import nvtx_step_ranges
from .sampling import sample


def profile_sampler(model, schedule, backend: str, n: int, device, precision: str, trace_path: str,
                    rows: int = 15, **sampler):
    """Profile one ``sample`` call after a warm-up call; returns (table, trace_path).
    ``sampler``: sample()'s sampler keywords (sampler, steps, prior, eta, grid) and compile_mode.

    On CUDA one more call runs for Nsight Systems (``nsys profile ddpm-fast profile ...``):
    an NVTX range around the call, one per step in the host-side loops (``compile``,
    ``triton-step``) and one per PyTorch op (``emit_nvtx``).
    """
    device = torch.device(device)
    call = lambda: sample(model, n, schedule=schedule, seed=0, backend=backend,  # noqa: E731
                          precision=precision, device=device, **sampler)
    call()  # compilation, capture and packing stay out of the profile
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        with record_function(f"sample[{backend}]"):
            call()
            synchronize(device)
    with atomic_path(trace_path) as temp:
        prof.export_chrome_trace(temp)
    if device.type == "cuda":
        with nvtx_step_ranges(), torch.autograd.profiler.emit_nvtx(), \
                torch.cuda.nvtx.range(f"ddpm-fast/{backend}"):
            call()
            synchronize(device)
    sort_by = "device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=sort_by, row_limit=rows), trace_path
