"""``train``: a recipe, or one resumed, on one process or data-parallel under torchrun; Ctrl-C
(or SIGTERM) saves the last finished epoch."""
from __future__ import annotations

import json
import math
import os
import shlex
import signal
import threading
from dataclasses import dataclass, fields, replace

from ..constants import DATASETS, LR_SCHEDULES, SCHEDULE_KINDS, TRAIN_BACKENDS, TRAIN_PRECISIONS
from ..training.config import RECIPES, TrainConfig, snapshot_every_steps
from . import options
from .common import Status

FINAL_POINTS = 10_000  # points in trajectory_final.png: the seed recipe's snapshots', and a bound
TRAIN_FLAGS = ("dataset", "n_points", "epochs", "batch_size", "lr", "n_steps", "num_units", "schedule_kind",
               "snapshot_every", "seed", "lr_schedule", "warmup_steps", "ema_decay", "precision")


def _recipe_values(name: str) -> str:
    """A training flag's default in --help: its value, or each recipe's where they differ."""
    values = [str(getattr(recipe, name)) for recipe in RECIPES.values()]
    if len(set(values)) == 1:
        return values[0]
    return ", ".join(f"{recipe} {value}" for recipe, value in zip(RECIPES, values))


def add_parsers(sub, command) -> None:
    defaults = {f.name: _recipe_values(f.name) for f in fields(TrainConfig)}
    p = sub.add_parser("train", help="train a model: the original recipe, or a faster one (resumable)",
                       description="Train a model. --recipe seed is the original script (bit for bit on the CPU "
                                   "with --backend eager); fast reaches its quality in about 30 s on 2 CPU "
                                   "cores; best trains the bundled 'best' model. Flags override the recipe. "
                                   "Ctrl-C (or SIGTERM) saves the last finished epoch; --resume continues it bit "
                                   "for bit.", formatter_class=options.HelpFormatter)
    # Training flags default to None so that --resume can tell which ones were given.
    p.add_argument("--recipe", choices=list(RECIPES),
                   help="the training recipe that the flags below override (default: seed)")
    p.add_argument("--device", type=options.device,
                   help="where to train: cpu, cuda or cuda:N (default: cpu; with --resume, the run's own)")
    p.add_argument("--backend", choices=TRAIN_BACKENDS,
                   help="eager (the original loop), compile (torch.compile'd loss) or cudagraph (CUDA graphs) "
                        "(default: eager; with --resume, the run's own)")
    p.add_argument("--dataset", choices=DATASETS, help=f"training data (default: {defaults['dataset']})")
    p.add_argument("--n-points", type=options.positive_int,
                   help=f"points in the dataset (default: {defaults['n_points']})")
    p.add_argument("--epochs", type=options.non_negative_int,
                   help="epochs in all; with --resume, the new total (not for a cosine schedule, which is laid "
                        f"out over the run) (default: {defaults['epochs']})")
    p.add_argument("--batch-size", type=options.positive_int,
                   help="points per optimizer step, the global batch: under torchrun each of W ranks takes "
                        f"batch/W of them (default: {defaults['batch_size']})")
    p.add_argument("--lr", type=float, help=f"Adam learning rate (default: {defaults['lr']})")
    p.add_argument("--n-steps", type=options.positive_int, help=f"diffusion steps T (default: {defaults['n_steps']})")
    p.add_argument("--num-units", type=options.positive_int, help=f"hidden width H (default: {defaults['num_units']})")
    p.add_argument("--schedule", dest="schedule_kind", choices=SCHEDULE_KINDS,
                   help=f"noise schedule (default: {defaults['schedule_kind']})")
    p.add_argument("--snapshot-every", type=options.non_negative_int,
                   help=f"epochs between sample snapshots, 0: none (default: {defaults['snapshot_every']})")
    p.add_argument("--seed", type=options.non_negative_int, help=f"data and torch seed (default: {defaults['seed']})")
    p.add_argument("--lr-schedule", choices=LR_SCHEDULES,
                   help=f"learning rate over the run: constant, or cosine to 0 (default: {defaults['lr_schedule']})")
    p.add_argument("--warmup-steps", type=options.non_negative_int,
                   help=f"optimizer steps of linear learning-rate warm-up (default: {defaults['warmup_steps']})")
    p.add_argument("--ema-decay", type=options.ema_decay,
                   help="decay of the weights' moving average that the checkpoint keeps, 0: none "
                        f"(default: {defaults['ema_decay']})")
    p.add_argument("--precision", choices=TRAIN_PRECISIONS,
                   help="fp32, or bf16: the loss's forward and backward in bfloat16 on backend eager, the weights "
                        "and Adam in fp32 (on a 2-core AVX-512 CPU the fast recipe reached its quality 1.5x "
                        f"sooner) (default: {defaults['precision']})")
    p.add_argument("--out", default="runs/train", help="directory for checkpoint.pt, snapshots.pt and pictures")
    p.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    p.add_argument("--overwrite", action="store_true", help="replace a checkpoint already in --out")
    p.add_argument("--save-every", type=options.non_negative_int, default=100,
                   help="epochs between resumable checkpoints, 0: only at the end or on Ctrl-C")
    p.add_argument("--quiet", action="store_true", help="no progress bar or status lines")
    p.set_defaults(func=cmd_train)


@dataclass(frozen=True)
class TrainJob:
    """A training run with every flag checked: what ``cmd_train`` hands on."""
    out: str
    config: TrainConfig
    resume: tuple | None  # (model, train_state) of the run in --out, or None for a new run
    device: str
    backend: str
    save_every: int


def _output_names(config: TrainConfig) -> list[str]:
    names = ["checkpoint.pt", "snapshots.pt", "loss.png", "trajectory_final.png"]
    if config.snapshot_every and config.epochs:
        names.append(f"trajectory_epoch{(config.epochs - 1) // config.snapshot_every * config.snapshot_every}.png")
    return names


def _given(args, base: TrainConfig) -> TrainConfig:
    """``base`` with the training flags given on the command line."""
    return replace(base, **{name: getattr(args, name) for name in TRAIN_FLAGS if getattr(args, name) is not None})


def _check_device_and_backend(device: str, backend: str) -> None:
    from .._checks import check_device
    from ..training.steps import check_train_backend
    check_train_backend(backend, check_device(device))


def _check_config(config: TrainConfig, backend: str, out: str) -> str:
    """The config trains on ``backend`` and ``out`` can take its files: checkpoint.pt's path."""
    from .._io import check_outputs
    from ..training.steps import check_train_precision
    check_train_precision(config.precision, backend)
    return check_outputs(out, _output_names(config))[0]


def _new_run(args) -> TrainJob:
    import torch

    from .._checks import check_fits
    from ..training.config import training_bytes
    device, backend = args.device or "cpu", args.backend or "eager"
    _check_device_and_backend(device, backend)
    config = _given(args, RECIPES[args.recipe or "seed"])
    ckpt = _check_config(config, backend, args.out)
    final_picture = (config.n_steps + 1) * min(config.snapshot_points or config.n_points, FINAL_POINTS) * 2 * 4
    check_fits(training_bytes(config) + final_picture, torch.device(device), "this training run",
               "use a smaller --n-points, --num-units or --n-steps")
    if os.path.exists(ckpt) and not args.overwrite:
        raise FileExistsError(17, "holds a checkpoint: pass --resume to continue it or --overwrite "
                                  "to train a new model in its place", ckpt)
    return TrainJob(args.out, config, None, device, backend, args.save_every)


def _resumed_run(args, say: Status) -> TrainJob:
    from ..checkpoint import load_train_state
    if args.overwrite:
        raise ValueError("--resume continues the checkpoint in --out and --overwrite replaces it: pass one")
    if args.recipe is not None:
        raise ValueError("--resume continues the run with its own recipe: leave out --recipe")
    ckpt = os.path.join(args.out, "checkpoint.pt")
    model, _, meta, state = load_train_state(ckpt)  # before anything else: the run must exist
    device, backend = args.device or meta.get("device", "cpu"), args.backend or meta.get("backend", "eager")
    _check_device_and_backend(device, backend)  # the run's own unless given
    try:
        saved = TrainConfig(**state["config"])
    except (TypeError, ValueError) as err:
        raise ValueError(f"{ckpt!r}: its training config is not valid: {err}") from None
    config = _given(args, saved)
    _check_config(config, backend, args.out)
    done = len(state["losses"])
    if config.epochs < done:
        raise ValueError(f"--epochs {config.epochs} is fewer than the {done} epochs {ckpt} has done")
    snapshots = os.path.join(args.out, "snapshots.pt")
    if os.path.exists(snapshots):
        state["snapshots"] = _load_snapshots(snapshots)
    say(f"resuming {ckpt} after {done} of {config.epochs} epochs")
    return TrainJob(args.out, config, (model, state), device, backend, args.save_every)


def _load_snapshots(path: str) -> dict:
    import torch
    try:
        snapshots = torch.load(path, weights_only=True)
    except Exception as err:  # noqa: BLE001  (a damaged file fails in many ways inside torch.load)
        raise ValueError(f"{path!r} is not a readable snapshots file ({type(err).__name__}); move it away "
                         "to resume without the earlier snapshots") from None
    if not isinstance(snapshots, dict) or not all(isinstance(k, int) and isinstance(v, torch.Tensor)
                                                  for k, v in snapshots.items()):
        raise ValueError(f"{path!r} is not a dict of epoch -> tensor; move it away to resume without it")
    return snapshots


def cmd_train(args) -> int:
    from ..distributed import World, launched_by_torchrun, world
    from ..training.loop import check_data_parallel
    quiet = args.quiet or (launched_by_torchrun() and os.environ["RANK"] != "0")  # one rank speaks
    say = Status(args.command, quiet)
    job = _resumed_run(args, say) if args.resume else _new_run(args)
    if not launched_by_torchrun():
        return _train_and_save(job, World(), say)
    # data-parallel: every rank trains, rank 0 alone writes; a resumed run's cuda:0 means each rank's own GPU
    with world(args.device or job.device.split(":")[0]) as ranks:
        job = replace(job, device=str(ranks.device))
        check_data_parallel(ranks, job.backend, job.config)
        batch = job.config.batch_size
        per_rank = batch / ranks.world_size
        say(f"training on {ranks.world_size} ranks ({job.backend}, {ranks.device.type}): global batch "
            f"{batch} = {per_rank:g} per rank x {ranks.world_size}"
            + ("" if per_rank.is_integer() else f" ({int(per_rank)} or {int(per_rank) + 1} rows each)"))
        return _train_and_save(job, ranks, say)


class StopOnSignal:
    """Ctrl-C or SIGTERM during training asks the loop to stop after the running epoch, which is
    then saved; a second Ctrl-C quits at once (the last periodic checkpoint stays). A signal that
    arrives while a checkpoint is being written waits for the write."""

    def __init__(self, command: str = "train", saving: str = "the last finished epoch") -> None:
        self.command, self.saving_what = command, saving
        self.signum = None
        self.saving = False
        self._previous = {}

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():  # where handlers can be set
            self._previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _tell(self, message: str) -> None:  # os.write: print() inside a signal handler can collide with tqdm's
        os.write(2, f"ddpm-fast {self.command}: {message}\n".encode())

    def _handle(self, signum, frame) -> None:
        if self.saving:  # a save takes a moment; cutting it short would only lose it
            self.signum = self.signum or signum  # still stop when it is done
            self._tell("saving a checkpoint: wait a moment")
            return
        if self.signum is not None:  # a second Ctrl-C: stop now, keep the last periodic checkpoint
            raise KeyboardInterrupt
        self.signum = signum
        self._tell(f"{signal.Signals(signum).name}: saving {self.saving_what} (press Ctrl-C again to quit "
                   "without saving)")


def save_run(out: str, result) -> str:
    """checkpoint.pt (resumable) and snapshots.pt, renamed into place together."""
    import torch

    from .._io import staged_outputs
    from ..checkpoint import save_checkpoint
    ckpt, snapshots = os.path.join(out, "checkpoint.pt"), os.path.join(out, "snapshots.pt")
    with staged_outputs() as staged:
        save_checkpoint(staged.path(ckpt), result.model, result.schedule,
                        {**result.metadata(), "losses": result.losses}, train_state=result.train_state())
        if result.snapshots:
            torch.save(result.snapshots, staged.path(snapshots))
    if not result.snapshots and os.path.exists(snapshots):  # an overwritten run's: not this model's
        os.remove(snapshots)
    return ckpt


def _train(job: TrainJob, ranks, stop: StopOnSignal, say: Status):
    """The training loop with saves on rank 0: (result, checkpoint path)."""
    from ..training.loop import train

    def save(result):
        if not ranks.is_main:
            return os.path.join(job.out, "checkpoint.pt")
        stop.saving = True
        try:
            return save_run(job.out, result)
        finally:
            stop.saving = False

    def periodic_save(result):
        if job.save_every and result.epochs_done % job.save_every == 0 and math.isfinite(result.losses[-1]):
            save(result)

    result = train(job.config, progress=not say.quiet, device=job.device, backend=job.backend, resume=job.resume,
                   should_stop=lambda: stop.requested, on_epoch_end=periodic_save)
    if result.losses and not math.isfinite(result.losses[-1]):
        raise ValueError(f"training diverged: the mean loss of epoch {result.epochs_done} is "
                         f"{result.losses[-1]}; this run's checkpoint is not written (try a lower --lr)")
    say(f"saving {job.out}/checkpoint.pt after {result.epochs_done} of {job.config.epochs} epochs")
    return result, save(result)


def _train_and_save(job: TrainJob, ranks, say: Status) -> int:
    with StopOnSignal() as stop:
        try:
            result, ckpt = _train(job, ranks, stop, say)
        except KeyboardInterrupt:
            say(f"quit without saving the epochs since the last periodic checkpoint (every {job.save_every} "
                f"epochs) in {job.out}", always=True)
            raise
    signum = stop.signum or signal.SIGTERM  # a rank stopped by the others' agreement got no signal itself
    if not ranks.is_main:
        return 128 + signum if result.interrupted else 0
    written = [ckpt] + ([os.path.join(job.out, "snapshots.pt")] if result.snapshots else [])
    written += draw_training_pictures(job, result, say)
    report = {"checkpoint": ckpt, "epochs_done": result.epochs_done, "epochs": job.config.epochs,
              "final_loss": result.losses[-1] if result.losses else None,
              "wall_time_s": round(result.wall_time_s, 1), "device": result.device, "backend": result.backend,
              "compile_s": round(result.compile_s, 1), "world_size": ranks.world_size,
              "global_batch": job.config.batch_size, "per_rank_batch": result.metadata()["per_rank_batch"],
              "written": written}
    if result.interrupted:
        report["resume_with"] = f"ddpm-fast train --out {shlex.quote(job.out)} --resume"
        if ranks.distributed:
            report["resume_with"] = f"torchrun --nproc-per-node {ranks.world_size} -m ddpm_fast train " \
                                    f"--out {shlex.quote(job.out)} --resume"
    print(json.dumps(report, indent=2, allow_nan=False))
    if result.interrupted:
        say(f"stopped after {result.epochs_done} of {job.config.epochs} epochs; resume with: "
            f"{report['resume_with']}", always=True)
        return 128 + signum
    return 0


def _epochs(k: int) -> str:
    return f"{k} epoch{'s' * (k != 1)}"


def draw_training_pictures(job: TrainJob, result, say: Status) -> list[str]:
    """loss.png, the last snapshot's trajectory_epoch<E>.png (E: the 0-based epoch it was taken
    after, as the original names them) and trajectory_final.png, the model as saved."""
    from ..plotting import plot_loss, plot_trajectory
    if not result.losses:
        return []
    say("drawing the loss curve" + (", the last snapshot" if result.snapshots else "")
        + " and the final model's reverse process")
    config, written = job.config, [plot_loss(result.losses, os.path.join(job.out, "loss.png"))]
    every = snapshot_every_steps(config.n_steps)
    if result.snapshots:
        last = max(result.snapshots)  # 0-based: the snapshot taken after epoch `last` + 1
        written.append(plot_trajectory(result.snapshots[last], os.path.join(job.out, f"trajectory_epoch{last}.png"),
                                       n_steps=config.n_steps, every=every,
                                       title=f"reverse process at epoch {last} (after {_epochs(last + 1)})"))
    written.append(plot_trajectory(_final_states(result, config), os.path.join(job.out, "trajectory_final.png"),
                                   n_steps=config.n_steps, every=every,
                                   title=f"reverse process of the final model (after {_epochs(result.epochs_done)})"))
    return written


def _final_states(result, config: TrainConfig):
    """The saved model's reverse process from fresh noise (seeded by the run's seed; the training
    stream is left alone): the 10 states a snapshot keeps, [10, n, 2], for as many points as a
    snapshot (at most FINAL_POINTS)."""
    import torch

    from ..sampling import p_sample_loop
    schedule, n = result.schedule, min(config.snapshot_points or config.n_points, FINAL_POINTS)
    generator = torch.Generator(schedule.betas.device).manual_seed(config.seed)
    with torch.no_grad():
        states = p_sample_loop(result.model, (n, 2), config.n_steps, schedule.betas,
                               schedule.one_minus_alphas_bar_sqrt, generator=generator)
    every = snapshot_every_steps(config.n_steps)
    return torch.stack(states[every::every][:10]).cpu()  # as a snapshot: T = 100: x_seq[10], ..., x_seq[100]
