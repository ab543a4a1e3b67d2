"""The fused q_sample kernel: closed form in float64, returned eps, keyed noise."""
import pytest
import torch

import ddpm_fast as D
from ddpm_fast.kernels import q_sample


@pytest.mark.parametrize("n", [1, 7, 257, 1000, 4097])
@pytest.mark.parametrize("t_kind", ["rows", 0, 1, 50, 99])
def test_given_eps_matches_float64(device, n, t_kind):
    sched = D.make_schedule().to(device)
    x0, eps = torch.randn(n, 2, device=device), torch.randn(n, 2, device=device)
    t = torch.randint(0, 100, (n,), device=device) if t_kind == "rows" else t_kind
    x_t, eps_out = q_sample(x0, t, sched.alphas_bar_sqrt, sched.one_minus_alphas_bar_sqrt, noise=eps)
    assert torch.equal(eps_out, eps)
    ab = sched.alphas_prod.double().cpu()[torch.as_tensor(t).cpu()].reshape(-1, 1)
    expected = ab.sqrt() * x0.double().cpu() + (1 - ab).sqrt() * eps.double().cpu()
    torch.testing.assert_close(x_t.double().cpu(), expected, atol=1e-6, rtol=1e-6)  # one fused multiply-add in fp32


def test_drawn_eps_is_returned_and_used(device):
    sched = D.make_schedule().to(device)
    x0, t = torch.randn(1000, 2, device=device), torch.randint(0, 100, (1000,), device=device)
    x_t, eps = q_sample(x0, t, sched.alphas_bar_sqrt, sched.one_minus_alphas_bar_sqrt, seed=1)
    reference = D.q_sample(x0, t, sched, noise=eps)
    torch.testing.assert_close(x_t, reference, atol=1e-6, rtol=1e-6)


def test_drawn_eps_is_deterministic_and_block_independent(device):
    sched = D.make_schedule().to(device)
    x0 = torch.randn(1000, 2, device=device)
    run = lambda seed, block: q_sample(x0, 5, sched.alphas_bar_sqrt, sched.one_minus_alphas_bar_sqrt,  # noqa: E731
                                       seed=seed, block=block)[1]
    a, b, c, d = run(3, 128), run(3, 128), run(3, 512), run(4, 128)
    assert torch.equal(a, b) and torch.equal(a, c)
    assert not torch.equal(a, d)


def test_bad_timesteps(device):
    sched = D.make_schedule().to(device)
    with pytest.raises(ValueError, match=r"\[0, 100\)"):
        q_sample(torch.randn(3, 2, device=device), torch.tensor([0, 1, 100], device=device),
                 sched.alphas_bar_sqrt, sched.one_minus_alphas_bar_sqrt)
    with pytest.raises(ValueError, match=r"t must have shape \[3\] or \[1\]"):
        q_sample(torch.randn(3, 2, device=device), torch.tensor([0, 1], device=device),
                 sched.alphas_bar_sqrt, sched.one_minus_alphas_bar_sqrt)
    x_t, eps = q_sample(torch.randn(0, 2, device=device), 0, sched.alphas_bar_sqrt, sched.one_minus_alphas_bar_sqrt)
    assert x_t.shape == eps.shape == (0, 2)
