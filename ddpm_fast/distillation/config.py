"""What a distillation run is: a frozen config, checked on construction (no torch here).

A student is an ``MLPDiffusion`` of the teacher's shape that samples in ``steps`` deterministic
DDIM steps (Song et al. 2021) on its own integer timesteps, from the matched prior. Two methods
make it (docs/distillation.md):

- ``trajectory`` (Luhman & Luhman 2021, https://arxiv.org/abs/2101.02388): the teacher runs its
  best few-step solver (``teacher_sampler`` with ``teacher_steps``) from fresh x_T; the student's
  timesteps are ``steps`` of the teacher's, and each student step learns to land where the teacher's
  trajectory is at the student's next timestep (at the data after its last).
- ``progressive`` (Salimans & Ho 2022, https://arxiv.org/abs/2202.00512): from a ``start_steps``
  DDIM teacher on the trailing grid, rounds that halve the steps: each student step learns two DDIM
  steps of the round's teacher (the previous student) from x_t ~ q(x_t | x_0) on the data, with the
  x_0 loss weighted by max(SNR, 1).
"""
from __future__ import annotations

from dataclasses import dataclass, fields

from .._values import check_count, check_seed
from ..constants import DATASETS, DISTILL_METHODS, SAMPLERS

TRAJECTORY_ONLY = ("teacher_sampler", "teacher_steps", "timesteps")
PROGRESSIVE_ONLY = ("start_steps", "dataset", "data_size")


@dataclass(frozen=True)
class DistillConfig:
    steps: int = 4  # K: the student's model calls per sample
    method: str = "trajectory"  # one of DISTILL_METHODS
    iterations: int = 3000  # optimizer steps (progressive: per halving round)
    batch_size: int = 2048  # trajectories (trajectory: K rows each) or noised data points per step
    lr: float = 1e-3  # Adam's rate, cosine to 0 over each run (progressive: each round)
    seed: int = 0  # every draw of step i comes from a generator seeded with derive_seed(seed, i)
    teacher_sampler: str = "dpm++2m"  # trajectory: the teacher's solver (best measured: docs/distillation.md)
    teacher_steps: int = 12  # trajectory: its steps, on its default grid
    timesteps: tuple | None = None  # trajectory: the student's, a subset of the teacher's (default: evenly spread)
    start_steps: int | None = None  # progressive: the first teacher's DDIM steps (default: steps x 2^r <= 64)
    dataset: str | None = None  # progressive: the data x_t is drawn from (None: the teacher's training data)
    data_size: int = 100_000  # progressive: points of it, drawn once from ``seed``

    def __post_init__(self):
        for name in ("steps", "iterations", "batch_size", "teacher_steps", "data_size"):
            check_count(getattr(self, name), name, minimum=1)
        if self.start_steps is not None:
            check_count(self.start_steps, "start_steps", minimum=1)
        check_seed(self.seed)
        if self.method not in DISTILL_METHODS:
            raise ValueError(f"unknown method {self.method!r}; known methods: {', '.join(DISTILL_METHODS)}")
        self._check_method_settings()
        if self.teacher_sampler not in SAMPLERS:
            raise ValueError(f"unknown teacher_sampler {self.teacher_sampler!r}; known: {', '.join(SAMPLERS)}")
        if self.dataset is not None and self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; known datasets: {', '.join(DATASETS)}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not 0 < self.lr < float("inf"):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if self.timesteps is not None:
            object.__setattr__(self, "timesteps", tuple(self.timesteps))
            if len(self.timesteps) != self.steps:
                raise ValueError(f"timesteps {list(self.timesteps)} are not {self.steps} (steps)")
        if self.method == "trajectory" and self.steps > self.teacher_steps:
            raise ValueError(f"a {self.steps}-step student cannot copy a {self.teacher_steps}-step teacher's "
                             "trajectory: use more teacher_steps (--teacher-steps)")
        if self.method == "progressive":
            start = self.start_steps if self.start_steps is not None else self.default_start_steps()
            rounds = start // self.steps
            if start % self.steps or rounds & (rounds - 1) or rounds < 2:
                raise ValueError(f"start_steps {start} must be steps ({self.steps}) x 2^r with r >= 1: each round "
                                 "halves the steps")
            object.__setattr__(self, "start_steps", start)

    def _check_method_settings(self) -> None:
        """A setting of the other method would be silently ignored: refused instead."""
        other = PROGRESSIVE_ONLY if self.method == "trajectory" else TRAJECTORY_ONLY
        defaults = {f.name: f.default for f in fields(self)}
        given = [name for name in other if getattr(self, name) != defaults[name]]
        if given:
            other_method = "progressive" if self.method == "trajectory" else "trajectory"
            raise ValueError(f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} not a setting of method "
                             f"{self.method!r} but of {other_method!r} (method={other_method!r}, --method "
                             f"{other_method})")

    def default_start_steps(self) -> int:
        start = self.steps
        while start * 2 <= 64:
            start *= 2
        return start

    @property
    def rounds(self) -> int:
        """Halving rounds (progressive) or 1."""
        return (self.start_steps // self.steps).bit_length() - 1 if self.method == "progressive" else 1

    @property
    def total_iterations(self) -> int:
        return self.iterations * self.rounds


def spread_timesteps(teacher_timesteps: tuple, steps: int) -> tuple:
    """``steps`` of the teacher's timesteps, evenly spread over its steps and starting at its first."""
    m = len(teacher_timesteps)
    return tuple(teacher_timesteps[round(i * m / steps)] for i in range(steps))


def check_student_timesteps(timesteps: tuple, teacher_timesteps: tuple) -> tuple:
    """The student's timesteps lie on the teacher's trajectory and start where it starts (same prior)."""
    if not set(timesteps) <= set(teacher_timesteps) or timesteps[0] != teacher_timesteps[0] \
            or list(timesteps) != sorted(timesteps, reverse=True) or len(set(timesteps)) != len(timesteps):
        raise ValueError(f"the student's timesteps {list(timesteps)} must be strictly decreasing, start at "
                         f"{teacher_timesteps[0]} and lie on the teacher's {list(teacher_timesteps)}")
    return tuple(timesteps)
