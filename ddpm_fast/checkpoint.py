"""One-file checkpoints: weights, model config, schedule config, training metadata and, for
a checkpoint written by ``train``, the state to resume it (optimizer, RNG, losses).

Written through a temporary file and a rename (``_io``), so a failure never damages the
previous checkpoint. Read with ``weights_only=True`` (a checkpoint cannot run code), and
checked: every problem is a ValueError that names the file and what is wrong with it.
"""
from __future__ import annotations

import math
import os
import warnings
from importlib import resources

import torch

from ._checks import check_device
from ._io import atomic_path
from ._values import one_line
from .constants import PRETRAINED
from .model import MLPDiffusion
from .schedule import Schedule, make_schedule

FORMAT = "ddpm-fast-checkpoint"
VERSION = 1
# The bundled models (docs/training.md: how each was trained): the original recipe's, bit-reproducible,
# and the best the package trains.


def save_checkpoint(path, model: MLPDiffusion, schedule: Schedule, metadata: dict | None = None,
                    train_state: dict | None = None) -> None:
    """Write a checkpoint atomically. ``train_state`` (from ``TrainResult.train_state()``) makes
    it resumable by ``train(..., resume=...)``."""
    payload = {
        "format": FORMAT, "version": VERSION,
        "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "model_config": {"n_steps": model.config.n_steps, "num_units": model.config.num_units},
        "schedule_config": schedule.config(),
        "metadata": metadata or {},
    }
    if train_state is not None:
        payload["train_state"] = train_state
    with atomic_path(path) as temp:
        torch.save(payload, temp)


def _what_is_wrong(path: str, err: Exception) -> str:
    with open(path, "rb") as f:
        head = f.read(8)
    if not head:
        return "the file is empty (0 bytes)"
    if not head.startswith(b"PK") and not head.startswith(b"\x80"):  # zip (torch.save) or pickle
        return f"not a file written by torch.save (it starts with {head!r})"
    if "Weights only load failed" in str(err):
        return ("it holds Python objects other than tensors, numbers, strings and containers, "
                "which a safe load (weights_only=True) refuses: loading them could run code")
    detail = one_line(err)
    return f"truncated or damaged ({type(err).__name__}{': ' + detail if detail else ''})"


def _read(path: str, map_location):
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    if os.path.isdir(path):
        raise ValueError(f"checkpoint {path!r} is a directory, not a file")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before failing: one line is enough
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated and foreign files fail in many ways inside torch.load
        raise ValueError(f"{path!r} is not a readable checkpoint: {_what_is_wrong(path, err)}") from err


def _config_from_state_dict(path: str, state: dict) -> dict:
    """Model config of a plain state dict saved by the original code."""
    weight = state.get("step_embeddings.0.weight")
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        raise ValueError(f"{path!r} is neither a ddpm-fast checkpoint nor an MLPDiffusion state dict: "
                         "no [n_steps, num_units] 'step_embeddings.0.weight'")
    n_steps, num_units = weight.shape
    return {"n_steps": int(n_steps), "num_units": int(num_units)}


def _field(path: str, payload: dict, key: str, kind: type):
    if key not in payload:
        raise ValueError(f"{path!r} is a damaged ddpm-fast checkpoint: it has no {key!r}")
    if not isinstance(payload[key], kind):
        raise ValueError(f"{path!r} is a damaged ddpm-fast checkpoint: {key!r} is a "
                         f"{type(payload[key]).__name__}, not a {kind.__name__}")
    return payload[key]


def _check_finite(path: str, state: dict) -> None:
    bad = [name for name, value in state.items()
           if isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all()]
    if bad:
        raise ValueError(f"{path!r} holds NaN or infinite weights in {', '.join(bad)}: a model with them "
                         "samples NaN (the training that wrote it diverged)")


def _build(path: str, payload):
    """(model, schedule, metadata) on the CPU from a loaded payload, every part checked."""
    if not isinstance(payload, dict):
        raise ValueError(f"{path!r} holds a {type(payload).__name__}, not a checkpoint")
    if payload.get("format") == FORMAT:
        state = _field(path, payload, "model_state", dict)
        model_config = _field(path, payload, "model_config", dict)
        schedule_config = _field(path, payload, "schedule_config", dict)
        metadata = payload.get("metadata") or {}
        try:
            schedule = make_schedule(**schedule_config)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path!r}: its schedule_config {schedule_config} is not valid: {err}") from None
        if not isinstance(metadata, dict):
            raise ValueError(f"{path!r} is a damaged ddpm-fast checkpoint: 'metadata' is a "
                             f"{type(metadata).__name__}, not a dict")
    else:
        state, model_config = payload, _config_from_state_dict(path, payload)
        metadata = {"source": "plain state dict"}
        schedule = None
    try:
        model = MLPDiffusion(**model_config)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path!r}: its model_config {model_config} is not valid: {err}") from None
    schedule = schedule or make_schedule(model.config.n_steps)
    if schedule.n_steps != model.config.n_steps:
        raise ValueError(f"{path!r}: its schedule has {schedule.n_steps} steps but its model's step embeddings "
                         f"hold {model.config.n_steps}")
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError, ValueError) as err:
        raise ValueError(f"{path!r}: its weights do not fit MLPDiffusion(n_steps={model.config.n_steps}, "
                         f"num_units={model.config.num_units}): {one_line(err)}") from None
    _check_finite(path, state)
    model.tuned_grids = _tuned_grids(path, metadata.get("tuned_grids", {}), schedule.n_steps)
    model.student_plan = _student_plan(path, metadata.get("student_plan"), schedule.n_steps)
    return model, schedule, metadata


def _student_plan(path: str, spec, n_steps: int) -> dict | None:
    """metadata['student_plan'] of a distilled student, checked; None for any other model."""
    from .grids import check_explicit_grid
    from .samplers import check_student_plan
    if spec is None:
        return None
    try:
        spec = check_student_plan(spec)
        spec["timesteps"] = list(check_explicit_grid(spec["timesteps"], n_steps))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path!r}: metadata 'student_plan' is damaged: {err}") from None
    return spec


def _tuned_grids(path: str, grids, n_steps: int) -> dict:
    """metadata['tuned_grids'] checked: {sampler: {str(steps): strictly decreasing ints in [0, T)}}."""
    from .constants import SAMPLERS
    from .grids import check_explicit_grid
    if not isinstance(grids, dict):
        raise ValueError(f"{path!r}: metadata 'tuned_grids' is a {type(grids).__name__}, not a dict")
    checked = {}
    for sampler, by_steps in grids.items():
        if sampler not in SAMPLERS or not isinstance(by_steps, dict):
            raise ValueError(f"{path!r}: metadata 'tuned_grids' has an unknown sampler {sampler!r} or a "
                             f"damaged entry for it")
        checked[sampler] = {}
        for steps, timesteps in by_steps.items():
            try:
                grid = check_explicit_grid(timesteps, n_steps)
            except (TypeError, ValueError) as err:
                raise ValueError(f"{path!r}: tuned grid {sampler} {steps}: {err}") from None
            if str(steps) != str(len(grid)):
                raise ValueError(f"{path!r}: tuned grid {sampler} {steps} holds {len(grid)} timesteps")
            checked[sampler][str(steps)] = list(grid)
    return checked


def add_tuned_grid(path, sampler: str, timesteps, details: dict | None = None, out=None) -> None:
    """Write the checkpoint at ``path`` again (to ``out``, default ``path``, atomically) with the
    grid ``timesteps`` of ``sampler`` in its metadata (and ``details`` of how it was found);
    everything else in the file, a training state included, is kept as it was."""
    path = os.fsdecode(path)
    payload = _read(path, "cpu")
    _build(path, payload)  # a sound checkpoint of this package, before anything is written
    if payload.get("format") != FORMAT:
        raise ValueError(f"{path!r} is a plain state dict: save it with save_checkpoint first")
    timesteps = [int(t) for t in timesteps]
    metadata = payload.setdefault("metadata", {})
    metadata.setdefault("tuned_grids", {}).setdefault(sampler, {})[str(len(timesteps))] = timesteps
    if details:
        metadata.setdefault("tuned_grids_details", {}).setdefault(sampler, {})[str(len(timesteps))] = details
    _build(path, payload)  # the new grid passes the same checks as on load
    with atomic_path(out or path) as temp:
        torch.save(payload, temp)


def load_checkpoint(path, map_location="cpu"):
    """Returns ``(model, schedule, metadata)``; also takes a plain state dict of the original code.

    Raises FileNotFoundError for a missing file, RuntimeError for a device this machine lacks,
    and ValueError naming the file and the fault for anything that is not a sound checkpoint
    (empty, truncated, foreign, missing parts, NaN or infinite weights).
    """
    path = os.fsdecode(path)
    device = check_device("cpu" if map_location is None else map_location)
    model, schedule, metadata = _build(path, _read(path, "cpu"))
    return model.to(device).eval(), schedule.to(device), metadata


def read_checkpoint(path):
    """``(model, schedule, metadata, train_state or None)`` on the CPU, every part but the state checked."""
    path = os.fsdecode(path)
    payload = _read(path, "cpu")
    model, schedule, metadata = _build(path, payload)
    return model, schedule, metadata, payload.get("train_state")


def load_train_state(path):
    """``(model, schedule, metadata, train_state)`` of a checkpoint written by ``train``, on the CPU."""
    path = os.fsdecode(path)
    model, schedule, metadata, train_state = read_checkpoint(path)
    if not isinstance(train_state, dict):
        raise ValueError(f"{path!r} has no training state to resume from (it was not written by "
                         "`ddpm-fast train`, or by a version before resuming existed)")
    expected = {"config": dict, "losses": list, "optimizer_state": dict, "rng_state": torch.Tensor}
    for key, kind in expected.items():
        if not isinstance(train_state.get(key), kind):
            raise ValueError(f"{path!r} has a damaged training state: {key!r} is "
                             f"{type(train_state.get(key)).__name__}, not {kind.__name__}")
    if train_state["rng_state"].dtype != torch.uint8:
        raise ValueError(f"{path!r} has a damaged training state: rng_state is {train_state['rng_state'].dtype}, "
                         "not torch.uint8")
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in train_state["losses"]):
        raise ValueError(f"{path!r} has a damaged training state: losses are not all finite numbers")
    return model, schedule, metadata, train_state


def pretrained_path(name: str = "seed") -> str:
    if name not in PRETRAINED:
        raise ValueError(f"unknown bundled model {name!r}; known: {', '.join(PRETRAINED)}")
    return str(resources.files("ddpm_fast") / "pretrained" / PRETRAINED[name])


def load_pretrained(name: str = "seed", device="cpu"):
    """``(model, schedule)`` of a bundled model: ``"seed"`` (the original recipe) or ``"best"``
    (``ddpm-fast train --recipe best``; docs/training.md). ``load_pretrained("cuda")``, a device first,
    is the older signature and loads ``"seed"`` there."""
    if name not in PRETRAINED and isinstance(name, (str, torch.device)) and device == "cpu":
        try:
            name, device = "seed", torch.device(name)
        except RuntimeError:
            pass  # neither a model nor a device: pretrained_path names the known models
    model, schedule, _ = load_checkpoint(pretrained_path(name), map_location=device)
    return model, schedule
