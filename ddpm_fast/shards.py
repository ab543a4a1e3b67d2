"""Sample folders: a sharded run's ``part-<rank>.npy`` files and the ``manifest.json`` that makes
the folder complete.

Each rank writes its rows to a temporary name chunk by chunk and renames the finished part
into place, with a record beside it (``part-<rank>.json``: the run's parameters, its rows
and the part's sha256). Rank 0 writes ``manifest.json`` last, after every rank has reported:
a folder without a manifest is incomplete (a rank failed or was killed, or the run is still
going), and ``load_samples`` refuses it. A rerun with ``resume`` keeps every part whose record
matches the run and whose bytes still hash to the recorded sha256.
"""
from __future__ import annotations

import json
import os
from typing import Callable

import numpy as np

from ._io import atomic_path, remove_quietly, write_json
from .distributed import file_sha256

MANIFEST = "manifest.json"
SHARED_MARKER = ".ddpm-fast-shared-check"  # rank 0's token that every rank must read back
FORMAT = "ddpm-fast samples"
VERSION = 1


def part_name(rank: int) -> str:
    return f"part-{rank:05d}.npy"


def _record_path(directory: str, rank: int) -> str:
    return os.path.join(directory, part_name(rank)[:-len(".npy")] + ".json")


def prepare_folder(directory: str, world_size: int) -> None:
    """Rank 0, before any rank writes: the old manifest goes first (the folder is incomplete from
    now until the new one is written), then parts of ranks this run does not have and the
    temporaries of killed ones."""
    remove_quietly(os.path.join(directory, MANIFEST))
    for name in os.listdir(directory):
        if (name.startswith(".part-") and ".tmp" in name) or name == SHARED_MARKER:  # a killed run's
            remove_quietly(os.path.join(directory, name))
        elif name.startswith("part-") and name.endswith((".npy", ".json")):
            rank = name[len("part-"):].split(".")[0]
            if not rank.isdigit() or int(rank) >= world_size:
                remove_quietly(os.path.join(directory, name))


def reusable_part(directory: str, rank: int, params: dict, rows: tuple, noise_device: str) -> tuple:
    """(record, None) when this rank's part was written by the same run for the same rows, with
    noise drawn on the same kind of device, and its bytes still hash to the recorded sha256;
    else (None, why not)."""
    path = os.path.join(directory, part_name(rank))
    try:
        with open(_record_path(directory, rank)) as f:
            record = json.load(f)
    except FileNotFoundError:
        return None, "no finished part"
    except (OSError, ValueError) as err:
        return None, f"its record is unreadable ({err})"
    saved = record.get("params") or {}
    differ = [f"{k} {saved.get(k)!r} then, {v!r} now" for k, v in params.items() if saved.get(k) != v]
    if record.get("rows") != list(rows):
        differ.append(f"rows {record.get('rows')} then, {list(rows)} now")
    if record.get("noise_device") != noise_device:
        differ.append(f"noise drawn on {record.get('noise_device')} then, {noise_device} now")
    if differ:
        return None, "another run: " + "; ".join(differ)
    if not os.path.isfile(path) or os.path.getsize(path) != record.get("bytes"):
        return None, "the part is missing or not of its recorded size"
    if file_sha256(path) != record.get("sha256"):
        return None, "its sha256 does not match its record (the file changed)"
    return record, None


def write_part(directory: str, rank: int, rows: tuple, params: dict, sample_rows: Callable, chunk: int,
               noise_device: str = "cpu", on_chunk: Callable[[int], None] | None = None) -> dict:
    """Rows [lo, hi) into ``part-<rank>.npy``: ``sample_rows(a, b)`` ([b - a, 2] float32 tensor) is
    called chunk by chunk and each chunk goes straight into the file (a memory map of a
    temporary name, renamed when complete). Returns the part's record, also written beside it."""
    lo, hi = rows
    path = os.path.join(directory, part_name(rank))
    with atomic_path(path) as temp:
        out = np.lib.format.open_memmap(temp, mode="w+", dtype=np.float32, shape=(hi - lo, 2))
        for a in range(lo, hi, chunk):
            b = min(a + chunk, hi)
            out[a - lo:b - lo] = sample_rows(a, b).cpu().numpy()
            if on_chunk is not None:
                on_chunk(b - a)
        out.flush()
        del out
        record = {"file": part_name(rank), "rank": rank, "rows": [lo, hi], "bytes": os.path.getsize(temp),
                  "sha256": file_sha256(temp), "noise_device": noise_device, "params": params}
    write_json(_record_path(directory, rank), record, indent=1)
    return record


def write_manifest(directory: str, params: dict, records: list) -> str:
    """Rank 0, after every rank reported its part: the manifest that makes the folder complete."""
    records = sorted(records, key=lambda r: r["rows"][0])
    reason = _tiling_fault(records, params["n"])
    if reason:
        raise RuntimeError(reason)
    manifest = {"format": FORMAT, "version": VERSION, **params, "shape": [params["n"], 2], "dtype": "float32",
                "parts": [{k: r[k] for k in ("file", "rank", "rows", "bytes", "sha256", "noise_device")}
                          for r in records]}
    return write_json(os.path.join(directory, MANIFEST), manifest, indent=1)


def _tiling_fault(parts: list, n) -> str | None:
    """Why the parts' rows do not tile [0, n) in order, or None when they do."""
    covered = 0
    for part in parts:
        if part["rows"][0] != covered:
            return f"{part['file']} starts at row {part['rows'][0]}, expected {covered}"
        covered = part["rows"][1]
    return None if covered == n else f"the parts cover {covered} rows, not n = {n}"


class SampleParts:
    """A sharded run's samples as one read-only [n, 2] float32 array over memory-mapped parts:
    ``len``, ``shape``, indexing by row (int, slice, or a tuple whose first index is a row slice)
    and ``np.asarray`` (which reads everything into memory). ``parts`` are the memmaps."""

    def __init__(self, parts: list, manifest: dict):
        self.parts, self.manifest = parts, manifest
        self.starts = np.cumsum([0] + [len(p) for p in parts])  # [P + 1] first row of each part
        self.shape = (int(self.starts[-1]), 2)
        self.dtype, self.ndim = np.dtype(np.float32), 2

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index):
        rows, rest = (index[0], index[1:]) if isinstance(index, tuple) else (index, ())
        if isinstance(rows, (int, np.integer)):
            row = int(rows) + (len(self) if rows < 0 else 0)
            if not 0 <= row < len(self):
                raise IndexError(f"row {rows} is outside [0, {len(self)})")
            p = int(np.searchsorted(self.starts, row, side="right")) - 1
            return self.parts[p][(row - self.starts[p], *rest)]
        if not isinstance(rows, slice):
            raise TypeError(f"SampleParts takes a row index or a row slice first, got {type(rows).__name__} "
                            "(np.asarray(samples) gives a plain array)")
        wanted = range(len(self))[rows]
        if wanted.step < 0:  # the same rows read forwards, then reversed
            return self[wanted[-1]:wanted[0] + 1:-wanted.step][::-1][(slice(None), *rest)] if len(wanted) else \
                np.empty((0, 2), np.float32)[(slice(None), *rest)]
        pieces = []
        for p, part in enumerate(self.parts):
            first = max(wanted.start, int(self.starts[p]))
            first += -(first - wanted.start) % wanted.step  # the part's first wanted row
            stop = min(wanted.stop, int(self.starts[p + 1]))
            if first < stop:
                pieces.append(part[first - self.starts[p]:stop - self.starts[p]:wanted.step])
        if len(pieces) == 1:  # within one part: a view of its memory map
            return pieces[0][(slice(None), *rest)]
        joined = np.concatenate(pieces) if pieces else np.empty((0, 2), np.float32)
        return joined[(slice(None), *rest)]

    def __array__(self, dtype=None, copy=None):
        if copy is False and len(self.parts) > 1:
            raise ValueError("the parts are separate memory maps: one array of them needs a copy")
        whole = self[:]
        return whole if dtype is None else whole.astype(dtype)

    def __repr__(self) -> str:
        return f"SampleParts(shape={self.shape}, parts={len(self.parts)})"


def _load_points(path: str) -> np.ndarray:
    """A .npy file of points [N, 2] (floating point), memory-mapped; anything else is refused
    with its shape or what the file is."""
    with open(path, "rb") as f:
        if f.read(6) != b"\x93NUMPY":  # the .npy magic: else numpy would try the file as a pickle
            raise ValueError(f"{path}: not a NumPy .npy file (written by numpy.save, e.g. ddpm-fast sample)")
    try:
        array = np.load(path, mmap_mode="r")
    except ValueError as err:  # an object array, or a damaged header
        raise ValueError(f"{path}: not a NumPy array of points ({err})") from None
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{path}: not a NumPy .npy array file")
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"{path}: holds an array of shape {list(array.shape)}; samples are points [N, 2]")
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{path}: holds {array.dtype} values; samples are floating-point points [N, 2]")
    return array


def load_samples(path, verify: bool = True):
    """The samples at ``path``: a folder written by a sharded ``ddpm-fast sample`` (or its
    manifest.json; the manifest checked: every part present, of the recorded size, rows tiling
    [0, n), and with ``verify`` its sha256) as a ``SampleParts``; a ``.npy`` file, or a folder of a
    single-process run (its samples.npy), as a memory-mapped array.

    A folder without ``manifest.json`` is incomplete (a rank failed, or the run is going) and
    is refused; so is one whose parts do not match their manifest.
    """
    path = os.fsdecode(path)
    if os.path.isfile(path) and os.path.basename(path) == MANIFEST:
        path = os.path.dirname(path) or "."
    if os.path.isfile(path):
        if not path.endswith(".npy"):
            raise ValueError(f"{path}: not a .npy file or a samples folder (give the folder, or its {MANIFEST})")
        return _load_points(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(2, "no such samples folder or .npy file", path)
    manifest_path = os.path.join(path, MANIFEST)
    single = os.path.join(path, "samples.npy")
    try:
        with open(manifest_path) as f:
            manifest = json.load(f)
    except FileNotFoundError:
        if os.path.isfile(single):  # a single-process `ddpm-fast sample --out` folder
            return _load_points(single)
        if any(name.startswith(("part-", ".part-")) for name in os.listdir(path)):
            raise ValueError(f"{path}: has parts but no {MANIFEST}: the run is incomplete (a rank failed or was "
                             "killed, or it is still running); rerun the torchrun command with --resume") from None
        raise ValueError(f"{path}: holds no samples (no {MANIFEST}, no samples.npy)") from None
    except ValueError as err:
        raise ValueError(f"{manifest_path}: not a readable manifest ({err})") from None
    if manifest.get("format") != FORMAT or not isinstance(manifest.get("parts"), list):
        raise ValueError(f"{manifest_path}: not a ddpm-fast samples manifest")
    reason = _tiling_fault(manifest["parts"], manifest.get("n"))  # checked before any part is read
    if reason:
        raise ValueError(f"{manifest_path}: {reason}")
    parts = []
    for entry in manifest["parts"]:
        file = os.path.join(path, entry["file"])
        lo, hi = entry["rows"]
        if not os.path.isfile(file) or os.path.getsize(file) != entry["bytes"]:
            raise ValueError(f"{file}: missing or not of the {entry['bytes']} bytes its manifest records")
        if verify and file_sha256(file) != entry["sha256"]:
            raise ValueError(f"{file}: its sha256 does not match the manifest (the file changed); the torchrun "
                             "command with --resume samples it again")
        part = np.load(file, mmap_mode="r")
        if part.shape != (hi - lo, 2) or part.dtype != np.float32:
            raise ValueError(f"{file}: holds {part.dtype}{list(part.shape)}, the manifest says float32[{hi - lo}, 2]")
        parts.append(part)
    return SampleParts(parts, manifest)
