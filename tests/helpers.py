"""Float64 references and the tolerance check shared by the parity tests."""
import copy

import torch
from tolerances import BULK_MIN_POINTS, BULK_QUANTILE, TAIL_ATOL, TOLERANCES, TOLERANCES_ONE_STEP

import ddpm_fast as D


def float64_model(model):
    return copy.deepcopy(model).to("cpu", torch.float64)


def reference_trajectory_f64(model, schedule, x_T, noise, final_noise=True):
    """The eager reference loop in float64 on CPU: [T+1, N, 2]."""
    states = D.p_sample_loop(float64_model(model), tuple(x_T.shape), schedule.n_steps,
                             schedule.betas.double().cpu(), schedule.one_minus_alphas_bar_sqrt.double().cpu(),
                             x_T=x_T.double().cpu(), noise=noise.double().cpu(), final_noise=final_noise)
    return torch.stack([s.detach() for s in states])


def point_errors(actual, expected, rtol: float = 0.0) -> torch.Tensor:
    """Per point, the largest of |actual - expected| - rtol * |expected| over its coordinates and
    every state: [N] float64. ``actual``/``expected``: [N, 2] end points or [K+1, N, 2] runs."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    actual, expected = actual.detach().double().cpu(), expected.detach().double().cpu()
    excess = (actual - expected).abs() - rtol * expected.abs()
    return excess.reshape(-1, *excess.shape[-2:]).amax(dim=(0, 2))


def parity_figures(actual, expected, precision="fp32") -> tuple:
    """(bulk, worst, worst point) of a K-step run against its reference, per point past rtol *
    |expected|: the BULK_QUANTILE quantile over the points (None under BULK_MIN_POINTS points),
    the largest, and the index of the point it belongs to."""
    assert torch.isfinite(actual).all(), "non-finite values"
    excess = point_errors(actual, expected, TOLERANCES[precision][1])
    if excess.numel() == 0:
        return None, 0.0, None
    bulk = None
    if excess.numel() >= BULK_MIN_POINTS:
        bulk = torch.quantile(excess, BULK_QUANTILE, interpolation="higher").item()
    return bulk, excess.max().item(), int(excess.argmax())


def assert_close(actual, expected, precision="fp32", one_step=False):
    """A float32 path against its reference, by the rule of tests/tolerances.py.

    ``one_step``: one model call or one step from the same state: every element within
    TOLERANCES_ONE_STEP. Otherwise a run of K steps: the bulk of the points (the
    BULK_QUANTILE quantile, from BULK_MIN_POINTS points on) within TOLERANCES, and every
    point within TAIL_ATOL (a few points near a fold of the trained flow amplify one
    rounding: that error belongs to float32 itself, not to the path under test). Under
    BULK_MIN_POINTS points only the every-point bound applies: those tests are for masks and
    indexing, whose faults are far larger.
    """
    if one_step:
        atol, rtol = TOLERANCES_ONE_STEP[precision]
        actual, expected = actual.detach().double().cpu(), expected.detach().double().cpu()
        assert actual.shape == expected.shape, (actual.shape, expected.shape)
        torch.testing.assert_close(actual, expected, atol=atol, rtol=rtol)
        return
    atol, rtol = TOLERANCES[precision]
    bulk, worst, point = parity_figures(actual, expected, precision)
    assert worst <= TAIL_ATOL[precision], (
        f"{precision}: point {point} lands {worst:.3g} (past rtol {rtol:g}) from its reference, over the "
        f"every-point bound {TAIL_ATOL[precision]:g}")
    assert bulk is None or bulk <= atol, (
        f"{precision}: {BULK_QUANTILE:.0%} of the points land within {bulk:.3g} (past rtol {rtol:g}), "
        f"over atol {atol:g}")


def precisions_for(device):
    """fp32 everywhere; tf32 and bf16 only where they mean something (a GPU)."""
    return ("fp32", "tf32", "bf16") if device.type == "cuda" else ("fp32",)


# One plan of each sampler, on a grid that visits every timestep class (T-1, middle, 1, 0),
# and the default few-step plans; the kwargs of sample / p_sample_loop.
CLASS_GRID = [99, 50, 1, 0]
SAMPLER_CASES = {
    "ddpm": dict(sampler="ddpm", grid=CLASS_GRID),
    "ddim-eta": dict(sampler="ddim", grid=CLASS_GRID, eta=0.5),
    "dpm++2m": dict(sampler="dpm++2m", steps=6),
    "unipc": dict(sampler="unipc", steps=6),
}


def reference_plan_f64(model, schedule, x_T, noise, **sampler):
    """The eager loop of any sampler in float64 on CPU (float64 tables too): [K+1, N, 2]."""
    states = D.p_sample_loop(float64_model(model), tuple(x_T.shape), schedule.n_steps,
                             schedule.betas.double().cpu(), schedule.one_minus_alphas_bar_sqrt.double().cpu(),
                             x_T=x_T.double().cpu(), noise=None if noise is None else noise.double().cpu(),
                             **sampler)
    return torch.stack([s.detach() for s in states])
