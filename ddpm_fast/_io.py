"""Writing files so that nothing is lost: a temporary name beside the target, flushed to disk,
then renamed over it (``os.replace`` is atomic on POSIX).

A failure part-way (a full disk, Ctrl-C, a crash) leaves the previous file as it was and no
half-written one. ``staged_outputs`` does the same for a group of files: all are written
first, then all are renamed, so a failure while writing any of them changes none (the
renames themselves follow one another in microseconds; a crash exactly between two of them
would leave a mix). A replaced file keeps its permissions. A symlink is written through (its
target is replaced); devices and other special files (``/dev/null``, ``/dev/stdout``) are
written in place.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from typing import Iterator

# Temporaries of the groups being written now. A writer that is atomic itself (save_checkpoint,
# the plotting functions) and is handed one of them writes it in place: the outer group renames it.
_IN_FLIGHT: set[str] = set()


def _temp_beside(path: str) -> str:
    # Same directory (a rename across filesystems is not atomic) and the same extension, which
    # np.save, matplotlib and Pillow read to choose the format. Hidden, so a crash's leftover
    # is easy to tell apart.
    directory, name = os.path.split(os.path.abspath(path))
    stem, ext = os.path.splitext(name)
    return os.path.join(directory, f".{stem}.{secrets.token_hex(4)}.tmp{ext}")


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: str) -> None:
    try:  # makes the rename itself durable; not every platform can open a directory
        _fsync(directory)
    except OSError:
        pass


def remove_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


class StagedOutputs:
    """Temporary paths for a group of output files, renamed onto their targets together.

    >>> with staged_outputs() as out:
    ...     np.save(out.path("runs/x.npy"), array)   # write to out.path(target)
    ...     fig.savefig(out.path("runs/x.png"))
    # both renamed here; on an exception both temporaries are removed, the old files kept
    """

    def __init__(self) -> None:
        self._pending: list[tuple[str, str]] = []  # (temporary, target)

    def path(self, target) -> str:
        target = os.fsdecode(target)
        if writes_in_place(target) or os.path.abspath(target) in _IN_FLIGHT:
            return target
        target = os.path.realpath(target)  # through a symlink: replace what it points to
        if os.path.isdir(target):
            raise IsADirectoryError(21, "is a directory, not a file", target)
        # the output directory is created here, when the first file is written: a command that
        # stops on a check leaves no empty directory behind (check_output_dir creates nothing)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        temp = _temp_beside(target)
        self._pending.append((temp, target))
        _IN_FLIGHT.add(temp)
        return temp

    def commit(self) -> list[str]:
        for temp, target in self._pending:
            if not os.path.exists(temp):
                raise FileNotFoundError(2, "nothing was written for", target)
            if os.path.exists(target):
                os.chmod(temp, stat.S_IMODE(os.stat(target).st_mode))
            _fsync(temp)
        for temp, target in self._pending:
            os.replace(temp, target)
        for directory in {os.path.dirname(os.path.abspath(t)) for _, t in self._pending}:
            _fsync_dir(directory)
        written = [target for _, target in self._pending]
        self._forget()
        return written

    def discard(self) -> None:
        for temp, _ in self._pending:
            remove_quietly(temp)
        self._forget()

    def _forget(self) -> None:
        _IN_FLIGHT.difference_update(temp for temp, _ in self._pending)
        self._pending = []


@contextlib.contextmanager
def staged_outputs() -> Iterator[StagedOutputs]:
    staged = StagedOutputs()
    try:
        yield staged
    except BaseException:
        staged.discard()
        raise
    try:
        staged.commit()
    except BaseException:
        staged.discard()
        raise


@contextlib.contextmanager
def atomic_path(target) -> Iterator[str]:
    """A temporary path to write ``target`` through; renamed onto it when the block succeeds."""
    with staged_outputs() as staged:
        yield staged.path(target)


def write_json(path, obj, indent: int = 2) -> str:
    """``obj`` as JSON at ``path``, through a temporary name (see ``atomic_path``)."""
    with atomic_path(path) as temp, open(temp, "w") as f:
        json.dump(obj, f, indent=indent)
    return os.fsdecode(path)


def writes_in_place(path) -> bool:
    """A device, FIFO or socket (``/dev/null``, a pipe), or any path under /dev or /proc
    (``/dev/stdout`` may name a redirected file the shell holds open): written to, never
    renamed over."""
    if os.path.abspath(path).startswith(("/dev/", "/proc/")):
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def _nearest_existing(path: str) -> str:
    """``path`` itself, or its nearest ancestor that exists."""
    path = os.path.abspath(path)
    while not os.path.lexists(path):  # a broken symbolic link exists, and is no directory
        path = os.path.dirname(path)
    return path


def check_output_dir(path) -> str:
    """Prove that ``path`` is, or can be created as, a writable directory; returns it. Creates
    nothing: the directory appears with the first file written into it (``staged_outputs``).

    Raises OSError (with the path) for a file where a directory is expected, or a directory
    that cannot be written to (``path`` itself, or the existing ancestor it would be made in).
    """
    path = os.fsdecode(path)
    if not path:
        raise ValueError("the output directory is an empty string")
    existing = _nearest_existing(path)
    if not os.path.isdir(existing):
        raise NotADirectoryError(20, "is a file, not a directory",
                                 path if existing == os.path.abspath(path) else existing)
    probe = _temp_beside(os.path.join(existing, "write-probe"))
    try:  # os.access misses read-only mounts and some ACLs; creating a file does not
        with open(probe, "wb"):
            pass
    except OSError as err:
        where = "into this directory" if existing == os.path.abspath(path) else f"into {existing} to create it"
        raise OSError(err.errno, f"cannot write {where} ({err.strerror})", path) from None
    finally:
        remove_quietly(probe)
    return path


def check_output_file(path) -> str:
    """``path`` can be written: not a directory, in a directory that is or can be made writable."""
    path = os.fsdecode(path)
    if not path:
        raise ValueError("the output file is an empty string")
    if writes_in_place(path):
        return path
    if os.path.isdir(path):
        raise IsADirectoryError(21, "is a directory, not a file", path)
    check_output_dir(os.path.dirname(os.path.realpath(path)))
    return path


def check_outputs(directory, names=()) -> list[str]:
    """The one pre-check of a command's outputs, before any work: ``directory`` can hold them and
    each of ``names`` in it can be written. Returns the files' paths; creates nothing."""
    directory = check_output_dir(directory)
    return [check_output_file(os.path.join(directory, name)) for name in names]
