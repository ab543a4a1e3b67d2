"""The figures behind tests/tolerances.py's "bf16-cpu": cpu-fused bf16 against the float64
reference, 1,000 points, 3 draws of each sampler case and 100-step ddpm, seed and untrained models."""
import sys

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2] / "tests"))
import torch
from helpers import SAMPLER_CASES, parity_figures, reference_plan_f64

import ddpm_fast as D
from ddpm_fast.samplers import make_plan

model, sched = D.load_pretrained()
untrained = D.MLPDiffusion(100)
worst = {}
for name_m, m in (("seed model", model), ("untrained", untrained)):
    for case, kwargs in {"ddpm-100": {}, **SAMPLER_CASES}.items():
        for draw in range(3):
            g = torch.Generator().manual_seed(draw)
            plan = make_plan(sched, **kwargs)
            n = 1000
            x_T = torch.randn(n, 2, generator=g) * plan.prior_std
            noise = torch.randn(plan.steps, n, 2, generator=g)
            expected = reference_plan_f64(m, sched, x_T, noise, **kwargs)[-1]
            out = D.sample(m, n, x_T=x_T, noise=noise, backend="cpu-fused", precision="bf16", **kwargs)
            bulk, tail, _ = parity_figures(out, expected, "bf16")
            key = (name_m, case)
            w = worst.get(key, (0, 0))
            worst[key] = (max(w[0], float(bulk)), max(w[1], float(tail)))
for k, v in worst.items():
    print(k, "bulk %.2e worst %.2e" % v)
