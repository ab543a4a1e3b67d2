"""The single-launch sampler against the float64 reference loop, and its in-kernel noise."""
import pytest
import torch

import ddpm_fast as D
from ddpm_fast.backends._step import step_tables
from ddpm_fast.kernels import mlp_weights, p_sample_step, sample_fused
from ddpm_fast.metrics import sliced_wasserstein
from helpers import assert_close, precisions_for, reference_trajectory_f64


@pytest.fixture(scope="module")
def trained():
    return D.load_pretrained()


@pytest.mark.parametrize("n", [1, 7, 257, 1000])
@pytest.mark.parametrize("final_noise", [True, False])
def test_fused_sampler_parity(device, trained, n, final_noise):
    model, sched = trained[0].to(device), trained[1].to(device)
    x_T, noise = torch.randn(n, 2, device=device), torch.randn(100, n, 2, device=device)
    expected = reference_trajectory_f64(model, sched, x_T, noise, final_noise)
    tables = step_tables(sched.betas, sched.one_minus_alphas_bar_sqrt, final_noise)
    for precision in precisions_for(device):
        out, traj = sample_fused(mlp_weights(model), x_T, tables, precision=precision, noise=noise, keep_every=10)
        assert_close(out, expected[-1], precision)
        assert traj.shape == (11, n, 2)
        assert_close(traj, expected[::10], precision)
        assert torch.equal(traj[-1], out)


def test_trajectory_every_state(device, trained):
    model, sched = trained[0].to(device), trained[1].to(device)
    x_T, noise = torch.randn(7, 2, device=device), torch.randn(100, 7, 2, device=device)
    tables = step_tables(sched.betas, sched.one_minus_alphas_bar_sqrt, True)
    _, traj = sample_fused(mlp_weights(model), x_T, tables, noise=noise, keep_every=1)
    assert traj.shape == (101, 7, 2) and torch.equal(traj[0], x_T)
    assert_close(traj, reference_trajectory_f64(model, sched, x_T, noise), "fp32")


def test_in_kernel_noise_deterministic_block_independent_and_shared_with_step(device, trained):
    model, sched = trained[0].to(device), trained[1].to(device)
    x_T = torch.randn(100, 2, device=device)
    tables = step_tables(sched.betas, sched.one_minus_alphas_bar_sqrt, True)
    pack = mlp_weights(model)
    a = sample_fused(pack, x_T, tables, seed=21, block_m=128)
    b = sample_fused(pack, x_T, tables, seed=21, block_m=128)
    c = sample_fused(pack, x_T, tables, seed=21, block_m=32)
    assert torch.equal(a, b)
    assert_close(c, a, "fp32")  # same noise; only the dot's blocking differs
    x = x_T
    for t in reversed(range(100)):  # triton-step draws the same (seed, t, row) stream
        x = p_sample_step(pack, x, t, tables, seed=21)
    assert_close(x, a, "fp32")
    assert not torch.allclose(a, sample_fused(pack, x_T, tables, seed=22))


def test_in_kernel_noise_samples_the_data(device, trained):
    """In-kernel noise gives the same distribution as the eager sampler's torch.randn (SWD)."""
    model = trained[0].to(device)
    n = 1000 if device.type == "cpu" else 10_000  # the interpreter is slow
    fused = D.sample(model, n, seed=1, backend="triton-fused", device=device)
    eager = D.sample(model, n, seed=2, backend="eager", device=device)
    eager2 = D.sample(model, n, seed=3, backend="eager", device=device)
    floor = sliced_wasserstein(eager, eager2)
    assert sliced_wasserstein(fused, eager) < 3 * floor + 1e-3


def test_empty_and_bad_inputs(device, trained):
    model, sched = trained[0].to(device), trained[1].to(device)
    tables = step_tables(sched.betas, sched.one_minus_alphas_bar_sqrt, True)
    pack = mlp_weights(model)
    assert sample_fused(pack, torch.empty(0, 2, device=device), tables, seed=0).shape == (0, 2)
    with pytest.raises(ValueError, match=r"noise must be float32 \[100, 3, 2\]"):
        sample_fused(pack, torch.randn(3, 2, device=device), tables,
                     noise=torch.randn(100, 3, 2, device=device).double())
    with pytest.raises(TypeError, match="x_T must be float32"):
        sample_fused(pack, torch.randn(3, 2, device=device).half(), tables)
    short = tuple(t[:50] for t in tables)
    with pytest.raises(ValueError, match=r"step tables must have shape \[100\]"):
        sample_fused(pack, torch.randn(3, 2, device=device), short)
