"""One fused reverse step against the float64 reference step."""
import pytest
import torch

import ddpm_fast as D
from ddpm_fast.backends._step import step_tables
from ddpm_fast.kernels import mlp_weights, p_sample_step
from helpers import assert_close, float64_model, precisions_for


@pytest.mark.parametrize("n", [1, 7, 257, 1000, 4097])
@pytest.mark.parametrize("t", [0, 1, 50, 99])
@pytest.mark.parametrize("final_noise", [True, False])
def test_step_parity(device, n, t, final_noise):
    torch.manual_seed(t + n)
    model, sched = D.MLPDiffusion(100).to(device), D.make_schedule().to(device)
    x, noise = torch.randn(n, 2, device=device), torch.randn(100, n, 2, device=device)
    expected = D.p_sample(float64_model(model), x.double().cpu(), t, sched.betas.double().cpu(),
                          sched.one_minus_alphas_bar_sqrt.double().cpu(), noise=noise[99 - t].double().cpu(),
                          final_noise=final_noise)
    tables = step_tables(sched.betas, sched.one_minus_alphas_bar_sqrt, final_noise)
    for precision in precisions_for(device):
        out = p_sample_step(mlp_weights(model), x, t, tables, precision=precision, noise=noise)
        assert_close(out, expected, precision, one_step=True)


def test_drawn_noise_statistics_and_determinism(device):
    model, sched = D.MLPDiffusion(100).to(device), D.make_schedule().to(device)
    tables = step_tables(sched.betas, sched.one_minus_alphas_bar_sqrt, True)
    pack, x = mlp_weights(model), torch.randn(4097, 2, device=device)
    a = p_sample_step(pack, x, 99, tables, seed=11)
    assert torch.equal(a, p_sample_step(pack, x, 99, tables, seed=11))
    # the drawn z is (x_{t-1} - mean) / sigma: check it is standard normal
    mean = p_sample_step(pack, x, 99, tables, noise=torch.zeros(100, 4097, 2, device=device))
    z = ((a - mean) / tables[2][99]).double().cpu()
    assert abs(z.mean()) < 4 / (2 * 4097) ** 0.5
    assert abs(z.var() - 1) < 0.06


def test_bad_step_inputs(device):
    model, sched = D.MLPDiffusion(100).to(device), D.make_schedule().to(device)
    tables = step_tables(sched.betas, sched.one_minus_alphas_bar_sqrt, True)
    pack, x = mlp_weights(model), torch.randn(5, 2, device=device)
    for bad_t in (-1, 100, 2.0):
        with pytest.raises(ValueError, match="must be an int in"):
            p_sample_step(pack, x, bad_t, tables)
    with pytest.raises(ValueError, match=r"noise must be float32 \[100, 5, 2\]"):
        p_sample_step(pack, x, 3, tables, noise=torch.randn(100, 4, 2, device=device))
