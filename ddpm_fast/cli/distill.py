"""``distill``: K-step students of a checkpoint, one file each (resumable; Ctrl-C saves the last step)."""
from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import signal
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING

from ..constants import DATASETS, DISTILL_BACKENDS, DISTILL_METHODS, PRETRAINED, SAMPLERS
from . import options
from .common import Status
from .train import StopOnSignal

if TYPE_CHECKING:  # the package imports torch: the command line loads it only when a command runs
    from ..distillation import DistillConfig

TEACHERS = [name for name in PRETRAINED if not name.startswith("distill-")]  # the bundled students teach no one
DISTILL_FLAGS = ("method", "iterations", "batch_size", "lr", "seed", "teacher_sampler", "teacher_steps", "timesteps",
                 "start_steps", "dataset")


def add_parsers(sub, command) -> None:
    p = sub.add_parser("distill", help="distill a checkpoint into students that sample in 1-4 model calls",
                       description="Distill a checkpoint into K-step students, one per --steps value, each written "
                                   "to --out/distill-K.pt with its own plan: `ddpm-fast sample --checkpoint "
                                   "DIR/distill-K.pt` then takes exactly K model calls. Ctrl-C (or SIGTERM) saves "
                                   "the last step; --resume continues step for step.",
                       formatter_class=options.HelpFormatter)
    p.add_argument("--checkpoint", default="best",
                   help=f"the teacher: a checkpoint file or a bundled model ({', '.join(TEACHERS)}) (default: best)")
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
    p.add_argument("--timesteps", type=_timesteps,
                   help="trajectory, one --steps value: the student's timesteps, comma-separated, a subset of the "
                        "teacher's (default: evenly spread over them)")
    p.add_argument("--start-steps", type=options.positive_int,
                   help="progressive: the first teacher's DDIM steps, K x 2^r (default: the largest up to 64)")
    p.add_argument("--dataset", choices=DATASETS,
                   help="progressive: the data x_t is drawn from (default: the teacher's training data, else "
                        "s_curve)")
    p.add_argument("--device", type=options.device,
                   help="cpu, cuda or cuda:N (default: cpu; with --resume, the run's own)")
    p.add_argument("--backend", choices=DISTILL_BACKENDS,
                   help="eager, or compile (the student's loss through torch.compile) (default: eager; with "
                        "--resume, the run's own)")
    p.add_argument("--resume", action="store_true", help="continue the students in --out (finished ones are kept)")
    p.add_argument("--overwrite", action="store_true", help="replace students already in --out")
    p.add_argument("--save-every", type=options.non_negative_int, default=500,
                   help="steps between resumable saves, 0: only at the end or on Ctrl-C (default: 500)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or status lines")
    p.set_defaults(func=cmd_distill)


def _timesteps(text: str) -> list:
    """--timesteps: comma-separated integer timesteps (0 included)."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"comma-separated integer timesteps, got {text!r}") from None
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"timesteps are >= 0, got {text!r}")
    return values


_timesteps.__name__ = "timesteps"


def _configs(args) -> list:
    """One DistillConfig per --steps value, every flag checked before any work."""
    from ..distillation import DistillConfig
    given = _given(args)
    steps = options.int_list(args.steps, "--steps")
    if len(set(steps)) != len(steps):
        raise ValueError(f"--steps {args.steps}: each student once")
    if "timesteps" in given and len(steps) != 1:
        raise ValueError("--timesteps are one student's: give one --steps value with them")
    known = {f.name for f in fields(DistillConfig)}
    return [DistillConfig(steps=k, **{name: value for name, value in given.items() if name in known}) for k in steps]


@dataclass(frozen=True)
class StudentJob:
    """One student still to distill, every flag checked: what ``cmd_distill`` hands on."""
    config: DistillConfig
    path: str
    resume: tuple | None  # (student, state) of its unfinished run, or None for a new one
    device: str
    backend: str


def _given(args) -> dict:
    return {name: getattr(args, name) for name in DISTILL_FLAGS if getattr(args, name) is not None}


def _teacher_sha256(checkpoint: str) -> str:
    """--checkpoint loads and is no student (before any status line or work): its weights' sha256."""
    from ..distributed import tensors_sha256
    from .common import load
    model, _, _ = load(checkpoint, "cpu")
    if model.student_plan is not None:
        raise ValueError(f"--checkpoint {checkpoint} is a distilled student: distill from the model it was "
                         "distilled from")
    return tensors_sha256(model.state_dict().values())


def _check_student_file(path: str, steps: int, metadata: dict, args, teacher_sha256: str) -> None:
    """A file --resume keeps or continues holds a distilled student of these steps, teacher and flags."""
    from ..distillation import DistillConfig
    made = metadata.get("distill") or {}
    if metadata.get("student_plan") is None or not isinstance(made.get("config"), dict):
        raise ValueError(f"{path}: not a distilled student; pass --overwrite to replace it")
    if made["config"].get("steps") != steps:
        raise ValueError(f"{path} holds a {made['config'].get('steps')}-step student, not a {steps}-step one: "
                         "pass --overwrite to replace it")
    wanted = asdict(replace(DistillConfig(**made["config"]), **_given(args)))
    differ = [f"{k}: {made['config'].get(k)} then, {wanted[k]} now" for k in sorted(wanted)
              if wanted[k] != made["config"].get(k)]
    teacher = made.get("teacher") or {}
    if differ or teacher.get("sha256") != teacher_sha256:
        raise ValueError(f"{path} is a student of {teacher.get('source')!r} with other settings "
                         f"({'; '.join(differ) or f'another teacher than {args.checkpoint!r}'}): pass --overwrite "
                         "to distill it again")


def _jobs(args, configs: list, paths: dict, teacher_sha256: str, say: Status) -> tuple:
    """(the students still to distill, report rows of the finished ones --resume keeps)."""
    from ..checkpoint import read_checkpoint
    from ..distillation import DistillConfig, read_distill_state
    if args.resume and not any(os.path.exists(path) for path in paths.values()):
        raise FileNotFoundError(f"--resume: {args.out} holds none of {', '.join(map(os.path.basename, paths.values()))}"
                                " to continue (start without --resume)")
    jobs, kept = [], []
    for config in configs:
        path = paths[config.steps]
        if not os.path.exists(path) or args.overwrite:
            jobs.append(StudentJob(config, path, None, args.device or "cpu", args.backend or "eager"))
            continue
        if not args.resume:
            raise FileExistsError(17, "holds a student: pass --resume to continue an unfinished one or --overwrite "
                                      "to distill it again", path)
        _, _, metadata, state = read_checkpoint(path)
        _check_student_file(path, config.steps, metadata, args, teacher_sha256)
        if state is None:
            say(f"{path} is finished: kept")
            kept.append({"checkpoint": path, "steps": config.steps, "kept": "finished before"})
            continue
        student, state = read_distill_state(path)
        config = replace(DistillConfig(**state["config"]), **_given(args))  # the run's own, and any flag given
        jobs.append(StudentJob(config, path, (student, state), args.device or state.get("device", "cpu"),
                               args.backend or state.get("backend", "eager")))
        say(f"resuming {path} after {state['iteration']} steps")
    return jobs, kept


def _distill_one(args, job: StudentJob, stop: StopOnSignal, say: Status):
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

    config, path = job.config, job.path
    settings = {f.name: getattr(config, f.name) for f in fields(config) if f.name not in ("steps", "method")}
    say(f"distilling a {config.steps}-step student of {args.checkpoint} into {path} ({config.method}, "
        f"{config.total_iterations} steps on {job.device}, {job.backend})")
    result = distill(args.checkpoint, config.steps, config.method, device=job.device, backend=job.backend,
                     progress=not args.quiet, resume=job.resume, should_stop=lambda: stop.requested,
                     on_checkpoint=save, checkpoint_every=args.save_every, **settings)
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


def _resume_command(args) -> str:
    """The command that continues this one: its flags, and --resume."""
    words = ["ddpm-fast", "distill", "--checkpoint", args.checkpoint, "--steps", args.steps, "--out", args.out]
    for name, value in _given(args).items():
        words += [f"--{name.replace('_', '-')}", ",".join(map(str, value)) if isinstance(value, list) else str(value)]
    for flag, value in (("--device", args.device), ("--backend", args.backend)):
        words += [flag, value] if value else []
    if args.save_every != 500:
        words += ["--save-every", str(args.save_every)]
    return shlex.join([*words, "--resume"])


def _stopped(args, rows: list, stop: StopOnSignal, say: Status) -> int:
    command = _resume_command(args)
    print(json.dumps({"students": rows, "resume_with": command}, indent=2))
    say(f"stopped; resume with: {command}", always=True)
    return 128 + (stop.signum or signal.SIGTERM)


def cmd_distill(args) -> int:
    from .._io import check_outputs
    say = Status(args.command, args.quiet)
    if args.resume and args.overwrite:
        raise ValueError("--resume continues the students in --out and --overwrite replaces them: pass one")
    configs = _configs(args)
    paths = dict(zip([c.steps for c in configs],
                     check_outputs(args.out, [f"distill-{c.steps}.pt" for c in configs])))
    jobs, rows = _jobs(args, configs, paths, _teacher_sha256(args.checkpoint), say)
    with StopOnSignal("distill", "the last step") as stop:
        for job in jobs:
            if stop.requested:  # a stop during the previous student's last step or save: start no other
                return _stopped(args, rows, stop, say)
            result = _distill_one(args, job, stop, say)
            rows.append(_row(job.path, result))
            if result.interrupted:
                return _stopped(args, rows, stop, say)
    print(json.dumps({"students": rows}, indent=2))
    return 0
