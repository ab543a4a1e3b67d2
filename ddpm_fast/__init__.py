"""ddpm-fast: the S-curve DDPM, exact on the reference path and fast on the others."""
__version__ = "0.1.0"

from .backends import available_backends, backend_names  # noqa: E402
from .checkpoint import load_checkpoint, load_pretrained, save_checkpoint  # noqa: E402
from .data import DATASETS, make_dataset, make_s_curve  # noqa: E402
from .diffusion import diffusion_loss, p_sample, p_sample_loop, q_sample  # noqa: E402
from .metrics import quality_report, rbf_mmd, sliced_wasserstein  # noqa: E402
from .model import MLPDiffusion  # noqa: E402
from .samplers import SAMPLERS, SamplerPlan, make_plan  # noqa: E402
from .sampling import sample  # noqa: E402
from .schedule import Schedule, make_schedule  # noqa: E402
from .shards import load_samples  # noqa: E402
from .train import RECIPES, TrainConfig, TrainResult, train  # noqa: E402



def available_samplers() -> list:
    """The sampler names ``sample(..., sampler=...)`` takes; every backend runs every one."""
    return list(SAMPLERS)


__all__ = [
    "SAMPLERS", "SamplerPlan", "available_samplers", "make_plan",
    "DATASETS", "RECIPES", "MLPDiffusion", "Schedule", "TrainConfig", "TrainResult", "available_backends", "backend_names",
    "diffusion_loss", "load_checkpoint", "load_samples", "load_pretrained", "make_dataset", "make_s_curve", "make_schedule",
    "p_sample", "p_sample_loop", "q_sample", "quality_report", "rbf_mmd", "sample", "save_checkpoint",
    "sliced_wasserstein", "train",
]
