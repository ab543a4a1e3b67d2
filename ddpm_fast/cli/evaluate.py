"""``evaluate`` (sample quality: one sampler, a --sweep of them, or --samples already drawn) and
``tune-steps`` (a few-step sampler's timesteps searched for a model)."""
from __future__ import annotations

import json
import os
import statistics

from ..constants import DATASETS, PRETRAINED, SAMPLERS
from . import options
from .common import Status, check_json_and_plot, check_plan, draw, load

SWEEP_ONLY = ("sampler", "steps", "prior", "eta", "grid")  # flags that --sweep chooses itself


def add_parsers(sub, command) -> None:
    p = command("evaluate", "SWD and MMD to fresh data, with the data-vs-data floor")
    options.add_common(p, 10_000, n_type=options.at_least_2)
    p.add_argument("--dataset", default="s_curve", choices=DATASETS, help="the data the model should match")
    p.add_argument("--draws", type=options.positive_int, default=3, help="independent draws; the median is reported")
    p.add_argument("--samples", help="score these points instead of sampling: a sharded run's folder "
                                     "(manifest checked) or a .npy file; --draws blocks of --n rows")
    p.add_argument("--sweep", action="store_true",
                   help="quality (SWD) and wall time vs number of steps for several samplers, as a table")
    p.add_argument("--sweep-samplers", default="ddpm,ddim,dpm++2m,unipc", help="--sweep: comma-separated samplers")
    p.add_argument("--sweep-steps", default="5,10,20,50,100", help="--sweep: comma-separated numbers of steps")
    p.add_argument("--sweep-students", default="",
                   help="--sweep: comma-separated distilled students (files, or bundled: distill-4,distill-2,"
                        "distill-1), a row 'student' on their own plans")
    p.add_argument("--json", help="--sweep: write the rows as JSON here (rewritten after every row)")
    p.add_argument("--plot", help="--sweep: write the quality and time vs steps picture here (PNG)")
    p.set_defaults(func=cmd_evaluate)

    p = command("tune-steps", "search a few-step sampler's integer timesteps for a model; save them with it")
    options.add_common(p, 20_000, sampler=False)
    p.add_argument("--sampler", default="dpm++2m", choices=("ddim", "dpm++2m", "unipc", "ddpm"),
                   help="the sampler whose grid is searched")
    p.add_argument("--steps", type=options.positive_int, default=5, help="sampler steps K")
    p.add_argument("--max-evaluations", type=options.positive_int, default=300,
                   help="sampling runs at most (each: --n points x 2 seeds, scored by SWD)")
    p.add_argument("--out", help="checkpoint to write with the grid in its metadata (default: --checkpoint "
                                 "itself; for the bundled model runs/tune-steps/checkpoint.pt)")
    p.set_defaults(func=cmd_tune_steps)


def _median_report(reports: list[dict]) -> dict:
    keys = ("swd", "swd_floor", "mmd", "mmd_floor", "mmd_biased", "mmd_biased_floor")
    return {k: statistics.median(r[k] for r in reports) for k in keys}


def cmd_evaluate(args) -> int:
    if args.sweep:
        given = [f"--{name}" for name in SWEEP_ONLY if getattr(args, name) not in (None, "ddpm")]
        if given:
            raise ValueError(f"{', '.join(given)} apply without --sweep; --sweep runs each sampler on its default "
                             f"grid and prior (choose them with --sweep-samplers and --sweep-steps)")
        return _evaluate_sweep(args)
    if args.json is not None or args.plot is not None or args.sweep_students:
        raise ValueError("--json, --plot and --sweep-students belong to --sweep; without --sweep evaluate prints JSON")
    if args.samples is not None:
        given = [f"--{name}" for name in ("checkpoint", *SWEEP_ONLY) if getattr(args, name) not in (None, "ddpm")]
        if given or args.backend != "auto":
            raise ValueError(f"--samples scores points already drawn: {', '.join(given or ['--backend'])} "
                             "would not be used")
        return _evaluate_samples(args.samples, args.n, args.draws, args.dataset)
    from ..metrics import MMD_NOTE, quality_report
    from .common import plan_fields
    device, sampling = args.device or options.default_device(), options.sampler_kwargs(args)
    say = Status(args.command, args.quiet)
    model, schedule, _ = load(args.checkpoint, device)
    reports = []
    for index in range(args.draws):
        points, backend, _, plan = draw(model, schedule, args.n, device=device, backend=args.backend,
                                        precision=args.precision, compile_mode=args.compile_mode,
                                        seed=args.seed + index, sampler_kwargs=sampling, say=say)
        say(f"draw {index + 1}/{args.draws}: scoring against fresh {args.dataset} data")
        reports.append(quality_report(points, args.dataset, seed=index))
    print(json.dumps({"backend": backend, **plan_fields(plan, args.prior, args.eta), "n": args.n,
                      "draws": args.draws, "median": _median_report(reports),
                      "each": reports, "note": MMD_NOTE}, indent=2, allow_nan=False))
    return 0


def _evaluate_samples(path: str, n: int, draws: int, dataset: str) -> int:
    """Scores samples already drawn (a sharded run's folder or a .npy file): ``draws`` disjoint
    blocks of ``n`` rows from the start (rows are independent draws), each against fresh data."""
    import numpy as np
    import torch

    from ..metrics import MMD_NOTE, quality_report
    from ..shards import load_samples
    from .common import check_finite
    samples = load_samples(path)
    if draws * n > len(samples):
        raise ValueError(f"--draws {draws} x --n {n} needs {draws * n} points and {path} holds "
                         f"{len(samples)}: lower --n or --draws (e.g. --draws {max(1, len(samples) // n)}"
                         f"{'' if len(samples) >= n else f' --n {len(samples)}'})")
    reports = []
    for index in range(draws):
        points = torch.from_numpy(np.array(samples[index * n:(index + 1) * n]))
        check_finite(points, path)
        reports.append(quality_report(points, dataset, seed=index))
    manifest = getattr(samples, "manifest", None)
    print(json.dumps({"samples": path, "rows": len(samples), "n": n, "draws": draws,
                      **({"run": {k: v for k, v in manifest.items() if k not in ("parts", "timesteps")}}
                         if manifest else {}),
                      "median": _median_report(reports), "each": reports, "note": MMD_NOTE},
                     indent=2, allow_nan=False))
    return 0


def _evaluate_sweep(args) -> int:
    from .._io import write_json
    from ..sweep import format_sweep, plot_sweep, quality_sweep
    samplers = options.names(args.sweep_samplers, SAMPLERS, "samplers")
    steps = options.int_list(args.sweep_steps, "--sweep-steps")
    check_json_and_plot(args.json, args.plot)
    device, say, json_path = args.device or options.default_device(), Status(args.command, args.quiet), args.json
    model, schedule, _ = load(args.checkpoint, device)
    students = _students(args.sweep_students, device)
    rows = []

    def save(row):  # after every row, so a sweep cut short keeps what it measured
        rows.append(row)
        say(f"{row['sampler']} {row['steps']} steps: SWD {row['swd'] * 1e3:.2f}e-3 "
            f"(floor {row['swd_floor'] * 1e3:.2f}e-3), {row['seconds']:.3f} s")
        if json_path:
            write_json(json_path, {"n": args.n, "draws": args.draws, "backend": args.backend,
                                   "device": device, "rows": rows})

    quality_sweep(model, schedule, samplers, steps, n=args.n, draws=args.draws, dataset=args.dataset,
                  backend=args.backend, precision=args.precision, device=device, seed=args.seed, on_row=save,
                  compile_mode=args.compile_mode, students=students)
    print(format_sweep(rows))
    if args.plot is not None:
        print(f"picture: {plot_sweep(rows, args.plot)}")
    return 0


def _students(names: str, device: str) -> list:
    """--sweep-students: each a checkpoint with its own plan, loaded before the sweep starts."""
    students = []
    for name in filter(None, (part.strip() for part in names.split(","))):
        student, _, _ = load(name, device)
        if student.student_plan is None:
            raise ValueError(f"--sweep-students {name}: not a distilled student (ddpm-fast distill makes them)")
        same = [s for s in students if len(s.student_plan["timesteps"]) == len(student.student_plan["timesteps"])]
        if same:
            raise ValueError(f"--sweep-students: two students with {len(student.student_plan['timesteps'])} steps; "
                             "the sweep has one row per number of steps (sweep them one at a time)")
        students.append(student)
    return students


def cmd_tune_steps(args) -> int:
    from .._io import check_output_file
    from ..checkpoint import add_tuned_grid
    from ..tuning import tune_grid
    from .common import checkpoint_path
    say = Status(args.command, args.quiet)
    source = checkpoint_path(args.checkpoint)
    own_file = args.checkpoint if args.checkpoint not in (None, *PRETRAINED) else None  # never a bundled one
    out = check_output_file(args.out or own_file or os.path.join("runs", "tune-steps", "checkpoint.pt"))
    model, schedule, _ = load(args.checkpoint, args.device or options.default_device())
    check_plan(model, schedule, {"sampler": args.sampler, "steps": args.steps})  # before the search
    say(f"searching the {args.steps} timesteps of {args.sampler} for this model "
        f"({args.n} points x 2 seeds per evaluation, at most {args.max_evaluations} evaluations)")

    def progress(result):
        say(f"{result.timesteps}: SWD {result.swd * 1e3:.3f}e-3 after {result.evaluations} evaluations")

    result = tune_grid(model, schedule, args.sampler, args.steps, n=args.n, max_evaluations=args.max_evaluations,
                       backend=args.backend, on_step=progress, compile_mode=args.compile_mode)
    details = {"objective_swd": result.swd, "start": result.start, "start_swd": result.start_swd,
               "evaluations": result.evaluations, "points_per_seed": args.n,
               "command": f"ddpm-fast tune-steps --sampler {args.sampler} --steps {args.steps} --n {args.n} "
                          f"--max-evaluations {args.max_evaluations}"}
    add_tuned_grid(source, args.sampler, result.timesteps, details, out=out)
    print(json.dumps({"sampler": args.sampler, "steps": args.steps, "timesteps": result.timesteps,
                      **details, "written": out}, indent=2))
    return 0
