"""``distill``: K-step students of a checkpoint, one file each (resumable; Ctrl-C saves the last step)."""
from __future__ import annotations

import json
import math
import os
import shlex
import signal
from dataclasses import fields

from ..constants import DISTILL_BACKENDS, DISTILL_METHODS, PRETRAINED, SAMPLERS
from . import options
from .common import Status
from .train import StopOnSignal

DISTILL_FLAGS = ("method", "iterations", "batch_size", "lr", "seed", "teacher_sampler", "teacher_steps", "timesteps",
                 "start_steps")


def add_parsers(sub, command) -> None:
    p = sub.add_parser("distill", help="distill a checkpoint into students that sample in 1-4 model calls",
                       description="Distill a checkpoint into K-step students, one per --steps value, each written "
                                   "to --out/distill-K.pt with its own plan: `ddpm-fast sample --checkpoint "
                                   "DIR/distill-K.pt` then takes exactly K model calls. Ctrl-C (or SIGTERM) saves "
                                   "the last step; --resume continues step for step.",
                       formatter_class=options.HelpFormatter)
    p.add_argument("--checkpoint", default="best",
                   help=f"the teacher: a checkpoint file or a bundled model ({', '.join(PRETRAINED)}) (default: best)")
    p.add_argument("--steps", default="4,2,1", help="the students' model calls, comma-separated (default: 4,2,1)")
    p.add_argument("--out", default="runs/distill", help="directory for distill-K.pt (default: runs/distill)")
    p.add_argument("--method", choices=DISTILL_METHODS,
                   help="trajectory: copy the teacher's few-step trajectories (the best measured); progressive: "
                        "halve DDIM steps round by round (Salimans & Ho 2022) (default: trajectory)")
    p.add_argument("--iterations", type=options.positive_int,
                   help="optimizer steps per student (progressive: per halving round) (default: 3000)")
    p.add_argument("--batch-size", type=options.positive_int,
                   help="trajectories (or noised data points) per step (default: 2048)")
    p.add_argument("--lr", type=float, help="Adam's learning rate, cosine to 0 (default: 0.001)")
    p.add_argument("--seed", type=options.non_negative_int, help="seed of every draw (default: 0)")
    p.add_argument("--teacher-sampler", choices=SAMPLERS,
                   help="trajectory: the teacher's solver (default: dpm++2m)")
    p.add_argument("--teacher-steps", type=options.positive_int, help="trajectory: its steps (default: 12)")
    p.add_argument("--timesteps", type=lambda text: options.int_list(text, "--timesteps"),
                   help="trajectory, one --steps value: the student's timesteps, comma-separated, a subset of the "
                        "teacher's (default: evenly spread over them)")
    p.add_argument("--start-steps", type=options.positive_int,
                   help="progressive: the first teacher's DDIM steps, K x 2^r (default: the largest up to 64)")
    p.add_argument("--device", type=options.device, default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    p.add_argument("--backend", choices=DISTILL_BACKENDS, default="eager",
                   help="eager, or compile (the student's loss through torch.compile) (default: eager)")
    p.add_argument("--resume", action="store_true", help="continue the students in --out (finished ones are kept)")
    p.add_argument("--overwrite", action="store_true", help="replace students already in --out")
    p.add_argument("--save-every", type=options.non_negative_int, default=500,
                   help="steps between resumable saves, 0: only at the end or on Ctrl-C (default: 500)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or status lines")
    p.set_defaults(func=cmd_distill)


def _configs(args) -> list:
    """One DistillConfig per --steps value, every flag checked before any work."""
    from ..distillation import DistillConfig
    given = {name: getattr(args, name) for name in DISTILL_FLAGS if getattr(args, name) is not None}
    steps = options.int_list(args.steps, "--steps")
    if len(set(steps)) != len(steps):
        raise ValueError(f"--steps {args.steps}: each student once")
    if "timesteps" in given and len(steps) != 1:
        raise ValueError("--timesteps are one student's: give one --steps value with them")
    known = {f.name for f in fields(DistillConfig)}
    return [DistillConfig(steps=k, **{name: value for name, value in given.items() if name in known}) for k in steps]


def _plan(paths: dict, args, say: Status) -> dict:
    """steps -> (path, resume or None) for the students still to distill; finished ones are said and left."""
    from ..distillation import read_distill_state
    todo = {}
    for k, path in paths.items():
        if not os.path.exists(path):
            todo[k] = (path, None)
        elif args.overwrite:
            todo[k] = (path, None)
        elif not args.resume:
            raise FileExistsError(17, "holds a student: pass --resume to continue an unfinished one or --overwrite "
                                      "to distill it again", path)
        else:
            try:
                todo[k] = (path, read_distill_state(path))
                say(f"resuming {path} after {todo[k][1][1]['iteration']} steps")
            except ValueError as err:
                if "holds no distillation state" not in str(err):
                    raise
                say(f"{path} is finished: kept")
    return todo


def _distill_one(args, config, path: str, resume, stop: StopOnSignal, say: Status):
    """One student, saved every --save-every steps, on a stop, and finished (without its state) at the end."""
    from ..checkpoint import save_checkpoint
    from ..distillation import distill

    def save(result):
        loss = result.final_loss()
        if loss is not None and not math.isfinite(loss):
            return  # a diverged run's weights: the previous save stays (said below, after the run)
        stop.saving = True
        try:
            save_checkpoint(path, result.student, result.schedule, result.metadata(),
                            train_state=None if result.done else result.train_state())
        finally:
            stop.saving = False

    settings = {f.name: getattr(config, f.name) for f in fields(config) if f.name not in ("steps", "method")}
    say(f"distilling a {config.steps}-step student of {args.checkpoint} into {path} ({config.method}, "
        f"{config.total_iterations} steps on {args.device}, {args.backend})")
    result = distill(args.checkpoint, config.steps, config.method, device=args.device, backend=args.backend,
                     progress=not args.quiet, resume=resume, should_stop=lambda: stop.requested, on_checkpoint=save,
                     checkpoint_every=args.save_every, **settings)
    loss = result.final_loss()
    if loss is not None and not math.isfinite(loss):
        raise ValueError(f"distillation diverged: the loss of the last steps is {loss}; {path} keeps its last "
                         "periodic save (try a lower --lr)")
    save(result)
    return result


def _row(path: str, result) -> dict:
    return {"checkpoint": path, "steps": result.config.steps, "method": result.config.method,
            "timesteps": result.student.student_plan["timesteps"], "iterations_done": result.iteration,
            "iterations": result.config.total_iterations, "final_loss": result.final_loss(),
            "wall_time_s": round(result.wall_time_s, 1), "compile_s": round(result.compile_s, 1)}


def cmd_distill(args) -> int:
    from dataclasses import replace

    from .._io import check_outputs
    from ..distillation import DistillConfig
    say = Status(args.command, args.quiet)
    if args.resume and args.overwrite:
        raise ValueError("--resume continues the students in --out and --overwrite replaces them: pass one")
    configs = _configs(args)
    paths = dict(zip([c.steps for c in configs],
                     check_outputs(args.out, [f"distill-{c.steps}.pt" for c in configs])))
    todo = _plan(paths, args, say)
    given = {name: getattr(args, name) for name in DISTILL_FLAGS if getattr(args, name) is not None}
    rows = []
    with StopOnSignal("distill", "the last step") as stop:
        for config in configs:
            if config.steps not in todo:
                continue
            path, resume = todo[config.steps]
            if resume is not None:  # the run's own settings, with any flag given (which must agree)
                config = replace(DistillConfig(**resume[1]["config"]), **given)
            result = _distill_one(args, config, path, resume, stop, say)
            rows.append(_row(path, result))
            if result.interrupted:
                command = f"ddpm-fast distill --checkpoint {shlex.quote(args.checkpoint)} --steps {args.steps} " \
                          f"--out {shlex.quote(args.out)} --resume"
                print(json.dumps({"students": rows, "resume_with": command}, indent=2))
                say(f"stopped after {result.iteration} of {result.config.total_iterations} steps; resume with: "
                    f"{command}", always=True)
                return 128 + (stop.signum or signal.SIGTERM)
    print(json.dumps({"students": rows}, indent=2))
    return 0
