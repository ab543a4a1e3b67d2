"""Training configuration: ``TrainConfig``, the ``RECIPES``, and the arithmetic on them.

Imports nothing heavy, so the command line's ``--help`` shows each recipe's values without
importing torch. Recipes: ``seed`` is the original (Adam 1e-3, batch 128, 4000 epochs);
``fast`` and ``best`` add a cosine learning-rate schedule with warm-up (Loshchilov & Hutter,
2017), larger batches and an exponential moving average of the weights (Polyak averaging,
as in Ho et al. 2020's EMA of 0.9999), measured in docs/training.md.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass

from .._values import check_count
from ..constants import DATASETS, LR_SCHEDULES, SCHEDULE_KINDS, TRAIN_PRECISIONS


@dataclass(frozen=True)
class TrainConfig:
    dataset: str = "s_curve"
    n_points: int = 10_000
    n_steps: int = 100
    num_units: int = 128
    schedule_kind: str = "sigmoid"
    lr: float = 1e-3
    batch_size: int = 128
    epochs: int = 4000
    clip_norm: float = 1.0
    seed: int = 0
    snapshot_every: int = 100  # epochs; 0 disables the sample snapshots
    snapshot_points: int | None = None  # None: as many points as the dataset, as the original
    lr_schedule: str = "constant"  # or "cosine": warm-up, then half a cosine down to 0 at the last step
    warmup_steps: int = 0  # optimizer steps of linear warm-up from lr / warmup_steps to lr
    ema_decay: float = 0.0  # 0: none; else the checkpoint's weights are this EMA of the trained ones
    precision: str = "fp32"  # or "bf16": the forward and backward in bfloat16 (eager backend), weights fp32

    def __post_init__(self):
        # NumPy and 0-d tensor numbers are accepted and stored as plain Python ones
        for name, minimum in (("n_points", 1), ("n_steps", 1), ("num_units", 1), ("batch_size", 1),
                              ("epochs", 0), ("seed", 0), ("snapshot_every", 0), ("warmup_steps", 0)):
            object.__setattr__(self, name, check_count(getattr(self, name), name, minimum))
        if self.seed >= 2 ** 32:
            raise ValueError(f"seed must be below 2**32 (it also seeds scikit-learn's data), got {self.seed}")
        if self.snapshot_points is not None:
            object.__setattr__(self, "snapshot_points", check_count(self.snapshot_points, "snapshot_points", 1))
        for name in ("lr", "clip_norm"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < math.inf:
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
            object.__setattr__(self, name, float(value))
        decay = self.ema_decay
        if isinstance(decay, bool) or not isinstance(decay, numbers.Real) or not 0 <= decay < 1:
            raise ValueError(f"ema_decay must be a number in [0, 1) (0: no EMA), got {decay!r}")
        object.__setattr__(self, "ema_decay", float(decay))
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"unknown lr_schedule {self.lr_schedule!r}; known: {', '.join(LR_SCHEDULES)}")
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; known datasets: {', '.join(DATASETS)}")
        if self.schedule_kind not in SCHEDULE_KINDS:
            raise ValueError(f"unknown schedule kind {self.schedule_kind!r}; known kinds: "
                             f"{', '.join(SCHEDULE_KINDS)}")
        if self.precision not in TRAIN_PRECISIONS:
            raise ValueError(f"unknown training precision {self.precision!r}; known: {', '.join(TRAIN_PRECISIONS)}")


# The seed recipe is the original script. ``fast`` reaches the seed recipe's quality in about 30 s
# on 2 CPU cores and ``best`` trains the best bundled model (docs/training.md: measurements).
RECIPES = {
    "seed": TrainConfig(),
    "fast": TrainConfig(batch_size=1024, lr=1e-2, epochs=600, lr_schedule="cosine", warmup_steps=200,
                        ema_decay=0.998, snapshot_every=200, snapshot_points=2000),
    "best": TrainConfig(batch_size=1024, lr=1e-2, epochs=3000, lr_schedule="cosine", warmup_steps=200,
                        ema_decay=0.999, snapshot_every=500, snapshot_points=2000),
}


def check_resumable_config(config: TrainConfig, saved: dict) -> None:
    """A run resumes with its own config; only ``epochs`` (the total) may change."""
    ours, defaults = asdict(config), asdict(TrainConfig())
    saved = {**defaults, **saved}  # a run saved before a field existed had its default
    differ = [f"{k}: {saved[k]!r} in the checkpoint, {ours[k]!r} now" for k in ours
              if k != "epochs" and saved[k] != ours[k]]
    if ours["lr_schedule"] == "cosine" and saved["epochs"] != ours["epochs"]:
        differ.append(f"epochs: {saved['epochs']} in the checkpoint, {ours['epochs']} now (the cosine schedule "
                      "is laid out over the run's epochs: another total would change the steps already taken)")
    if differ:
        raise ValueError("cannot resume with a different training config: " + "; ".join(differ))


def snapshot_every_steps(n_steps: int) -> int:
    """Snapshots keep 10 states of the reverse loop, every T // 10 steps (the original's
    x_seq[10], x_seq[20], ..., x_seq[100] for T = 100)."""
    return max(1, n_steps // 10)


def training_bytes(config: TrainConfig) -> int:
    """A generous estimate of the memory a training run needs: scikit-learn's float64 3-D draw,
    the float32 dataset, an epoch's padded draws, and the parameters with their gradients, two Adam
    moments, the EMA and an epoch-end copy."""
    params = 3 * config.n_steps * config.num_units + 2 * config.num_units ** 2 + 7 * config.num_units + 2
    snapshot_points = config.snapshot_points or config.n_points
    snapshot = (config.n_steps + 1) * snapshot_points * 2 * 4 if config.snapshot_every else 0
    draws = -(-config.n_points // config.batch_size) * config.batch_size * 8 * 4
    return (config.n_points * (24 + 8) + draws + 8 * 4 * params + config.batch_size * config.num_units * 4 * 8
            + snapshot)
