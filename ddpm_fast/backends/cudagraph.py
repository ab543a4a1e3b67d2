"""``cudagraph``: the whole K-step loop captured once as one CUDA graph and replayed.

One graph per (model, N, plan structure: steps, history, corrector, which steps add noise;
device, precision, noise injected or drawn, trajectory kept, parameter addresses), with
static input and output buffers. The plan's timestep and coefficient tables are static
inputs too, copied in before every replay, so a call with another schedule or grid never
replays the tables of an earlier one. Drawn noise comes from the default CUDA
generator inside the graph, which PyTorch advances on every replay: fresh noise without
recapture. A seed replays under ``torch.random.fork_rng``, so the caller's RNG state is left
as it was; a chunk of a request chunked with ``keyed=False`` replays under its own seed,
derived from the seed and the chunk's first row, so chunks never repeat each other's noise
(a seeded chunked request is row-keyed by default: its noise comes in as injected noise). The graph reads
the parameters by address, so in-place weight updates (also through ``p.data``) are seen;
a replaced parameter changes the key and the loop is captured again.
"""
from __future__ import annotations

import time
import weakref
from dataclasses import dataclass

import torch

from ..rows import derive_seed
from ._step import draw_x_T, precision_context, run_plan, solver_step, step_noise
from .registry import Backend, SamplingJob, register_backend

_graphs: "weakref.WeakKeyDictionary[torch.nn.Module, dict]" = weakref.WeakKeyDictionary()
capture_times: dict = {}  # cache key -> seconds spent warming up and capturing


@dataclass
class _CapturedLoop:
    graph: "torch.cuda.CUDAGraph"
    x_T: torch.Tensor  # [N, 2] static input
    noise: torch.Tensor | None  # [K, N, 2] static input when noise is injected
    tables: tuple  # (timesteps [K] int64, coefficients [K, N_COLUMNS]): static inputs
    result: torch.Tensor  # [N, 2] x_0, or [K+1, N, 2] trajectory


def _loop(job: SamplingJob, x_T, noise, tables):
    plan = job.plan

    def step(x, carry, t_index, coef, z):
        return solver_step(job.model, x, carry, t_index, coef, z, plan.history, plan.corrector)
    # noise from the default generator (graph-safe), or the static injected buffer
    return run_plan(step, plan, x_T, *tables, lambda i: step_noise(noise, i, plan, x_T), job.trajectory)


def _capture(job: SamplingJob) -> _CapturedLoop:
    start = time.perf_counter()
    tables = tuple(t.clone() for t in job.plan.tables(job.device))  # the graph's own static inputs
    x_T = torch.zeros(job.shape, device=job.device)
    noise = None if job.noise is None else torch.zeros(job.n_steps, *job.shape, device=job.device)
    side = torch.cuda.Stream(job.device)
    side.wait_stream(torch.cuda.current_stream(job.device))
    with torch.cuda.stream(side), precision_context(job.precision, job.device), torch.random.fork_rng([job.device]):
        _loop(job, x_T, noise, tables)  # warm-up: lazy inits stay out of the graph
    torch.cuda.current_stream(job.device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), precision_context(job.precision, job.device):
        result = _loop(job, x_T, noise, tables)
    capture_times[_key(job)] = time.perf_counter() - start
    return _CapturedLoop(graph, x_T, noise, tables, result)


def _key(job: SamplingJob) -> tuple:
    return (job.shape[0], job.plan.structure(), str(job.device), job.precision, job.noise is not None,
            job.trajectory, tuple(p.data_ptr() for p in job.model.parameters()))


def _run(job: SamplingJob) -> torch.Tensor:
    if job.generator is not None and job.seed is None and job.noise is None:
        raise ValueError("backend 'cudagraph' draws its noise inside the graph and takes a seed, "
                         "not a generator; pass seed= or inject noise=")
    per_model = _graphs.setdefault(job.model, {})
    key = _key(job)
    if key not in per_model:
        per_model[key] = _capture(job)
    loop = per_model[key]
    for static, table in zip(loop.tables, job.plan.tables(job.device)):
        static.copy_(table)  # this call's schedule and grid (a host-to-device copy, no sync)
    loop.x_T.copy_(draw_x_T(job))
    if job.noise is not None:
        loop.noise.copy_(job.noise)
    if job.seed is None:
        loop.graph.replay()
    else:
        with torch.random.fork_rng([job.device]):
            torch.cuda.manual_seed(chunk_seed(job.seed, job.row_offset))
            loop.graph.replay()
    return loop.result.clone()  # the static output is overwritten by the next replay


def chunk_seed(seed: int, row_offset: int) -> int:
    """The seed a chunk starting at ``row_offset`` replays under: ``seed`` itself for the first
    chunk, else a 63-bit seed hashed from (seed, row_offset) by NumPy's SeedSequence, so
    the chunks of one request draw independent noise."""
    return seed if row_offset == 0 else derive_seed(seed, row_offset)


def _unavailable(device: torch.device):
    if device.type != "cuda":
        return "CUDA graphs need a CUDA device"
    if not torch.cuda.is_available():
        return "no CUDA GPU is available"
    return None


register_backend(Backend("cudagraph", _run, _unavailable, ("fp32", "tf32", "bf16"),
                         "the whole loop captured once as a CUDA graph and replayed", takes_generator=False))
