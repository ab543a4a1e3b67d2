"""``cpu-fused``: the CPU's counterpart of ``triton-fused``. The rows are cut into blocks
small enough that a block's activations stay in cache (``BLOCK_ROWS``); each block runs all K steps
of the plan before the next one starts. Each step is one graph compiled by Inductor (its C++ code
and oneDNN's matmuls); with ``precision="bf16"`` the MLP runs on a bfloat16 copy of the weights
while x, the plan's history and the update stay float32.

Noise: injected x_T/noise are sliced per block; otherwise the rows' keyed noise (``ddpm_fast.rows``),
so a row's numbers do not depend on the block size, the chunk or the shard.
"""
from __future__ import annotations

import copy
import weakref

import torch
from torch import nn

from ..rows import ROW_BLOCK, keyed_draws
from ._step import run_plan
from .compiled import compiled_step
from .registry import Backend, SamplingJob, register_backend

BLOCK_ROWS = 4096  # rows per cache block: the best fp32 block on a 2-core AVX-512 CPU (benchmarks/explore)
# auto takes cpu-fused in fp32 from this many point-steps (rows x steps): its first call costs 8.6-9.4 s
# with cold compile caches (3.2 s with a warm disk cache), and eager in cache-sized chunks is not far
# behind: at 262,144 x 100 steps 12.2-13.3 s against 9.0-9.1 s (benchmarks/results/
# cpu_fused_auto_threshold.txt), 0.14 us saved a point-step, so a cold first call pays from about
# 7e7 point-steps; 2^27 leaves it twice that (2-core AVX-512 CPU). bf16 has no eager path: any size.
AUTO_MIN_POINT_STEPS = 1 << 27
_bf16_models: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()


class _Bfloat16MLP(nn.Module):
    """A bfloat16 copy of a model that takes and gives float32 points."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.inner = model

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.inner(x.to(torch.bfloat16), t).float()


def _weights_version(model: nn.Module) -> tuple:
    # torch counts in-place writes to a tensor (an optimizer step, load_state_dict): a changed count
    # means the bfloat16 copy is stale
    return tuple(p._version for p in model.parameters())


def _bf16(model: nn.Module) -> nn.Module:
    """The bfloat16 copy of ``model``, made again when its weights changed in place."""
    cached = _bf16_models.get(model)
    if cached is None or cached[0] != _weights_version(model):
        cached = (_weights_version(model), _Bfloat16MLP(copy.deepcopy(model).to(torch.bfloat16).eval()))
        _bf16_models[model] = cached
    return cached[1]


def _key_blocks(job: SamplingJob, n: int):
    """(x_T, noise) of each key block of the request's rows: what was injected, sliced, and what was
    not, the rows' keyed draws. A chunk of a keyed request arrives with its keyed x_T and the seed
    (``keys_rows``): its noise is the same keyed noise. A generator without a seed gives one seed."""
    seed = job.seed
    if seed is None and (job.x_T is None or job.noise is None):
        seed = int(torch.randint(0, 2 ** 62, (1,), generator=job.generator, device=job.device))
    start = job.row_offset
    for lo in range(0, n, ROW_BLOCK):
        hi = min(lo + ROW_BLOCK, n)
        keyed = None
        if job.x_T is None or job.noise is None:
            keyed = keyed_draws(seed, start + lo, start + hi, job.plan, job.device, with_noise=job.noise is None)
        x_T = job.x_T[lo:hi].float() if job.x_T is not None else keyed[0]
        noise = job.noise[:, lo:hi].float() if job.noise is not None else keyed[1]
        yield x_T, noise


def _run(job: SamplingJob) -> torch.Tensor:
    plan = job.plan
    model = job.model if job.precision == "fp32" else _bf16(job.model)
    # a graph of its own ("cpu-fused" in the key): one fixed block shape, apart from the compile backend's
    compiled = compiled_step(model, "cpu-fused", job.device, job.compile_mode, plan.history, plan.corrector,
                             plan.has_noise)
    timesteps, coefficients = plan.tables(job.device)
    n, parts = job.shape[0], []
    with torch.no_grad():
        for x_T, noise in _key_blocks(job, n):
            for a in range(0, x_T.shape[0], BLOCK_ROWS):
                b = min(a + BLOCK_ROWS, x_T.shape[0])
                pad = BLOCK_ROWS - (b - a)  # the last block padded: one graph for every block
                x = torch.nn.functional.pad(x_T[a:b], (0, 0, 0, pad))
                z = None if noise is None else torch.nn.functional.pad(noise[:, a:b], (0, 0, 0, pad))
                zeros = torch.zeros_like(x) if plan.has_noise else None

                def noise_of_step(i, z=z, zeros=zeros):
                    if not plan.has_noise:
                        return None
                    return z[i] if z is not None and plan.noisy[i] else zeros

                out = run_plan(compiled, plan, x, timesteps, coefficients, noise_of_step, job.trajectory)
                parts.append(out[:, :b - a] if job.trajectory else out[:b - a])
    return torch.cat(parts, dim=1 if job.trajectory else 0)


def _unavailable(device: torch.device):
    return None if device.type == "cpu" else "runs on the CPU (triton-fused is its GPU counterpart)"


def bf16_matmul_units() -> bool:
    """Whether this CPU has bfloat16 matrix instructions (AVX512_BF16 or AMX) and oneDNN may use them.
    oneDNN alone says yes on any AVX-512 CPU, where it emulates bf16; without them, or under
    ONEDNN_MAX_CPU_ISA=AVX2, a bf16 matmul ran 50x below fp32 here."""
    hardware = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return bool(hardware and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _auto_reason(device: torch.device, precision: str, point_steps) -> str | None:
    if precision == "bf16" and not bf16_matmul_units():
        return "this CPU has no bfloat16 matrix instructions: bf16 would run far below fp32 (ask for fp32)"
    if precision == "fp32" and (point_steps is None or point_steps < AUTO_MIN_POINT_STEPS):
        return f"fewer than {AUTO_MIN_POINT_STEPS} point-steps do not pay for its first call (eager runs them)"
    return None


register_backend(Backend("cpu-fused", _run, _unavailable, ("fp32", "bf16"),
                         "row blocks in cache, all steps per block, Inductor-compiled steps; bf16 MLP on request",
                         keys_rows=True, auto_reason=_auto_reason))
