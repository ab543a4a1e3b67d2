"""ddpm-fast: the S-curve DDPM, exact on the reference path and fast on the others.

The public names below load on first use (PEP 562), so ``import ddpm_fast`` and the command
line's ``--help`` start without importing torch or scikit-learn.
"""
import importlib as _importlib

__version__ = "0.1.0"

# public name -> the module that defines it
_HOMES = {
    "available_backends": "backends", "backend_names": "backends",
    "load_checkpoint": "checkpoint", "load_pretrained": "checkpoint", "save_checkpoint": "checkpoint",
    "DATASETS": "data", "make_dataset": "data", "make_s_curve": "data",
    "DistillConfig": "distillation", "DistillResult": "distillation", "distill": "distillation",
    "read_distill_state": "distillation",
    "diffusion_loss": "diffusion", "p_sample": "diffusion", "q_sample": "diffusion",
    "quality_report": "metrics", "rbf_mmd": "metrics", "sliced_wasserstein": "metrics",
    "MLPDiffusion": "model",
    "SAMPLERS": "samplers", "SamplerPlan": "samplers", "make_plan": "samplers",
    "p_sample_loop": "sampling", "sample": "sampling",
    "Schedule": "schedule", "make_schedule": "schedule",
    "load_samples": "shards",
    "RECIPES": "training.config", "TrainConfig": "training.config",
    "TrainResult": "training.loop", "train": "training.loop",
}


def available_samplers() -> list:
    """The sampler names ``sample(..., sampler=...)`` takes; every backend runs every one."""
    from .constants import SAMPLERS

    return list(SAMPLERS)


def __getattr__(name: str):
    home = _HOMES.get(name)
    if home is None:  # a submodule, as ``ddpm_fast.backends`` after a plain ``import ddpm_fast``
        try:
            return _importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module 'ddpm_fast' has no attribute {name!r}") from None
    value = getattr(_importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list:
    return sorted({*(n for n in globals() if not n.startswith("_")), "__version__", *_HOMES})


__all__ = [
    "SAMPLERS", "SamplerPlan", "available_samplers", "make_plan",
    "DATASETS", "RECIPES", "MLPDiffusion", "Schedule", "TrainConfig", "TrainResult", "available_backends",
    "backend_names", "DistillConfig", "DistillResult", "distill", "read_distill_state",
    "diffusion_loss", "load_checkpoint", "load_samples", "load_pretrained", "make_dataset",
    "make_s_curve", "make_schedule", "p_sample", "p_sample_loop", "q_sample", "quality_report", "rbf_mmd", "sample",
    "save_checkpoint", "sliced_wasserstein", "train",
]
