"""The S-curve DDPM noise predictor: an MLP with additive per-layer step embeddings.

Layout (module names and order) is the original code's, so its state dicts load
unchanged: ``linears.{0,2,4,6}`` are the Linear layers, ``linears.{1,3,5}`` the ReLUs,
``step_embeddings.{0,1,2}`` the embedding tables. Ho et al., "Denoising Diffusion
Probabilistic Models" (2020), https://arxiv.org/abs/2006.11239.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ._values import check_count


@dataclass(frozen=True)
class ModelConfig:
    n_steps: int = 100
    num_units: int = 128


class MLPDiffusion(nn.Module):
    def __init__(self, n_steps: int, num_units: int = 128):
        super().__init__()
        n_steps, num_units = check_count(n_steps, "n_steps", 1), check_count(num_units, "num_units", 1)
        if (3 * n_steps + 2 * num_units + 8) * num_units > 2 ** 31:  # 8 GB of float32 parameters
            raise ValueError(f"MLPDiffusion({n_steps}, {num_units}) would hold over 2**31 parameters")
        self.config = ModelConfig(n_steps=n_steps, num_units=num_units)
        self.linears = nn.ModuleList([
            nn.Linear(2, num_units), nn.ReLU(),
            nn.Linear(num_units, num_units), nn.ReLU(),
            nn.Linear(num_units, num_units), nn.ReLU(),
            nn.Linear(num_units, 2),
        ])
        self.step_embeddings = nn.ModuleList([
            nn.Embedding(n_steps, num_units),
            nn.Embedding(n_steps, num_units),
            nn.Embedding(n_steps, num_units),
        ])
        # {sampler: {str(steps): [t_0, ..., t_{K-1}]}}: few-step grids searched for these weights
        # (ddpm-fast tune-steps), saved in the checkpoint's metadata; sample() uses them by default.
        self.tuned_grids: dict = {}
        # a distilled student's own plan, {"sampler", "timesteps", "prior"}: sample() runs it when no
        # sampler is named (ddpm_fast.distill); None for a model trained on data
        self.student_plan: dict | None = None

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        # x: [N, 2], t: [N] or [1] integer timesteps -> predicted noise [N, 2]
        for idx, embedding_layer in enumerate(self.step_embeddings):
            t_embedding = embedding_layer(t)  # [N or 1, H]
            x = self.linears[2 * idx](x)  # [N, H]
            x = x + t_embedding  # after the Linear, before the ReLU
            x = self.linears[2 * idx + 1](x)
        return self.linears[-1](x)  # [N, 2]


def model_n_steps(model: nn.Module) -> int | None:
    """The number of timesteps a model's embedding tables hold, or None if it has none."""
    embeddings = getattr(model, "step_embeddings", None)
    if embeddings is None or len(embeddings) == 0:
        return None
    return int(embeddings[0].num_embeddings)


def check_model_steps(model: nn.Module, n_steps: int) -> None:
    """The model's step embeddings, if it has them, hold the schedule's ``n_steps`` timesteps."""
    model_steps = model_n_steps(model)
    if model_steps is not None and model_steps != n_steps:
        raise ValueError(f"the model's step embeddings hold {model_steps} timesteps but the "
                         f"schedule has {n_steps}")


def model_device(model: nn.Module) -> torch.device | None:
    param = next(iter(model.parameters()), None)
    return None if param is None else param.device
