"""Time to quality of the fast recipe on this CPU, fp32 against the same eager
loop with its loss under bf16 autocast (the optimizer and weights stay float32)."""
import json

import torch

import ddpm_fast as D
import ddpm_fast.training.steps as steps
from ddpm_fast.time_to_quality import time_to_quality

real = steps.loss_from_draws


def bf16_loss(*args, **kwargs):
    with torch.autocast("cpu", torch.bfloat16):
        return real(*args, **kwargs).float()


for precision in ("fp32", "bf16"):
    steps.loss_from_draws = bf16_loss if precision == "bf16" else real
    for row in time_to_quality(D.RECIPES["fast"]):
        print(json.dumps({"precision": precision, **{k: round(v, 5) if isinstance(v, float) else v
                                                     for k, v in row.items()}}), flush=True)
