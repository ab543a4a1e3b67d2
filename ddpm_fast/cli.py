"""Command line: ``ddpm-fast {demo,train,sample,plot,evaluate,tune-steps,bench,bench-train,time-to-quality,profile}``
(also ``python -m ddpm_fast``)."""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shlex
import shutil
import signal
import statistics
import sys
import threading
import time
from dataclasses import fields, replace

import torch

from . import __version__
from ._checks import check_device, check_fits, format_bytes
from ._io import check_output_dir, check_output_file, staged_outputs, write_json
from .backends.compiled import COMPILE_MODES, set_compile_mode
from .checkpoint import PRETRAINED, load_checkpoint, load_train_state, pretrained_path, save_checkpoint
from .data import DATASETS, make_dataset
from .distributed import World, claim_rank_gpu, launched_by_torchrun, world
from .sampling import DEFAULT_CHUNK
from .schedule import SCHEDULE_KINDS
from .train import (LR_SCHEDULES, RECIPES, TrainConfig, check_data_parallel, snapshot_every_steps, train,
                    training_bytes)
from .train_steps import TRAIN_BACKENDS, check_train_backend

TRAIN_FLAGS = ("dataset", "n_points", "epochs", "batch_size", "lr", "n_steps", "num_units", "schedule_kind",
               "snapshot_every", "seed", "lr_schedule", "warmup_steps", "ema_decay")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows '(default: X)' for every option that has a default to show."""

    def _get_help_string(self, action):
        if action.default in (None, False) or "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (no usage block): 'ddpm-fast sample: error: ...'."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _integer(text: str) -> int:
    """'10000', '1e6' or '1_000': an integer, refusing fractions, infinities and garbage."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not math.isfinite(value) or not value.is_integer():
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}")
    return int(value)


def _int_at_least(minimum: int, why: str = ""):
    def parse(text: str) -> int:
        value = _integer(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}{why}, got {value}")
        return value
    parse.__name__ = f"integer >= {minimum}"  # argparse names the type in some messages
    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)
_at_least_2 = _int_at_least(2, " (SWD and MMD compare clouds of points)")


def _ema_decay(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1) (0: no EMA), got {text}")
    return value


def _device(text: str) -> str:
    """cpu, cuda or cuda:N, checked against this machine (a missing GPU is said as such)."""
    try:
        device = torch.device(text)
    except (RuntimeError, TypeError):
        raise argparse.ArgumentTypeError(f"not a device: {text!r}; use cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda") or (device.type == "cpu" and device.index not in (None, 0)):
        raise argparse.ArgumentTypeError(f"{text!r}: the commands run on cpu, cuda or cuda:N")
    try:
        check_device(device)
    except RuntimeError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return str(device)


def _say(args, message: str, always: bool = False) -> None:
    """What a long step is doing, on stderr (stdout keeps the command's result)."""
    if always or not getattr(args, "quiet", False):
        print(f"ddpm-fast {args.command}: {message}", file=sys.stderr, flush=True)


def _checkpoint_path(checkpoint) -> str:
    """--checkpoint: a file, or the name of a bundled model (default: seed)."""
    if not checkpoint or checkpoint in PRETRAINED:
        return pretrained_path(checkpoint or "seed")
    if not os.path.exists(checkpoint):
        raise FileNotFoundError(f"checkpoint {checkpoint!r} does not exist (the bundled models are named "
                                f"{', '.join(PRETRAINED)})")
    return checkpoint


def _load(args):
    path = _checkpoint_path(args.checkpoint)
    model, schedule, meta = load_checkpoint(path, map_location=args.device)
    return model, schedule, meta


def _check_finite(points: torch.Tensor, what: str) -> None:
    """``points`` [N, 2] or a trajectory [T+1, N, 2]: refuse to write NaN or inf."""
    bad_rows = (~torch.isfinite(points)).any(dim=-1)  # [N] or [T+1, N]
    bad = int((bad_rows.any(dim=0) if points.dim() == 3 else bad_rows).sum())
    if bad:
        raise ValueError(f"{what}: {bad} of {points.shape[-2]} points are NaN or infinite; nothing written")


def _check_disk(directory: str, n_bytes: int, what: str) -> None:
    free = shutil.disk_usage(directory).free
    if n_bytes > free:
        raise ValueError(f"{what} needs about {format_bytes(n_bytes)} on disk and {directory} has "
                         f"{format_bytes(free)} free")


def _train_config(args, base: TrainConfig) -> TrainConfig:
    given = {name: getattr(args, name) for name in TRAIN_FLAGS if getattr(args, name) is not None}
    return replace(base, **given)


def _save_run(out: str, result) -> str:
    """checkpoint.pt (resumable) and snapshots.pt, renamed into place together."""
    ckpt, snapshots = os.path.join(out, "checkpoint.pt"), os.path.join(out, "snapshots.pt")
    with staged_outputs() as staged:
        save_checkpoint(staged.path(ckpt), result.model, result.schedule,
                        {**result.metadata(), "losses": result.losses}, train_state=result.train_state())
        if result.snapshots:
            torch.save(result.snapshots, staged.path(snapshots))
    if not result.snapshots and os.path.exists(snapshots):  # an overwritten run's: not this model's
        os.remove(snapshots)
    return ckpt


def _load_snapshots(path: str) -> dict:
    try:
        snapshots = torch.load(path, weights_only=True)
    except Exception as err:  # a damaged file fails in many ways inside torch.load
        raise ValueError(f"{path!r} is not a readable snapshots file ({type(err).__name__}); move it away "
                         "to resume without the earlier snapshots") from None
    if not isinstance(snapshots, dict) or not all(isinstance(k, int) and isinstance(v, torch.Tensor)
                                                  for k, v in snapshots.items()):
        raise ValueError(f"{path!r} is not a dict of epoch -> tensor; move it away to resume without it")
    return snapshots


def _train_device_and_backend(args, device: str, backend: str) -> torch.device:
    """--device and --backend, or the given defaults (a resumed run's own); checked before any work."""
    args.device = args.device or device
    args.backend = args.backend or backend
    device = check_device(args.device)
    check_train_backend(args.backend, device)
    return device


def _prepare_train(args):
    """(out, config, resume) with every path and flag checked before any training."""
    ckpt = os.path.join(args.out, "checkpoint.pt")
    if not args.resume:
        device = _train_device_and_backend(args, "cpu", "eager")
        config = _train_config(args, RECIPES[args.recipe or "seed"])
        check_fits(training_bytes(config), device, "this training run",
                   "use a smaller --n-points, --num-units or --n-steps")
        out = check_output_dir(args.out)
        if os.path.exists(ckpt) and not args.overwrite:
            raise FileExistsError(17, "holds a checkpoint: pass --resume to continue it or --overwrite "
                                      "to train a new model in its place", ckpt)
        return out, config, None
    if args.overwrite:
        raise ValueError("--resume continues the checkpoint in --out and --overwrite replaces it: pass one")
    if args.recipe is not None:
        raise ValueError("--resume continues the run with its own recipe: leave out --recipe")
    model, _, meta, state = load_train_state(ckpt)  # before creating anything: the run must exist
    _train_device_and_backend(args, meta.get("device", "cpu"), meta.get("backend", "eager"))  # the run's own
    out = check_output_dir(args.out)
    try:
        saved = TrainConfig(**state["config"])
    except (TypeError, ValueError) as err:
        raise ValueError(f"{ckpt!r}: its training config is not valid: {err}") from None
    config = _train_config(args, saved)
    done = len(state["losses"])
    if config.epochs < done:
        raise ValueError(f"--epochs {config.epochs} is fewer than the {done} epochs {ckpt} has done")
    snapshots = os.path.join(out, "snapshots.pt")
    if os.path.exists(snapshots):
        state["snapshots"] = _load_snapshots(snapshots)
    _say(args, f"resuming {ckpt} after {done} of {config.epochs} epochs")
    return out, config, (model, state)


def cmd_train(args) -> int:
    given_device = args.device
    if launched_by_torchrun():
        args.quiet = args.quiet or os.environ["RANK"] != "0"  # one rank speaks
    out, config, resume = _prepare_train(args)
    if not launched_by_torchrun():
        return _train_and_save(args, out, config, resume, World())
    # data-parallel: every rank trains, rank 0 alone writes; a resumed run's cuda:0 means each rank's own GPU
    with world(given_device or torch.device(args.device).type) as ranks:
        args.device = str(ranks.device)
        check_data_parallel(ranks, args.backend, config)
        per_rank = config.batch_size / ranks.world_size
        _say(args, f"training on {ranks.world_size} ranks ({args.backend}, {ranks.device.type}): global batch "
                   f"{config.batch_size} = {per_rank:g} per rank x {ranks.world_size}"
                   + ("" if per_rank.is_integer() else f" ({int(per_rank)} or {int(per_rank) + 1} rows each)"))
        return _train_and_save(args, out, config, resume, ranks)


def _train_and_save(args, out, config, resume, ranks) -> int:
    from .plotting import plot_loss, plot_trajectory
    names = ["checkpoint.pt", "snapshots.pt", "loss.png"]
    if config.snapshot_every and config.epochs:
        names.append(f"trajectory_epoch{(config.epochs - 1) // config.snapshot_every * config.snapshot_every}.png")
    for name in names:
        check_output_file(os.path.join(out, name))
    stop = {"signal": None, "saving": False}

    def tell(message):  # os.write: print() inside a signal handler can collide with tqdm's write
        os.write(2, f"ddpm-fast train: {message}\n".encode())

    def request_stop(signum, frame):
        if stop["saving"]:  # a save takes a moment; cutting it short would only lose it
            stop["signal"] = stop["signal"] or signum  # still stop when it is done
            tell("saving a checkpoint: wait a moment")
            return
        if stop["signal"] is not None:  # a second Ctrl-C: stop now, keep the last periodic checkpoint
            raise KeyboardInterrupt
        stop["signal"] = signum
        tell(f"{signal.Signals(signum).name}: saving the last finished epoch (press Ctrl-C again to quit "
             "without saving)")

    def save(result):
        if not ranks.is_main:
            return os.path.join(out, "checkpoint.pt")
        stop["saving"] = True
        try:
            return _save_run(out, result)
        finally:
            stop["saving"] = False

    def periodic_save(result):
        if args.save_every and result.epochs_done % args.save_every == 0 and math.isfinite(result.losses[-1]):
            save(result)

    in_main_thread = threading.current_thread() is threading.main_thread()  # where handlers can be set
    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)
                if in_main_thread}
    try:
        result = train(config, progress=not args.quiet, device=args.device, backend=args.backend, resume=resume,
                       should_stop=lambda: stop["signal"] is not None, on_epoch_end=periodic_save)
        if result.losses and not math.isfinite(result.losses[-1]):
            raise ValueError(f"training diverged: the mean loss of epoch {result.epochs_done} is "
                             f"{result.losses[-1]}; this run's checkpoint is not written (try a lower --lr)")
        _say(args, f"saving {out}/checkpoint.pt after {result.epochs_done} of {config.epochs} epochs")
        ckpt = save(result)
    except KeyboardInterrupt:
        _say(args, f"quit without saving the epochs since the last periodic checkpoint (every {args.save_every} "
                   f"epochs) in {out}", always=True)
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    signum = stop["signal"] or signal.SIGTERM  # a rank stopped by the others' agreement got no signal itself
    if not ranks.is_main:
        return 128 + signum if result.interrupted else 0
    written = [ckpt] + ([os.path.join(out, "snapshots.pt")] if result.snapshots else [])
    if result.losses:
        _say(args, "drawing the loss curve" + (" and the last snapshot" if result.snapshots else ""))
        written.append(plot_loss(result.losses, os.path.join(out, "loss.png")))
    if result.snapshots:
        last = max(result.snapshots)  # 0-based: the snapshot taken after epoch `last` + 1
        written.append(plot_trajectory(result.snapshots[last], os.path.join(out, f"trajectory_epoch{last}.png"),
                                       n_steps=config.n_steps, every=snapshot_every_steps(config.n_steps),
                                       title=f"reverse process after {last + 1} epoch{'s' * (last > 0)}"))
    report = {"checkpoint": ckpt, "epochs_done": result.epochs_done, "epochs": config.epochs,
              "final_loss": result.losses[-1] if result.losses else None,
              "wall_time_s": round(result.wall_time_s, 1), "device": result.device, "backend": result.backend,
              "compile_s": round(result.compile_s, 1), "world_size": ranks.world_size,
              "global_batch": config.batch_size, "per_rank_batch": result.metadata()["per_rank_batch"],
              "written": written}
    if result.interrupted:
        report["resume_with"] = f"ddpm-fast train --out {shlex.quote(out)} --resume"
        if ranks.distributed:
            report["resume_with"] = f"torchrun --nproc-per-node {ranks.world_size} -m ddpm_fast train " \
                                    f"--out {shlex.quote(out)} --resume"
    print(json.dumps(report, indent=2, allow_nan=False))
    if result.interrupted:
        _say(args, f"stopped after {result.epochs_done} of {config.epochs} epochs; resume with: "
                   f"{report['resume_with']}", always=True)
        return 128 + signum
    return 0


def _plan_fields(plan, args) -> dict:
    """What reproduces a run's sampler: its name, steps, grid and timesteps, prior and eta."""
    return {"sampler": plan.name, "steps": plan.steps, "grid": plan.grid, "timesteps": list(plan.timesteps),
            "prior": args.prior or ("unit" if plan.name == "ddpm" else "matched"), "prior_std": plan.prior_std,
            "eta": args.eta}


def _check_sampler(args, model, schedule) -> None:
    """The sampler flags make a plan for this model: checked before any long step starts."""
    from .samplers import make_plan
    make_plan(schedule, tuned_grids=model.tuned_grids, **_sampler_kwargs(args))


def _sample(args, model, schedule, n, trajectory=False):
    from .backends import resolve_backend
    from .samplers import make_plan
    from .sampling import sample
    device = torch.device(args.device)
    backend = resolve_backend(args.backend, device, args.precision).name
    kwargs = _sampler_kwargs(args) if hasattr(args, "sampler") else {}  # demo has no sampler flags
    plan = make_plan(schedule, final_noise=True, tuned_grids=model.tuned_grids, **kwargs)
    first_call = {"compile": "the first call compiles (minutes on a CPU)", "cudagraph": "the first call captures",
                  "triton-step": "the first call compiles", "triton-fused": "the first call compiles"}
    _say(args, f"sampling {n} points, {plan.describe()}, with backend {backend!r} ({args.precision}) "
               f"on {device}" + (f"; {first_call[backend]}" if backend in first_call else ""))
    start = time.perf_counter()
    if trajectory:
        from .diffusion import p_sample_loop
        gen = torch.Generator(device).manual_seed(args.seed)
        states = p_sample_loop(model, (n, 2), schedule.n_steps, schedule.betas, schedule.one_minus_alphas_bar_sqrt,
                               generator=gen, backend=backend, precision=args.precision, **kwargs)
        out = torch.stack([s.detach() for s in states])
    else:
        out = sample(model, n, schedule=schedule, seed=args.seed, backend=backend, precision=args.precision,
                     device=device, progress=not args.quiet, chunk_size=getattr(args, "chunk_size", DEFAULT_CHUNK),
                     keyed=getattr(args, "keyed", False) or None, **kwargs)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    _check_finite(out, f"backend {backend!r}")
    return out, backend, seconds, plan


def cmd_sample(args) -> int:
    import numpy as np
    from .plotting import plot_dataset
    if launched_by_torchrun():  # each rank its rows: part-<rank>.npy and manifest.json
        from .cli_distributed import sample_sharded
        return sample_sharded(args)
    if args.resume:
        raise ValueError("--resume continues a sharded run (torchrun ... -m ddpm_fast sample): without torchrun "
                         "sample writes samples.npy, .csv and .png in one piece")
    out = check_output_dir(args.out)
    if os.path.exists(os.path.join(out, "manifest.json")):
        raise FileExistsError(17, "holds a sharded run (manifest.json, part-*.npy): samples.npy beside them would "
                                  "be mistaken for it; choose another --out", out)
    names = [check_output_file(os.path.join(out, name)) for name in ("samples.npy", "samples.csv", "samples.png")]
    _check_disk(out, args.n * (8 + 34) + 200_000, f"writing {args.n} points as .npy and .csv")
    model, schedule, _ = _load(args)
    points, backend, seconds, plan = _sample(args, model, schedule, args.n)
    array = points.cpu().numpy()
    with staged_outputs() as staged:  # all three replace the old ones together, or none does
        np.save(staged.path(names[0]), array)
        np.savetxt(staged.path(names[1]), array, delimiter=",", header="x,y", comments="", fmt="%.9g")
        plot_dataset(points, staged.path(names[2]), title=f"{args.n} samples ({backend}, {args.precision}"
                     + (")" if plan.reference else f"; {plan.name}, {plan.steps} steps)"))
    print(json.dumps({"n": args.n, "backend": backend, "precision": args.precision, **_plan_fields(plan, args),
                      "seconds": round(seconds, 3), "written": names}, indent=2))
    return 0


def _pictures(args, model, schedule, out, data, n_trajectory) -> list[str]:
    """The original's pictures plus the GIF: dataset, q(x_t) grid, reverse trajectory."""
    from .plotting import animate_reverse, plot_dataset, plot_q_grid, plot_trajectory
    trajectory, _, _, plan = _sample(args, model, schedule, n_trajectory, trajectory=True)
    _say(args, "drawing the pictures")
    n_panels = min(10, plan.steps)  # the states after evenly spaced steps, the last one x_0
    panels = sorted({round(plan.steps * (k + 1) / n_panels) for k in range(n_panels)})
    labels = plan.state_labels()
    title = "reverse process: from noise $x_T$ to samples $x_0$" + (
        "" if plan.reference else f" ({plan.name}, {plan.steps} steps)")
    with staged_outputs() as staged:
        plot_dataset(data, staged.path(os.path.join(out, "dataset.png")), title=f"dataset: {args.dataset}")
        plot_q_grid(data, schedule, staged.path(os.path.join(out, "q_grid.png")), seed=args.seed)
        plot_trajectory(trajectory[panels], staged.path(os.path.join(out, "reverse_trajectory.png")),
                        title=title, timesteps=[labels[j] for j in panels])
        animate_reverse(trajectory, staged.path(os.path.join(out, "reverse.gif")), labels=labels)
    return [os.path.join(out, name) for name in PICTURES]


PICTURES = ("dataset.png", "q_grid.png", "reverse_trajectory.png", "reverse.gif")


def _loss_history(meta: dict):
    """The checkpoint's per-epoch losses when they are a non-empty list of finite numbers, else None."""
    losses = meta.get("losses")
    if isinstance(losses, list) and losses and all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0
                                                   for v in losses):
        return losses
    return None


def cmd_plot(args) -> int:
    from .plotting import plot_loss
    out = check_output_dir(args.out)
    for name in (*PICTURES, "loss.png"):
        check_output_file(os.path.join(out, name))
    model, schedule, meta = _load(args)
    written = _pictures(args, model, schedule, out, make_dataset(args.dataset, args.n, seed=args.seed), args.n)
    losses = _loss_history(meta)
    if losses:
        written.append(plot_loss(losses, os.path.join(out, "loss.png")))
    elif "losses" in meta:
        _say(args, "the checkpoint's loss history is not a list of positive finite numbers: loss.png not drawn")
    print("\n".join(written))
    return 0


def _median_report(reports: list[dict]) -> dict:
    keys = ("swd", "swd_floor", "mmd", "mmd_floor", "mmd_biased", "mmd_biased_floor")
    return {k: statistics.median(r[k] for r in reports) for k in keys}


def cmd_evaluate(args) -> int:
    from .metrics import MMD_NOTE, quality_report
    if args.sweep:
        given = [f"--{name}" for name in ("sampler", "steps", "prior", "eta", "grid")
                 if getattr(args, name) not in (None, "ddpm")]
        if given:
            raise ValueError(f"{', '.join(given)} apply without --sweep; --sweep runs each sampler on its default "
                             f"grid and prior (choose them with --sweep-samplers and --sweep-steps)")
        return _evaluate_sweep(args)
    if args.json is not None or args.plot is not None:
        raise ValueError("--json and --plot write the --sweep table; without --sweep evaluate prints JSON")
    if args.samples is not None:
        return _evaluate_samples(args)
    model, schedule, _ = _load(args)
    reports, seed = [], args.seed
    for draw in range(args.draws):
        args.seed = seed + draw
        points, backend, _, plan = _sample(args, model, schedule, args.n)
        _say(args, f"draw {draw + 1}/{args.draws}: scoring against fresh {args.dataset} data")
        reports.append(quality_report(points, args.dataset, seed=draw))
    print(json.dumps({"backend": backend, **_plan_fields(plan, args), "n": args.n, "draws": args.draws,
                      "median": _median_report(reports),
                      "each": reports, "note": MMD_NOTE}, indent=2, allow_nan=False))
    return 0


def _evaluate_samples(args) -> int:
    """Scores samples already drawn (a sharded run's folder or a .npy file): ``--draws`` disjoint
    blocks of ``--n`` rows from the start (rows are independent draws), each against fresh data."""
    import numpy as np
    from .metrics import MMD_NOTE, quality_report
    from .shards import load_samples
    given = [f"--{name}" for name in ("checkpoint", "sampler", "steps", "prior", "eta", "grid")
             if getattr(args, name) not in (None, "ddpm")]
    if given or args.backend != "auto":
        raise ValueError(f"--samples scores points already drawn: {', '.join(given or ['--backend'])} "
                         "would not be used")
    samples = load_samples(args.samples)
    draws = args.draws
    if draws * args.n > len(samples):
        raise ValueError(f"--draws {draws} x --n {args.n} needs {draws * args.n} points and {args.samples} holds "
                         f"{len(samples)}: lower --n or --draws")
    reports = []
    for draw in range(draws):
        points = torch.from_numpy(np.array(samples[draw * args.n:(draw + 1) * args.n]))
        _check_finite(points, args.samples)
        reports.append(quality_report(points, args.dataset, seed=draw))
    manifest = getattr(samples, "manifest", None)
    print(json.dumps({"samples": args.samples, "rows": len(samples), "n": args.n, "draws": draws,
                      **({"run": {k: v for k, v in manifest.items() if k not in ("parts", "timesteps")}}
                         if manifest else {}),
                      "median": _median_report(reports), "each": reports, "note": MMD_NOTE},
                     indent=2, allow_nan=False))
    return 0


def _evaluate_sweep(args) -> int:
    from .samplers import SAMPLERS
    from .sweep import format_sweep, plot_sweep, quality_sweep
    samplers = _names(args.sweep_samplers, SAMPLERS, "samplers")
    steps = _int_list(args.sweep_steps, "--sweep-steps")
    _check_json_and_plot(args)
    model, schedule, _ = _load(args)
    rows = []

    def save(row):  # after every row, so a sweep cut short keeps what it measured
        rows.append(row)
        _say(args, f"{row['sampler']} {row['steps']} steps: SWD {row['swd'] * 1e3:.2f}e-3 "
                   f"(floor {row['swd_floor'] * 1e3:.2f}e-3), {row['seconds']:.3f} s")
        if args.json:
            write_json(args.json, {"n": args.n, "draws": args.draws, "backend": args.backend,
                                   "device": args.device, "rows": rows})

    quality_sweep(model, schedule, samplers, steps, n=args.n, draws=args.draws, dataset=args.dataset,
                  backend=args.backend, precision=args.precision, device=args.device, seed=args.seed, on_row=save)
    print(format_sweep(rows))
    if args.plot is not None:
        print(f"picture: {plot_sweep(rows, args.plot)}")
    return 0


def cmd_tune_steps(args) -> int:
    from .checkpoint import add_tuned_grid
    from .tuning import tune_grid
    source = _checkpoint_path(args.checkpoint)
    own_file = args.checkpoint if args.checkpoint not in (None, *PRETRAINED) else None  # never a bundled one
    out = args.out or own_file or os.path.join("runs", "tune-steps", "checkpoint.pt")
    check_output_dir(os.path.dirname(out) or ".")
    check_output_file(out)
    model, schedule, _ = _load(args)
    from .samplers import make_plan
    make_plan(schedule, args.sampler, args.steps)  # the sampler and steps fit this model, before the search
    _say(args, f"searching the {args.steps} timesteps of {args.sampler} for this model "
               f"({args.n} points x 2 seeds per evaluation, at most {args.max_evaluations} evaluations)")

    def progress(result):
        _say(args, f"{result.timesteps}: SWD {result.swd * 1e3:.3f}e-3 after {result.evaluations} evaluations")

    result = tune_grid(model, schedule, args.sampler, args.steps, n=args.n, max_evaluations=args.max_evaluations,
                       backend=args.backend, on_step=progress)
    details = {"objective_swd": result.swd, "start": result.start, "start_swd": result.start_swd,
               "evaluations": result.evaluations, "points_per_seed": args.n,
               "command": f"ddpm-fast tune-steps --sampler {args.sampler} --steps {args.steps} --n {args.n} "
                          f"--max-evaluations {args.max_evaluations}"}
    add_tuned_grid(source, args.sampler, result.timesteps, details, out=out)
    print(json.dumps({"sampler": args.sampler, "steps": args.steps, "timesteps": result.timesteps,
                      **details, "written": out}, indent=2))
    return 0


def cmd_demo(args) -> int:
    from .backends import resolve_backend
    from .metrics import quality_report
    from .plotting import plot_dataset
    out = check_output_dir(args.out)
    for name in (*PICTURES, "samples.png"):
        check_output_file(os.path.join(out, name))
    model, schedule, _ = _load(args)
    args.backend, args.dataset = resolve_backend("auto", torch.device(args.device), args.precision).name, "s_curve"
    _say(args, "warm-up call (compilation and capture are not timed)")
    _sample(args, model, schedule, args.n)
    points, backend, seconds, _ = _sample(args, model, schedule, args.n)
    _say(args, "scoring against fresh data")
    report = quality_report(points, "s_curve", seed=args.seed)
    plot_dataset(points, os.path.join(out, "samples.png"), title=f"{args.n} samples ({backend}, {args.precision})")
    _pictures(args, model, schedule, out, make_dataset("s_curve", args.n, seed=args.seed), 2000)
    print(f"sampled {args.n} points x {schedule.n_steps} steps with backend {backend!r} "
          f"({args.precision}) on {args.device} in {seconds:.3f} s "
          f"({args.n * schedule.n_steps / seconds / 1e6:.2f} M point-steps/s)")
    print(f"quality vs fresh data: SWD {report['swd']:.5f} (data-vs-data floor {report['swd_floor']:.5f}), "
          f"MMD² {report['mmd']:.2e} (floor {report['mmd_floor']:.2e})")
    print(f"pictures in {out}/: dataset.png q_grid.png samples.png reverse_trajectory.png reverse.gif")
    return 0


def _names(text: str, known, what: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise ValueError(f"unknown {what} {', '.join(map(repr, unknown)) or repr(text)}; known {what}: "
                         f"{', '.join(known)}")
    return names


def _saver(args, format_row):
    """``save(result)`` for a benchmark sweep: prints the rows not yet printed and rewrites --json,
    after every case, so a sweep cut short keeps what it measured."""
    reported = {"rows": 0}

    def save(result):
        for row in result["rows"][reported["rows"]:]:
            print(format_row(row), flush=True)
        reported["rows"] = len(result["rows"])
        if args.json:
            write_json(args.json, result)
    return save


def _report(args, result, save, format_table, plot) -> int:
    """A finished sweep: saved, printed as a table, drawn to --plot; exit 1 if a case raised."""
    save(result)
    print(format_table(result))
    if args.plot is not None and result["rows"]:
        plot(result, args.plot)
    elif args.plot is not None:
        _say(args, f"nothing was measured: {args.plot} not written", always=True)
    return 1 if result["failed"] else 0


def cmd_bench(args) -> int:
    if not launched_by_torchrun():
        return _bench(args, World())
    with world(args.device) as ranks:  # every rank samples N points at once; rank 0 reports
        args.device = str(ranks.device)
        args.quiet = args.quiet or not ranks.is_main
        return _bench(args, ranks)


def _bench(args, ranks) -> int:
    from .backends import PRECISIONS, backend_names
    from .bench import format_row, format_table, plot_throughput, priority_cases, run_benchmark
    known = [b for b in backend_names() if b != "auto"]
    backends = _names(args.backends, known, "backends") if args.backends else known
    precisions = _names(args.precisions, PRECISIONS, "precisions")
    ns = _int_list(args.n, "--n")
    _check_json_and_plot(args)
    samplers = _sampler_specs(args.sampler, args.steps)
    for n in ns:  # the largest N must fit before the sweep starts
        check_fits(n * 2 * 4, torch.device(args.device), f"N = {n} ([N, 2] float32)")
    model, schedule, _ = _load(args)
    from .samplers import make_plan
    for spec in samplers:  # each sampler and steps fit this model, before any timing
        make_plan(schedule, spec["sampler"], spec["steps"], tuned_grids=model.tuned_grids)
    save = _saver(args, format_row) if ranks.is_main else None
    _say(args, f"timing {len(backends)} backend(s) x {len(precisions)} precision(s) x {len(ns)} N "
               f"({args.warmup} warm-up and {args.repeats} timed calls each, after a matmul ceiling)"
         + (f"; rank 0 alone, then all {ranks.world_size} ranks at once" if ranks.distributed else ""))
    result = run_benchmark(model, schedule, args.device, ns, backends, precisions, repeats=args.repeats,
                           warmup=args.warmup, on_update=save, samplers=samplers, ranks=ranks,
                           cases=priority_cases(ns, backends, precisions) if args.priority else None)
    if not ranks.is_main:
        return 1 if result["failed"] else 0
    return _report(args, result, save, format_table, plot_throughput)


def cmd_bench_train(args) -> int:
    from .bench_train import format_train_row, format_train_table, plot_train_throughput, run_train_benchmark
    backends = _names(args.backends, TRAIN_BACKENDS, "training backends")
    batch_sizes = _int_list(args.batch_sizes, "--batch-sizes")
    check_device(args.device)
    _check_json_and_plot(args)
    if args.epochs < 2:
        raise ValueError("--epochs must be at least 2: the times are between consecutive epochs")
    save = _saver(args, format_train_row)
    _say(args, f"timing {len(backends)} training backend(s) x {len(batch_sizes)} batch size(s) on {args.device} "
               f"({args.warmup_epochs} warm-up and {args.epochs} timed epochs of {args.n_points:,} points each)")
    result = run_train_benchmark(args.device, backends, batch_sizes, n_points=args.n_points, epochs=args.epochs,
                                 warmup_epochs=args.warmup_epochs, on_update=save)
    return _report(args, result, save, format_train_table, plot_train_throughput)


def cmd_time_to_quality(args) -> int:
    from .time_to_quality import plot_time_to_quality, time_to_quality
    recipes = _names(args.recipes, list(RECIPES), "recipes")
    check_train_backend(args.backend, check_device(args.device))
    out = check_output_dir(args.out)
    json_path, png_path = os.path.join(out, "time_to_quality.json"), os.path.join(out, "time_to_quality.png")
    for path in (json_path, png_path):
        check_output_file(path)
    from .metrics import swd_floor
    floor = statistics.median(swd_floor("s_curve", args.n, seed=k) for k in range(args.draws))
    report = {"device": args.device, "backend": args.backend, "draws": args.draws, "n": args.n,
              "sampler": "ddpm, 100 steps", "swd_floor": floor, "curves": {}}

    def save():
        write_json(json_path, report)

    for name in recipes:
        rows = report["curves"].setdefault(name, [])
        _say(args, f"training recipe {name!r} on {args.device} ({args.backend}), scoring as it goes")

        def on_point(row, rows=rows, name=name):
            rows.append(row)
            print(f"{name:5s} epoch {row['epoch']:5d}  {row['train_s']:8.1f} s  SWD {row['swd']:.2e}", flush=True)
            save()
        time_to_quality(RECIPES[name], device=args.device, backend=args.backend, draws=args.draws, n=args.n,
                        on_point=on_point)
    labels = {name: f"{name} recipe" for name in recipes}
    plot_time_to_quality({labels[k]: v for k, v in report["curves"].items()}, png_path, bar=4.0e-3, floor=floor,
                         title=f"time to quality on {args.device} ({args.backend}), median SWD of "
                               f"{args.draws} x {args.n:,} samples, 100-step ddpm")
    print(json.dumps({"json": json_path, "plot": png_path}, indent=2))
    return 0


def _sampler_specs(samplers: str, steps: str) -> list[dict]:
    """--sampler a,b --steps K,L: [{"sampler": a, "steps": K}, ...]; no --steps: the defaults."""
    from .samplers import SAMPLERS
    names = _names(samplers, SAMPLERS, "samplers")
    counts = _int_list(steps, "--steps") if steps else [None] * len(names)
    if len(counts) != len(names):
        raise ValueError(f"--steps has {len(counts)} values for {len(names)} samplers: give one per sampler")
    return [{"sampler": name, "steps": k} for name, k in zip(names, counts)]


def _int_list(text: str, flag: str) -> list[int]:
    """Comma-separated counts >= 1 (1e6 style accepted), or an error naming the flag."""
    try:
        return [_positive_int(k) for k in text.split(",")]
    except argparse.ArgumentTypeError as err:
        raise ValueError(f"{flag} {text!r}: {err}") from None


def _check_json_and_plot(args) -> None:
    """--json and --plot are writable file names, the picture of a known format, before any work."""
    for path in (args.json, args.plot):
        if path is not None:
            check_output_file(path)
    if args.plot is not None:
        _check_picture_format(args.plot)


def _check_picture_format(path: str) -> None:
    from .plotting import plt
    formats = plt.figure().canvas.get_supported_filetypes()
    plt.close("all")
    ext = os.path.splitext(path)[1].lstrip(".").lower()
    if ext not in formats:
        raise ValueError(f"--plot {path!r}: {'no' if not ext else 'unknown'} picture format{' ' + repr(ext) if ext else ''}"
                         f"; end the name with one of {', '.join('.' + f for f in sorted(formats))}")


def cmd_profile(args) -> int:
    from .profiling import profile_sampler
    out = check_output_dir(args.out)
    check_output_file(os.path.join(out, f"trace_{args.backend}.json"))
    model, schedule, _ = _load(args)
    _check_sampler(args, model, schedule)
    _say(args, f"profiling backend {args.backend!r} at N = {args.n} (after one warm-up call)")
    table, trace = profile_sampler(model, schedule, args.backend, args.n, args.device, args.precision,
                                   os.path.join(out, f"trace_{args.backend}.json"), rows=args.top,
                                   **_sampler_kwargs(args))
    print(table)
    print(f"Chrome trace: {trace}")
    return 0


def _recipe_values(name: str) -> str:
    """A training flag's default in --help: its value, or each recipe's where they differ."""
    values = [str(getattr(recipe, name)) for recipe in RECIPES.values()]
    if len(set(values)) == 1:
        return values[0]
    return ", ".join(f"{recipe} {value}" for recipe, value in zip(RECIPES, values))


def _train_parser(sub) -> None:
    defaults = {f.name: _recipe_values(f.name) for f in fields(TrainConfig)}
    p = sub.add_parser("train", help="train a model: the original recipe, or a faster one (resumable)",
                       description="Train a model. --recipe seed is the original script (bit for bit on the CPU "
                                   "with --backend eager); fast reaches its quality in about 30 s on 2 CPU "
                                   "cores; best trains the bundled 'best' model. Flags override the recipe. "
                                   "Ctrl-C (or SIGTERM) saves the last finished epoch; --resume continues it bit "
                                   "for bit.", formatter_class=_HelpFormatter)
    # Training flags default to None so that --resume can tell which ones were given.
    p.add_argument("--recipe", choices=list(RECIPES),
                   help="the training recipe that the flags below override (default: seed)")
    p.add_argument("--device", type=_device, help="where to train: cpu, cuda or cuda:N (default: cpu; with --resume, "
                                                   "the run's own)")
    p.add_argument("--backend", choices=TRAIN_BACKENDS,
                   help="eager (the original loop), compile (torch.compile'd loss) or cudagraph (CUDA graphs) "
                        "(default: eager; with --resume, the run's own)")
    p.add_argument("--dataset", choices=DATASETS, help=f"training data (default: {defaults['dataset']})")
    p.add_argument("--n-points", type=_positive_int, help=f"points in the dataset (default: {defaults['n_points']})")
    p.add_argument("--epochs", type=_non_negative_int,
                   help="epochs in all; with --resume, the new total (not for a cosine schedule, which is laid "
                        f"out over the run) (default: {defaults['epochs']})")
    p.add_argument("--batch-size", type=_positive_int,
                   help="points per optimizer step, the global batch: under torchrun each of W ranks takes "
                        f"batch/W of them (default: {defaults['batch_size']})")
    p.add_argument("--lr", type=float, help=f"Adam learning rate (default: {defaults['lr']})")
    p.add_argument("--n-steps", type=_positive_int, help=f"diffusion steps T (default: {defaults['n_steps']})")
    p.add_argument("--num-units", type=_positive_int, help=f"hidden width H (default: {defaults['num_units']})")
    p.add_argument("--schedule", dest="schedule_kind", choices=SCHEDULE_KINDS,
                   help=f"noise schedule (default: {defaults['schedule_kind']})")
    p.add_argument("--snapshot-every", type=_non_negative_int,
                   help=f"epochs between sample snapshots, 0: none (default: {defaults['snapshot_every']})")
    p.add_argument("--seed", type=_non_negative_int, help=f"data and torch seed (default: {defaults['seed']})")
    p.add_argument("--lr-schedule", choices=LR_SCHEDULES,
                   help=f"learning rate over the run: constant, or cosine to 0 (default: {defaults['lr_schedule']})")
    p.add_argument("--warmup-steps", type=_non_negative_int,
                   help=f"optimizer steps of linear learning-rate warm-up (default: {defaults['warmup_steps']})")
    p.add_argument("--ema-decay", type=_ema_decay,
                   help="decay of the weights' moving average that the checkpoint keeps, 0: none "
                        f"(default: {defaults['ema_decay']})")
    p.add_argument("--out", default="runs/train", help="directory for checkpoint.pt, snapshots.pt and pictures")
    p.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    p.add_argument("--overwrite", action="store_true", help="replace a checkpoint already in --out")
    p.add_argument("--save-every", type=_non_negative_int, default=100,
                   help="epochs between resumable checkpoints, 0: only at the end or on Ctrl-C")
    p.add_argument("--quiet", action="store_true", help="no progress bar or status lines")
    p.set_defaults(func=cmd_train)


def _sampler_options(p, many: bool = False) -> None:
    from .samplers import GRIDS, PRIORS, SAMPLERS
    if many:
        p.add_argument("--sampler", default="ddpm",
                       help=f"comma-separated samplers ({', '.join(SAMPLERS)}); --steps pairs with them")
        p.add_argument("--steps", default="",
                       help="comma-separated steps, one per sampler (empty: each sampler's default)")
    else:
        p.add_argument("--sampler", default="ddpm", choices=SAMPLERS,
                       help="ddpm: the original (all T steps); ddim, dpm++2m, unipc: few-step samplers")
        p.add_argument("--steps", type=_positive_int,
                       help="sampler steps K (default: T for ddpm, 10 for the others)")
    p.add_argument("--prior", choices=PRIORS,
                   help="x_T ~ N(0, I) (unit), or N(0, (1 - abar_t0) I) with t0 the grid's first timestep "
                        "(matched; the few-step samplers' default)")
    p.add_argument("--eta", type=float, help="ddim only: noise of each step, 0 (deterministic) to 1")
    p.add_argument("--grid", help=f"timestep grid: {', '.join(GRIDS)}, tuned, or comma-separated timesteps "
                                  f"(default: the model's tuned grid if it has one, else the sampler's best)")


def _grid(text):
    """--grid: a name, or comma-separated integer timesteps."""
    if text is None or not any(c.isdigit() for c in text):
        return text
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"--grid {text!r}: a grid name or comma-separated integer timesteps") from None


def _sampler_kwargs(args) -> dict:
    """sample()'s sampler keywords from the command line."""
    return {"sampler": args.sampler, "steps": args.steps, "prior": args.prior, "eta": args.eta,
            "grid": _grid(args.grid)}


def _common(p, n_default, backend=True, n_type=_positive_int, sampler=None):
    sampler = backend if sampler is None else sampler
    p.add_argument("--checkpoint", help="checkpoint file, or a bundled model: seed (the default: the original "
                                        "recipe) or best")
    p.add_argument("--device", type=_device, default="cuda" if torch.cuda.is_available() else "cpu",
                   help="where to sample: cpu, cuda or cuda:N")
    p.add_argument("--seed", type=_non_negative_int, default=0, help="seed of the sampler's noise")
    if n_default is not None:
        p.add_argument("--num-samples", "--n", dest="n", type=n_type, default=n_default,
                       help="number of points (1e6 style accepted); --n is short for it (torchrun refuses --n)")
    if backend:
        from .backends import PRECISIONS, backend_names
        p.add_argument("--backend", default="auto", choices=backend_names(), help="sampling backend (README)")
        p.add_argument("--precision", default="fp32", choices=PRECISIONS,
                       help="fp32 (float32-level error), tf32 or bf16 (faster on a GPU)")
    if sampler:
        _sampler_options(p)
    p.add_argument("--compile-mode", default="default", choices=COMPILE_MODES,
                   help="torch.compile mode of the 'compile' backend")
    p.add_argument("--quiet", action="store_true", help="no progress bars or status lines on stderr")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ddpm-fast", description=__doc__, formatter_class=_HelpFormatter)
    parser.add_argument("--version", action="version", version=f"ddpm-fast {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)

    def command(name, help_text):
        return sub.add_parser(name, help=help_text, description=help_text, formatter_class=_HelpFormatter)

    p = command("demo", "the main job: bundled model, 10,000 samples, pictures, quality, timing")
    _common(p, 10_000, backend=False, n_type=_at_least_2)
    p.add_argument("--precision", default="fp32", choices=("fp32", "tf32", "bf16"),
                   help="fp32 (float32-level error), tf32 or bf16 (faster on a GPU)")
    p.add_argument("--out", default="runs/demo", help="directory for the pictures")
    p.set_defaults(func=cmd_demo)

    p = command("sample", "sample points to samples.npy, samples.csv and samples.png")
    _common(p, 10_000)
    p.add_argument("--out", default="runs/sample", help="directory for the samples (under torchrun: part-<rank>.npy "
                                                        "and manifest.json)")
    p.add_argument("--chunk-size", type=_positive_int, default=DEFAULT_CHUNK,
                   help="rows sampled (and, under torchrun, written) at a time; with row-keyed noise (torchrun, "
                        "--keyed, or more points than this) the rows depend on it only by float32 rounding")
    p.add_argument("--keyed", action="store_true",
                   help="row-keyed noise: draw the noise a torchrun run of any world size draws, so the rows "
                        "agree with its rows to float32 rounding (default: keyed only when the points are cut into "
                        "chunks; unchunked eager keeps torch's stream)")
    p.add_argument("--resume", action="store_true",
                   help="under torchrun: keep the parts of an earlier run of this command whose sha256 still matches")
    p.set_defaults(func=cmd_sample)

    p = command("plot", "dataset, q(x_t) grid, reverse trajectory, loss curve, GIF")
    _common(p, 10_000)
    p.add_argument("--dataset", default="s_curve", choices=DATASETS, help="the data to draw beside the model")
    p.add_argument("--out", default="runs/plot", help="directory for the pictures")
    p.set_defaults(func=cmd_plot)

    p = command("evaluate", "SWD and MMD to fresh data, with the data-vs-data floor")
    _common(p, 10_000, n_type=_at_least_2)
    p.add_argument("--dataset", default="s_curve", choices=DATASETS, help="the data the model should match")
    p.add_argument("--draws", type=_positive_int, default=3, help="independent draws; the median is reported")
    p.add_argument("--samples", help="score these points instead of sampling: a sharded run's folder "
                                     "(manifest checked) or a .npy file; --draws blocks of --n rows")
    p.add_argument("--sweep", action="store_true",
                   help="quality (SWD) and wall time vs number of steps for several samplers, as a table")
    p.add_argument("--sweep-samplers", default="ddpm,ddim,dpm++2m,unipc", help="--sweep: comma-separated samplers")
    p.add_argument("--sweep-steps", default="5,10,20,50,100", help="--sweep: comma-separated numbers of steps")
    p.add_argument("--json", help="--sweep: write the rows as JSON here (rewritten after every row)")
    p.add_argument("--plot", help="--sweep: write the quality and time vs steps picture here (PNG)")
    p.set_defaults(func=cmd_evaluate)

    p = command("tune-steps", "search a few-step sampler's integer timesteps for a model; save them with it")
    _common(p, 20_000, sampler=False)
    p.add_argument("--sampler", default="dpm++2m", choices=("ddim", "dpm++2m", "unipc", "ddpm"),
                   help="the sampler whose grid is searched")
    p.add_argument("--steps", type=_positive_int, default=5, help="sampler steps K")
    p.add_argument("--max-evaluations", type=_positive_int, default=300,
                   help="sampling runs at most (each: --n points x 2 seeds, scored by SWD)")
    p.add_argument("--out", help="checkpoint to write with the grid in its metadata (default: --checkpoint "
                                 "itself; for the bundled model runs/tune-steps/checkpoint.pt)")
    p.set_defaults(func=cmd_tune_steps)

    p = command("bench", "throughput of the backends: median, p20/p80, TFLOP/s, ceiling")
    _common(p, None, backend=False)
    p.add_argument("--num-samples", "--n", dest="n", default="1000,10000",
                   help="comma-separated N values (1e5 style accepted); --n is short for it")
    p.add_argument("--backends", default="", help="comma-separated backend names (empty: all)")
    p.add_argument("--precisions", default="fp32", help="comma-separated: fp32, tf32, bf16")
    p.add_argument("--repeats", type=_positive_int, default=10, help="timed calls per case")
    p.add_argument("--warmup", type=_non_negative_int, default=2, help="untimed calls after the first")
    p.add_argument("--json", help="write the results as JSON here (rewritten after every case)")
    p.add_argument("--plot", help="write the log-log throughput plot here (PNG)")
    p.add_argument("--sampler", default="ddpm",
                   help="comma-separated samplers (ddpm, ddim, dpm++2m, unipc), each a sweep of its own")
    p.add_argument("--steps", default="", help="comma-separated steps, one per sampler (empty: their defaults)")
    p.add_argument("--priority", action="store_true",
                   help="most important rows first (eager fp32, then cudagraph/triton-fused in tf32, bf16, fp32)")
    p.set_defaults(func=cmd_bench)

    p = command("bench-train", "throughput of the training backends: steps/s and samples/s per batch size")
    p.add_argument("--device", type=_device, default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--backends", default="eager,compile,cudagraph",
                   help="comma-separated training backends (those that cannot run here are skipped)")
    p.add_argument("--batch-sizes", default="128,1024", help="comma-separated batch sizes")
    p.add_argument("--n-points", type=_positive_int, default=10_000, help="points in the dataset (an epoch)")
    p.add_argument("--epochs", type=_positive_int, default=6, help="timed epochs per case (at least 2)")
    p.add_argument("--warmup-epochs", type=_positive_int, default=2,
                   help="untimed epochs first (compiling; cudagraph's first epoch runs eagerly, its second captures)")
    p.add_argument("--json", help="write the results as JSON here (rewritten after every case)")
    p.add_argument("--plot", help="write the samples/s vs batch size plot here (PNG)")
    p.add_argument("--quiet", action="store_true", help="no status lines on stderr")
    p.set_defaults(func=cmd_bench_train)

    p = command("time-to-quality", "train recipes and plot sample quality (SWD) against training seconds")
    p.add_argument("--recipes", default="seed,fast", help=f"comma-separated recipes: {', '.join(RECIPES)}")
    p.add_argument("--device", type=_device, default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--backend", default="eager", choices=TRAIN_BACKENDS, help="training backend")
    p.add_argument("--draws", type=_positive_int, default=3, help="draws per score; the median is reported")
    p.add_argument("--num-samples", "--n", dest="n", type=_at_least_2, default=10_000,
                   help="samples per draw; --n is short for it")
    p.add_argument("--out", default="runs/time_to_quality", help="directory for the JSON and the picture")
    p.add_argument("--quiet", action="store_true", help="no status lines on stderr")
    p.set_defaults(func=cmd_time_to_quality)

    p = command("profile", "torch.profiler trace (Chrome JSON) and top kernels of one backend")
    _common(p, 10_000)
    p.add_argument("--top", type=_positive_int, default=15, help="rows of the kernel table")
    p.add_argument("--out", default="runs/profile", help="directory for the trace")
    p.set_defaults(func=cmd_profile)
    return parser


def _describe(err: BaseException) -> str:
    if isinstance(err, OSError) and err.filename:
        return f"{err.filename}: {err.strerror or err}"
    return str(err) or type(err).__name__


SHARDED_COMMANDS = ("sample", "train", "bench")  # the others would run W copies writing the same files


def main(argv=None) -> int:
    claim_rank_gpu()  # under torchrun: a bare 'cuda' is this rank's GPU from the start
    args = build_parser().parse_args(argv)
    if getattr(args, "compile_mode", None):
        set_compile_mode(args.compile_mode)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if launched_by_torchrun() and int(os.environ["WORLD_SIZE"]) > 1 and args.command not in SHARDED_COMMANDS:
            raise ValueError(f"only {', '.join(SHARDED_COMMANDS)} run on several ranks; run {args.command} "
                             "without torchrun")
        return args.func(args)
    except (ValueError, TypeError, RuntimeError, OSError) as err:  # bad input, missing GPU, unwritable path
        print(f"ddpm-fast {args.command}: error: {_describe(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ddpm-fast {args.command}: interrupted", file=sys.stderr)
        return 130
