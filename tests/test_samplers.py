"""Few-step samplers as tables: the plans, parity with diffusers' schedulers, every backend
against the float64 reference, and bad input."""
import math

import numpy as np
import pytest
import torch
from helpers import SAMPLER_CASES, assert_close, float64_model, reference_plan_f64

import ddpm_fast as D
from ddpm_fast.grids import timestep_grid
from ddpm_fast.samplers import A_EPS, P_M, P_S, P_Z, SAMPLERS, make_plan, schedule_tables

# eager, compile and cpu-fused run torch's CPU kernels: CI runs them again on another CPU's MKL path
BACKENDS = [pytest.param("eager", marks=pytest.mark.cpu_paths), pytest.param("compile", marks=pytest.mark.cpu_paths),
            pytest.param("cpu-fused", marks=pytest.mark.cpu_paths),
            "cudagraph", "triton-step", "triton-fused"]


@pytest.fixture(scope="module")
def trained(device):
    model, schedule = D.load_pretrained(device)
    return model, schedule


def test_default_plan_is_the_original_sampler():
    sched = D.make_schedule()
    plan = make_plan(sched)
    assert plan.reference and plan.steps == 100 and plan.timesteps == tuple(range(99, -1, -1))
    assert plan.prior_std == 1.0 and all(plan.noisy) and plan.history == 0 and not plan.corrector
    # its coefficients are the original update's, computed in float64 from the float32 tables
    betas, sigmas = sched.betas.double().numpy(), sched.one_minus_alphas_bar_sqrt.double().numpy()
    t = np.array(plan.timesteps)
    np.testing.assert_allclose(plan.coefficients[:, P_S], 1 / np.sqrt(1 - betas[t]), rtol=1e-15)
    np.testing.assert_allclose(plan.coefficients[:, P_M], -betas[t] / sigmas[t] / np.sqrt(1 - betas[t]), rtol=1e-14)
    np.testing.assert_allclose(plan.coefficients[:, P_Z], np.sqrt(betas[t]), rtol=1e-15)
    assert (plan.coefficients[:, A_EPS] == 1).all()
    assert not make_plan(sched, final_noise=False).noisy[-1]


def test_few_step_defaults_matched_prior_and_grids():
    sched = D.make_schedule()
    abar_99 = 1 - sched.one_minus_alphas_bar_sqrt[-1].double().item() ** 2
    assert abs(abar_99 - 0.778) < 1e-3  # the fact: N(0, I) is far from q(x_99)
    for sampler in ("ddim", "dpm++2m", "unipc"):
        plan = make_plan(sched, sampler)
        assert plan.steps == 10 and not plan.has_noise and not plan.reference
        assert math.isclose(plan.prior_std, math.sqrt(1 - abar_99), rel_tol=1e-12)
    alphas_bar = schedule_tables(sched)[1]
    assert timestep_grid(alphas_bar, 10, "trailing") == tuple(range(99, 0, -10))
    assert timestep_grid(alphas_bar, 5, "leading") == (80, 60, 40, 20, 0)
    linspace = timestep_grid(alphas_bar, 100, "linspace")  # no repeats, t = 0 kept
    assert linspace == tuple(range(99, -1, -1))
    for grid in ("karras", "lu"):
        t = timestep_grid(alphas_bar, 10, grid)
        assert t[0] == 99 and t[-1] == 0 and all(a > b for a, b in zip(t, t[1:]))


def test_tuned_grids_ship_with_the_bundled_model():
    model, sched = D.load_pretrained()
    for sampler in ("dpm++2m", "unipc"):
        tuned = model.tuned_grids[sampler]["5"]
        plan = make_plan(sched, sampler, 5, tuned_grids=model.tuned_grids)
        assert plan.grid == "tuned" and list(plan.timesteps) == tuned
        assert make_plan(sched, sampler, 5, grid="karras", tuned_grids=model.tuned_grids).grid == "karras"
    with pytest.raises(ValueError, match="no tuned grid for ddim with 5 steps"):
        make_plan(sched, "ddim", 5, grid="tuned", tuned_grids=model.tuned_grids)


# --------------------------------------------------------------------------------------
# Parity with diffusers' schedulers (a test extra), float64, on the same timesteps and start
# --------------------------------------------------------------------------------------

# (sampler, diffusers class, its config, atol): diffusers keeps the ODE solvers' sigmas in
# float32 (1e-5 on O(1) points after 100 steps, measured 3.5e-6); DDIM and DDPM compute in
# the sample's float64 from the alphas_cumprod given (measured 2e-14).
DIFFUSERS_CASES = [
    ("ddpm", "DDPMScheduler", dict(variance_type="fixed_large", clip_sample=False), 1e-12),
    ("ddim", "DDIMScheduler", dict(clip_sample=False), 1e-12),
    ("dpm++2m", "DPMSolverMultistepScheduler", dict(final_sigmas_type="zero"), 1e-5),
    ("unipc", "UniPCMultistepScheduler", dict(final_sigmas_type="zero"), 1e-5),
]


@pytest.mark.cpu_paths
@pytest.mark.parametrize("sampler,cls_name,config,atol", DIFFUSERS_CASES, ids=[c[0] for c in DIFFUSERS_CASES])
@pytest.mark.parametrize("steps,spacing", [(1, "trailing"), (2, "trailing"), (5, "trailing"), (10, "leading"),
                                           (10, "trailing"), (100, "trailing")])
def test_reference_matches_diffusers(monkeypatch, sampler, cls_name, config, atol, steps, spacing):
    diffusers = pytest.importorskip("diffusers")
    import diffusers.schedulers.scheduling_ddpm as ddpm_module
    model, sched = D.load_pretrained()
    model64 = float64_model(model)
    # One float64 schedule for both sides: abar = prod(1 - beta) exactly, so a one-timestep
    # step's beta (ours) and 1 - abar_t / abar_{t-1} (diffusers') agree to float64 rounding.
    betas = sched.betas.double()
    sigmas = torch.sqrt(-torch.expm1(torch.cumsum(torch.log1p(-betas), 0)))
    alphas_bar = 1 - sigmas ** 2
    scheduler = getattr(diffusers, cls_name)(num_train_timesteps=100, trained_betas=sched.betas.double().numpy(),
                                             timestep_spacing=spacing, **config)
    scheduler.alphas_cumprod = alphas_bar.clone()
    if hasattr(scheduler, "final_alpha_cumprod"):
        scheduler.final_alpha_cumprod = torch.tensor(1.0, dtype=torch.float64)
    scheduler.set_timesteps(steps)
    timesteps = [int(t) for t in scheduler.timesteps]
    gen = torch.Generator().manual_seed(steps)
    n, eta = 300, (0.6 if sampler == "ddim" else None)
    x_T = torch.randn(n, 2, generator=gen, dtype=torch.float64) * 0.5
    noise = torch.randn(len(timesteps), n, 2, generator=gen, dtype=torch.float64)
    injected = iter(noise)
    monkeypatch.setattr(ddpm_module, "randn_tensor", lambda *a, **k: next(injected))  # DDPM's variance noise
    x = x_T.clone()
    with torch.no_grad():
        for i, t in enumerate(scheduler.timesteps):
            eps = model64(x, torch.full((n,), int(t)))
            extra = {"eta": eta, "variance_noise": noise[i]} if sampler == "ddim" else {}
            x = scheduler.step(eps, t, x, **extra).prev_sample
    # diffusers' DDPM adds no noise at t = 0 only: our final_noise for a grid ending there
    ours = D.p_sample_loop(model64, (n, 2), 100, betas, sigmas, x_T=x_T, noise=noise, sampler=sampler,
                           grid=timesteps, eta=eta, final_noise=timesteps[-1] > 0)[-1]
    torch.testing.assert_close(ours, x, atol=atol, rtol=0)


# --------------------------------------------------------------------------------------
# Every backend runs every sampler: parity with the float64 reference on injected noise
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", list(SAMPLER_CASES))
@pytest.mark.parametrize("n", [1, 7, 257])
def test_every_backend_every_sampler(device, trained, backend, case, n):
    if backend == "cudagraph" and device.type != "cuda":
        pytest.skip("cudagraph needs CUDA")
    if backend == "cpu-fused" and device.type != "cpu":
        pytest.skip("cpu-fused runs on the CPU")
    model, sched = trained
    kwargs = SAMPLER_CASES[case]
    plan = make_plan(sched, **kwargs)
    x_T = torch.randn(n, 2, device=device) * plan.prior_std
    noise = torch.randn(plan.steps, n, 2, device=device)
    expected = reference_plan_f64(model, sched, x_T, noise, **kwargs)
    out = D.sample(model, n, x_T=x_T, noise=noise, backend=backend, **kwargs)
    assert out.shape == (n, 2)
    assert_close(out, expected[-1], "fp32")
    states = D.p_sample_loop(model, (n, 2), 100, sched.betas, sched.one_minus_alphas_bar_sqrt, x_T=x_T,
                             noise=noise, backend=backend, **kwargs)
    assert len(states) == plan.steps + 1 and torch.equal(states[0], x_T)
    assert_close(torch.stack(states), expected, "fp32")


@pytest.mark.cpu_paths
def test_seeded_ode_samplers_draw_the_eager_stream(trained):
    model, _ = trained
    for sampler in ("dpm++2m", "unipc", "ddim"):
        eager = D.sample(model, 33, sampler=sampler, seed=9, backend="eager")
        assert_close(D.sample(model, 33, sampler=sampler, seed=9, backend="compile"), eager, "fp32")
        prior_std = make_plan(D.make_schedule(), sampler).prior_std
        x_T = torch.randn(33, 2, generator=torch.Generator().manual_seed(9)) * prior_std
        assert_close(D.sample(model, 33, sampler=sampler, x_T=x_T, backend="eager"), eager, "fp32")


def test_deterministic_samplers_ignore_noise_and_in_kernel_noise_is_shared(device, trained):
    model, _ = trained
    x_T = torch.randn(9, 2, device=device) * 0.5
    a = D.sample(model, 9, sampler="dpm++2m", x_T=x_T, seed=1, backend="triton-fused")
    b = D.sample(model, 9, sampler="dpm++2m", x_T=x_T, seed=2, backend="triton-step")
    assert_close(a, b, "fp32")
    c = D.sample(model, 9, sampler="ddim", eta=1.0, x_T=x_T, seed=1, backend="triton-fused")
    d = D.sample(model, 9, sampler="ddim", eta=1.0, x_T=x_T, seed=1, backend="triton-step")
    assert_close(c, d, "fp32")
    assert not torch.allclose(c, D.sample(model, 9, sampler="ddim", eta=1.0, x_T=x_T, seed=3, backend="triton-fused"))


# --------------------------------------------------------------------------------------
# Bad input names the problem
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,error,match", [
    (dict(sampler="euler"), ValueError, "unknown sampler 'euler'; known samplers: ddpm, ddim, dpm\\+\\+2m, unipc"),
    (dict(sampler="ddim", grid="cosine"), ValueError, "unknown grid 'cosine'; known grids: trailing"),
    (dict(sampler="ddim", prior="wide"), ValueError, "unknown prior 'wide'; known priors: unit, matched"),
    (dict(sampler="dpm++2m", eta=0.5), ValueError, "eta is ddim's noise level; sampler 'dpm\\+\\+2m' takes none"),
    (dict(sampler="ddim", eta=2.0), ValueError, "eta must lie in \\[0, 1\\], got 2.0"),
    (dict(sampler="ddim", eta="0.5"), TypeError, "eta must be a number in \\[0, 1\\], got '0.5'"),
    (dict(sampler="ddim", eta=True), TypeError, "eta must be a number"),
    (dict(sampler="ddim", steps=101), ValueError, "steps=101 is more than the schedule's 100 timesteps"),
    (dict(sampler="ddim", steps=0), ValueError, "steps must be"),
    (dict(sampler="ddim", steps=2.5), TypeError, "steps must be an integer"),
    (dict(sampler="ddim", grid=[50, 60]), ValueError, "strictly decreasing, got \\[50, 60\\]"),
    (dict(sampler="ddim", grid=[100, 5]), ValueError, "must lie in \\[0, 100\\), got \\[100, 5\\]"),
    (dict(sampler="ddim", grid=[]), ValueError, "grid is empty"),
    (dict(sampler="ddim", grid=[9.5, 2]), TypeError, "sequence of ints"),
    (dict(sampler="ddim", grid=[9, 2], steps=3), ValueError, "steps=3 but the grid has 2 timesteps"),
    (dict(sampler="dpm++2m", grid="karras", steps=90), ValueError, "repeats timesteps"),
    (dict(sampler="ddim", grid="tuned"), ValueError, "no tuned grid for ddim with 10 steps"),
])
def test_bad_sampler_arguments(kwargs, error, match):
    model = D.MLPDiffusion(100)
    with pytest.raises(error, match=match):
        D.sample(model, 3, **kwargs)


def test_injected_noise_has_the_plan_s_steps():
    model = D.MLPDiffusion(100)
    with pytest.raises(ValueError, match=r"noise must have shape \[steps, N, 2\] = \[5, 3, 2\]"):
        D.sample(model, 3, sampler="ddim", steps=5, eta=1.0, noise=torch.randn(100, 3, 2))
    assert D.sample(model, 3, sampler="ddim", steps=5, eta=1.0, noise=torch.randn(5, 3, 2)).shape == (3, 2)


def test_available_samplers_listed():
    assert D.available_samplers() == list(SAMPLERS)
    assert D.available_backends("cpu")["triton-fused"]["samplers"] == list(SAMPLERS)
