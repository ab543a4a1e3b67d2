"""Training: the original recipe bit for bit on the CPU, and the same loop on any device.

``train`` with ``device="cpu", backend="eager"`` reproduces the original script for a seed:
the model is built, batches are shuffled and the loss draws its timesteps and noise from
the global torch RNG in the original order, and the periodic sample snapshots draw from it
too (as the original's plots did), so they are part of the stream. ``backend="compile"``
(CPU or CUDA) and ``"cudagraph"`` (CUDA) run the same steps on the same draws
(``ddpm_fast.training.steps``); on a GPU the draws come from a generator on the device.
The config and the recipes are in ``ddpm_fast.training.config``.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from .._checks import check_device, check_fits, check_points
from .._values import one_line
from ..data import make_dataset
from ..diffusion import eager_loop
from ..distributed import current_world, tensors_sha256
from ..model import MLPDiffusion
from ..schedule import Schedule, make_schedule
from .config import TrainConfig, check_resumable_config, snapshot_every_steps, training_bytes
from .steps import (
    RUNNERS,
    EpochDraws,
    LossReader,
    TrainSteps,
    check_train_backend,
    check_train_precision,
    draw_epoch_device,
    draw_epoch_reference,
    learning_rate_on,
    lr_table,
    make_optimizer,
)

log = logging.getLogger(__name__)



def _saved_config(config: TrainConfig) -> dict:
    """The config as checkpoints keep it: an fp32 run's without ``precision``, so that it reads as
    every checkpoint written before the field existed (and older versions can read it)."""
    saved = asdict(config)
    if saved["precision"] == "fp32":
        del saved["precision"]
    return saved


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
        return {"train_config": _saved_config(self.config), "final_loss": losses[-1] if losses else None,
                "epochs_done": self.epochs_done, "wall_time_s": self.wall_time_s, "device": self.device,
                "backend": self.backend, "torch_version": str(torch.__version__), "world_size": self.world_size,
                "global_batch": self.config.batch_size,  # per_rank_batch: the largest share (they differ by <= 1)
                "per_rank_batch": -(-self.config.batch_size // self.world_size)}

    def train_state(self) -> dict:
        """What ``train(..., resume=...)`` needs to continue bit-exactly (saved in checkpoints)."""
        state = {"config": _saved_config(self.config), "losses": list(self.losses),
                 "optimizer_state": self.optimizer.state_dict(), "rng_state": self.rng_state,
                 "rng_device": torch.device(self.device).type, "wall_time_s": self.wall_time_s,
                 "torch_version": str(torch.__version__), "num_threads": torch.get_num_threads()}
        if self.train_model is not self.model:  # with EMA the checkpoint's model is the average
            state["train_model"] = self.train_model.state_dict()
        return state


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


def _resume_into(result: TrainResult, resume, generator, device: torch.device) -> None:
    saved_model, state = _check_resume(resume)
    check_resumable_config(result.config, state["config"])
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
    learning_rate_on(result.optimizer, device)
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


def _checked_dataset(config: TrainConfig, dataset, device: torch.device) -> torch.Tensor:
    """The training points [N, 2] float32 on ``device``: ``dataset``, or the config's own."""
    if dataset is None:
        dataset = make_dataset(config.dataset, config.n_points, seed=config.seed)
    check_points(dataset, "dataset")
    if dataset.shape[0] == 0:
        raise ValueError("the dataset is empty")
    return dataset.to(device, torch.float32)  # the model is float32; a float64 dataset is converted


def _train_steps(config: TrainConfig, model, ema, optimizer, schedule, draws, device, ranks) -> TrainSteps:
    """The optimizer steps of one epoch: the learning-rate table, and DDP across ranks."""
    n_batches = len(draws.counts)
    if config.warmup_steps > config.epochs * n_batches:
        warnings.warn(f"warmup_steps {config.warmup_steps} is more than this run's {config.epochs * n_batches} "
                      f"steps: the learning rate never reaches {config.lr}", UserWarning, stacklevel=3)
    rates = lr_table(config.lr_schedule, config.lr, config.warmup_steps, config.epochs * n_batches, device)
    if not ranks.distributed:
        return TrainSteps(model, ema, optimizer, rates, config.clip_norm, config.ema_decay, schedule, draws,
                          precision=config.precision)
    # every rank draws the whole epoch, then steps on its columns of each batch
    gpu = (device.index if device.index is not None else torch.cuda.current_device()) if device.type == "cuda" \
        else None
    loss_model = DistributedDataParallel(model, device_ids=None if gpu is None else [gpu])
    return TrainSteps(loss_model, ema, optimizer, rates, config.clip_norm, config.ema_decay, schedule,
                      draws.shard(ranks.rank, ranks.world_size), cut_rows=False, precision=config.precision)


def train(config: TrainConfig = TrainConfig(), dataset: torch.Tensor | None = None,
          progress: bool = True, *, device="cpu", backend: str = "eager", resume: tuple | None = None,
          should_stop: Callable[[], bool] | None = None,
          on_epoch_end: Callable[[TrainResult], None] | None = None) -> TrainResult:
    """Train a model; ``device="cpu", backend="eager"`` with the seed recipe is the original script.

    ``backend``: ``eager``, ``compile`` (cpu, cuda) or ``cudagraph`` (cuda); every one takes the
    same steps on the same draws (``ddpm_fast.training.steps``). ``resume``: ``(model, train_state)``
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
    check_train_precision(config.precision, backend)
    ranks = current_world(device)
    check_data_parallel(ranks, backend, config)
    check_fits(training_bytes(config), device, "this training run", "use fewer points, fewer units or fewer steps")
    dataset = _checked_dataset(config, dataset, device)
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
    steps = _train_steps(config, model, ema, optimizer, schedule, draws, device, ranks)
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
