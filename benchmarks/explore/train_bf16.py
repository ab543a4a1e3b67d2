"""Does bf16 speed up a training step on this CPU? The fast recipe's step (batch
1,024, Adam, the loss of ddpm_fast.diffusion.weighted_loss), eager and compiled, fp32 and bf16 autocast."""
import contextlib
import json
import statistics
import time

import torch

import ddpm_fast as D
from ddpm_fast.diffusion import weighted_loss

torch.manual_seed(0)
model = D.MLPDiffusion(100)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
x0 = D.make_s_curve(1024, seed=0)
t = torch.randint(0, 100, (1024,))
e = torch.randn(1024, 2)
w = torch.full((1024,), 1 / 2048)
sched = D.make_schedule()
compiled = torch.compile(weighted_loss, fullgraph=True, dynamic=False)
for name, loss_fn in (("eager", weighted_loss), ("compile", compiled)):
    for precision in ("fp32", "bf16"):
        ctx = (lambda: torch.autocast("cpu", torch.bfloat16)) if precision == "bf16" else contextlib.nullcontext

        def step(ctx=ctx, loss_fn=loss_fn):
            opt.zero_grad(set_to_none=True)
            with ctx():
                loss = loss_fn(model, x0, t, e, w, sched.alphas_bar_sqrt, sched.one_minus_alphas_bar_sqrt)
            loss.backward()
            opt.step()
        for _ in range(5):
            step()
        times = []
        for _ in range(40):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        print(json.dumps({"loss": name, "precision": precision, "step_ms": round(statistics.median(times) * 1e3, 3)}),
              flush=True)
