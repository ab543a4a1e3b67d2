"""The single-launch sampler, for every sampler plan, against the float64 reference loop; its in-kernel noise."""
import pytest
import torch
from helpers import SAMPLER_CASES, assert_close, precisions_for, reference_plan_f64, reference_trajectory_f64

import ddpm_fast as D
from ddpm_fast.kernels import mlp_weights, new_state, sample_fused, sampler_step
from ddpm_fast.metrics import sliced_wasserstein
from ddpm_fast.samplers import make_plan


@pytest.fixture(scope="module")
def trained():
    return D.load_pretrained()


# 1 and 7 rows: one masked block; 257: a full block and one of a single row in the interpreter
# (1000 and 4097 rows: test_fused_every_sampler_parity). final_noise changes the last step only.
@pytest.mark.parametrize("n,final_noise", [(1, True), (7, False), (257, True), (257, False)])
def test_fused_sampler_parity(device, trained, n, final_noise):
    """The original 100-step sampler, every 10th state."""
    model, sched = trained[0].to(device), trained[1].to(device)
    x_T, noise = torch.randn(n, 2, device=device), torch.randn(100, n, 2, device=device)
    expected = reference_trajectory_f64(model, sched, x_T, noise, final_noise)
    plan = make_plan(sched, final_noise=final_noise)
    for precision in precisions_for(device):
        out, traj = sample_fused(mlp_weights(model), x_T, plan, precision=precision, noise=noise, keep_every=10)
        assert_close(out, expected[-1], precision)
        assert traj.shape == (11, n, 2)
        assert_close(traj, expected[::10], precision)
        assert torch.equal(traj[-1], out)


@pytest.mark.parametrize("case", list(SAMPLER_CASES))
@pytest.mark.parametrize("n", [1, 7, 1000, 4097])
def test_fused_every_sampler_parity(device, trained, case, n):
    """Every sampler plan in one launch, history and corrector on chip, every state checked."""
    model, sched = trained[0].to(device), trained[1].to(device)
    plan = make_plan(sched, **SAMPLER_CASES[case])
    x_T = torch.randn(n, 2, device=device) * plan.prior_std
    noise = torch.randn(plan.steps, n, 2, device=device)
    expected = reference_plan_f64(model, sched, x_T, noise, **SAMPLER_CASES[case])
    for precision in precisions_for(device):
        out, traj = sample_fused(mlp_weights(model), x_T, plan, precision=precision, noise=noise, keep_every=1)
        assert traj.shape == (plan.steps + 1, n, 2)
        assert_close(traj, expected, precision)
        assert torch.equal(traj[-1], out)


@pytest.mark.parametrize("name", ["distill-4", "distill-2", "distill-1"])
@pytest.mark.parametrize("n", [1, 7, 1000, 4097])
def test_fused_runs_each_bundled_students_own_plan(device, name, n):
    """A distilled student's plan (its own timesteps) in one launch, every state against float64, and
    sample()'s default on triton-fused against eager."""
    student, sched = D.load_pretrained(name, device=device)
    plan = make_plan(sched, student_plan=student.student_plan)
    x_T = torch.randn(n, 2, device=device) * plan.prior_std
    spec = student.student_plan
    expected = reference_plan_f64(student, sched, x_T, None, sampler=spec["sampler"], grid=spec["timesteps"],
                                  prior=spec["prior"])
    for precision in precisions_for(device):
        out, traj = sample_fused(mlp_weights(student), x_T, plan, precision=precision, keep_every=1)
        assert traj.shape == (len(spec["timesteps"]) + 1, n, 2)
        assert_close(traj, expected, precision)
    fused = D.sample(student, n, x_T=x_T, backend="triton-fused", device=device)
    assert_close(fused, D.sample(student, n, x_T=x_T, backend="eager", device=device), "fp32")


def test_in_kernel_noise_deterministic_block_independent_and_shared_with_step(device, trained):
    model, sched = trained[0].to(device), trained[1].to(device)
    x_T = torch.randn(100, 2, device=device)
    plan = make_plan(sched, **SAMPLER_CASES["ddpm"])  # every step adds noise, every timestep class
    pack = mlp_weights(model)
    a = sample_fused(pack, x_T, plan, seed=21, block_m=128)
    b = sample_fused(pack, x_T, plan, seed=21, block_m=128)
    c = sample_fused(pack, x_T, plan, seed=21, block_m=32)
    assert torch.equal(a, b)
    assert_close(c, a, "fp32")  # same noise; only the dot's blocking differs
    state = new_state(x_T)
    for i in range(plan.steps):  # triton-step draws the same (seed, t, row) stream
        state = sampler_step(pack, state, i, plan, seed=21)
    assert_close(state[0], a, "fp32")
    assert not torch.allclose(a, sample_fused(pack, x_T, plan, seed=22))


def test_in_kernel_noise_samples_the_data(device, trained):
    """In-kernel noise gives the same distribution as the eager sampler's torch.randn (SWD)."""
    model = trained[0].to(device)
    n = 1000 if device.type == "cpu" else 10_000  # the interpreter is slow
    noisy = dict(sampler="ddim", steps=10, eta=1.0) if device.type == "cpu" else {}  # a z at 9 of 10 steps
    fused = D.sample(model, n, seed=1, backend="triton-fused", device=device, **noisy)
    eager = D.sample(model, n, seed=2, backend="eager", device=device, **noisy)
    eager2 = D.sample(model, n, seed=3, backend="eager", device=device, **noisy)
    floor = sliced_wasserstein(eager, eager2)
    assert sliced_wasserstein(fused, eager) < 3 * floor + 1e-3


def test_empty_and_bad_inputs(device, trained):
    model, sched = trained[0].to(device), trained[1].to(device)
    plan = make_plan(sched)
    pack = mlp_weights(model)
    assert sample_fused(pack, torch.empty(0, 2, device=device), plan, seed=0).shape == (0, 2)
    with pytest.raises(ValueError, match=r"noise must be float32 \[100, 3, 2\]"):
        sample_fused(pack, torch.randn(3, 2, device=device), plan,
                     noise=torch.randn(100, 3, 2, device=device).double())
    with pytest.raises(TypeError, match="x_T must be float32"):
        sample_fused(pack, torch.randn(3, 2, device=device).half(), plan)
    other = make_plan(D.make_schedule(50))
    with pytest.raises(ValueError, match="plan is for 50 timesteps but the model's step embeddings hold 100"):
        sample_fused(pack, torch.randn(3, 2, device=device), other)
