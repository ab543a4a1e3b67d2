"""Sample quality in bf16 beside fp32 for each sampler at its default steps:
median SWD of 3 draws of 10,000 points (seeds 0-2) against fresh data, on cpu-fused (and eager fp32)."""
import json

import ddpm_fast as D
from ddpm_fast.sweep import median_swd

for name in ("seed", "best"):
    model, schedule = D.load_pretrained(name)
    for sampler in D.SAMPLERS:
        row = {"model": name, "sampler": sampler,
               "steps": D.make_plan(schedule, sampler, tuned_grids=model.tuned_grids).steps,
               "eager_fp32": median_swd(model, schedule, sampler=sampler, backend="eager")}
        for precision in ("fp32", "bf16"):
            row[f"cpu_fused_{precision}"] = median_swd(model, schedule, sampler=sampler, backend="cpu-fused",
                                                       precision=precision)
        print(json.dumps({k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
