"""Command line: ``ddpm-fast {train,distill,demo,sample,plot,evaluate,tune-steps,bench,bench-train,
time-to-quality,profile}`` (also ``python -m ddpm_fast``)."""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading

from .. import __version__
from .._values import TooLarge
from . import bench, distill, evaluate, options, sample, train

EXIT_OK = 0
EXIT_FAILED_CASE = 1  # bench, bench-train: a case raised (the others were measured)
EXIT_ERROR = 2  # bad input, a missing GPU, an unwritable path: one line on stderr
EXIT_INTERRUPTED = 130  # Ctrl-C (a stopped training run exits 128 + the signal, after saving)

SHARDED_COMMANDS = ("sample", "train", "bench")  # the others would run W copies writing the same files
FAMILIES = (train, distill, sample, evaluate, bench)  # each adds its commands' parsers, in the order of --help


def build_parser() -> options.Parser:
    parser = options.Parser(prog="ddpm-fast", description=__doc__, formatter_class=options.HelpFormatter)
    parser.add_argument("--version", action="version", version=f"ddpm-fast {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name, help_text):
        return sub.add_parser(name, help=help_text, description=help_text, formatter_class=options.HelpFormatter)

    for family in FAMILIES:
        family.add_parsers(sub, command)
    return parser


def _describe(err: BaseException) -> str:
    if isinstance(err, OSError) and err.filename:
        return f"{err.filename}: {err.strerror or err}"
    return str(err) or type(err).__name__


def _rank() -> str | None:
    """This process's rank under torchrun (which sets RANK and WORLD_SIZE), else None."""
    return os.environ.get("RANK") if "WORLD_SIZE" in os.environ else None


def _run(args) -> int:
    from ..distributed import claim_rank_gpu
    claim_rank_gpu()  # under torchrun: a bare 'cuda' is this rank's GPU from the start
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if _rank() is not None and int(os.environ["WORLD_SIZE"]) > 1 and args.command not in SHARDED_COMMANDS:
        raise ValueError(f"only {', '.join(SHARDED_COMMANDS)} run on several ranks; run {args.command} "
                         "without torchrun")
    return args.func(args)


def _load_torch() -> None:
    """Import numpy and torch with Ctrl-C held back: a SIGINT that lands inside torch's native
    start-up can abort the process or leave numpy half-imported. Held, it is delivered the moment
    they are loaded, as a plain KeyboardInterrupt."""
    can_hold = hasattr(signal, "pthread_sigmask") and threading.current_thread() is threading.main_thread()
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT}) if can_hold else None
    try:
        import numpy  # noqa: F401
        import torch  # noqa: F401
    finally:
        if held is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)


def main(argv=None) -> int:
    command = "ddpm-fast"
    try:
        args = build_parser().parse_args(argv)
        command = f"ddpm-fast {args.command}"
        _load_torch()
        return _run(args)
    except (ValueError, TypeError, RuntimeError, OSError) as err:  # bad input, missing GPU, unwritable path
        # Under torchrun every rank meets the same bad input: rank 0 says it. An error that can be
        # one rank's own (memory, disk, a device, a file system) is said by that rank too, with its number.
        rank = _rank()
        if rank in (None, "0"):
            print(f"{command}: error: {_describe(err)}", file=sys.stderr)
        elif isinstance(err, TooLarge) or not isinstance(err, (ValueError, TypeError)):
            print(f"{command} (rank {rank}): error: {_describe(err)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
