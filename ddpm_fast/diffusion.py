"""Reference forward process, loss and sampler of the S-curve DDPM.

These functions keep the original code's signatures and float32 operation order,
so with the same RNG state they return the same bits. Ho et al., "Denoising
Diffusion Probabilistic Models" (2020), https://arxiv.org/abs/2006.11239,
Algorithms 1 and 2.
"""
from __future__ import annotations

import operator

import torch
from torch import nn

from ._checks import check_generator, check_points, check_same_device, check_timestep, check_timesteps
from .model import check_model_steps, model_device
from .schedule import Schedule


def _randn_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """``torch.randn_like(x)`` (the original's draw, in x's memory layout) with an optional generator."""
    return torch.empty_like(x).normal_(generator=generator)


def _as_timesteps(t, n_rows: int, device) -> torch.Tensor:
    if isinstance(t, torch.Tensor):
        return t
    if isinstance(t, (bool, float)) or t is None:
        raise TypeError(f"t must be an int or an integer tensor, got {t!r}")
    try:
        return torch.full((n_rows,), operator.index(t), dtype=torch.long, device=device)
    except TypeError:
        raise TypeError(f"t must be an int or an integer tensor, got {type(t).__name__}") from None


def _check_schedule(schedule) -> None:
    if not isinstance(schedule, Schedule):
        raise TypeError(f"schedule must be a Schedule (from make_schedule), got {type(schedule).__name__}")


def _check_model(model) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")


def q_sample(x_0: torch.Tensor, t, schedule: Schedule, noise: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw x_t ~ q(x_t | x_0): ``alphas_bar_sqrt[t] * x_0 + one_minus_alphas_bar_sqrt[t] * eps``.

    ``t`` is an int (all rows) or an integer tensor [N] or [1]. ``noise`` is eps [N, 2];
    drawn from N(0, I) when omitted.
    """
    check_points(x_0, "x_0")
    _check_schedule(schedule)
    check_generator(generator)
    t = _as_timesteps(t, x_0.shape[0], x_0.device)
    check_timesteps(t, x_0.shape[0], schedule.n_steps)
    if noise is None:
        noise = _randn_like(x_0, generator)
    elif not isinstance(noise, torch.Tensor):
        raise TypeError(f"noise must be a torch.Tensor, got {type(noise).__name__}")
    elif noise.shape != x_0.shape:
        raise ValueError(f"noise must have the shape of x_0 {list(x_0.shape)}, got {list(noise.shape)}")
    check_same_device(x_0=x_0, t=t, noise=noise, schedule=schedule.betas)
    alphas_t = schedule.alphas_bar_sqrt[t].unsqueeze(-1)  # [N, 1]
    alphas_1_m_t = schedule.one_minus_alphas_bar_sqrt[t].unsqueeze(-1)  # [N, 1]
    return alphas_t * x_0 + alphas_1_m_t * noise  # [N, 2]


def antithetic_timesteps(batch_size: int, n_steps: int, device=None,
                         generator: torch.Generator | None = None) -> torch.Tensor:
    """``cat([t, T-1-t])`` with t uniform in [0, T): halves the variance of the loss estimate.

    For an odd batch, ``(B+1)//2`` steps are drawn and the last antithetic partner is
    dropped, so the batch is covered and every row still has a uniform timestep. An
    even batch draws exactly what the original code draws.
    """
    half = torch.randint(0, n_steps, size=((batch_size + 1) // 2,), generator=generator, device=device)
    return torch.cat([half, n_steps - 1 - half], dim=0)[:batch_size]


def diffusion_loss(model: nn.Module, x_0: torch.Tensor, schedule: Schedule,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """The simple DDPM loss ``mean((eps - model(x_t, t))^2)`` with antithetic timesteps.

    Draws t and then eps in the original code's order, so the same global RNG state
    gives the same loss.
    """
    check_points(x_0, "x_0")
    _check_model(model)
    _check_schedule(schedule)
    if x_0.shape[0] == 0:
        raise ValueError("x_0 is an empty batch: the loss of no points is undefined")
    check_model_steps(model, schedule.n_steps)
    t = antithetic_timesteps(x_0.shape[0], schedule.n_steps, x_0.device, generator)
    e = _randn_like(x_0, generator)
    return loss_from_draws(model, x_0, t, e, schedule)


def loss_from_draws(model: nn.Module, x_0: torch.Tensor, t: torch.Tensor, e: torch.Tensor,
                    schedule: Schedule) -> torch.Tensor:
    """``diffusion_loss`` for given timesteps t [B] and noise e [B, 2], in the original's float32 order."""
    t = t.unsqueeze(-1)  # [B, 1]
    a = schedule.alphas_bar_sqrt[t]  # [B, 1]
    aml = schedule.one_minus_alphas_bar_sqrt[t]  # [B, 1]
    x = x_0 * a + e * aml  # [B, 2]
    output = model(x, t.squeeze(-1))  # [B, 2]
    return (e - output).square().mean()


def weighted_loss(model: nn.Module, x_0: torch.Tensor, t: torch.Tensor, e: torch.Tensor, weight: torch.Tensor,
                  alphas_bar_sqrt: torch.Tensor, one_minus_alphas_bar_sqrt: torch.Tensor) -> torch.Tensor:
    """The loss of a padded batch: ``sum(weight * |e - model(x_t, t)|^2)``.

    With weight = 1 / (2 * count) on a batch's rows and 0 on its padding this is the mean of
    ``loss_from_draws`` over the real rows, at one fixed shape for every batch of an epoch
    (what a compiled step or a captured graph needs).
    """
    x = x_0 * alphas_bar_sqrt[t].unsqueeze(-1) + e * one_minus_alphas_bar_sqrt[t].unsqueeze(-1)  # [B, 2]
    return (weight.unsqueeze(-1) * (e - model(x, t)).square()).sum()


def p_sample(model: nn.Module, x: torch.Tensor, t: int, betas: torch.Tensor,
             one_minus_alphas_bar_sqrt: torch.Tensor, *, noise: torch.Tensor | None = None,
             final_noise: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
    """One reverse step x_t -> x_{t-1}, the original's float32 operations in their order.

    ``noise`` is the z for this step ([N, 2]); drawn when omitted. At t = 0 no noise
    is added when ``final_noise=False`` (DDPM's Algorithm 2), and none is drawn.
    """
    _check_model(model)
    check_points(x)
    check_generator(generator)
    check_timestep(t, betas.shape[0])
    return _p_sample(model, x, t, betas, one_minus_alphas_bar_sqrt, noise, final_noise, generator)


def _p_sample(model, x, t, betas, one_minus_alphas_bar_sqrt, noise, final_noise, generator):
    # [1], broadcast over the rows; a fill, not a host-to-device copy, so no sync
    t_index = torch.full((1,), t, dtype=torch.long, device=x.device)
    coeff = betas[t_index] / one_minus_alphas_bar_sqrt[t_index]
    eps_theta = model(x, t_index)  # [N, 2]
    mean = (1 / (1 - betas[t_index]).sqrt()) * (x - (coeff * eps_theta))
    if t == 0 and not final_noise:
        return mean
    if noise is None:
        noise = _randn_like(x, generator)
    sigma_t = betas[t_index].sqrt()
    return mean + sigma_t * noise


def eager_loop(model, shape, betas, one_minus_alphas_bar_sqrt, x_T, noise, final_noise,
               generator, keep: bool, dtype: torch.dtype = torch.float32):
    """The reference loop. Returns the list of T+1 states when ``keep``, else x_0 alone."""
    n_steps = betas.shape[0]
    device = x_T.device if x_T is not None else (model_device(model) or betas.device)
    cur_x = x_T if x_T is not None else torch.randn(shape, generator=generator, device=device, dtype=dtype)
    check_same_device(x=cur_x, betas=betas, one_minus_alphas_bar_sqrt=one_minus_alphas_bar_sqrt,
                      noise=noise)
    x_seq = [cur_x]
    for i, t in enumerate(reversed(range(n_steps))):
        z = None if noise is None else noise[i]
        cur_x = _p_sample(model, cur_x, t, betas, one_minus_alphas_bar_sqrt, z, final_noise, generator)
        if keep:
            x_seq.append(cur_x)
    return x_seq if keep else cur_x
