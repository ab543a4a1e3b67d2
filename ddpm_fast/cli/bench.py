"""The studies: ``bench`` (sampling throughput), ``bench-train`` (training throughput),
``time-to-quality`` (quality against training time) and ``profile`` (a kernel trace)."""
from __future__ import annotations

import json
import statistics

from ..constants import BACKENDS, PRECISIONS, SAMPLERS, TRAIN_BACKENDS
from ..training.config import RECIPES
from . import options
from .common import Status, check_backend, check_json_and_plot, check_plan, load, report, saver


def add_parsers(sub, command) -> None:
    p = command("bench", "throughput of the backends: median, p20/p80, TFLOP/s, ceiling")
    options.add_common(p, None, backend=False)
    p.add_argument("--num-samples", "--n", dest="n", default="1000,10000",
                   help="comma-separated N values (1e5 style accepted); --n is short for it")
    p.add_argument("--backends", default="", help="comma-separated backend names (empty: all)")
    p.add_argument("--precisions", default="fp32", help="comma-separated: fp32, tf32, bf16")
    p.add_argument("--repeats", type=options.positive_int, default=10, help="timed calls per case")
    p.add_argument("--warmup", type=options.non_negative_int, default=2, help="untimed calls after the first")
    p.add_argument("--json", help="write the results as JSON here (rewritten after every case)")
    p.add_argument("--plot", help="write the log-log throughput plot here (PNG)")
    p.add_argument("--sampler",
                   help="comma-separated samplers (ddpm, ddim, dpm++2m, unipc, and student: a distilled student's "
                        "own plan), each a sweep of its own (default: student for a distilled student, else ddpm)")
    p.add_argument("--steps", default="", help="comma-separated steps, one per sampler (empty: their defaults)")
    p.add_argument("--priority", action="store_true",
                   help="most important rows first (eager fp32, then cudagraph/triton-fused in tf32, bf16, fp32)")
    p.set_defaults(func=cmd_bench)

    p = command("bench-train", "throughput of the training backends: steps/s and samples/s per batch size")
    p.add_argument("--device", type=options.device, default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--backends", default="eager,compile,cudagraph",
                   help="comma-separated training backends (those that cannot run here are skipped)")
    p.add_argument("--batch-sizes", default="128,1024", help="comma-separated batch sizes")
    p.add_argument("--n-points", type=options.positive_int, default=10_000, help="points in the dataset (an epoch)")
    p.add_argument("--epochs", type=options.positive_int, default=6, help="timed epochs per case (at least 2)")
    p.add_argument("--warmup-epochs", type=options.positive_int, default=2,
                   help="untimed epochs first (compiling; cudagraph's first epoch runs eagerly, its second captures)")
    p.add_argument("--json", help="write the results as JSON here (rewritten after every case)")
    p.add_argument("--plot", help="write the samples/s vs batch size plot here (PNG)")
    p.add_argument("--quiet", action="store_true", help="no status lines on stderr")
    p.set_defaults(func=cmd_bench_train)

    p = command("time-to-quality", "train recipes and plot sample quality (SWD) against training seconds")
    p.add_argument("--recipes", default="seed,fast", help=f"comma-separated recipes: {', '.join(RECIPES)}")
    p.add_argument("--device", type=options.device, default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--backend", default="eager", choices=TRAIN_BACKENDS, help="training backend")
    p.add_argument("--draws", type=options.positive_int, default=3, help="draws per score; the median is reported")
    p.add_argument("--num-samples", "--n", dest="n", type=options.at_least_2, default=10_000,
                   help="samples per draw; --n is short for it")
    p.add_argument("--out", default="runs/time_to_quality", help="directory for the JSON and the picture")
    p.add_argument("--quiet", action="store_true", help="no status lines on stderr")
    p.set_defaults(func=cmd_time_to_quality)

    p = command("profile", "torch.profiler trace (Chrome JSON) and top kernels of one backend")
    options.add_common(p, 10_000)
    p.add_argument("--top", type=options.positive_int, default=15, help="rows of the kernel table")
    p.add_argument("--out", default="runs/profile", help="directory for the trace")
    p.set_defaults(func=cmd_profile)


def cmd_bench(args) -> int:
    from ..distributed import World, launched_by_torchrun, world
    device = args.device or options.default_device()
    if not launched_by_torchrun():
        return _bench(args, device, args.quiet, World())
    with world(device) as ranks:  # every rank samples N points at once; rank 0 reports
        return _bench(args, str(ranks.device), args.quiet or not ranks.is_main, ranks)


def _sampler_specs(samplers: str, steps: str, model) -> list[dict]:
    """--sampler a,b --steps K,L: [{"sampler": a, "steps": K}, ...]; no --steps: the defaults."""
    from ..bench import STUDENT
    given = options.names(samplers, (*SAMPLERS, STUDENT), "samplers")
    counts = options.int_list(steps, "--steps") if steps else [None] * len(given)
    if len(counts) != len(given):
        raise ValueError(f"--steps has {len(counts)} values for {len(given)} samplers: give one per sampler")
    if STUDENT in given and model.student_plan is None:
        raise ValueError("--sampler student is a distilled student's own plan: this checkpoint is not one "
                         "(ddpm-fast distill makes them)")
    own = len(model.student_plan["timesteps"]) if model.student_plan else None
    if any(name == STUDENT and k not in (None, own) for name, k in zip(given, counts)):
        raise ValueError(f"the student samples in its own {own} steps: leave its --steps empty or {own}")
    return [{"sampler": name, "steps": k} for name, k in zip(given, counts)]


def _bench(args, device: str, quiet: bool, ranks) -> int:
    import torch

    from .._checks import check_fits
    from ..bench import format_row, format_table, plot_throughput, priority_cases, run_benchmark
    say = Status(args.command, quiet)
    backends = options.names(args.backends, BACKENDS, "backends", unique=True) if args.backends else list(BACKENDS)
    precisions = options.names(args.precisions, PRECISIONS, "precisions", unique=True)
    ns = options.int_list(args.n, "--n")
    check_json_and_plot(args.json, args.plot)
    for n in ns:  # the largest N must fit before the sweep starts
        check_fits(n * 2 * 4, torch.device(device), f"N = {n} ([N, 2] float32)")
    model, schedule, _ = load(args.checkpoint, device)
    samplers = _sampler_specs(args.sampler or ("student" if model.student_plan else "ddpm"), args.steps, model)
    for spec in samplers:  # each sampler and steps fit this model, before any timing
        if spec["sampler"] != "student":
            check_plan(model, schedule, spec)
    save = saver(args.json, format_row) if ranks.is_main else None
    say(f"timing {len(backends)} backend(s) x {len(precisions)} precision(s) x {len(ns)} N "
        f"({args.warmup} warm-up and {args.repeats} timed calls each, after a matmul ceiling)"
        + (f"; rank 0 alone, then all {ranks.world_size} ranks at once" if ranks.distributed else ""))
    result = run_benchmark(model, schedule, device, ns, backends, precisions, repeats=args.repeats,
                           warmup=args.warmup, on_update=save, samplers=samplers, ranks=ranks,
                           cases=priority_cases(ns, backends, precisions) if args.priority else None,
                           compile_mode=args.compile_mode)
    if not ranks.is_main:
        return 1 if result["failed"] else 0
    return report(result, save, format_table, plot_throughput, args.plot, say)


def cmd_bench_train(args) -> int:
    from .._checks import check_device
    from ..bench_train import format_train_row, format_train_table, plot_train_throughput, run_train_benchmark
    say = Status(args.command, args.quiet)
    backends = options.names(args.backends, TRAIN_BACKENDS, "training backends", unique=True)
    batch_sizes = options.int_list(args.batch_sizes, "--batch-sizes")
    check_device(args.device)
    check_json_and_plot(args.json, args.plot)
    if args.epochs < 2:
        raise ValueError("--epochs must be at least 2: the times are between consecutive epochs")
    save = saver(args.json, format_train_row)
    say(f"timing {len(backends)} training backend(s) x {len(batch_sizes)} batch size(s) on {args.device} "
        f"({args.warmup_epochs} warm-up and {args.epochs} timed epochs of {args.n_points:,} points each)")
    result = run_train_benchmark(args.device, backends, batch_sizes, n_points=args.n_points, epochs=args.epochs,
                                 warmup_epochs=args.warmup_epochs, on_update=save)
    return report(result, save, format_train_table, plot_train_throughput, args.plot, say)


def cmd_time_to_quality(args) -> int:
    from .._checks import check_device
    from .._io import check_outputs, write_json
    from ..metrics import swd_floor
    from ..time_to_quality import plot_time_to_quality, time_to_quality
    from ..training.steps import check_train_backend
    say = Status(args.command, args.quiet)
    recipes = options.names(args.recipes, list(RECIPES), "recipes")
    check_train_backend(args.backend, check_device(args.device))
    json_path, png_path = check_outputs(args.out, ("time_to_quality.json", "time_to_quality.png"))
    floor = statistics.median(swd_floor("s_curve", args.n, seed=k) for k in range(args.draws))
    result = {"device": args.device, "backend": args.backend, "draws": args.draws, "n": args.n,
              "sampler": "ddpm, 100 steps", "swd_floor": floor, "curves": {}}
    for name in recipes:
        rows = result["curves"].setdefault(name, [])
        say(f"training recipe {name!r} on {args.device} ({args.backend}), scoring as it goes")

        def on_point(row, rows=rows, name=name):
            rows.append(row)
            print(f"{name:5s} epoch {row['epoch']:5d}  {row['train_s']:8.1f} s  SWD {row['swd']:.2e}", flush=True)
            write_json(json_path, result)
        time_to_quality(RECIPES[name], device=args.device, backend=args.backend, draws=args.draws, n=args.n,
                        on_point=on_point)
    plot_time_to_quality({f"{k} recipe": v for k, v in result["curves"].items()}, png_path, bar=4.0e-3,
                         floor=floor, title=f"time to quality on {args.device} ({args.backend}), median SWD of "
                                            f"{args.draws} x {args.n:,} samples, 100-step ddpm")
    print(json.dumps({"json": json_path, "plot": png_path}, indent=2))
    return 0


def cmd_profile(args) -> int:
    from .._io import check_outputs
    from ..profiling import profile_sampler
    device, say, sampling = args.device or options.default_device(), Status(args.command, args.quiet), \
        options.sampler_kwargs(args)
    trace_path, = check_outputs(args.out, (f"trace_{args.backend}.json",))
    model, schedule, _ = load(args.checkpoint, device)
    check_plan(model, schedule, sampling)
    check_backend(args.backend, device, args.precision)
    say(f"profiling backend {args.backend!r} at N = {args.n} (after one warm-up call)")
    table, trace = profile_sampler(model, schedule, args.backend, args.n, device, args.precision, trace_path,
                                   rows=args.top, compile_mode=args.compile_mode, **sampling)
    print(table)
    print(f"Chrome trace: {trace}")
    return 0
