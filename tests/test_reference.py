"""Exactness of the reference path against the original code (tests/original_code.py) and float64 algebra;
the parity rule of tests/tolerances.py, which holds the float32 reference and fails on a real fault."""
import dataclasses

import pytest
import torch
from helpers import assert_close, parity_figures, reference_trajectory_f64
from original_code import OriginalMLPDiffusion, diffusion_loss_fn, original_schedule, original_training
from original_code import p_sample as orig_p_sample
from original_code import p_sample_loop as orig_p_sample_loop
from tolerances import TAIL_ATOL, TOLERANCES

import ddpm_fast as D
from ddpm_fast.diffusion import antithetic_timesteps
from ddpm_fast.samplers import P_M, P_Z, make_plan
from ddpm_fast.sampling import run_backend

pytestmark = pytest.mark.cpu_paths

TABLES = ("betas", "alphas", "alphas_prod", "alphas_prod_p", "alphas_bar_sqrt",
          "one_minus_alphas_bar_log", "one_minus_alphas_bar_sqrt")


@pytest.mark.parametrize("n_steps", [1, 7, 100, 1000])
def test_schedule_tables_bit_exact(n_steps):
    ours, theirs = D.make_schedule(n_steps), original_schedule(n_steps)
    for name in TABLES:
        assert getattr(ours, name).dtype == torch.float32
        assert torch.equal(getattr(ours, name), theirs[name]), name


def test_schedule_kinds_and_closed_forms():
    lin = D.make_schedule(50, "linear", 1e-4, 2e-2)
    assert torch.allclose(lin.betas.double(), torch.linspace(1e-4, 2e-2, 50, dtype=torch.float64), atol=1e-9)
    cos = D.make_schedule(100, "cosine")
    assert (cos.betas > 0).all() and (cos.betas <= 0.999).all()
    # ᾱ of the cosine schedule follows f(t)/f(0) in float64
    s = 0.008
    f = torch.cos((torch.arange(101, dtype=torch.float64) / 100 + s) / (1 + s) * torch.pi / 2) ** 2
    assert torch.allclose(cos.alphas_prod.double()[:-1], (f / f[0])[1:-1], rtol=1e-5)
    assert cos.betas[-1] == torch.tensor(0.999)  # the last beta is clipped, as in the paper
    for sched in (lin, cos):
        assert torch.allclose(sched.alphas_bar_sqrt ** 2 + sched.one_minus_alphas_bar_sqrt ** 2,
                              torch.ones(sched.n_steps), atol=1e-6)
    moved = lin.to("cpu")
    assert moved.device == torch.device("cpu") and moved.n_steps == 50


def test_state_dict_contract_and_forward_bits():
    torch.manual_seed(1)
    original = OriginalMLPDiffusion(100)
    ours = D.MLPDiffusion(100)
    assert list(ours.state_dict()) == list(original.state_dict())
    ours.load_state_dict(original.state_dict())
    x, t = torch.randn(1000, 2), torch.randint(0, 100, (1000,))
    assert torch.equal(ours(x, t), original(x.clone(), t))
    torch.manual_seed(2)
    fresh = D.MLPDiffusion(100)
    torch.manual_seed(2)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(),
                                                   OriginalMLPDiffusion(100).state_dict().values()))


@pytest.mark.parametrize("n", [1, 7, 1000, 4097])
@pytest.mark.parametrize("t", [0, 1, 50, 99])
def test_q_sample_closed_form_float64(n, t):
    sched = D.make_schedule()
    x0, eps = torch.randn(n, 2), torch.randn(n, 2)
    out = D.q_sample(x0, t, sched, noise=eps)
    ab = sched.alphas_prod.double()[t]
    expected = ab.sqrt() * x0.double() + (1 - ab).sqrt() * eps.double()
    assert torch.allclose(out.double(), expected, atol=1e-6, rtol=1e-6)


def test_q_sample_per_row_timesteps():
    sched = D.make_schedule()
    x0, eps, t = torch.randn(7, 2), torch.randn(7, 2), torch.tensor([0, 1, 50, 99, 3, 4, 5])
    out = D.q_sample(x0, t, sched, noise=eps)
    for row in range(7):
        assert torch.equal(out[row:row + 1], D.q_sample(x0[row:row + 1], int(t[row]), sched, noise=eps[row:row + 1]))


@pytest.mark.parametrize("t", [0, 1, 50, 99])
def test_p_sample_step_matches_original(t):
    sched, model = D.make_schedule(), D.MLPDiffusion(100)
    x = torch.randn(1000, 2)
    torch.manual_seed(7)
    ours = D.p_sample(model, x, t, sched.betas, sched.one_minus_alphas_bar_sqrt)
    torch.manual_seed(7)
    theirs = orig_p_sample(model, x, t, sched.betas, sched.one_minus_alphas_bar_sqrt)
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("t", [0, 1, 50, 99])
def test_p_sample_step_float64_algebra(t):
    sched, model = D.make_schedule(), D.MLPDiffusion(100)
    x, z = torch.randn(7, 2), torch.randn(7, 2)
    out = D.p_sample(model, x, t, sched.betas, sched.one_minus_alphas_bar_sqrt, noise=z)
    b = sched.betas.double()[t]
    eps = model.double()(x.double(), torch.tensor([t]))
    coeff = b / (1 - sched.alphas_prod.double()[t]).sqrt()
    expected = (x.double() - coeff * eps) / (1 - b).sqrt() + b.sqrt() * z.double()
    assert torch.allclose(out.double(), expected, atol=1e-6, rtol=1e-5)


def test_p_sample_loop_seeded_matches_original_bits():
    sched, model = D.make_schedule(), D.MLPDiffusion(100)
    torch.manual_seed(11)
    ours = D.p_sample_loop(model, (257, 2), 100, sched.betas, sched.one_minus_alphas_bar_sqrt)
    torch.manual_seed(11)
    theirs = orig_p_sample_loop(model, (257, 2), 100, sched.betas, sched.one_minus_alphas_bar_sqrt)
    assert len(ours) == 101
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))


def test_injected_noise_convention_matches_global_rng():
    """noise[i] is the z of iteration i (t = T-1-i): recorded global draws, replayed, give the same bits."""
    sched, model = D.make_schedule(), D.MLPDiffusion(100)
    torch.manual_seed(3)
    drawn = D.p_sample_loop(model, (7, 2), 100, sched.betas, sched.one_minus_alphas_bar_sqrt)
    torch.manual_seed(3)
    x_T = torch.randn(7, 2)
    noise = torch.stack([torch.randn(7, 2) for _ in range(100)])
    replayed = D.p_sample_loop(model, (7, 2), 100, sched.betas, sched.one_minus_alphas_bar_sqrt, x_T=x_T, noise=noise)
    assert all(torch.equal(a, b) for a, b in zip(drawn, replayed))


def test_final_noise_false_is_the_mean_at_t0():
    sched, model = D.make_schedule(), D.MLPDiffusion(100)
    x_T, noise = torch.randn(7, 2), torch.randn(100, 7, 2)
    with_noise = D.p_sample_loop(model, (7, 2), 100, sched.betas, sched.one_minus_alphas_bar_sqrt, x_T=x_T, noise=noise)
    without = D.p_sample_loop(model, (7, 2), 100, sched.betas, sched.one_minus_alphas_bar_sqrt, x_T=x_T, noise=noise,
                              final_noise=False)
    assert all(torch.equal(a, b) for a, b in zip(with_noise[:-1], without[:-1]))
    x1 = with_noise[-2]
    mean = D.p_sample(model, x1, 0, sched.betas, sched.one_minus_alphas_bar_sqrt, noise=torch.zeros(7, 2))
    assert torch.equal(without[-1], mean)
    assert not torch.equal(with_noise[-1], without[-1])


def test_loss_matches_original_for_even_batch():
    sched, model = D.make_schedule(), D.MLPDiffusion(100)
    x0 = D.make_s_curve(128, seed=0)
    torch.manual_seed(5)
    ours = D.diffusion_loss(model, x0, sched)
    torch.manual_seed(5)
    theirs = diffusion_loss_fn(model, x0, sched.alphas_bar_sqrt, sched.one_minus_alphas_bar_sqrt, 100)
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("batch", [1, 7, 129])
def test_loss_odd_batch(batch):
    sched, model = D.make_schedule(), D.MLPDiffusion(100)
    gen = torch.Generator().manual_seed(0)
    t = antithetic_timesteps(batch, 100, generator=gen)
    assert t.shape == (batch,)
    half = (batch + 1) // 2
    assert torch.equal(t[half:], 99 - t[:batch - half])  # antithetic partners, last one dropped
    loss = D.diffusion_loss(model, D.make_s_curve(batch, seed=1), sched)
    assert loss.ndim == 0 and torch.isfinite(loss)


def test_train_bit_exact_with_original_loop():
    data = D.make_s_curve(300, seed=3)
    torch.manual_seed(5)
    model, snapshots = original_training(data, 100, 3, snapshot_every=2)
    result = D.train(D.TrainConfig(epochs=3, seed=5, snapshot_every=2), dataset=data, progress=False)
    for (name, a), b in zip(model.state_dict().items(), result.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert sorted(result.snapshots) == sorted(snapshots) == [0, 2]
    assert all(torch.equal(snapshots[e], result.snapshots[e]) for e in snapshots)


def test_training_lowers_the_loss():
    result = D.train(D.TrainConfig(epochs=40, n_points=1000, seed=0, snapshot_every=0), progress=False)
    assert len(result.losses) == 40  # 8 batches an epoch: 320 steps
    assert sum(result.losses[-5:]) / 5 < 0.75 * result.losses[0]


def _draw(seed, steps=100, n=1000):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, generator=gen), torch.randn(steps, n, 2, generator=gen)


@pytest.mark.parametrize("name,seed", [("seed", 0), ("seed", 1), ("best", 2), ("untrained", 4)])
def test_reference_float32_within_the_rule_of_float64(name, seed):
    """The float32 reference itself, 1000 points through 100 steps of a bundled model or an
    untrained one (where the bulk error is largest, tests/tolerances.py), lands from
    float64 within half the bulk bound of the parity rule (tests/tolerances.py), so a fast path
    held to it has room for its own rounding, and within the every-point bound, which is set by
    this reference's own worst points on several CPUs."""
    if name == "untrained":
        torch.manual_seed(seed)
        model, sched = D.MLPDiffusion(100), D.make_schedule()
    else:
        model, sched = D.load_pretrained(name)
    x_T, noise = _draw(seed)
    out32 = torch.stack(D.p_sample_loop(model, (1000, 2), 100, sched.betas, sched.one_minus_alphas_bar_sqrt,
                                        x_T=x_T, noise=noise))
    bulk, worst, _ = parity_figures(out32, reference_trajectory_f64(model, sched, x_T, noise))
    assert bulk <= TOLERANCES["fp32"][0] / 2 and worst <= TAIL_ATOL["fp32"], (bulk, worst)


FAULTS = {  # a deliberate fault, and the bound of the rule it breaks
    "neighbour's coefficients at one step": "every-point bound",
    "p_m 1% off at one step": "every-point bound",
    "p_m 0.02% off at one step": "of the points land within",  # every point a little: the bulk bound
    "p_z 1e-3 off at every step": "every-point bound",
    "noise of the next step": "every-point bound",
    "one row's noise from another row at one step": "every-point bound",  # one point far off
}


def _broken(plan, fault):
    """``plan`` with one deliberate fault, run as a table (not the seed-exact loop)."""
    table = plan.coefficients.copy()
    middle = plan.steps // 2
    if fault == "neighbour's coefficients at one step":
        table[middle] = table[middle + 1]
    elif fault == "p_m 1% off at one step":
        table[middle, P_M] *= 1.01
    elif fault == "p_m 0.02% off at one step":
        table[middle, P_M] *= 1.0002
    elif fault == "p_z 1e-3 off at every step":
        table[:-1, P_Z] *= 1.001
    return dataclasses.replace(plan, coefficients=table, reference=False, _device_tables={})


@pytest.mark.parametrize("fault", [None, *FAULTS])
def test_parity_rule_fails_on_a_real_fault(fault):
    """The same rule that passes the table-driven loop fails it with one coefficient, one noise
    index or one row wrong, on the trained model where the float32 rounding is largest."""
    model, sched = D.load_pretrained()
    x_T, noise = _draw(3)
    expected = reference_trajectory_f64(model, sched, x_T, noise)
    plan = _broken(make_plan(sched), fault)
    if fault == "noise of the next step":
        noise = torch.cat([noise[1:], noise[:1]])
    elif fault == "one row's noise from another row at one step":
        noise = noise.clone()
        noise[50, 17] = noise[50, 18]
    states = run_backend("eager", model, sched.betas, sched.one_minus_alphas_bar_sqrt, (1000, 2), x_T=x_T,
                         noise=noise, trajectory=True, plan=plan)
    if fault is None:
        assert_close(states, expected)
    else:
        with pytest.raises(AssertionError, match=FAULTS[fault]):
            assert_close(states, expected)
