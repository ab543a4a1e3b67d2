"""torch.distributed for the CLI under torchrun: one process per device, c10d rendezvous from
torchrun's environment, NCCL between GPUs and gloo on CPUs. Without torchrun every command runs
as a world of one and nothing here is initialised.
"""
from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

TIMEOUT = datetime.timedelta(minutes=30)  # a collective that waits longer than this fails the run


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


def current_world(device: torch.device) -> World:
    """The World of an already initialised default process group (a gloo group is made for host-side
    agreement when the default one is not gloo: every rank must call this), else a world of one."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return World(device=device)
    control = dist.group.WORLD if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), device, control)


def rank_device(device: str) -> torch.device:
    """This rank's device: ``cuda`` means cuda:LOCAL_RANK under torchrun; ``cuda:N`` is refused
    when more than one rank runs on the node (they would share one GPU)."""
    device = torch.device(device)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type != "cuda":
        return device
    if device.index is not None and int(os.environ.get("LOCAL_WORLD_SIZE", "1")) > 1:
        raise ValueError(f"--device {device} under torchrun with several ranks per node: pass --device cuda, and "
                         "each rank takes cuda:LOCAL_RANK")
    return torch.device("cuda", local_rank if device.index is None else device.index)


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
        control = dist.new_group(backend="gloo") if backend != "gloo" else dist.group.WORLD
        yield World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), here, control)
    finally:
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
