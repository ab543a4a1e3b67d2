"""Training backends: one epoch's draws made up front, its optimizer steps run eagerly,
compiled, or replayed as a CUDA graph.

An epoch is drawn before its first step (``EpochDraws``): the shuffled batches, their
antithetic timesteps and their noise, padded to one shape ``[S, B, ...]``. On the CPU the
draws come from the global RNG in the original script's order (so ``eager`` there is the
original, bit for bit); on other devices from a generator on that device, in bulk, so no
draw crosses to the host. Every backend then consumes the same draws:

- ``eager``: one step at a time, each batch cut to its real rows (the original's loss);
- ``compile``: the padded loss ``torch.compile``d once (forward and backward); every batch
  of every epoch has the same shape, so it never recompiles;
- ``cudagraph``: whole chunks of steps (forward, backward, clipping, Adam, EMA, the
  learning-rate schedule) captured as one CUDA graph and replayed (gpt-fast's static-buffer
  pattern). Adam is the fused CUDA kernel with ``capturable=True`` and a tensor learning rate.

No step reads a value back to the host: the loss is summed on the device and the caller
reads each epoch's mean one epoch late (``LossReader``).
"""
from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, RandomSampler

from ..backends.compiled import own_code  # a code object per compiled loss: its own Dynamo cache
from ..constants import TRAIN_BACKENDS
from ..diffusion import antithetic_timesteps, loss_from_draws, weighted_loss

MAX_GRAPH_STEPS = 128  # optimizer steps per captured graph; an epoch of more steps replays it in chunks


def check_train_backend(backend: str, device: torch.device) -> None:
    """ValueError for an unknown backend, RuntimeError naming why a known one cannot train on ``device``."""
    reason = train_backend_unavailable(backend, device)
    if reason is not None:
        error = ValueError if backend not in TRAIN_BACKENDS else RuntimeError
        raise error(f"cannot train with backend {backend!r}: {reason}")


def check_train_precision(precision: str, backend: str) -> None:
    """bf16 training is the eager backend's: its loss under autocast (compile and cudagraph train fp32)."""
    if precision == "bf16" and backend != "eager":
        raise ValueError(f"precision 'bf16' trains on backend 'eager' (its loss under bf16 autocast); "
                         f"backend {backend!r} trains in fp32")


def train_backend_unavailable(backend: str, device: torch.device) -> str | None:
    """Why ``backend`` cannot train on ``device``, or None when it can."""
    if backend not in TRAIN_BACKENDS:
        return f"unknown training backend {backend!r}; known: {', '.join(TRAIN_BACKENDS)}"
    if device.type == "cuda" and not torch.cuda.is_available():
        return "CUDA is not available on this machine (torch.cuda.is_available() is False)"
    if backend == "cudagraph" and device.type != "cuda":
        return f"'cudagraph' captures CUDA graphs and needs a CUDA device, got {device}"
    if backend == "compile" and device.type not in ("cpu", "cuda"):
        return f"'compile' trains on cpu or cuda, got {device}"
    return None


def batch_counts(n_points: int, batch_size: int) -> list:
    """Rows of each batch of an epoch: full batches, then the rest (the original's last, smaller one)."""
    return [batch_size] * (n_points // batch_size) + ([n_points % batch_size] if n_points % batch_size else [])


@dataclass
class EpochDraws:
    """One epoch's random inputs, padded to one shape; padding rows weigh 0 in the loss."""
    x_0: torch.Tensor  # [S, B, 2] the shuffled batches, in order
    t: torch.Tensor  # [S, B] int64 antithetic timesteps
    eps: torch.Tensor  # [S, B, 2] the loss's noise
    weight: torch.Tensor  # [S, B] 1 / (2 * rows) on a batch's rows, 0 on padding (a batch mean as a sum)
    counts: list  # [S] rows of each batch (host ints)

    @classmethod
    def empty(cls, n_points: int, batch_size: int, device: torch.device) -> "EpochDraws":
        counts = batch_counts(n_points, batch_size)
        rows = torch.arange(batch_size, device=device)  # [B]
        count_t = torch.tensor(counts, device=device)  # [S]
        weight = torch.where(rows < count_t[:, None], 0.5 / count_t[:, None], 0.0).float()  # [S, B]
        size = (len(counts), batch_size)
        return cls(torch.zeros(*size, 2, device=device), torch.zeros(size, dtype=torch.long, device=device),
                   torch.zeros(*size, 2, device=device), weight, counts)


    def shard(self, rank: int, world_size: int) -> "EpochDraws":
        """Rank ``rank``'s columns of every batch (views: refilled with the epoch), for data-parallel
        training: B * r // W to B * (r + 1) // W, so shares differ by one row at most. Weights are
        scaled by world_size, so the average of the ranks' gradients (DDP's all-reduce) is the
        gradient of the whole batch's loss."""
        batch = self.t.shape[1]
        lo, hi = batch * rank // world_size, batch * (rank + 1) // world_size
        counts = [max(0, min(count, hi) - lo) for count in self.counts]
        return EpochDraws(self.x_0[:, lo:hi], self.t[:, lo:hi], self.eps[:, lo:hi], self.weight[:, lo:hi] * world_size,
                          counts)


def shuffled_batches(dataset: torch.Tensor, batch_size: int) -> DataLoader:
    """Batches in the order of ``DataLoader(dataset, batch_size, shuffle=True)``.

    The same samplers draw the same permutation from the global RNG; fetching a whole
    batch with one index instead of stacking rows one by one only saves time.
    """
    sampler = BatchSampler(RandomSampler(dataset), batch_size, drop_last=False)
    return DataLoader(dataset, batch_size=None, sampler=sampler)


def draw_epoch_reference(draws: EpochDraws, dataset: torch.Tensor, n_steps: int) -> None:
    """The original script's draws for one epoch, from the global CPU RNG, in its order.

    The DataLoader draws its seeds and the permutation before the first batch; the loss
    then draws each batch's timesteps and noise in turn (``diffusion_loss``). Drawing them
    here, before the steps, takes the same numbers from the stream: nothing else draws in
    between.
    """
    batches = list(shuffled_batches(dataset, draws.x_0.shape[1]))
    for i, x_0 in enumerate(batches):
        rows = x_0.shape[0]
        t = antithetic_timesteps(rows, n_steps)
        eps = torch.empty_like(x_0).normal_()  # diffusion_loss's draw, in x_0's layout
        draws.x_0[i, :rows], draws.t[i, :rows], draws.eps[i, :rows] = x_0, t, eps


def draw_epoch_device(draws: EpochDraws, dataset: torch.Tensor, n_steps: int, generator: torch.Generator) -> None:
    """One epoch's draws in bulk from ``generator`` on the dataset's device, into ``draws`` in place."""
    n_batches, batch_size = draws.t.shape
    n_points = dataset.shape[0]
    perm = torch.randperm(n_points, device=dataset.device, generator=generator)  # [n]
    index = torch.zeros(n_batches * batch_size, dtype=torch.long, device=dataset.device)
    index[:n_points] = perm  # padding rows read point 0 and weigh nothing
    torch.index_select(dataset, 0, index, out=draws.x_0.view(-1, 2))
    half = (batch_size + 1) // 2
    t_half = torch.randint(0, n_steps, (n_batches, half), device=dataset.device, generator=generator)  # [S, B/2]
    draws.t.copy_(torch.cat([t_half, n_steps - 1 - t_half], dim=1)[:, :batch_size])
    rows = draws.counts[-1]
    if rows < batch_size:  # the last, smaller batch pairs its own first (rows + 1) // 2 timesteps
        last = t_half[-1]
        draws.t[-1, :rows] = torch.cat([last[:(rows + 1) // 2], n_steps - 1 - last[:rows // 2]])
    draws.eps.normal_(generator=generator)


class LossReader:
    """Epoch mean losses, read on the host one epoch late: the CPU waits only for the epoch
    before the one just queued (long done by then), never for the GPU's current one."""

    SLOTS = 4  # pinned host scalars, reused in turn; at most 2 epochs are ever pending

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.pending: deque = deque()
        self.host = torch.empty(self.SLOTS, pin_memory=True) if self.cuda else None
        self.pushed = 0

    def push(self, loss_sum: torch.Tensor, n_batches: int) -> list:
        """Queue one epoch's summed loss; returns the means now on the host, oldest first."""
        if not self.cuda:  # the original's float(loss_sum) / len(loader), bit for bit
            return [float(loss_sum) / n_batches]
        slot = self.host[self.pushed % self.SLOTS]
        slot.copy_(loss_sum / n_batches, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        self.pending.append((slot, event))
        self.pushed += 1
        return self.pop(keep=1)

    def pop(self, keep: int = 0) -> list:
        """Wait for all but the ``keep`` newest epochs and return their means."""
        ready = []
        while len(self.pending) > keep:
            slot, event = self.pending.popleft()
            event.synchronize()  # an event, not the stream: no sync-debug error, no wait on newer work
            ready.append(float(slot))
        return ready


@contextmanager
def _deterministic_algorithms():
    """Deterministic algorithms while the compiled loss is lowered and run: Inductor then leaves the
    embedding gradients' scatter-add to ATen's deterministic index_put instead of atomic adds,
    whose float sums differ from run to run. Restored after, so the caller's setting stands."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


class TrainSteps:
    """The optimizer step shared by every backend: backward, clip, learning rate, Adam, EMA."""

    def __init__(self, model: nn.Module, ema: nn.Module | None, optimizer: torch.optim.Optimizer,
                 lr_table: torch.Tensor | None, clip_norm: float, ema_decay: float, schedule, draws: EpochDraws,
                 cut_rows: bool = True, precision: str = "fp32"):
        self.model, self.ema, self.optimizer, self.draws, self.schedule = model, ema, optimizer, draws, schedule
        # bf16: the loss (forward, and so its backward) under autocast; weights, gradients and Adam stay fp32
        device_type = draws.x_0.device.type
        self.loss_context = (lambda: torch.autocast(device_type, torch.bfloat16)) if precision == "bf16" \
            else contextlib.nullcontext
        # eager: each batch cut to its rows and the original loss; False (a rank's shard, which may hold
        # only padding) the padded, weighted loss
        self.cut_rows = cut_rows
        self.params = list(model.parameters())
        self.ema_params = None if ema is None else list(ema.parameters())
        self.clip_norm, self.ema_decay = clip_norm, ema_decay
        self.lr_table = lr_table  # [steps] float32 on the device, or None: a constant rate
        self.tensor_lr = isinstance(optimizer.param_groups[0]["lr"], torch.Tensor)
        device = draws.t.device
        self.step_index = torch.zeros((), dtype=torch.long, device=device)  # steps done, for the schedule
        self.loss_sum = torch.zeros((), device=device)

    def set_step(self, step: int) -> None:
        self.step_index.fill_(step)

    def update(self, loss: torch.Tensor, step: int | None) -> None:
        """One optimizer step on ``loss``; ``step`` is the host step count (None inside a graph)."""
        self.optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, self.clip_norm)
        if self.lr_table is not None:
            if self.tensor_lr:  # on the device: capturable, no host value
                rate = torch.index_select(self.lr_table, 0, self.step_index.view(1))  # [1]; t[tensor] would sync
                self.optimizer.param_groups[0]["lr"].copy_(rate.view(()))
            else:
                self.optimizer.param_groups[0]["lr"] = float(self.lr_table[step])
        self.optimizer.step()
        self.step_index += 1
        if self.ema_params is not None:
            with torch.no_grad():
                torch._foreach_lerp_(self.ema_params, self.params, 1.0 - self.ema_decay)
        self.loss_sum += loss.detach()

    def padded_loss(self, i: int) -> torch.Tensor:
        d, s = self.draws, self.schedule
        return weighted_loss(self.model, d.x_0[i], d.t[i], d.eps[i], d.weight[i], s.alphas_bar_sqrt,
                             s.one_minus_alphas_bar_sqrt)


class EagerRunner:
    """Step by step, each batch cut to its rows: the original loop's operations."""

    def __init__(self, steps: TrainSteps):
        self.steps = steps

    def run_epoch(self, first_step: int, should_stop) -> bool:
        """One epoch's steps; False when ``should_stop()`` asked to stop (after a step)."""
        for i in range(len(self.steps.draws.counts)):
            self._step(i, first_step + i)
            if should_stop is not None and should_stop():
                return False
        return True

    def _step(self, i: int, step: int) -> None:
        s, d, rows = self.steps, self.steps.draws, self.steps.draws.counts[i]
        with s.loss_context():
            loss = s.padded_loss(i) if not s.cut_rows else \
                loss_from_draws(s.model, d.x_0[i, :rows], d.t[i, :rows], d.eps[i, :rows], s.schedule)
        s.update(loss.float(), step)


class CompiledRunner(EagerRunner):
    """The padded loss compiled once (Dynamo traces forward, AOTAutograd the backward); the
    optimizer step stays eager. One shape for every batch: no recompiles. Bit-reproducible on
    the CPU (deterministic algorithms); on CUDA Inductor's atomic adds in the embedding gradient
    make runs (and resumed runs) agree to float tolerance only."""

    def __init__(self, steps: TrainSteps):
        super().__init__(steps)
        # Dynamo cannot trace a DDP model's forward (its reducer hooks and logging) in one graph: with
        # DDP the graph breaks there, the loss around it is compiled and DDP's forward runs as Python.
        data_parallel = isinstance(steps.model, torch.nn.parallel.DistributedDataParallel)
        self.compiled = torch.compile(own_code(weighted_loss), fullgraph=not data_parallel, dynamic=False)
        self.compile_s = None  # the first (compiling) call's seconds, reported apart

    def run_epoch(self, first_step: int, should_stop) -> bool:
        if self.steps.draws.t.device.type != "cpu":  # cuBLAS would warn on every matmul without a config
            return super().run_epoch(first_step, should_stop)
        with _deterministic_algorithms():  # bit-reproducible runs, so --resume continues bit for bit
            return super().run_epoch(first_step, should_stop)

    def _step(self, i: int, step: int) -> None:
        s, d, sched = self.steps, self.steps.draws, self.steps.schedule
        start = time.perf_counter() if self.compile_s is None else 0.0
        loss = self.compiled(s.model, d.x_0[i], d.t[i], d.eps[i], d.weight[i], sched.alphas_bar_sqrt,
                             sched.one_minus_alphas_bar_sqrt)
        s.update(loss, step)
        if self.compile_s is None:  # the first step compiles the forward and (lazily) the backward
            if d.t.device.type == "cuda":
                torch.cuda.synchronize()
            self.compile_s = time.perf_counter() - start


class GraphRunner:
    """Chunks of up to MAX_GRAPH_STEPS steps captured as CUDA graphs and replayed.

    The first epoch runs eagerly (padded, on a side stream, as capture requires): it creates
    Adam's state and warms cuBLAS, and its steps are real ones. A graph reads its batches from
    static chunk buffers; each replay's batches are copied in first (four small device copies).
    """

    def __init__(self, steps: TrainSteps):
        self.steps = steps
        self.chunk = min(len(steps.draws.counts), MAX_GRAPH_STEPS)
        self.graphs: dict = {}  # chunk length -> CUDAGraph
        self.buffers: EpochDraws | None = None
        self.capture_s = 0.0  # seconds spent capturing, reported apart

    def run_epoch(self, first_step: int, should_stop) -> bool:
        if self.buffers is None:
            self._warm_up()
            return should_stop is None or not should_stop()
        d = self.steps.draws
        for start in range(0, len(d.counts), self.chunk):
            length = min(self.chunk, len(d.counts) - start)
            if self.buffers is not d:  # an epoch of several chunks: this one's batches into the static buffers
                for name in ("x_0", "t", "eps", "weight"):
                    getattr(self.buffers, name)[:length].copy_(getattr(d, name)[start:start + length])
            if length not in self.graphs:
                self.graphs[length] = self._capture(length)
            self.graphs[length].replay()
            if should_stop is not None and should_stop():
                return False
        return True

    def _warm_up(self) -> None:
        s, d = self.steps, self.steps.draws
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*capturable=True.*")  # outside a capture, on purpose
            for i in range(len(d.counts)):
                s.update(s.padded_loss(i), None)
        torch.cuda.current_stream().wait_stream(side)
        n = self.chunk
        if n == len(d.counts):  # one graph per epoch reads the epoch's draws, written in place
            self.buffers = d
        else:
            self.buffers = EpochDraws(d.x_0[:n].clone(), d.t[:n].clone(), d.eps[:n].clone(), d.weight[:n].clone(),
                                      d.counts[:n])

    def _capture(self, length: int) -> torch.cuda.CUDAGraph:
        start = time.perf_counter()
        s, epoch_draws = self.steps, self.steps.draws
        graph = torch.cuda.CUDAGraph()
        s.optimizer.zero_grad()  # gradients are then allocated in the graph's pool
        s.draws = self.buffers
        try:
            with torch.cuda.graph(graph):
                for i in range(length):
                    s.update(s.padded_loss(i), None)
        finally:
            s.draws = epoch_draws
        self.capture_s += time.perf_counter() - start
        return graph


RUNNERS = {"eager": EagerRunner, "compile": CompiledRunner, "cudagraph": GraphRunner}


def make_optimizer(model: nn.Module, lr: float, device: torch.device,
                   capturable: bool = False) -> torch.optim.Optimizer:
    """Adam as the original builds it on the CPU. On CUDA the fused kernel (one launch per step),
    with the rate a device tensor the schedule writes in place; ``capturable`` for CUDA graphs.
    The fused kernel ignores ``capturable`` (its step counts live on the device either way), so
    eager, compiled and captured steps run the same update."""
    if device.type == "cuda":
        return torch.optim.Adam(model.parameters(), lr=torch.tensor(lr, device=device), fused=True,
                                capturable=capturable)
    return torch.optim.Adam(model.parameters(), lr=lr)


def learning_rate_on(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Adam's rate a device tensor on CUDA, else a float; a loaded state dict keeps it as saved (a host sync)."""
    for group in optimizer.param_groups:
        group["lr"] = torch.tensor(float(group["lr"]), device=device) if device.type == "cuda" else float(group["lr"])


def lr_table(kind: str, lr: float, warmup_steps: int, total_steps: int, device: torch.device) -> torch.Tensor | None:
    """Learning rate of every step ([total_steps] float32), or None for a constant rate.

    ``cosine``: linear warm-up over ``warmup_steps``, then half a cosine down to 0 at the end
    (Loshchilov & Hutter, "SGDR", 2017). ``constant``: the original's fixed rate (warm-up
    optional).
    """
    if kind == "constant" and warmup_steps == 0:
        return None
    step = torch.arange(total_steps, dtype=torch.float64)
    rate = torch.clamp((step + 1) / max(warmup_steps, 1), max=1.0) * lr
    if kind == "cosine":
        rate = rate * 0.5 * (1 + torch.cos(math.pi * step / max(total_steps, 1)))
    return rate.float().to(device)
