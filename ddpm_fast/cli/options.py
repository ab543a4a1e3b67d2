"""argparse pieces of the command line: the parser and help classes, the value types, and the
option groups several commands share. Imports no torch: ``--help`` and argument errors stay fast
(a ``cuda`` device alone loads torch, to check that the GPU is there)."""
from __future__ import annotations

import argparse
import math
import os
import re

from ..constants import BACKENDS, COMPILE_MODES, GRIDS, PRECISIONS, PRIORS, SAMPLERS


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows '(default: X)' for every option that has a default to show."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (no usage block): 'ddpm-fast sample: error: ...'."""

    def error(self, message):
        # under torchrun every rank parses the same arguments: rank 0 alone says what is wrong
        silent = "WORLD_SIZE" in os.environ and os.environ.get("RANK", "0") != "0"
        self.exit(2, None if silent else f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def integer(text: str) -> int:
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


def int_at_least(minimum: int, why: str = ""):
    def parse(text: str) -> int:
        value = integer(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}{why}, got {value}")
        return value
    parse.__name__ = f"integer >= {minimum}"  # argparse names the type in some messages
    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)
at_least_2 = int_at_least(2, " (SWD and MMD compare clouds of points)")


def chunk_size(text: str):
    """--chunk-size: "auto" (the device's default) or a count >= 1."""
    return text if text == "auto" else positive_int(text)


chunk_size.__name__ = "auto or integer >= 1"


def ema_decay(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1) (0: no EMA), got {text}")
    return value


_DEVICE = re.compile(r"([a-z_]+)(:\d+)?")
# torch's other device types: real devices, but not ones the commands run on
_OTHER_TORCH_DEVICES = ("meta", "mps", "xpu", "xla", "hip", "hpu", "mtia", "ipu", "lazy", "vulkan", "ve", "fpga",
                        "maia", "privateuseone")


def device(text: str) -> str:
    """cpu, cuda or cuda:N, checked against this machine (a missing GPU is said as such)."""
    match = _DEVICE.fullmatch(text)
    if match is None or match.group(1) not in ("cpu", "cuda", *_OTHER_TORCH_DEVICES):
        raise argparse.ArgumentTypeError(f"not a device: {text!r}; use cpu, cuda or cuda:N")
    if match.group(1) != "cuda":
        if match.group(1) != "cpu" or match.group(2) not in (None, ":0"):
            raise argparse.ArgumentTypeError(f"{text!r}: the commands run on cpu, cuda or cuda:N")
        return text
    from .._checks import check_device  # torch: only a GPU needs checking
    try:
        return str(check_device(text))
    except RuntimeError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def default_device() -> str:
    """``--device`` when not given: the GPU when there is one."""
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def names(text: str, known, what: str, unique: bool = False) -> list[str]:
    """Comma-separated names, each known (and with ``unique`` none twice), or an error listing the
    known ones."""
    given = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in given if name not in known]
    if unknown or not given:
        raise ValueError(f"unknown {what} {', '.join(map(repr, unknown)) or repr(text)}; known {what}: "
                         f"{', '.join(known)}")
    twice = sorted({name for name in given if given.count(name) > 1})
    if unique and twice:
        raise ValueError(f"{what} {', '.join(map(repr, twice))} given more than once: each is measured once")
    return given


def int_list(text: str, flag: str) -> list[int]:
    """Comma-separated counts >= 1 (1e6 style accepted), or an error naming the flag."""
    try:
        return [positive_int(k) for k in text.split(",")]
    except argparse.ArgumentTypeError as err:
        raise ValueError(f"{flag} {text!r}: {err}") from None


def grid(text):
    """--grid: a name, or comma-separated integer timesteps."""
    if text is None or not any(c.isdigit() for c in text):
        return text
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"--grid {text!r}: a grid name or comma-separated integer timesteps") from None


def sampler_kwargs(args) -> dict:
    """sample()'s sampler keywords from the command line (the boundary where args become values)."""
    return {"sampler": args.sampler, "steps": args.steps, "prior": args.prior, "eta": args.eta,
            "grid": grid(args.grid)}


def add_sampler_options(p) -> None:
    p.add_argument("--sampler", choices=SAMPLERS,
                   help="ddpm: the original (all T steps); ddim, dpm++2m, unipc: few-step samplers (default: "
                        "a distilled student's own plan, else ddpm)")
    p.add_argument("--steps", type=positive_int,
                   help="sampler steps K (default: T for ddpm, 10 for the others)")
    add_plan_options(p)


def add_plan_options(p) -> None:
    p.add_argument("--prior", choices=PRIORS,
                   help="x_T ~ N(0, I) (unit), or N(0, (1 - abar_t0) I) with t0 the grid's first timestep "
                        "(matched; the few-step samplers' default)")
    p.add_argument("--eta", type=float, help="ddim only: noise of each step, 0 (deterministic) to 1")
    p.add_argument("--grid", help=f"timestep grid: {', '.join(GRIDS)}, tuned, or comma-separated timesteps "
                                  f"(default: the model's tuned grid if it has one, else the sampler's best)")


def add_common(p, n_default, backend=True, n_type=positive_int, sampler=None) -> None:
    """The options of the commands that load a model: checkpoint, device, seed, N, backend, sampler."""
    sampler = backend if sampler is None else sampler
    p.add_argument("--checkpoint", help="checkpoint file, or a bundled model: seed (the default: the original "
                                        "recipe), best, or its distilled students distill-4, distill-2, distill-1")
    p.add_argument("--device", type=device, help="where to sample: cpu, cuda or cuda:N (default: cuda when a GPU "
                                                  "is available, else cpu)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the sampler's noise")
    if n_default is not None:
        p.add_argument("--num-samples", "--n", dest="n", type=n_type, default=n_default,
                       help="number of points (1e6 style accepted); --n is short for it (torchrun refuses --n)")
    if backend:
        p.add_argument("--backend", default="auto", choices=("auto", *BACKENDS),
                       help="sampling backend (docs/backends.md)")
        p.add_argument("--precision", default="fp32", choices=PRECISIONS,
                       help="fp32 (float32-level error), tf32 or bf16 (faster on a GPU)")
    if sampler:
        add_sampler_options(p)
    p.add_argument("--compile-mode", default="default", choices=COMPILE_MODES,
                   help="torch.compile mode of the 'compile' backend")
    p.add_argument("--quiet", action="store_true", help="no progress bars or status lines on stderr")
