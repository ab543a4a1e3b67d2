"""One-file checkpoints: weights, model config, schedule config and training metadata."""
from __future__ import annotations

import os
from importlib import resources

import torch

from .model import MLPDiffusion
from .schedule import Schedule, make_schedule

FORMAT = "ddpm-fast-checkpoint"
VERSION = 1
PRETRAINED = "s_curve.pt"


def save_checkpoint(path, model: MLPDiffusion, schedule: Schedule, metadata: dict | None = None) -> None:
    payload = {
        "format": FORMAT, "version": VERSION,
        "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "model_config": {"n_steps": model.config.n_steps, "num_units": model.config.num_units},
        "schedule_config": schedule.config(),
        "metadata": metadata or {},
    }
    torch.save(payload, path)


def _read(path, map_location):
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {os.fspath(path)!r} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated and foreign files fail in many ways inside torch.load
        raise ValueError(f"{os.fspath(path)!r} is not a readable checkpoint (truncated or not "
                         f"saved by torch.save): {err}") from err


def _config_from_state_dict(state: dict) -> dict:
    """Model config of a plain state dict saved by the original code."""
    try:
        n_steps, num_units = state["step_embeddings.0.weight"].shape
    except (KeyError, AttributeError, ValueError) as err:
        raise ValueError("not an MLPDiffusion state dict: no [n_steps, num_units] "
                         "'step_embeddings.0.weight'") from err
    return {"n_steps": int(n_steps), "num_units": int(num_units)}


def load_checkpoint(path, map_location="cpu"):
    """Returns ``(model, schedule, metadata)``; also takes a plain state dict of the original code."""
    payload = _read(path, map_location)
    if not isinstance(payload, dict):
        raise ValueError(f"{os.fspath(path)!r} holds a {type(payload).__name__}, not a checkpoint")
    if payload.get("format") == FORMAT:
        state, model_config = payload["model_state"], payload["model_config"]
        schedule = make_schedule(**payload["schedule_config"])
        metadata = payload.get("metadata", {})
    else:
        state, model_config = payload, _config_from_state_dict(payload)
        schedule = make_schedule(model_config["n_steps"])
        metadata = {"source": "plain state dict"}
    model = MLPDiffusion(**model_config)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"{os.fspath(path)!r}: weights do not fit MLPDiffusion{tuple(model_config.values())}: "
                         f"{err}") from err
    return model.to(map_location).eval(), schedule.to(map_location), metadata


def pretrained_path() -> str:
    return str(resources.files("ddpm_fast") / "pretrained" / PRETRAINED)


def load_pretrained(device="cpu"):
    """``(model, schedule)`` of the bundled S-curve model (see README for how it was trained)."""
    model, schedule, _ = load_checkpoint(pretrained_path(), map_location=device)
    return model, schedule
