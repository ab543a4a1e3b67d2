"""pytest-benchmark suite: backend x N x precision for ``sample``.

Run: ``pytest benchmarks/ --benchmark-only`` (add ``DDPM_FAST_DEVICE=cuda`` on a GPU).
Each timed call synchronizes the device; the first call (compilation, capture) is
timed apart and stored in ``extra_info``; combinations the machine cannot run are
skipped with the reason.
"""
import os
import time

import pytest
import torch

DEVICE = torch.device(os.environ.get("DDPM_FAST_DEVICE", "cpu"))
if DEVICE.type == "cpu":
    os.environ.setdefault("TRITON_INTERPRET", "1")

import ddpm_fast as D  # noqa: E402
from ddpm_fast.backends import available_backends  # noqa: E402
from ddpm_fast.bench import environment, flops_per_point_step  # noqa: E402

BACKENDS = ["eager", "compile", "cudagraph", "triton-step", "triton-fused"]
SIZES = [1_000, 10_000, 100_000, 1_000_000]
CPU_MAX_N = 10_000  # larger N on 2 CPU cores takes minutes per round


@pytest.fixture(scope="module")
def pretrained():
    model, schedule = D.load_pretrained(DEVICE)
    return model, schedule


def _sync():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


@pytest.mark.parametrize("precision", ["fp32", "tf32", "bf16"])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_sample(benchmark, pretrained, backend, n, precision):
    status = available_backends(DEVICE)[backend]
    if not status["available"]:
        pytest.skip(f"{backend} on {DEVICE}: {status['reason']}")
    if precision not in status["precisions"]:
        pytest.skip(f"{backend} has no {precision}")
    if DEVICE.type == "cpu" and (precision != "fp32" or n > CPU_MAX_N):
        pytest.skip(f"CPU runs fp32 up to N={CPU_MAX_N} only")
    if DEVICE.type == "cpu" and backend.startswith("triton"):
        pytest.skip("Triton on CPU is the interpreter: its timings mean nothing")
    model, schedule = pretrained

    def call():
        out = D.sample(model, n, schedule=schedule, seed=0, backend=backend, precision=precision, device=DEVICE,
                       chunk_size=None)
        _sync()
        return out

    start = time.perf_counter()
    call()
    benchmark.extra_info.update(first_call_s=time.perf_counter() - start, n=n, backend=backend,
                                precision=precision, gflop=flops_per_point_step() * schedule.n_steps * n / 1e9,
                                **environment(DEVICE))
    benchmark.pedantic(call, rounds=10 if n <= 100_000 else 3, warmup_rounds=2)
