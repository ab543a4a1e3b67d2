"""Training: the original recipe bit for bit on the CPU, and the same loop on any device.

``train`` with ``device="cpu", backend="eager"`` reproduces the original script for a seed:
the model is built, batches are shuffled and the loss draws its timesteps and noise from
the global torch RNG in the original order, and the periodic sample snapshots draw from it
too (as the original's plots did), so they are part of the stream. ``backend="compile"``
(CPU or CUDA) and ``"cudagraph"`` (CUDA) run the same steps on the same draws
(``ddpm_fast.train_steps``); on a GPU the draws come from a generator on the device.

Recipes (``RECIPES``): ``seed`` is the original (Adam 1e-3, batch 128, 4000 epochs);
``fast`` and ``best`` add a cosine learning-rate schedule with warm-up (Loshchilov & Hutter,
2017), larger batches and an exponential moving average of the weights (Polyak averaging,
as in Ho et al. 2020's EMA of 0.9999), measured in the README.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import math
import numbers
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import BatchSampler, DataLoader, RandomSampler
from tqdm.auto import tqdm

from ._checks import check_count, check_fits, check_points, one_line
from ._checks import check_device
from .data import DATASETS, make_dataset
from .diffusion import eager_loop
from .distributed import current_world, tensors_sha256
from .model import MLPDiffusion
from .schedule import SCHEDULE_KINDS, Schedule, make_schedule
from .train_steps import (RUNNERS, EpochDraws, LossReader, TrainSteps, draw_epoch_device, draw_epoch_reference,
                          check_train_backend, lr_table, make_optimizer)

log = logging.getLogger(__name__)


LR_SCHEDULES = ("constant", "cosine")


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


# The seed recipe is the original script. ``fast`` reaches the seed recipe's quality in about 30 s
# on 2 CPU cores and ``best`` trains the best bundled model (README: measurements).
RECIPES = {
    "seed": TrainConfig(),
    "fast": TrainConfig(batch_size=1024, lr=1e-2, epochs=600, lr_schedule="cosine", warmup_steps=200,
                        ema_decay=0.998, snapshot_every=200, snapshot_points=2000),
    "best": TrainConfig(batch_size=1024, lr=1e-2, epochs=3000, lr_schedule="cosine", warmup_steps=200,
                        ema_decay=0.999, snapshot_every=500, snapshot_points=2000),
}


@dataclass
class TrainResult:
    model: MLPDiffusion  # the weights to sample with: the EMA's when config.ema_decay, else the trained ones
    schedule: Schedule
    config: TrainConfig
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)  # epoch -> [10, n, 2]
    wall_time_s: float = 0.0
    optimizer: torch.optim.Optimizer | None = None
    rng_state: torch.Tensor | None = None  # the draws' RNG state at the end of the last finished epoch
    interrupted: bool = False  # stopped by ``should_stop`` before config.epochs
    train_model: MLPDiffusion | None = None  # the optimizer's weights (``model`` itself without EMA)
    device: str = "cpu"
    backend: str = "eager"
    compile_s: float = 0.0  # compiling or capturing, inside wall_time_s
    world_size: int = 1  # data-parallel ranks; each took batch_size / world_size rows of every batch (+-1)
    finished_losses: list = field(default_factory=list, repr=False)  # read back so far
    pending: LossReader | None = field(default=None, repr=False)  # epochs whose loss is still on the GPU

    @property
    def losses(self) -> list:
        """Mean loss of each finished epoch (reading the newest one waits for the GPU to finish it)."""
        if self.pending is not None:
            self.finished_losses.extend(self.pending.pop())
        return self.finished_losses

    @property
    def epochs_done(self) -> int:
        return len(self.finished_losses) + (0 if self.pending is None else len(self.pending.pending))

    def metadata(self) -> dict:
        losses = self.losses
        return {"train_config": asdict(self.config), "final_loss": losses[-1] if losses else None,
                "epochs_done": self.epochs_done, "wall_time_s": self.wall_time_s, "device": self.device,
                "backend": self.backend, "torch_version": str(torch.__version__), "world_size": self.world_size,
                "global_batch": self.config.batch_size,  # per_rank_batch: the largest share (they differ by <= 1)
                "per_rank_batch": -(-self.config.batch_size // self.world_size)}

    def train_state(self) -> dict:
        """What ``train(..., resume=...)`` needs to continue bit-exactly (saved in checkpoints)."""
        state = {"config": asdict(self.config), "losses": list(self.losses),
                 "optimizer_state": self.optimizer.state_dict(), "rng_state": self.rng_state,
                 "rng_device": torch.device(self.device).type, "wall_time_s": self.wall_time_s,
                 "torch_version": str(torch.__version__), "num_threads": torch.get_num_threads()}
        if self.train_model is not self.model:  # with EMA the checkpoint's model is the average
            state["train_model"] = self.train_model.state_dict()
        return state


def shuffled_batches(dataset: torch.Tensor, batch_size: int) -> DataLoader:
    """Batches in the order of ``DataLoader(dataset, batch_size, shuffle=True)``.

    The same samplers draw the same permutation from the global RNG; fetching a whole
    batch with one index instead of stacking rows one by one only saves time.
    """
    sampler = BatchSampler(RandomSampler(dataset), batch_size, drop_last=False)
    return DataLoader(dataset, batch_size=None, sampler=sampler)


def _resumable_config(config: TrainConfig, saved: dict) -> None:
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
    snapshot = (config.n_steps + 1) * (config.snapshot_points or config.n_points) * 2 * 4 if config.snapshot_every else 0
    draws = -(-config.n_points // config.batch_size) * config.batch_size * 8 * 4
    return (config.n_points * (24 + 8) + draws + 8 * 4 * params + config.batch_size * config.num_units * 4 * 8
            + snapshot)


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


class _EpochEndCopy:
    """The weights, EMA and Adam state at the end of the last finished epoch, kept to drop an
    interrupted one: copied into preallocated tensors (one foreach copy, no host sync), restored
    in place (so captured CUDA graphs keep their addresses)."""

    def __init__(self, models, optimizer, generator):
        self.models, self.optimizer, self.generator = models, optimizer, generator
        self.saved, self.rng = None, None

    def _tensors(self) -> list:
        state = [v for s in self.optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor)]
        return [p.data for m in self.models for p in m.parameters()] + state

    def save(self) -> None:
        tensors = self._tensors()
        if self.saved is None or len(self.saved) != len(tensors):  # Adam creates its state at the first step
            self.saved = [t.detach().clone() for t in tensors]
        else:
            torch._foreach_copy_(self.saved, tensors)
        self.rng = torch.get_rng_state() if self.generator is None else self.generator.get_state()

    def restore(self) -> None:
        tensors = self._tensors()
        if len(tensors) != len(self.saved):  # stopped in the first epoch: Adam had no state yet
            self.optimizer.state.clear()
            tensors = self._tensors()
        torch._foreach_copy_(tensors, self.saved)
        _set_rng(self.generator, self.rng)


def _set_rng(generator, state: torch.Tensor) -> None:
    if generator is None:
        torch.set_rng_state(state)
    else:
        generator.set_state(state)


def _learning_rate_on(optimizer, device: torch.device) -> None:
    """Adam's rate where its implementation wants it: a device tensor on CUDA (capturable), else a float
    (a loaded state dict brings it back as whatever it was saved as)."""
    for group in optimizer.param_groups:
        rate = float(group["lr"])
        group["lr"] = torch.tensor(rate, device=device) if device.type == "cuda" else rate


def _resume_into(result: TrainResult, resume, generator, device: torch.device) -> None:
    saved_model, state = _check_resume(resume)
    _resumable_config(result.config, state["config"])
    _warn_if_not_reproducible(state)
    drawn_on = state.get("rng_device", "cpu")
    if drawn_on != device.type:
        raise ValueError(f"this run drew its random numbers on {drawn_on} and cannot continue them on "
                         f"{device.type}: resume it with device {drawn_on!r}")
    try:
        result.model.load_state_dict(saved_model.state_dict())
        if result.train_model is not result.model:
            result.train_model.load_state_dict(state.get("train_model") or saved_model.state_dict())
        result.optimizer.load_state_dict(copy.deepcopy(state["optimizer_state"]))  # the caller's stays its own
        _set_rng(generator, state["rng_state"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"the training state to resume is damaged: {type(err).__name__}: "
                         f"{one_line(err, 200)}") from None
    _learning_rate_on(result.optimizer, device)
    result.finished_losses = list(state["losses"])
    result.snapshots = dict(state.get("snapshots") or {})
    result.wall_time_s = state.get("wall_time_s", 0.0)


def _snapshot(model, schedule: Schedule, config: TrainConfig, shape: tuple, epoch: int, device) -> torch.Tensor:
    """10 states of the reverse loop ([10, n, 2] on the CPU). On the CPU they draw from the global RNG,
    as the original's plots did; elsewhere from their own generator, apart from the training draws."""
    generator = None
    if device.type != "cpu":
        generator = torch.Generator(device).manual_seed(config.seed * 100_003 + epoch)
    with torch.no_grad():
        x_seq = eager_loop(model, shape, schedule.betas, schedule.one_minus_alphas_bar_sqrt,
                           None, None, True, generator, keep=True)
    every = snapshot_every_steps(config.n_steps)
    return torch.stack(x_seq[every::every][:10]).cpu()  # T = 100: x_seq[10], ..., x_seq[100]


def train(config: TrainConfig = TrainConfig(), dataset: torch.Tensor | None = None,
          progress: bool = True, *, device="cpu", backend: str = "eager", resume: tuple | None = None,
          should_stop: Callable[[], bool] | None = None,
          on_epoch_end: Callable[[TrainResult], None] | None = None) -> TrainResult:
    """Train a model; ``device="cpu", backend="eager"`` with the seed recipe is the original script.

    ``backend``: ``eager``, ``compile`` (cpu, cuda) or ``cudagraph`` (cuda); every one takes the
    same steps on the same draws (``ddpm_fast.train_steps``). ``resume``: ``(model, train_state)``
    from ``load_train_state`` continues that run up to ``config.epochs`` in all, bit for bit as if
    it had never stopped (same device and backend; ``compile`` on CUDA to float tolerance only).
    ``should_stop()`` is polled after every step
    (every captured chunk with ``cudagraph``): when it is true, the epoch in progress is dropped,
    the weights, optimizer and RNG go back to the end of the last finished epoch, and the result
    says ``interrupted``. ``on_epoch_end(result)`` runs after each finished epoch (for periodic
    checkpoints); on a GPU, reading ``result.losses`` there waits for that epoch.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    device = check_device(device)
    check_train_backend(backend, device)
    ranks = current_world(device)
    check_data_parallel(ranks, backend, config)
    check_fits(training_bytes(config), device, "this training run", "use fewer points, fewer units or fewer steps")
    if dataset is None:
        dataset = make_dataset(config.dataset, config.n_points, seed=config.seed)
    check_points(dataset, "dataset")
    if dataset.shape[0] == 0:
        raise ValueError("the dataset is empty")
    dataset = dataset.to(device, torch.float32)  # the model is float32; a float64 dataset is converted
    schedule = make_schedule(config.n_steps, config.schedule_kind).to(device)
    torch.manual_seed(config.seed)
    model = MLPDiffusion(config.n_steps, config.num_units).to(device)  # built from the global RNG, as the original
    ema = copy.deepcopy(model) if config.ema_decay else None
    optimizer = make_optimizer(model, config.lr, device, capturable=backend == "cudagraph")
    generator = None if device.type == "cpu" else torch.Generator(device).manual_seed(config.seed)
    result = TrainResult(ema or model, schedule, config, optimizer=optimizer, train_model=model, device=str(device),
                         backend=backend, pending=LossReader(device), world_size=ranks.world_size)
    if resume is not None:
        _resume_into(result, resume, generator, device)
    draws = EpochDraws.empty(dataset.shape[0], config.batch_size, device)
    n_batches = len(draws.counts)
    if config.warmup_steps > config.epochs * n_batches:
        warnings.warn(f"warmup_steps {config.warmup_steps} is more than this run's {config.epochs * n_batches} "
                      f"steps: the learning rate never reaches {config.lr}", UserWarning, stacklevel=2)
    rates = lr_table(config.lr_schedule, config.lr, config.warmup_steps, config.epochs * n_batches, device)
    if ranks.distributed:  # every rank draws the whole epoch, then steps on its columns of each batch
        gpu = (device.index if device.index is not None else torch.cuda.current_device()) if device.type == "cuda" \
            else None
        loss_model = DistributedDataParallel(model, device_ids=None if gpu is None else [gpu])
        steps = TrainSteps(loss_model, ema, optimizer, rates, config.clip_norm, config.ema_decay, schedule,
                           draws.shard(ranks.rank, ranks.world_size), cut_rows=False)
    else:
        steps = TrainSteps(model, ema, optimizer, rates, config.clip_norm, config.ema_decay, schedule, draws)
    runner = RUNNERS[backend](steps)
    models = [model] if ema is None else [model, ema]
    last = _EpochEndCopy(models, optimizer, generator)
    last.save()
    result.rng_state = last.rng

    with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
        # events, streams and graph captures below are made on the current CUDA device: this one
        _train_epochs(result, runner, steps, draws, dataset, generator, last, progress, should_stop, on_epoch_end,
                      ranks)
    result.compile_s = getattr(runner, "compile_s", None) or getattr(runner, "capture_s", 0.0)
    _check_ranks_agree(ranks, models)
    return result


def check_data_parallel(ranks, backend: str, config: TrainConfig) -> None:
    """What several ranks cannot train: cudagraph, or a global batch with fewer rows than ranks."""
    if not ranks.distributed:
        return
    if backend == "cudagraph":
        raise RuntimeError("cannot train with backend 'cudagraph' on several ranks: DDP's gradient all-reduce is "
                           "not captured in the graph; use eager or compile")
    if config.batch_size < ranks.world_size:
        raise ValueError(f"batch_size {config.batch_size} (the global batch) is smaller than the "
                         f"{ranks.world_size} ranks: each rank needs at least one row")


def _check_ranks_agree(ranks, models) -> None:
    """Data-parallel ranks must end with identical weights (DDP all-reduces the gradients, and every
    rank takes the same Adam and EMA steps); a difference is a bug, reported instead of saved."""
    if not ranks.distributed:
        return
    digests = ranks.gather(tensors_sha256(p for m in models for p in m.parameters()))
    if len(set(digests)) != 1:
        raise RuntimeError(f"the {ranks.world_size} ranks ended with different weights: {digests}")


def _train_epochs(result: TrainResult, runner, steps, draws, dataset, generator, last, progress, should_stop,
                  on_epoch_end, ranks) -> None:
    config, schedule, device = result.config, result.schedule, dataset.device
    n_batches = len(draws.counts)
    snapshot_shape = (config.snapshot_points or dataset.shape[0], 2)
    start = time.perf_counter() - result.wall_time_s
    epochs = range(result.epochs_done, config.epochs)
    for epoch in tqdm(epochs, desc="train", unit="epoch", disable=not progress, initial=result.epochs_done,
                      total=config.epochs):
        if generator is None:
            draw_epoch_reference(draws, dataset, config.n_steps)
        else:
            draw_epoch_device(draws, dataset, config.n_steps, generator)
        if ranks.distributed:  # rank 0's draws for all: generators may differ across GPU models and CPUs
            for tensor in (draws.x_0, draws.t, draws.eps):
                dist.broadcast(tensor, src=0)
        steps.loss_sum.zero_()
        steps.set_step(epoch * n_batches)
        # Ranks must stop together (a lone rank would leave the others in an all-reduce): they agree at
        # the end of each epoch instead of after every step.
        if not runner.run_epoch(epoch * n_batches, None if ranks.distributed else should_stop):
            last.restore()  # back to the last finished epoch
            result.interrupted = True
            break
        if ranks.distributed:  # the whole batch's loss: the ranks' (world_size-scaled) parts summed
            dist.all_reduce(steps.loss_sum)
            steps.loss_sum.div_(ranks.world_size)
        result.finished_losses.extend(result.pending.push(steps.loss_sum, n_batches))
        if config.snapshot_every and epoch % config.snapshot_every == 0:
            result.snapshots[epoch] = _snapshot(result.model, schedule, config, snapshot_shape, epoch, device)
            log.info("epoch %d: loss %.5f", epoch, result.losses[-1])
        last.save()
        result.rng_state = last.rng
        result.wall_time_s = time.perf_counter() - start
        if on_epoch_end is not None:
            on_epoch_end(result)
        if ranks.distributed and should_stop is not None and ranks.any(should_stop()) and epoch + 1 < config.epochs:
            result.interrupted = True
            break
    result.losses  # reads the last epochs back from the GPU  # noqa: B018
    result.wall_time_s = time.perf_counter() - start
