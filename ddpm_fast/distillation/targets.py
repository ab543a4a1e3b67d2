"""Each method's rows for one optimizer step, and the loss every method shares.

A row is one student step: its input x [R, 2] at timestep t [R], the step's DDIM coefficients
p_s, p_m [R, 1] (x' = p_s x + p_m eps, the student's plan), where the teacher lands from x
(target [R, 2]) and the row's weight [R, 1]. The loss is the mean of ((x' - target) * weight)^2.
"""
from __future__ import annotations

import numpy as np
import torch

from ..grids import timestep_grid
from ..samplers import P_M, P_S, make_plan, plan_sources
from ..sampling import run_backend
from .config import DistillConfig, check_student_timesteps, spread_timesteps


def student_loss(student, x, t, p_s, p_m, target, weight) -> torch.Tensor:
    """The mean squared, weighted distance from the student's DDIM step to the teacher's landing point."""
    x_next = p_s * x + p_m * student(x, t)  # [R, 2]
    return torch.square((x_next - target) * weight).mean()


def student_spec(timesteps) -> dict:
    """A student's plan as its checkpoint keeps it (``model.student_plan``)."""
    return {"sampler": "ddim", "timesteps": [int(t) for t in timesteps], "prior": "matched"}


def _alpha_sigma(schedule, timesteps) -> tuple:
    """float64 (alpha, sigma) at ``timesteps`` and, last, at the data (1, 0)."""
    sigmas = schedule.host_tables()[1]
    sigma = np.append(sigmas[list(timesteps)], 0.0)
    return np.sqrt(1.0 - sigma * sigma), sigma


def _column(values, device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values), dtype=torch.float32, device=device).view(-1, 1)


class TrajectoryTargets:
    """The teacher's K-step trajectory from fresh x_T; student step i goes from the teacher's state at
    the student's i-th timestep to the teacher's state at its next one (x_0 after the last). Rows are
    weighted by 1 / alpha at the landing point, so every step's error counts in x_0's units."""

    def __init__(self, teacher, schedule, config: DistillConfig, device: torch.device):
        self.teacher, self.schedule, self.batch = teacher, schedule, config.batch_size
        self.teacher_plan = make_plan(schedule, config.teacher_sampler, config.teacher_steps,
                                      tuned_grids=plan_sources(teacher)["tuned_grids"])
        teacher_t = self.teacher_plan.timesteps
        timesteps = check_student_timesteps(config.timesteps or spread_timesteps(teacher_t, config.steps), teacher_t)
        self.plan = make_plan(schedule, student_plan=student_spec(timesteps))
        _check_deterministic_teacher(self.teacher_plan, self.plan)
        self.from_state = [teacher_t.index(t) for t in timesteps]  # the teacher's state at student step i
        self.to_state = self.from_state[1:] + [len(teacher_t)]  # ... and where that step should land
        alpha, _ = _alpha_sigma(schedule, timesteps)
        k, b = len(timesteps), self.batch
        table = self.plan.coefficients
        self.t = torch.tensor(timesteps, device=device).repeat_interleave(b)  # [K * B]
        self.p_s = _column(table[:, P_S], device).repeat_interleave(b, 0)  # [K * B, 1]
        self.p_m = _column(table[:, P_M], device).repeat_interleave(b, 0)
        self.weight = _column(1.0 / alpha[1:k + 1], device).repeat_interleave(b, 0)
        self.device = device

    def describe(self) -> dict:
        return {"teacher_plan": self.teacher_plan.describe(), "teacher_timesteps": list(self.teacher_plan.timesteps)}

    def rows(self, generator: torch.Generator) -> tuple:
        x_T = torch.randn(self.batch, 2, generator=generator, device=self.device) * self.teacher_plan.prior_std
        s = self.schedule
        states = run_backend("eager", self.teacher, s.betas, s.one_minus_alphas_bar_sqrt, (self.batch, 2), x_T=x_T,
                             trajectory=True, plan=self.teacher_plan)  # [M + 1, B, 2]
        x = states[self.from_state].reshape(-1, 2)  # [K * B, 2], step-major like t
        target = states[self.to_state].reshape(-1, 2)
        return x, self.t, self.p_s, self.p_m, target, self.weight


def _check_deterministic_teacher(teacher_plan, student_plan) -> None:
    """A trajectory to copy is a function of x_T, drawn from the student's own prior."""
    if teacher_plan.has_noise or teacher_plan.prior_std != student_plan.prior_std:
        raise ValueError(f"the teacher's solver ({teacher_plan.describe()}) must be deterministic and start from "
                         "the matched prior, as the student does: use dpm++2m, unipc or ddim")


class ProgressiveTargets:
    """Round r's student takes one DDIM step where its teacher (the original model, then the previous
    round's student) takes two, from x_t = alpha_t x_0 + sigma_t eps on the data; rows are weighted so
    that the loss is max(SNR_t, 1) |x_0 - x_0~|^2 in the step's implied x_0 (Salimans & Ho, eq. 9)."""

    def __init__(self, schedule, config: DistillConfig, dataset: str, data: torch.Tensor, device: torch.device):
        self.schedule, self.config, self.dataset, self.data, self.device = schedule, config, dataset, data, device
        alphas_bar = 1.0 - schedule.host_tables()[1] ** 2
        self.start = timestep_grid(alphas_bar, config.start_steps, "trailing")
        self.teacher = None
        self.set_round(0, None)

    def timesteps(self, round_index: int) -> tuple:
        """The student's timesteps in round ``round_index`` (0-based): every 2^(r+1)-th of the start grid."""
        return self.start[::2 ** (round_index + 1)]

    def set_round(self, round_index: int, teacher) -> None:
        self.teacher = teacher
        student_t = self.timesteps(round_index)
        teacher_t = self.start[::2 ** round_index]
        self.plan = make_plan(self.schedule, student_plan=student_spec(student_t))
        teacher_plan = make_plan(self.schedule, "ddim", grid=list(teacher_t), prior="matched")
        self.teacher_t, teacher_table = teacher_plan.tables(self.device)  # [2K], [2K, N_COLUMNS]
        self.teacher_ps, self.teacher_pm = teacher_table[:, P_S], teacher_table[:, P_M]
        alpha, sigma = _alpha_sigma(self.schedule, student_t)
        landing_per_x0 = alpha[1:] - sigma[1:] * alpha[:-1] / sigma[:-1]  # d(landing point) / d(x_0~) of DDIM
        snr = (alpha[:-1] / sigma[:-1]) ** 2
        self.student_t, table = self.plan.tables(self.device)  # [K], [K, N_COLUMNS]
        self.p_s, self.p_m = table[:, P_S], table[:, P_M]
        self.w = torch.tensor(np.sqrt(np.maximum(snr, 1.0)) / landing_per_x0, dtype=torch.float32,
                              device=self.device)

    def describe(self) -> dict:
        return {"start_steps": self.config.start_steps, "start_timesteps": list(self.start),
                "dataset": self.dataset}

    def _teacher_step(self, x, i) -> torch.Tensor:
        return self.teacher_ps[i, None] * x + self.teacher_pm[i, None] * self.teacher(x, self.teacher_t[i])

    def rows(self, generator: torch.Generator) -> tuple:
        b, k, s = self.config.batch_size, len(self.student_t), self.schedule
        j = torch.randint(0, k, (b,), generator=generator, device=self.device)  # the student step of each row
        x_0 = self.data[torch.randint(0, len(self.data), (b,), generator=generator, device=self.device)]
        eps = torch.randn(b, 2, generator=generator, device=self.device)
        t = self.student_t[j]
        x = s.alphas_bar_sqrt[t, None] * x_0 + s.one_minus_alphas_bar_sqrt[t, None] * eps
        with torch.no_grad():
            target = self._teacher_step(self._teacher_step(x, 2 * j), 2 * j + 1)
        return x, t, self.p_s[j, None], self.p_m[j, None], target, self.w[j, None]


def describe_method(config: DistillConfig) -> str:
    if config.method == "trajectory":
        return f"copying the teacher's {config.teacher_sampler} {config.teacher_steps}-step trajectories"
    halvings = " -> ".join(str(config.start_steps >> r) for r in range(config.rounds + 1))
    return f"progressive halving {halvings} steps, {config.iterations} iterations a round"

