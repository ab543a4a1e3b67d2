"""Noise schedules for DDPM (Ho et al., 2020, https://arxiv.org/abs/2006.11239).

The default ``sigmoid`` schedule is computed with exactly the float32 operations of
the original S-curve code, so every table is equal to it bit for bit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace

import torch

from ._values import check_count
from .constants import SCHEDULE_KINDS


@dataclass(frozen=True)
class Schedule:
    """The tables of a T-step schedule, each a float32 tensor of shape [T]."""

    kind: str
    n_steps: int
    beta_start: float
    beta_end: float
    betas: torch.Tensor
    alphas: torch.Tensor
    alphas_prod: torch.Tensor  # ᾱ_t
    alphas_prod_p: torch.Tensor  # ᾱ_{t-1}, with ᾱ_{-1} = 1
    alphas_bar_sqrt: torch.Tensor
    one_minus_alphas_bar_log: torch.Tensor
    one_minus_alphas_bar_sqrt: torch.Tensor
    # float64 host copies of betas and one_minus_alphas_bar_sqrt for the samplers' tables, made
    # once and shared by every .to(device) copy: building a plan never reads a device tensor
    host: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def device(self) -> torch.device:
        return self.betas.device

    def to(self, device) -> "Schedule":
        """The same schedule with every table on ``device``."""
        moved = {f.name: getattr(self, f.name).to(device)
                 for f in fields(self) if isinstance(getattr(self, f.name), torch.Tensor)}
        self.host_tables()  # before the tables leave the host
        return replace(self, **moved)

    def host_tables(self):
        """(betas, one_minus_alphas_bar_sqrt) as float64 NumPy arrays, read once from the tensors."""
        if not self.host:
            self.host["betas"] = self.betas.detach().to("cpu", torch.float64).numpy()
            self.host["sigmas"] = self.one_minus_alphas_bar_sqrt.detach().to("cpu", torch.float64).numpy()
        return self.host["betas"], self.host["sigmas"]

    def config(self) -> dict:
        """What ``make_schedule`` needs to rebuild this schedule (stored in checkpoints)."""
        return {"n_steps": self.n_steps, "kind": self.kind,
                "beta_start": self.beta_start, "beta_end": self.beta_end}


def _cosine_betas(n_steps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    # Nichol & Dhariwal (2021), eq. 17, in float64 then rounded once to float32.
    steps = torch.arange(n_steps + 1, dtype=torch.float64)
    f = torch.cos((steps / n_steps + s) / (1 + s) * math.pi / 2) ** 2
    alphas_bar = f / f[0]
    return (1 - alphas_bar[1:] / alphas_bar[:-1]).clamp(max=max_beta).float()


def make_schedule(n_steps: int = 100, kind: str = "sigmoid",
                  beta_start: float = 1e-5, beta_end: float = 5e-3) -> Schedule:
    """Build the schedule tables.

    ``sigmoid`` (the original): ``sigmoid(linspace(-6, 6, T)) * (beta_end - beta_start) + beta_start``.
    ``linear``: ``linspace(beta_start, beta_end, T)``.
    ``cosine``: Nichol & Dhariwal's schedule (https://arxiv.org/abs/2102.09672); it has
    no beta range, so ``beta_start`` and ``beta_end`` are ignored.
    """
    n_steps = check_count(n_steps, "n_steps", 1)
    if kind == "sigmoid":
        betas = torch.linspace(-6, 6, n_steps)
        betas = torch.sigmoid(betas) * (beta_end - beta_start) + beta_start
    elif kind == "linear":
        betas = torch.linspace(beta_start, beta_end, n_steps)
    elif kind == "cosine":
        betas = _cosine_betas(n_steps)
    else:
        raise ValueError(f"unknown schedule kind {kind!r}; known kinds: {', '.join(SCHEDULE_KINDS)}")
    if kind != "cosine" and not 0 < beta_start <= beta_end < 1:
        raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}")

    alphas = 1 - betas
    alphas_prod = torch.cumprod(alphas, 0)
    alphas_prod_p = torch.cat([torch.tensor([1]).float(), alphas_prod[:-1]], 0)
    return Schedule(
        kind=kind, n_steps=n_steps, beta_start=float(beta_start), beta_end=float(beta_end),
        betas=betas,
        alphas=alphas,
        alphas_prod=alphas_prod,
        alphas_prod_p=alphas_prod_p,
        alphas_bar_sqrt=torch.sqrt(alphas_prod),
        one_minus_alphas_bar_log=torch.log(1 - alphas_prod),
        one_minus_alphas_bar_sqrt=torch.sqrt(1 - alphas_prod),
    )

