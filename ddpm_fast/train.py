"""Training with the original recipe: Adam(1e-3), batch 128, shuffled, clip 1.0, 4000 epochs.

``train`` reproduces the original script bit for bit for a given seed: the model is
built, batches are shuffled and the loss draws its timesteps and noise from the
global torch RNG in the original order, and the periodic sample snapshots draw from
it too (as the original's plots did), so they are part of the stream.
"""
from __future__ import annotations

import copy
import logging
import math
import numbers
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, RandomSampler
from tqdm.auto import tqdm

from ._checks import check_count, check_fits, check_points, one_line
from .data import DATASETS, make_dataset
from .diffusion import diffusion_loss, eager_loop
from .model import MLPDiffusion
from .schedule import SCHEDULE_KINDS, Schedule, make_schedule

log = logging.getLogger(__name__)


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

    def __post_init__(self):
        # NumPy and 0-d tensor numbers are accepted and stored as plain Python ones
        for name, minimum in (("n_points", 1), ("n_steps", 1), ("num_units", 1), ("batch_size", 1),
                              ("epochs", 0), ("seed", 0), ("snapshot_every", 0)):
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
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; known datasets: {', '.join(DATASETS)}")
        if self.schedule_kind not in SCHEDULE_KINDS:
            raise ValueError(f"unknown schedule kind {self.schedule_kind!r}; known kinds: "
                             f"{', '.join(SCHEDULE_KINDS)}")


@dataclass
class TrainResult:
    model: MLPDiffusion
    schedule: Schedule
    config: TrainConfig
    losses: list[float]  # mean loss of each finished epoch
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)  # epoch -> [10, n, 2]
    wall_time_s: float = 0.0
    optimizer: torch.optim.Optimizer | None = None
    rng_state: torch.Tensor | None = None  # the global CPU RNG state at the end of the last finished epoch
    interrupted: bool = False  # stopped by ``should_stop`` before config.epochs

    @property
    def epochs_done(self) -> int:
        return len(self.losses)

    def metadata(self) -> dict:
        return {"train_config": asdict(self.config), "final_loss": self.losses[-1] if self.losses else None,
                "epochs_done": self.epochs_done, "wall_time_s": self.wall_time_s,
                "torch_version": str(torch.__version__)}

    def train_state(self) -> dict:
        """What ``train(..., resume=...)`` needs to continue bit-exactly (saved in checkpoints)."""
        return {"config": asdict(self.config), "losses": list(self.losses),
                "optimizer_state": self.optimizer.state_dict(), "rng_state": self.rng_state,
                "wall_time_s": self.wall_time_s, "torch_version": str(torch.__version__),
                "num_threads": torch.get_num_threads()}


def shuffled_batches(dataset: torch.Tensor, batch_size: int) -> DataLoader:
    """Batches in the order of ``DataLoader(dataset, batch_size, shuffle=True)``.

    The same samplers draw the same permutation from the global RNG; fetching a whole
    batch with one index instead of stacking rows one by one only saves time.
    """
    sampler = BatchSampler(RandomSampler(dataset), batch_size, drop_last=False)
    return DataLoader(dataset, batch_size=None, sampler=sampler)


def _resumable_config(config: TrainConfig, saved: dict) -> None:
    """A run resumes with its own config; only ``epochs`` (the total) may change."""
    ours = asdict(config)
    differ = [f"{k}: {saved.get(k)!r} in the checkpoint, {ours[k]!r} now" for k in ours
              if k != "epochs" and saved.get(k) != ours[k]]
    if differ:
        raise ValueError("cannot resume with a different training config: " + "; ".join(differ))


def snapshot_every_steps(n_steps: int) -> int:
    """Snapshots keep 10 states of the reverse loop, every T // 10 steps (the original's
    x_seq[10], x_seq[20], ..., x_seq[100] for T = 100)."""
    return max(1, n_steps // 10)


def training_bytes(config: TrainConfig) -> int:
    """A generous estimate of the memory a training run needs: scikit-learn's float64 3-D draw,
    the float32 dataset, and the parameters with their gradients and two Adam moments."""
    params = 3 * config.n_steps * config.num_units + 2 * config.num_units ** 2 + 7 * config.num_units + 2
    snapshot = (config.n_steps + 1) * (config.snapshot_points or config.n_points) * 2 * 4 if config.snapshot_every else 0
    return config.n_points * (24 + 8) + 4 * 4 * params + config.batch_size * config.num_units * 4 * 8 + snapshot


def _check_resume(resume) -> tuple:
    try:
        saved_model, state = resume
    except (TypeError, ValueError):
        raise TypeError("resume must be a pair (model, train_state) from load_train_state") from None
    if not isinstance(saved_model, nn.Module) or not isinstance(state, dict):
        raise TypeError("resume must be a pair (model, train_state) from load_train_state, got "
                        f"({type(saved_model).__name__}, {type(state).__name__})")
    missing = [k for k in ("config", "losses", "optimizer_state", "rng_state") if k not in state]
    if missing:
        raise ValueError(f"the training state to resume has no {', '.join(missing)}")
    if not isinstance(state["config"], dict) or not isinstance(state["losses"], list):
        raise ValueError("the training state to resume is damaged: config is not a dict or losses not a list")
    return saved_model, state


def _warn_if_not_reproducible(state: dict) -> None:
    """Bit-exact resuming needs the same torch build and CPU thread count (reductions differ)."""
    here = {"torch_version": str(torch.__version__), "num_threads": torch.get_num_threads()}
    differ = [f"{k} {state[k]} then, {v} now" for k, v in here.items() if k in state and state[k] != v]
    if differ:
        warnings.warn("resuming with " + ", ".join(differ) + ": the run continues, but not bit for bit as "
                      "one uninterrupted run", RuntimeWarning, stacklevel=3)


def _epoch_end_state(model, optimizer) -> dict:
    """Copies of what an interrupted epoch would otherwise corrupt (kept in memory, ~1 MB)."""
    return {"model": copy.deepcopy(model.state_dict()), "optimizer": copy.deepcopy(optimizer.state_dict()),
            "rng": torch.get_rng_state()}


def train(config: TrainConfig = TrainConfig(), dataset: torch.Tensor | None = None,
          progress: bool = True, *, resume: tuple | None = None,
          should_stop: Callable[[], bool] | None = None,
          on_epoch_end: Callable[[TrainResult], None] | None = None) -> TrainResult:
    """Train with the original recipe; the same seed gives the original script's weights.

    ``resume``: ``(model, train_state)`` from ``load_train_state`` continues that run up to
    ``config.epochs`` in all, bit for bit as if it had never stopped. ``should_stop()`` is
    polled after every batch: when it is true, the epoch in progress is dropped, the model,
    optimizer and RNG go back to the end of the last finished epoch, and the result says
    ``interrupted``. ``on_epoch_end(result)`` runs after each finished epoch (for periodic
    checkpoints).
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    check_fits(training_bytes(config), torch.device("cpu"), "this training run",
               "use fewer points, fewer units or fewer steps")
    if dataset is None:
        dataset = make_dataset(config.dataset, config.n_points, seed=config.seed)
    check_points(dataset, "dataset")
    if dataset.shape[0] == 0:
        raise ValueError("the dataset is empty")
    dataset = dataset.float()  # the model is float32; a float64 dataset is converted, not refused
    schedule = make_schedule(config.n_steps, config.schedule_kind)
    torch.manual_seed(config.seed)
    model = MLPDiffusion(config.n_steps, config.num_units)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    result = TrainResult(model, schedule, config, losses=[], optimizer=optimizer)
    if resume is not None:
        saved_model, state = _check_resume(resume)
        _resumable_config(config, state["config"])
        _warn_if_not_reproducible(state)
        try:
            model.load_state_dict(saved_model.state_dict())
            optimizer.load_state_dict(state["optimizer_state"])
            torch.set_rng_state(state["rng_state"])
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise ValueError(f"the training state to resume is damaged: {type(err).__name__}: "
                             f"{one_line(err, 200)}") from None
        result.losses = list(state["losses"])
        result.snapshots = dict(state.get("snapshots") or {})
        result.wall_time_s = state.get("wall_time_s", 0.0)
    loader = shuffled_batches(dataset, config.batch_size)
    snapshot_shape = (config.snapshot_points or dataset.shape[0], 2)
    last = _epoch_end_state(model, optimizer)
    result.rng_state = last["rng"]

    start = time.perf_counter() - result.wall_time_s
    epochs = range(result.epochs_done, config.epochs)
    for epoch in tqdm(epochs, desc="train", unit="epoch", disable=not progress, initial=result.epochs_done,
                      total=config.epochs):
        loss_sum, stopped = torch.zeros(()), False
        for batch_x in loader:
            loss = diffusion_loss(model, batch_x, schedule)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_norm)
            optimizer.step()
            loss_sum += loss.detach()
            if should_stop is not None and should_stop():
                stopped = True
                break
        if stopped:  # back to the end of the last finished epoch
            model.load_state_dict(last["model"])
            optimizer.load_state_dict(last["optimizer"])
            torch.set_rng_state(last["rng"])
            result.interrupted = True
            break
        result.losses.append(float(loss_sum) / len(loader))
        if config.snapshot_every and epoch % config.snapshot_every == 0:
            with torch.no_grad():
                x_seq = eager_loop(model, snapshot_shape, schedule.betas, schedule.one_minus_alphas_bar_sqrt,
                                   None, None, True, None, keep=True)
            every = snapshot_every_steps(config.n_steps)
            result.snapshots[epoch] = torch.stack(x_seq[every::every][:10])  # T = 100: x_seq[10], ..., x_seq[100]
            log.info("epoch %d: loss %.5f (last batch %.5f)", epoch, result.losses[-1], float(loss.detach()))
        last = _epoch_end_state(model, optimizer)
        result.rng_state = last["rng"]
        result.wall_time_s = time.perf_counter() - start
        if on_epoch_end is not None:
            on_epoch_end(result)
    result.wall_time_s = time.perf_counter() - start
    return result
