"""Distillation methods compared on the bundled `best` model: SWD (median of 3 draws of 10,000 points,
the package's bar) and wall time of each student, one JSON line each.

    python benchmarks/explore/distill_methods.py --out benchmarks/results/distill_methods.jsonl

Rows: trajectory (the default config), progressive (Salimans & Ho, 64-step DDIM halved), a tuned student
grid (the trajectory method on other subsets of the teacher's timesteps) and other teachers. A grid is
chosen by `held_out_swd`: the tune-steps objective (mean SWD over two sampling seeds, 20,000 points
each, against data drawn with a seed the tests and `evaluate` never use), so the bar's own draws
(`swd`: seeds 0-2, as tests/test_quality.py) do not pick it.
"""
import argparse
import json
import os
import platform

import torch

import ddpm_fast as D
from ddpm_fast.sweep import median_swd
from ddpm_fast.tuning import TUNE_DATA_SEED, grid_objective

CASES = [
    *({"method": "trajectory", "steps": k} for k in (4, 2, 1)),
    *({"method": "progressive", "steps": k} for k in (4, 2, 1)),
    {"method": "trajectory", "steps": 2, "timesteps": [99, 52]},
    {"method": "trajectory", "steps": 2, "timesteps": [99, 13]},
    {"method": "trajectory", "steps": 2, "timesteps": [99, 21]},
    {"method": "trajectory", "steps": 2, "timesteps": [99, 6]},
    {"method": "trajectory", "steps": 2, "timesteps": [99, 2]},
    {"method": "trajectory", "steps": 4, "timesteps": [99, 62, 36, 13]},
    {"method": "trajectory", "steps": 4, "timesteps": [99, 44, 21, 6]},
    {"method": "trajectory", "steps": 4, "timesteps": [99, 29, 13, 2]},
    {"method": "trajectory", "steps": 1, "teacher_sampler": "unipc", "teacher_steps": 10},
    {"method": "trajectory", "steps": 1, "teacher_sampler": "dpm++2m", "teacher_steps": 40},
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--iterations", type=int, default=3000)
    args = parser.parse_args()
    held_out = D.make_dataset("s_curve", 20_000, seed=TUNE_DATA_SEED)
    done = set()
    if os.path.exists(args.out):  # resumable: cases already measured are kept
        with open(args.out) as f:
            done = {json.dumps(json.loads(line)["case"], sort_keys=True) for line in f}
    for case in CASES:
        if json.dumps(case, sort_keys=True) in done:
            continue
        options = {k: v for k, v in case.items() if k not in ("method", "steps")}
        result = D.distill("best", case["steps"], case["method"], iterations=args.iterations, progress=False,
                           **options)
        row = {"case": case, "iterations": result.iteration, "timesteps": result.student.student_plan["timesteps"],
               "swd": median_swd(result.student, result.schedule), "wall_s": round(result.wall_time_s, 1),
               "held_out_swd": grid_objective(result.student, result.schedule, "ddim",
                                              result.student.student_plan["timesteps"], held_out, 20_000),
               "final_loss": result.final_loss(), "cpu": platform.processor() or platform.machine(),
               "threads": torch.get_num_threads(), "torch": torch.__version__}
        print(json.dumps(row), flush=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
