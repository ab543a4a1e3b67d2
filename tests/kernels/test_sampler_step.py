"""One launch of one step of any sampler plan against the float64 step, every timestep class."""
import pytest
import torch
from helpers import SAMPLER_CASES, assert_close, float64_model, precisions_for

import ddpm_fast as D
from ddpm_fast.backends._step import solver_step
from ddpm_fast.kernels import mlp_weights, new_state, sampler_step
from ddpm_fast.samplers import make_plan


@pytest.mark.parametrize("case", list(SAMPLER_CASES))
@pytest.mark.parametrize("n", [1, 7, 257, 1000, 4097])
def test_step_parity(device, case, n):
    """Each step of the plan from a random state (x, s', m_1, m_2), against solver_step in float64."""
    torch.manual_seed(n)
    model, sched = D.MLPDiffusion(100).to(device), D.make_schedule().to(device)
    plan = make_plan(sched, **SAMPLER_CASES[case])
    state = torch.randn(4, n, 2, device=device)
    noise = torch.randn(plan.steps, n, 2, device=device)
    reference = float64_model(model)
    timesteps, coefficients = plan.tables("cpu", torch.float64)
    for i in (0, 1, plan.steps - 1) if n > 1000 else range(plan.steps):
        s = state.double().cpu()
        z = noise[i].double().cpu() if plan.noisy[i] else None
        carry = (s[1] if plan.corrector else None, s[2] if plan.history >= 1 else None,
                 s[3] if plan.history >= 2 else None)
        with torch.no_grad():
            x, (s_new, m, m_1) = solver_step(reference, s[0], carry, timesteps[i:i + 1], coefficients[i], z,
                                             plan.history, plan.corrector)
        for precision in precisions_for(device):
            out = sampler_step(mlp_weights(model), state, i, plan, precision=precision, noise=noise)
            assert_close(out[0], x, precision, one_step=True)
            if plan.corrector:
                assert_close(out[1], s_new, precision, one_step=True)
            if plan.history >= 1:
                assert_close(out[2], m, precision, one_step=True)
            if plan.history >= 2:
                assert torch.equal(out[3], state[2])  # m_1 moves to m_2 unchanged


def test_drawn_noise_statistics_and_determinism(device):
    model, sched = D.MLPDiffusion(100).to(device), D.make_schedule().to(device)
    plan = make_plan(sched)
    pack, state = mlp_weights(model), new_state(torch.randn(4097, 2, device=device))
    a = sampler_step(pack, state, 0, plan, seed=11)
    assert torch.equal(a, sampler_step(pack, state, 0, plan, seed=11))
    # the drawn z is (x_{t-1} - mean) / sigma: check it is standard normal
    mean = sampler_step(pack, state, 0, plan, noise=torch.zeros(100, 4097, 2, device=device))
    sigma = float(plan.coefficients[0, -1])
    z = ((a[0] - mean[0]) / sigma).double().cpu()
    assert abs(z.mean()) < 4 / (2 * 4097) ** 0.5
    assert abs(z.var() - 1) < 0.06


def test_bad_step_inputs(device):
    model, sched = D.MLPDiffusion(100).to(device), D.make_schedule().to(device)
    plan = make_plan(sched)
    pack, state = mlp_weights(model), new_state(torch.randn(5, 2, device=device))
    for bad_i in (-1, 100, 2.0):
        with pytest.raises(ValueError, match="must be an int in"):
            sampler_step(pack, state, bad_i, plan)
    with pytest.raises(ValueError, match=r"noise must be float32 \[100, 5, 2\]"):
        sampler_step(pack, state, 3, plan, noise=torch.randn(100, 4, 2, device=device))
    with pytest.raises(ValueError, match=r"state must be float32 \[4, N, 2\]"):
        sampler_step(pack, state[0], 3, plan)
