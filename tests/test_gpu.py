"""CUDA-only checks (run by benchmarks/gpu_check.sh); each skips on a machine without a GPU."""
import pytest
import torch

import ddpm_fast as D
from ddpm_fast.backends import cudagraph
from ddpm_fast.backends._step import step_tables
from ddpm_fast.kernels import mlp_weights, sample_fused
from helpers import assert_close, reference_trajectory_f64

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA GPU (runs in benchmarks/gpu_check.sh)")
BACKENDS = ["eager", "compile", "cudagraph", "triton-step", "triton-fused"]


@pytest.fixture(scope="module")
def trained():
    model, sched = D.load_pretrained("cuda")
    return model, sched


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_host_sync_in_sampling(trained, backend):
    model, sched = trained
    D.sample(model, 1000, schedule=sched, seed=0, backend=backend)  # warm-up: compile, capture, pack
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        D.sample(model, 1000, schedule=sched, seed=1, backend=backend)
    finally:
        torch.cuda.set_sync_debug_mode(0)


def test_cudagraph_fresh_noise_seeds_and_stale_weights():
    torch.manual_seed(0)
    model = D.MLPDiffusion(100).cuda()
    a = D.sample(model, 500, backend="cudagraph")
    b = D.sample(model, 500, backend="cudagraph")
    assert not torch.equal(a, b)  # fresh noise on every replay
    c = D.sample(model, 500, seed=3, backend="cudagraph")
    d = D.sample(model, 500, seed=3, backend="cudagraph")
    assert torch.equal(c, d)
    assert len(cudagraph._graphs[model]) == 1  # one capture served all four calls
    x_T, noise = torch.randn(500, 2, device="cuda"), torch.randn(100, 500, 2, device="cuda")
    with torch.no_grad():
        model.linears[2].weight.mul_(0.5)  # in place: the graph must see it
    out = D.sample(model, 500, x_T=x_T, noise=noise, backend="cudagraph")
    assert_close(out, reference_trajectory_f64(model, D.make_schedule(), x_T, noise)[-1], "fp32")
    model.linears[4].weight = torch.nn.Parameter(torch.randn_like(model.linears[4].weight) * 0.05)  # replaced
    out = D.sample(model, 500, x_T=x_T, noise=noise, backend="cudagraph")
    assert_close(out, reference_trajectory_f64(model, D.make_schedule(), x_T, noise)[-1], "fp32")


def test_fused_sampler_int64_offsets():
    """(T-1) * N > 2^31: injected-noise offsets must not wrap (rows are independent). 17 GB of noise."""
    model, sched = D.load_pretrained("cuda")
    n = (2**31) // 99 + 4097
    x_T = torch.randn(n, 2, device="cuda")
    noise = torch.randn(100, n, 2, device="cuda")
    tables = step_tables(sched.betas, sched.one_minus_alphas_bar_sqrt, True)
    out = sample_fused(mlp_weights(model), x_T, tables, noise=noise)
    tail = slice(n - 7, n)
    expected = reference_trajectory_f64(model, sched, x_T[tail], noise[:, tail])[-1]
    assert_close(out[tail], expected, "fp32")


def test_profile_cli_on_cuda(tmp_path, capsys):
    from ddpm_fast.cli import main
    assert main(["profile", "--device", "cuda", "--backend", "triton-fused", "--n", "10000",
                 "--out", str(tmp_path)]) == 0
    assert (tmp_path / "trace_triton-fused.json").stat().st_size > 0
    assert "_sampler_kernel" in capsys.readouterr().out
