"""Samplers as data: integer timesteps and float64 coefficient tables of one linear update.

Every sampler here, from the 100-step ancestral DDPM to a 5-step DPM-Solver++(2M), is a
``SamplerPlan``: K integer timesteps t_0 > ... > t_{K-1} and, per step i, the coefficients
of one update that is linear in the current point, the model's noise prediction there,
the previous estimates and fresh noise. Every backend executes any plan; a new sampler is
a new table, not a new kernel. Step i, with eps = model(x, t_i):

    m  = a_x x + a_eps eps                                   the estimate (eps or x_0)
    s  = c_s s' + c_x x + c_m m + c_1 m_1 + c_2 m_2           UniPC's corrector (else s = x)
    x <- p_s s + p_m m + p_1 m_1 + p_2 m_2 + p_z z            the step to t_{i+1}
    s' <- s;  m_2 <- m_1;  m_1 <- m

and x after step K-1 is the sample at the data (alpha = 1, sigma = 0).

- ``ddpm``: Ho et al. 2020 (https://arxiv.org/abs/2006.11239), Algorithm 2 with sigma^2 = beta
  over the strided steps (beta' = 1 - abar_t / abar_prev), as the original code.
- ``ddim``: Song et al. 2021 (https://arxiv.org/abs/2010.02502), eq. 12 with ``eta``.
- ``dpm++2m``: Lu et al. 2022 (https://arxiv.org/abs/2211.01095), multistep second-order
  data prediction, first order at the first and last step.
- ``unipc``: Zhao et al. 2023 (https://arxiv.org/abs/2302.04867), UniPC-bh2 of order 2
  (predictor UniP, corrector UniC) on data prediction, first order at the last step.

The tables are computed on the host in float64 from the schedule's betas (abar = cumprod
of 1 - beta in float64); backends read them as float32 (float64 on the float64 reference).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
import torch

from ._values import check_count
from .constants import GRIDS, PRIORS, SAMPLERS
from .grids import check_explicit_grid, timestep_grid

# Steps when a few-step sampler is asked for without steps=, and the grid it takes when the
# model carries no tuned grid for it: the best measured on the bundled model (docs/samplers.md).
DEFAULT_STEPS = 10
DEFAULT_GRID = {"ddpm": "trailing", "ddim": "trailing", "dpm++2m": "karras", "unipc": "karras"}

# The columns of a plan's coefficient table, in the order of the update above.
COLUMNS = ("a_x", "a_eps", "c_s", "c_x", "c_m", "c_1", "c_2", "p_s", "p_m", "p_1", "p_2", "p_z")
A_X, A_EPS, C_S, C_X, C_M, C_1, C_2, P_S, P_M, P_1, P_2, P_Z = range(len(COLUMNS))
N_COLUMNS = len(COLUMNS)


@dataclass(frozen=True, eq=False)
class SamplerPlan:
    """What a backend executes: K timesteps and a [K, N_COLUMNS] float64 coefficient table."""

    name: str  # the sampler: one of SAMPLERS
    timesteps: tuple  # [K] ints, strictly decreasing, in [0, T)
    coefficients: np.ndarray = field(repr=False)  # [K, N_COLUMNS] float64
    n_steps: int  # T, the model's and schedule's number of timesteps
    prior_std: float  # x_T ~ N(0, prior_std^2 I)
    history: int  # previous estimates the update reads: 0, 1 or 2
    corrector: bool  # the s line runs (UniPC); else s = x
    reference: bool = False  # the original T-step DDPM: eager runs the seed-exact loop
    grid: str = ""  # how the timesteps were chosen: a GRIDS name, "tuned", "explicit" or "student"
    _device_tables: dict = field(default_factory=dict, repr=False)  # (device, dtype) -> tables

    @property
    def steps(self) -> int:
        return len(self.timesteps)

    @cached_property
    def noisy(self) -> tuple:
        """Per step, whether it adds fresh noise (p_z != 0): known on the host, no device read."""
        return tuple(bool(c) for c in self.coefficients[:, P_Z] != 0)

    @cached_property
    def has_noise(self) -> bool:
        return any(self.noisy)

    def structure(self) -> tuple:
        """What a compiled kernel or captured graph depends on besides N: the table's values do not."""
        return (self.steps, self.history, self.corrector, self.noisy)

    def tables(self, device, dtype=torch.float32):
        """(timesteps [K] int64, coefficients [K, N_COLUMNS]) on ``device``, made once per device
        and dtype. On CUDA they go through pinned memory without blocking: no host sync."""
        device = torch.device(device)
        key = (str(device), dtype)
        if key not in self._device_tables:
            host = (torch.tensor(self.timesteps, dtype=torch.int64),
                    torch.from_numpy(self.coefficients).to(dtype).contiguous())
            if device.type == "cuda":
                host = tuple(t.pin_memory() for t in host)
            self._device_tables[key] = tuple(t.to(device, non_blocking=device.type == "cuda") for t in host)
        return self._device_tables[key]

    def state_labels(self) -> list:
        """The t of each of the K+1 states, x_T first, as the original's pictures label them: the
        state before the step at schedule index t is x_{t+1}; the last is x_0."""
        return [t + 1 for t in self.timesteps] + [0]

    def describe(self) -> str:
        if self.reference:
            return f"{self.name}, {self.steps} steps (the original sampler)"
        return f"{self.name}, {self.steps} steps, grid {self.grid}, prior std {self.prior_std:.4g}"


def schedule_tables(schedule, one_minus_alphas_bar_sqrt: torch.Tensor | None = None):
    """(betas, abar, sigma), float64 NumPy [T] each, from a Schedule or its betas tensor.

    sigma_t = sqrt(1 - abar_t) is the schedule's own float32 table one_minus_alphas_bar_sqrt,
    the one the original sampler reads, so a plan's coefficients equal the reference's in
    exact arithmetic; abar = 1 - sigma^2. Given betas alone, 1 - abar = -expm1(sum log1p(-beta))
    in float64 (no cancellation where abar is near 1). Tensors on a GPU are read once (a sync)
    per call; a Schedule keeps host copies, so sample() never reads the device for its plan.
    """
    from .schedule import Schedule
    if isinstance(schedule, Schedule):  # host copies made once per schedule: no device read here
        betas, sigmas = schedule.host_tables()
        return betas, 1.0 - sigmas * sigmas, sigmas
    if not isinstance(schedule, torch.Tensor) or schedule.dim() != 1 or not schedule.is_floating_point():
        raise TypeError(f"a plan needs a Schedule or a 1-D floating-point betas tensor, got {schedule!r:.80}")
    betas = schedule.detach().to("cpu", torch.float64).numpy()
    if one_minus_alphas_bar_sqrt is None:
        sigmas = np.sqrt(-np.expm1(np.cumsum(np.log1p(-betas))))
    else:
        sigmas = one_minus_alphas_bar_sqrt.detach().to("cpu", torch.float64).numpy()
    return betas, 1.0 - sigmas * sigmas, sigmas


# ---------------------------------------------------------------------------------------
# Coefficient tables, one builder per sampler. a, s: alpha_t = sqrt(abar_t) and
# sigma_t = sqrt(1 - abar_t) at t_0 .. t_{K-1} and, last, the data (1, 0).
# ---------------------------------------------------------------------------------------

def _ddpm_rows(abar, sig, final_noise: bool, eta: float, step_betas) -> np.ndarray:
    """x <- (x - beta'/sigma_t eps) / sqrt(1 - beta') + sqrt(beta') z: the original's update with
    beta' the step's beta (``step_betas``)."""
    k = len(abar) - 1
    rows = np.zeros((k, N_COLUMNS))
    for i in range(k):
        beta_step = step_betas[i]
        alpha_step = 1 - beta_step
        rows[i, A_EPS] = 1.0
        rows[i, P_S] = 1 / math.sqrt(alpha_step)
        rows[i, P_M] = -beta_step / sig[i] / math.sqrt(alpha_step)
        rows[i, P_Z] = math.sqrt(beta_step)
    if not final_noise:
        rows[-1, P_Z] = 0.0
    return rows


def _ddim_rows(abar, sig, final_noise: bool, eta: float, step_betas) -> np.ndarray:
    """Song et al.'s eq. 12: x <- a' x0 + sqrt(1 - abar' - sd^2) eps + sd z, in the eps form."""
    k = len(abar) - 1
    rows = np.zeros((k, N_COLUMNS))
    for i in range(k):
        a_now, a_next = math.sqrt(abar[i]), math.sqrt(abar[i + 1])
        beta_step = (sig[i] ** 2 - sig[i + 1] ** 2) / abar[i + 1]  # 1 - abar_t / abar_prev
        sd = eta * sig[i + 1] / sig[i] * math.sqrt(beta_step)
        rows[i, A_EPS] = 1.0
        rows[i, P_S] = a_next / a_now
        rows[i, P_M] = math.sqrt(max(sig[i + 1] ** 2 - sd * sd, 0.0)) - a_next * sig[i] / a_now
        rows[i, P_Z] = sd
    return rows


def _data_prediction(rows, a, s) -> None:
    """m = x0 = (x - sigma_t eps) / alpha_t."""
    rows[:, A_X] = 1 / a[:-1]
    rows[:, A_EPS] = -s[:-1] / a[:-1]


def _dpmpp_2m_rows(abar, sig, final_noise: bool, eta: float, step_betas) -> np.ndarray:
    """x <- (s'/s) x - a' (e^-h - 1) [(1 + 1/2r) m - 1/2r m_1], r = h_prev / h (midpoint form)."""
    k = len(abar) - 1
    a, s = np.sqrt(abar), sig
    lam = np.log(a[:-1]) - np.log(s[:-1])  # log-SNR at t_0 .. t_{K-1}
    rows = np.zeros((k, N_COLUMNS))
    _data_prediction(rows, a, s)
    for i in range(k):
        if i == k - 1:  # to the data (sigma = 0): first order, x <- x0
            rows[i, P_M] = 1.0
            continue
        h = math.log(a[i + 1]) - math.log(s[i + 1]) - lam[i]
        scale = -a[i + 1] * math.expm1(-h)
        rows[i, P_S] = s[i + 1] / s[i]
        if i == 0:
            rows[i, P_M] = scale
        else:
            half_inv_r = 0.5 * h / (lam[i] - lam[i - 1])
            rows[i, P_M] = scale * (1 + half_inv_r)
            rows[i, P_1] = -scale * half_inv_r
    return rows


def _unipc_bh2_weights(hh: float, order: int, rk: float | None):
    """UniPC's (h_phi_1, B_h, rhos) for bh2 (B_h = e^hh - 1), hh = -h; rhos solves R rho = b."""
    h_phi_1 = math.expm1(hh)
    b_h = h_phi_1
    h_phi_k, factorial, b = h_phi_1 / hh - 1, 1, []
    for j in range(1, order + 1):
        b.append(h_phi_k * factorial / b_h)
        factorial *= j + 1
        h_phi_k = h_phi_k / hh - 1 / factorial
    if order == 1:
        return h_phi_1, b_h, None
    rks = np.array([rk, 1.0])
    r = np.stack([rks ** 0, rks ** 1])
    return h_phi_1, b_h, np.linalg.solve(r, np.array(b))


def _unipc_rows(abar, sig, final_noise: bool, eta: float, step_betas) -> np.ndarray:
    """UniPC-bh2, order 2 (diffusers' UniPCMultistepScheduler defaults, lower_order_final)."""
    k = len(abar) - 1
    a, s = np.sqrt(abar), sig
    lam = np.full(k + 1, np.inf)
    lam[:-1] = np.log(a[:-1]) - np.log(s[:-1])
    order = [min(2, k - i, i + 1) for i in range(k)]  # warm-up at the start, first order at the end
    rows = np.zeros((k, N_COLUMNS))
    _data_prediction(rows, a, s)
    for i in range(k):
        # Corrector of x_i from s_{i-1} with the step's own estimate m_i (order of step i-1's predictor).
        if i == 0:
            rows[i, C_X] = 1.0
        else:
            h = lam[i] - lam[i - 1]
            ord_c = order[i - 1]
            rk = (lam[i - 2] - lam[i - 1]) / h if ord_c == 2 else None
            h_phi_1, b_h, rhos = _unipc_bh2_weights(-h, ord_c, rk)
            rows[i, C_S] = s[i] / s[i - 1]
            rows[i, C_1] = -a[i] * h_phi_1
            rho_last = 0.5 if ord_c == 1 else rhos[-1]
            if ord_c == 2:  # rho_0 (m_{i-2} - m_{i-1}) / rk
                rows[i, C_2] = -a[i] * b_h * rhos[0] / rk
                rows[i, C_1] += a[i] * b_h * rhos[0] / rk
            rows[i, C_M] = -a[i] * b_h * rho_last
            rows[i, C_1] += a[i] * b_h * rho_last
        # Predictor from the corrected s_i to t_{i+1}.
        if i == k - 1:
            rows[i, P_M] = 1.0  # sigma = 0: x <- x0
            continue
        h = lam[i + 1] - lam[i]
        rk = (lam[i - 1] - lam[i]) / h if order[i] == 2 else None
        h_phi_1, b_h, _ = _unipc_bh2_weights(-h, order[i], rk)
        rows[i, P_S] = s[i + 1] / s[i]
        rows[i, P_M] = -a[i + 1] * h_phi_1
        if order[i] == 2:  # 0.5 (m_{i-1} - m_i) / rk, UniPC's fixed rho for order 2
            rows[i, P_M] += 0.5 * a[i + 1] * b_h / rk
            rows[i, P_1] = -0.5 * a[i + 1] * b_h / rk
    return rows


_BUILDERS = {"ddpm": (_ddpm_rows, 0, False), "ddim": (_ddim_rows, 0, False),
             "dpm++2m": (_dpmpp_2m_rows, 1, False), "unipc": (_unipc_rows, 2, True)}


def _resolve_grid(alphas_bar, sampler: str, steps: int | None, grid, tuned_grids) -> tuple:
    """(timesteps, grid name) for make_plan: an explicit list, the model's tuned grid, or a named one."""
    n = len(alphas_bar)
    if isinstance(grid, (list, tuple, np.ndarray, torch.Tensor)):
        timesteps = check_explicit_grid(grid.tolist() if hasattr(grid, "tolist") else grid, n)
        if steps is not None and steps != len(timesteps):
            raise ValueError(f"steps={steps} but the grid has {len(timesteps)} timesteps")
        return timesteps, "explicit"
    steps = steps or (n if sampler == "ddpm" else min(DEFAULT_STEPS, n))
    tuned = (tuned_grids or {}).get(sampler, {}).get(str(steps))
    if grid == "tuned" and tuned is None:
        have = {s: sorted(g, key=int) for s, g in (tuned_grids or {}).items()}
        raise ValueError(f"the model has no tuned grid for {sampler} with {steps} steps (tuned: "
                         f"{have or 'none'}); run ddpm-fast tune-steps, or pick a grid")
    if grid in (None, "tuned") and tuned is not None:
        return check_explicit_grid(tuned, n), "tuned"
    name = grid or DEFAULT_GRID[sampler]
    if name not in GRIDS:
        raise ValueError(f"unknown grid {name!r}; known grids: {', '.join(GRIDS)}, 'tuned', or a list of ints")
    if grid is None and len(set(timestep_grid(alphas_bar, steps, name, unique=False))) < steps:
        name = "trailing"  # the default grid bunches up near t = 0 at many steps: an even one
    return timestep_grid(alphas_bar, steps, name), name


def plan_sources(model) -> dict:
    """What a model carries for ``make_plan``: its tuned grids and, for a distilled student, its plan."""
    return {"tuned_grids": getattr(model, "tuned_grids", None), "student_plan": getattr(model, "student_plan", None)}


def check_student_plan(spec) -> dict:
    """A student's plan as checkpoints keep it: {"sampler", "timesteps", "prior"} (and ddim's "eta")."""
    if not isinstance(spec, dict) or not {"sampler", "timesteps", "prior"} <= set(spec) \
            or not set(spec) <= {"sampler", "timesteps", "prior", "eta"}:
        raise ValueError(f"a student plan is a dict of sampler, timesteps, prior (and eta), got {spec!r:.200}")
    if spec["sampler"] not in SAMPLERS or spec["prior"] not in PRIORS:
        raise ValueError(f"a student plan names an unknown sampler or prior: {spec!r:.200}")
    return dict(spec)


def _student(schedule, spec: dict, one_minus_alphas_bar_sqrt, given: dict) -> SamplerPlan:
    """The plan a distilled student was trained for; any other sampler argument needs ``sampler=``."""
    extra = [name for name, value in given.items() if value is not None]
    if extra:
        raise ValueError(f"this model is a distilled student with its own plan ({spec['sampler']} on "
                         f"{list(spec['timesteps'])}); {', '.join(extra)} without a sampler would run ddpm: "
                         "pass a sampler too (sampler=, --sampler) to run another sampler on it")
    plan = make_plan(schedule, spec["sampler"], grid=list(spec["timesteps"]), prior=spec["prior"],
                     eta=spec.get("eta"), one_minus_alphas_bar_sqrt=one_minus_alphas_bar_sqrt)
    return replace(plan, grid="student")


def make_plan(schedule, sampler: str | None = None, steps: int | None = None, *, grid=None,
              prior: str | None = None, eta: float | None = None, final_noise: bool = True,
              tuned_grids: dict | None = None, student_plan: dict | None = None,
              one_minus_alphas_bar_sqrt: torch.Tensor | None = None) -> SamplerPlan:
    """The plan of ``sampler`` with ``steps`` steps for ``schedule`` (a Schedule, or its betas [T]
    with ``one_minus_alphas_bar_sqrt`` [T] if at hand: see ``schedule_tables``).

    Defaults: ``ddpm`` takes all T steps and ``prior="unit"`` (the original sampler);
    the others take ``DEFAULT_STEPS`` and ``prior="matched"``: x_T ~ N(0, (1 - abar_{t_0}) I),
    the marginal's scale at the first timestep (with this schedule abar_99 = 0.78, so N(0, I)
    is far from it and a deterministic solver carries the excess to the end). ``grid``:
    see ``timestep_grid``, or "tuned" for the grid ``tuned_grids`` holds (what
    ``ddpm-fast tune-steps`` saved with the model); default: the tuned grid when there is
    one, else ``DEFAULT_GRID[sampler]``. ``eta``: ddim's noise (0: deterministic).
    ``final_noise``: whether ddpm's last step adds noise (the original code's does).
    ``student_plan``: a distilled student's own plan (``model.student_plan``; ``plan_sources``),
    which ``sampler=None`` runs; without one, ``sampler=None`` is ``ddpm``.
    """
    if sampler is None and student_plan:
        return _student(schedule, check_student_plan(student_plan), one_minus_alphas_bar_sqrt,
                        {"steps": steps, "grid": grid, "prior": prior, "eta": eta})
    sampler = "ddpm" if sampler is None else sampler
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; known samplers: {', '.join(SAMPLERS)}")
    betas, alphas_bar, sigmas = schedule_tables(schedule, one_minus_alphas_bar_sqrt)
    n = len(betas)
    if eta is not None and sampler != "ddim":
        raise ValueError(f"eta is ddim's noise level; sampler {sampler!r} takes none")
    if eta is not None and (isinstance(eta, bool) or not isinstance(eta, (int, float, np.floating, np.integer))):
        raise TypeError(f"eta must be a number in [0, 1], got {eta!r}")
    eta = 0.0 if eta is None else float(eta)
    if not (math.isfinite(eta) and 0 <= eta <= 1):
        raise ValueError(f"eta must lie in [0, 1], got {eta}")
    if steps is not None:
        steps = check_count(steps, "steps", minimum=1)
        if steps > n:
            raise ValueError(f"steps={steps} is more than the schedule's {n} timesteps")
    timesteps, grid_name = _resolve_grid(alphas_bar, sampler, steps, grid, tuned_grids)
    prior = prior or ("unit" if sampler == "ddpm" else "matched")
    if prior not in PRIORS:
        raise ValueError(f"unknown prior {prior!r}; known priors: {', '.join(PRIORS)}")
    sig = np.append(sigmas[list(timesteps)], 0.0)  # at t_0 .. t_{K-1}, then the data
    abar = 1.0 - sig * sig
    # The beta of each step: a step of one timestep (to t - 1; from t = 0 to the data) takes
    # the schedule's own beta_t, as the original; a longer one 1 - abar_t / abar_prev.
    step_betas = [betas[t] if t_next == t - 1 else (sig[i] ** 2 - sig[i + 1] ** 2) / abar[i + 1]
                  for i, (t, t_next) in enumerate(zip(timesteps, timesteps[1:] + (-1,)))]
    build, history, corrector = _BUILDERS[sampler]
    coefficients = build(abar, sig, final_noise, eta, step_betas)
    prior_std = 1.0 if prior == "unit" else float(sig[0])
    reference = sampler == "ddpm" and timesteps == tuple(range(n - 1, -1, -1)) and prior == "unit"
    if not np.isfinite(coefficients).all():
        raise ValueError(f"sampler {sampler!r} on timesteps {list(timesteps)} gives non-finite coefficients")
    return SamplerPlan(sampler, timesteps, coefficients, n, prior_std, history, corrector, reference, grid_name)
