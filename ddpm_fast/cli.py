"""Command line: ``ddpm-fast {demo,train,sample,plot,evaluate,bench,profile}`` (also ``python -m ddpm_fast``)."""
from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from dataclasses import fields

import torch

from . import __version__
from .backends.compiled import COMPILE_MODES, set_compile_mode
from .checkpoint import load_checkpoint, pretrained_path, save_checkpoint
from .data import DATASETS, make_dataset
from .train import TrainConfig, train


def _out_dir(path: str) -> str:
    os.makedirs(path, exist_ok=True)
    return path


def _load(args):
    path = args.checkpoint or pretrained_path()
    model, schedule, meta = load_checkpoint(path, map_location=args.device)
    return model, schedule, meta


def cmd_train(args) -> int:
    from .plotting import plot_loss, plot_trajectory
    config = TrainConfig(dataset=args.dataset, n_points=args.n_points, epochs=args.epochs,
                         batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                         snapshot_every=args.snapshot_every, n_steps=args.n_steps,
                         num_units=args.num_units, schedule_kind=args.schedule)
    result = train(config, progress=not args.quiet)
    out = _out_dir(args.out)
    ckpt = os.path.join(out, "checkpoint.pt")
    save_checkpoint(ckpt, result.model, result.schedule, {**result.metadata(), "losses": result.losses})
    plot_loss(result.losses, os.path.join(out, "loss.png"))
    if result.snapshots:
        last = max(result.snapshots)
        torch.save(result.snapshots, os.path.join(out, "snapshots.pt"))
        plot_trajectory(result.snapshots[last], os.path.join(out, f"trajectory_epoch{last}.png"))
    print(json.dumps({"checkpoint": ckpt, "epochs": len(result.losses),
                      "final_loss": result.losses[-1] if result.losses else None,
                      "wall_time_s": round(result.wall_time_s, 1)}, indent=2))
    return 0


def _sample(args, model, schedule, n, trajectory=False):
    from .backends import resolve_backend
    from .sampling import sample
    device = torch.device(args.device)
    backend = resolve_backend(args.backend, device, args.precision).name
    start = time.perf_counter()
    if trajectory:
        from .diffusion import p_sample_loop
        gen = torch.Generator(device).manual_seed(args.seed)
        states = p_sample_loop(model, (n, 2), schedule.n_steps, schedule.betas, schedule.one_minus_alphas_bar_sqrt,
                               generator=gen, backend=backend, precision=args.precision)
        out = torch.stack([s.detach() for s in states])
    else:
        out = sample(model, n, schedule=schedule, seed=args.seed, backend=backend, precision=args.precision,
                     device=device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out, backend, time.perf_counter() - start


def cmd_sample(args) -> int:
    from .plotting import plot_dataset
    model, schedule, _ = _load(args)
    points, backend, seconds = _sample(args, model, schedule, args.n)
    out = _out_dir(args.out)
    array = points.cpu().numpy()
    import numpy as np
    np.save(os.path.join(out, "samples.npy"), array)
    np.savetxt(os.path.join(out, "samples.csv"), array, delimiter=",", header="x,y", comments="")
    plot_dataset(points, os.path.join(out, "samples.png"))
    print(json.dumps({"n": args.n, "backend": backend, "precision": args.precision, "seconds": round(seconds, 3),
                      "out": out}, indent=2))
    return 0


def _pictures(args, model, schedule, out, data, n_trajectory) -> list[str]:
    """The original's pictures plus the GIF: dataset, q(x_t) grid, reverse trajectory."""
    from .plotting import animate_reverse, plot_dataset, plot_q_grid, plot_trajectory
    trajectory, _, _ = _sample(args, model, schedule, n_trajectory, trajectory=True)
    step = max(1, schedule.n_steps // 10)
    return [plot_dataset(data, os.path.join(out, "dataset.png")),
            plot_q_grid(data, schedule, os.path.join(out, "q_grid.png"), seed=args.seed),
            plot_trajectory(trajectory[step::step][:10], os.path.join(out, "reverse_trajectory.png"),
                            labels=[f"x_seq[{step * (i + 1)}]" for i in range(10)]),
            animate_reverse(trajectory, os.path.join(out, "reverse.gif"))]


def cmd_plot(args) -> int:
    from .plotting import plot_loss
    model, schedule, meta = _load(args)
    out = _out_dir(args.out)
    written = _pictures(args, model, schedule, out, make_dataset(args.dataset, args.n, seed=args.seed), args.n)
    if meta.get("losses"):
        written.append(plot_loss(meta["losses"], os.path.join(out, "loss.png")))
    print("\n".join(written))
    return 0


def cmd_evaluate(args) -> int:
    from .metrics import quality_report
    model, schedule, _ = _load(args)
    reports = []
    for draw in range(args.draws):
        points, backend, _ = _sample(args, model, schedule, args.n)
        args.seed += 1
        reports.append(quality_report(points, args.dataset, seed=draw))
    summary = {k: statistics.median(r[k] for r in reports) for k in ("swd", "swd_floor", "mmd", "mmd_floor")}
    print(json.dumps({"backend": backend, "n": args.n, "draws": args.draws, "median": summary,
                      "each": reports}, indent=2))
    return 0


def cmd_demo(args) -> int:
    from .backends import resolve_backend
    from .metrics import quality_report
    from .plotting import plot_dataset
    model, schedule, _ = _load(args)
    out = _out_dir(args.out)
    args.backend = resolve_backend("auto", torch.device(args.device), args.precision).name
    _sample(args, model, schedule, args.n)  # warm-up: compilation and capture stay out of the timing
    points, backend, seconds = _sample(args, model, schedule, args.n)
    report = quality_report(points, "s_curve", seed=args.seed)
    plot_dataset(points, os.path.join(out, "samples.png"))
    _pictures(args, model, schedule, out, make_dataset("s_curve", args.n, seed=args.seed), 2000)
    print(f"sampled {args.n} points x {schedule.n_steps} steps with backend {backend!r} "
          f"({args.precision}) on {args.device} in {seconds:.3f} s "
          f"({args.n * schedule.n_steps / seconds / 1e6:.2f} M point-steps/s)")
    print(f"quality vs fresh data: SWD {report['swd']:.5f} (data-vs-data floor {report['swd_floor']:.5f}), "
          f"MMD² {report['mmd']:.2e} (floor {report['mmd_floor']:.2e})")
    print(f"pictures in {out}/: dataset.png q_grid.png samples.png reverse_trajectory.png reverse.gif")
    return 0


def cmd_bench(args) -> int:
    from .bench import format_row, format_table, plot_throughput, priority_cases, run_benchmark
    from .backends import backend_names
    model, schedule, _ = _load(args)
    backends = args.backends.split(",") if args.backends else [b for b in backend_names() if b != "auto"]
    ns, precisions = [int(float(n)) for n in args.n.split(",")], args.precisions.split(",")
    reported = {"rows": 0}

    def save(result):  # after every combination, so a sweep cut short keeps what it measured
        for row in result["rows"][reported["rows"]:]:
            print(format_row(row), flush=True)
        reported["rows"] = len(result["rows"])
        if args.json:
            tmp = args.json + ".tmp"
            with open(tmp, "w") as f:
                json.dump(result, f, indent=2)
            os.replace(tmp, args.json)

    result = run_benchmark(model, schedule, args.device, ns, backends, precisions, repeats=args.repeats,
                           warmup=args.warmup, on_update=save,
                           cases=priority_cases(ns, backends, precisions) if args.priority else None)
    save(result)
    print(format_table(result))
    if args.plot and result["rows"]:
        plot_throughput(result, args.plot)
    return 1 if result["failed"] else 0


def cmd_profile(args) -> int:
    from .profiling import profile_sampler
    model, schedule, _ = _load(args)
    out = _out_dir(args.out)
    table, trace = profile_sampler(model, schedule, args.backend, args.n, args.device, args.precision,
                                   os.path.join(out, f"trace_{args.backend}.json"), rows=args.top)
    print(table)
    print(f"Chrome trace: {trace}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ddpm-fast", description=__doc__)
    parser.add_argument("--version", action="version", version=f"ddpm-fast {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    defaults = {f.name: f.default for f in fields(TrainConfig)}
    p = sub.add_parser("train", help="train a model with the original recipe")
    p.add_argument("--dataset", default="s_curve", choices=DATASETS)
    p.add_argument("--n-points", type=int, default=defaults["n_points"])
    p.add_argument("--epochs", type=int, default=defaults["epochs"])
    p.add_argument("--batch-size", type=int, default=defaults["batch_size"])
    p.add_argument("--lr", type=float, default=defaults["lr"])
    p.add_argument("--n-steps", type=int, default=defaults["n_steps"])
    p.add_argument("--num-units", type=int, default=defaults["num_units"])
    p.add_argument("--schedule", default="sigmoid", choices=("sigmoid", "linear", "cosine"))
    p.add_argument("--snapshot-every", type=int, default=defaults["snapshot_every"],
                   help="epochs between sample snapshots (0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/train")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    def common(p, n_default, backend=True):
        p.add_argument("--checkpoint", help="checkpoint file (default: the bundled model)")
        p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
        p.add_argument("--seed", type=int, default=0)
        if n_default is not None:
            p.add_argument("--n", type=int, default=n_default, help="number of points")
        if backend:
            from .backends import PRECISIONS, backend_names
            p.add_argument("--backend", default="auto", choices=backend_names())
            p.add_argument("--precision", default="fp32", choices=PRECISIONS)
        p.add_argument("--compile-mode", default="default", choices=COMPILE_MODES,
                       help="torch.compile mode of the 'compile' backend")

    p = sub.add_parser("demo", help="the main job: bundled model, 10,000 samples, pictures, quality, timing")
    common(p, 10_000, backend=False)
    p.add_argument("--precision", default="fp32", choices=("fp32", "tf32", "bf16"))
    p.add_argument("--out", default="runs/demo")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("sample", help="sample points to .npy/.csv and a PNG")
    common(p, 10_000)
    p.add_argument("--out", default="runs/sample")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("plot", help="dataset, q(x_t) grid, reverse trajectory, loss curve, GIF")
    common(p, 10_000)
    p.add_argument("--dataset", default="s_curve", choices=DATASETS)
    p.add_argument("--out", default="runs/plot")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("evaluate", help="SWD and MMD to fresh data, with the data-vs-data floor")
    common(p, 10_000)
    p.add_argument("--dataset", default="s_curve", choices=DATASETS)
    p.add_argument("--draws", type=int, default=3, help="independent draws; the median is reported")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("bench", help="throughput of the backends: median, p20/p80, TFLOP/s, ceiling")
    common(p, None, backend=False)
    p.add_argument("--n", default="1000,10000", help="comma-separated N values (1e5 style accepted)")
    p.add_argument("--backends", default="", help="comma-separated (default: all)")
    p.add_argument("--precisions", default="fp32")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--json", help="write the results as JSON here")
    p.add_argument("--plot", help="write the log-log throughput plot here (PNG)")
    p.add_argument("--priority", action="store_true",
                   help="most important rows first (eager fp32, then cudagraph/triton-fused in tf32, bf16, fp32)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("profile", help="torch.profiler trace (Chrome JSON) and top kernels of one backend")
    common(p, 10_000)
    p.add_argument("--top", type=int, default=15, help="rows of the kernel table")
    p.add_argument("--out", default="runs/profile")
    p.set_defaults(func=cmd_profile)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "compile_mode", None):
        set_compile_mode(args.compile_mode)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as err:
        print(f"ddpm-fast {args.command}: error: {err}", file=sys.stderr)
        return 2
