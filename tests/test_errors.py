"""Bad input gets a clear error naming the problem, never a wrong answer."""
import pytest
import torch

import ddpm_fast as D


@pytest.fixture(scope="module")
def setup():
    return D.MLPDiffusion(100), D.make_schedule()


def test_points_shape_and_dtype(setup):
    model, sched = setup
    with pytest.raises(ValueError, match=r"shape \[N, 2\]"):
        D.q_sample(torch.randn(5, 3), 0, sched)
    with pytest.raises(ValueError, match=r"shape \[N, 2\]"):
        D.p_sample(model, torch.randn(5), 0, sched.betas, sched.one_minus_alphas_bar_sqrt)
    with pytest.raises(TypeError, match="floating-point"):
        D.q_sample(torch.ones(5, 2, dtype=torch.long), 0, sched)
    with pytest.raises(TypeError, match="floating-point"):
        D.diffusion_loss(model, torch.ones(4, 2, dtype=torch.int32), sched)


def test_timestep_range(setup):
    model, sched = setup
    for bad in (-1, 100):
        with pytest.raises(ValueError, match=r"outside \[0, 100\)"):
            D.p_sample(model, torch.randn(3, 2), bad, sched.betas, sched.one_minus_alphas_bar_sqrt)
    with pytest.raises(ValueError, match=r"\[0, 100\)"):
        D.q_sample(torch.randn(3, 2), torch.tensor([0, 5, 100]), sched)
    with pytest.raises(TypeError, match="integer tensor"):
        D.q_sample(torch.randn(3, 2), torch.tensor([0.5, 1.0, 2.0]), sched)


def test_model_schedule_step_mismatch(setup):
    _, sched = setup
    other = D.MLPDiffusion(50)
    with pytest.raises(ValueError, match="hold 50 timesteps but the schedule has 100"):
        D.sample(other, 10, schedule=sched, backend="eager")
    with pytest.raises(ValueError, match="hold 50 timesteps"):
        D.p_sample_loop(other, (3, 2), 100, sched.betas, sched.one_minus_alphas_bar_sqrt)


def test_injected_noise_shapes(setup):
    model, sched = setup
    with pytest.raises(ValueError, match=r"noise must have shape \[steps, N, 2\] = \[100, 4, 2\]"):
        D.sample(model, 4, noise=torch.randn(99, 4, 2), backend="eager")
    with pytest.raises(ValueError, match=r"x_T must have shape \[4, 2\]"):
        D.sample(model, 4, x_T=torch.randn(5, 2), backend="eager")
    with pytest.raises(ValueError, match="noise must have the shape of x_0"):
        D.q_sample(torch.randn(4, 2), 0, sched, noise=torch.randn(3, 2))


def test_unknown_names():
    with pytest.raises(ValueError, match="unknown dataset 'spiral'; known datasets: s_curve"):
        D.make_dataset("spiral")
    with pytest.raises(ValueError, match="unknown schedule kind 'quadratic'; known kinds: sigmoid, linear, cosine"):
        D.make_schedule(kind="quadratic")
    with pytest.raises(ValueError, match="unknown backend 'fastest'; known backends: auto, .*eager"):
        D.sample(D.MLPDiffusion(100), 3, backend="fastest")
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        D.sample(D.MLPDiffusion(100), 3, backend="eager", precision="fp8")


def test_n_zero_and_bad_n(setup):
    model, sched = setup
    for name in D.DATASETS:
        assert D.make_dataset(name, 0).shape == (0, 2)
    assert D.q_sample(torch.empty(0, 2), 3, sched).shape == (0, 2)
    with pytest.raises(ValueError, match="empty batch"):
        D.diffusion_loss(model, torch.empty(0, 2), sched)
    for backend in ("eager", "auto"):
        out = D.sample(model, 0, backend=backend)
        assert out.shape == (0, 2)
    with pytest.raises(ValueError, match="n must be an integer >= 0, got -1"):
        D.sample(model, -1)


def test_device_mismatch(setup):
    model, _ = setup
    with pytest.raises(ValueError, match="the model is on cpu but device=meta"):
        D.sample(model, 3, device="meta")


def test_explicit_backend_that_cannot_run(setup):
    model, _ = setup
    with pytest.raises(RuntimeError, match="backend 'cudagraph' cannot run on cpu: CUDA graphs need a CUDA device"):
        D.sample(model, 3, backend="cudagraph")
    with pytest.raises(ValueError, match="supports precisions fp32, not 'bf16'"):
        D.sample(model, 3, backend="eager", precision="bf16")
