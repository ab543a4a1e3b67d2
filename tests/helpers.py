"""Float64 references and the tolerance check shared by the parity tests."""
import copy

import torch

import ddpm_fast as D
from tolerances import TOLERANCES, TOLERANCES_ONE_STEP


def float64_model(model):
    return copy.deepcopy(model).to("cpu", torch.float64)


def reference_trajectory_f64(model, schedule, x_T, noise, final_noise=True):
    """The eager reference loop in float64 on CPU: [T+1, N, 2]."""
    states = D.p_sample_loop(float64_model(model), tuple(x_T.shape), schedule.n_steps,
                             schedule.betas.double().cpu(), schedule.one_minus_alphas_bar_sqrt.double().cpu(),
                             x_T=x_T.double().cpu(), noise=noise.double().cpu(), final_noise=final_noise)
    return torch.stack([s.detach() for s in states])


def assert_close(actual, expected, precision="fp32", one_step=False):
    atol, rtol = (TOLERANCES_ONE_STEP if one_step else TOLERANCES)[precision]
    actual = actual.detach().double().cpu()
    expected = expected.detach().double().cpu()
    assert actual.shape == expected.shape
    assert torch.isfinite(actual).all()
    torch.testing.assert_close(actual, expected, atol=atol, rtol=rtol)


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
