"""What the commands share: status lines, loading a model, sampling it, the output, disk and
finiteness checks, and the benchmark reports. Takes values, never the argparse Namespace;
torch loads inside the functions, when a command runs."""
from __future__ import annotations

import math
import os
import shutil
import sys

from ..constants import PRETRAINED


class Status:
    """What a long step is doing, on stderr (stdout keeps the command's result)."""

    def __init__(self, command: str, quiet: bool = False) -> None:
        self.command, self.quiet = command, quiet

    def __call__(self, message: str, always: bool = False) -> None:
        if always or not self.quiet:
            print(f"ddpm-fast {self.command}: {message}", file=sys.stderr, flush=True)


def checkpoint_path(checkpoint) -> str:
    """--checkpoint: a file, or the name of a bundled model (default: seed)."""
    from ..checkpoint import pretrained_path
    if not checkpoint or checkpoint in PRETRAINED:
        return pretrained_path(checkpoint or "seed")
    if not os.path.exists(checkpoint):
        raise FileNotFoundError(f"checkpoint {checkpoint!r} does not exist (the bundled models are named "
                                f"{', '.join(PRETRAINED)})")
    return checkpoint


def load(checkpoint, device: str):
    """(model, schedule, metadata) of --checkpoint on ``device``."""
    from ..checkpoint import load_checkpoint
    return load_checkpoint(checkpoint_path(checkpoint), map_location=device)


def check_finite(points, what: str) -> None:
    """``points`` [N, 2] or a trajectory [T+1, N, 2]: refuse to write NaN or inf."""
    import torch
    bad_rows = (~torch.isfinite(points)).any(dim=-1)  # [N] or [T+1, N]
    bad = int((bad_rows.any(dim=0) if points.dim() == 3 else bad_rows).sum())
    if bad:
        raise ValueError(f"{what}: {bad} of {points.shape[-2]} points are NaN or infinite; nothing written")


def check_disk(directory: str, n_bytes: int, what: str) -> None:
    """``directory`` (or the existing folder it will be made in) has room for ``n_bytes``."""
    from .._checks import format_bytes
    from .._values import TooLarge
    while not os.path.exists(directory):
        directory = os.path.dirname(os.path.abspath(directory))
    free = shutil.disk_usage(directory).free
    if n_bytes > free:
        raise TooLarge(f"{what} needs about {format_bytes(n_bytes)} on disk and {directory} has "
                         f"{format_bytes(free)} free")


def check_plan(model, schedule, sampler_kwargs: dict, final_noise: bool = True):
    """The sampler flags make a plan for this model (steps, grid, eta, tuned grid): checked before
    anything is written or any long step starts. Returns the plan."""
    from ..samplers import make_plan, plan_sources
    return make_plan(schedule, final_noise=final_noise, **plan_sources(model), **sampler_kwargs)


def check_backend(backend: str, device: str, precision: str, point_steps: int | None = None) -> str:
    """The backend that will run (``auto`` resolved for ``point_steps``, rows x steps), or the reason
    none can: before any work."""
    import torch

    from ..backends import resolve_backend
    return resolve_backend(backend, torch.device(device), precision, point_steps=point_steps).name


def plan_fields(plan, prior, eta) -> dict:
    """What reproduces a run's sampler: its name, steps, grid and timesteps, prior and eta."""
    return {"sampler": plan.name, "steps": plan.steps, "grid": plan.grid, "timesteps": list(plan.timesteps),
            "prior": prior or ("unit" if plan.name == "ddpm" else "matched"), "prior_std": plan.prior_std,
            "eta": eta}


_FIRST_CALL = {"compile": "the first call compiles (minutes on a CPU)", "cudagraph": "the first call captures",
               "cpu-fused": "the first call compiles (seconds)",
               "triton-step": "the first call compiles", "triton-fused": "the first call compiles"}


def draw(model, schedule, n: int, *, device: str, backend: str, precision: str, compile_mode: str, seed: int,
         sampler_kwargs: dict, say: Status, trajectory: bool = False, **sample_options):
    """``n`` points [n, 2] (or the trajectory [K+1, n, 2]) with their backend, seconds and plan;
    refuses NaN or inf before anything is written. ``sample_options``: chunk_size, keyed."""
    import torch

    from .._timing import timed
    from ..sampling import p_sample_loop, sample
    plan = check_plan(model, schedule, sampler_kwargs)
    backend = check_backend(backend, device, precision, n * plan.steps)
    say(f"sampling {n} points, {plan.describe()}, with backend {backend!r} ({precision}) on {device}"
        + (f"; {_FIRST_CALL[backend]}" if backend in _FIRST_CALL else ""))
    if trajectory:
        def run():
            gen = torch.Generator(device).manual_seed(seed)
            states = p_sample_loop(model, (n, 2), schedule.n_steps, schedule.betas, schedule.one_minus_alphas_bar_sqrt,
                                   generator=gen, backend=backend, precision=precision, compile_mode=compile_mode,
                                   **sampler_kwargs)
            return torch.stack([s.detach() for s in states])
    else:
        def run():
            return sample(model, n, schedule=schedule, seed=seed, backend=backend, precision=precision,
                          compile_mode=compile_mode, device=torch.device(device), progress=not say.quiet,
                          **sample_options, **sampler_kwargs)
    out, seconds = timed(run, torch.device(device))
    check_finite(out, f"backend {backend!r}")
    return out, backend, seconds, plan


def check_json_and_plot(json_path, plot_path) -> None:
    """--json and --plot are writable file names, the picture of a known format, before any work."""
    from .._io import check_output_file
    for path in (json_path, plot_path):
        if path is not None:
            check_output_file(path)
    if plot_path is not None:
        check_picture_format(plot_path)


def check_picture_format(path: str) -> None:
    from ..plotting import plt
    formats = plt.figure().canvas.get_supported_filetypes()
    plt.close("all")
    ext = os.path.splitext(path)[1].lstrip(".").lower()
    if ext not in formats:
        raise ValueError(f"--plot {path!r}: {'no' if not ext else 'unknown'} picture format"
                         f"{' ' + repr(ext) if ext else ''}; end the name with one of "
                         f"{', '.join('.' + f for f in sorted(formats))}")


def saver(json_path, format_row):
    """``save(result)`` for a benchmark sweep: prints the rows not yet printed and rewrites --json,
    after every case, so a sweep cut short keeps what it measured."""
    from .._io import write_json
    reported = {"rows": 0}

    def save(result):
        for row in result["rows"][reported["rows"]:]:
            print(format_row(row), flush=True)
        reported["rows"] = len(result["rows"])
        if json_path:
            write_json(json_path, result)
    return save


def report(result, save, format_table, plot, plot_path, say: Status) -> int:
    """A finished sweep: saved, printed as a table, drawn to --plot; exit 1 if a case raised."""
    save(result)
    print(format_table(result))
    if plot_path is not None and result["rows"]:
        plot(result, plot_path)
    elif plot_path is not None:
        say(f"nothing was measured: {plot_path} not written", always=True)
    return 1 if result["failed"] else 0


def loss_history(meta: dict):
    """The checkpoint's per-epoch losses when they are a non-empty list of finite numbers, else None."""
    losses = meta.get("losses")
    if isinstance(losses, list) and losses and all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0
                                                   for v in losses):
        return losses
    return None
