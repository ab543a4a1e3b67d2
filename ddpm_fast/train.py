"""Training with the original recipe: Adam(1e-3), batch 128, shuffled, clip 1.0, 4000 epochs.

``train`` reproduces the original script bit for bit for a given seed: the model is
built, batches are shuffled and the loss draws its timesteps and noise from the
global torch RNG in the original order, and the periodic sample snapshots draw from
it too (as the original's plots did), so they are part of the stream.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field

import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler
from tqdm.auto import tqdm

from .data import make_dataset
from .diffusion import diffusion_loss, eager_loop
from .model import MLPDiffusion
from .schedule import Schedule, make_schedule

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


@dataclass
class TrainResult:
    model: MLPDiffusion
    schedule: Schedule
    config: TrainConfig
    losses: list[float]  # mean loss of each epoch
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)  # epoch -> [10, n, 2]
    wall_time_s: float = 0.0

    def metadata(self) -> dict:
        return {"train_config": asdict(self.config), "final_loss": self.losses[-1] if self.losses else None,
                "epochs_done": len(self.losses), "wall_time_s": self.wall_time_s,
                "torch_version": str(torch.__version__)}


def shuffled_batches(dataset: torch.Tensor, batch_size: int) -> DataLoader:
    """Batches in the order of ``DataLoader(dataset, batch_size, shuffle=True)``.

    The same samplers draw the same permutation from the global RNG; fetching a whole
    batch with one index instead of stacking rows one by one only saves time.
    """
    sampler = BatchSampler(RandomSampler(dataset), batch_size, drop_last=False)
    return DataLoader(dataset, batch_size=None, sampler=sampler)


def train(config: TrainConfig = TrainConfig(), dataset: torch.Tensor | None = None,
          progress: bool = True) -> TrainResult:
    if dataset is None:
        dataset = make_dataset(config.dataset, config.n_points, seed=config.seed)
    if config.batch_size < 1 or config.epochs < 0:
        raise ValueError(f"need batch_size >= 1 and epochs >= 0, got {config.batch_size}, {config.epochs}")
    schedule = make_schedule(config.n_steps, config.schedule_kind)
    torch.manual_seed(config.seed)
    model = MLPDiffusion(config.n_steps, config.num_units)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    loader = shuffled_batches(dataset, config.batch_size)
    snapshot_shape = (config.snapshot_points or dataset.shape[0], 2)

    result = TrainResult(model, schedule, config, losses=[])
    start = time.perf_counter()
    for epoch in tqdm(range(config.epochs), desc="train", unit="epoch", disable=not progress):
        loss_sum = torch.zeros(())
        for batch_x in loader:
            loss = diffusion_loss(model, batch_x, schedule)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_norm)
            optimizer.step()
            loss_sum += loss.detach()
        result.losses.append(float(loss_sum) / len(loader))
        if config.snapshot_every and epoch % config.snapshot_every == 0:
            with torch.no_grad():
                x_seq = eager_loop(model, snapshot_shape, schedule.betas, schedule.one_minus_alphas_bar_sqrt,
                                   None, None, True, None, keep=True)
            result.snapshots[epoch] = torch.stack(x_seq[10::10])  # x_seq[10], ..., x_seq[100]
            log.info("epoch %d: loss %.5f (last batch %.5f)", epoch, result.losses[-1], float(loss.detach()))
    result.wall_time_s = time.perf_counter() - start
    return result
