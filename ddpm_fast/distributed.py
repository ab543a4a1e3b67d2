"""torch.distributed for the CLI under torchrun: one process per device, c10d rendezvous from
torchrun's environment, NCCL between GPUs and gloo on CPUs. Without torchrun every command runs
as a world of one and nothing here is initialised.
"""
from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist

TIMEOUT = datetime.timedelta(minutes=30)  # a tensor collective (DDP's all-reduce) that waits longer fails the run
# Host-side agreement waits for the slowest rank's whole share (a rank that reused its part on
# --resume waits for the others to sample theirs): a day. A rank that dies closes its sockets,
# which fails the others' waits at once, and torchrun stops them too.
CONTROL_TIMEOUT = datetime.timedelta(hours=24)


def launched_by_torchrun() -> bool:
    """True in a process that torchrun (or another c10d launcher) started: it sets RANK and WORLD_SIZE."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


@dataclass(frozen=True)
class World:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    control: object = None  # a gloo process group for host-side agreement (None: the world of one)

    @property
    def distributed(self) -> bool:
        return self.control is not None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def gather(self, obj) -> list:
        """Every rank's ``obj``, in rank order, on every rank (a barrier too)."""
        if not self.distributed:
            return [obj]
        out = [None] * self.world_size
        dist.all_gather_object(out, obj, group=self.control)
        return out

    def any(self, flag: bool) -> bool:
        """True on every rank when any rank passed True (host tensors over gloo: no device sync)."""
        if not self.distributed:
            return bool(flag)
        value = torch.tensor([int(bool(flag))])
        dist.all_reduce(value, op=dist.ReduceOp.MAX, group=self.control)
        return bool(value.item())

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier(group=self.control)


_CONTROL_GROUPS: dict = {}  # default process group -> its gloo group for host-side agreement


def _control_group():
    """A gloo group over every rank, made once per default process group (every rank must call this
    the first time: making a group is a collective)."""
    default = dist.group.WORLD
    if default not in _CONTROL_GROUPS:
        _CONTROL_GROUPS.clear()  # an earlier, destroyed default group's
        _CONTROL_GROUPS[default] = dist.new_group(backend="gloo", timeout=CONTROL_TIMEOUT)
    return _CONTROL_GROUPS[default]


def current_world(device: torch.device) -> World:
    """The World of an already initialised default process group, else a world of one. Checks that
    no two ranks share a GPU (NCCL would fail later with 'Duplicate GPU detected')."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return World(device=device)
    ranks = World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), device,
                  _control_group())
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device.index if device.index is not None else None)
        places = ranks.gather((socket.gethostname(), str(getattr(props, "uuid", device))))
        shared = sorted({r for r, place in enumerate(places) if places.count(place) > 1})
        if shared:
            raise RuntimeError(f"ranks {shared} run on one GPU ({places[shared[0]][0]}, {device}): give each rank "
                               "its own (--device cuda takes cuda:LOCAL_RANK)")
    return ranks


def rank_device(device: str) -> torch.device:
    """This rank's device: ``cuda`` means cuda:LOCAL_RANK under torchrun (cuda:0 when the launcher
    shows each process one GPU); ``cuda:N`` is refused when more than one rank runs on the node
    (they would share one GPU)."""
    device = torch.device(device)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type != "cuda":
        return device
    if device.index is not None:
        if int(os.environ.get("LOCAL_WORLD_SIZE", "1")) > 1:
            raise ValueError(f"--device {device} under torchrun with several ranks per node: pass --device cuda, "
                             "and each rank takes cuda:LOCAL_RANK")
        return device
    visible = torch.cuda.device_count()
    if visible == 1:
        return torch.device("cuda", 0)
    if local_rank >= visible:
        raise RuntimeError(f"local rank {local_rank} has no GPU of its own: this node shows {visible} GPU(s) to "
                           "each process; start at most that many ranks a node (--nproc-per-node)")
    return torch.device("cuda", local_rank)


def claim_rank_gpu() -> None:
    """Under torchrun, make this rank's GPU the current one before anything touches CUDA, so that
    a bare 'cuda' (memory checks, loading) means it and not GPU 0."""
    if launched_by_torchrun() and torch.cuda.is_available():
        try:
            torch.cuda.set_device(rank_device("cuda"))
        except RuntimeError:
            pass  # reported when the command asks for that device


@contextlib.contextmanager
def world(device: str):
    """The World of this process: under torchrun the process group is initialised (NCCL for CUDA
    devices, gloo otherwise) and destroyed on the way out; otherwise a world of one."""
    if not launched_by_torchrun():
        yield World(device=torch.device(device))
        return
    here = rank_device(device)
    if here.type == "cuda":
        torch.cuda.set_device(here)
    backend = "nccl" if here.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=TIMEOUT, **({"device_id": here} if here.type == "cuda" else {}))
    try:
        yield current_world(here) if dist.get_world_size() > 1 else World(0, 1, 0, here, _control_group())
    finally:
        _CONTROL_GROUPS.clear()
        dist.destroy_process_group()


def file_sha256(path: str, block: int = 1 << 24) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def tensors_sha256(tensors) -> str:
    """A digest of tensors' bytes (to check that ranks hold identical weights)."""
    digest = hashlib.sha256()
    for t in tensors:
        digest.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
