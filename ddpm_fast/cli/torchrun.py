"""``sample`` under torchrun (``torchrun --nproc-per-node K -m ddpm_fast sample``): each rank
writes its rows as a part, rank 0 the manifest. ``cli.sample`` hands the command here when
torchrun launched the process (training and bench run their own ranks)."""
from __future__ import annotations

import json
import os
import secrets
import time

from ..constants import default_chunk
from . import options
from .common import Status, check_disk, check_plan, checkpoint_path, plan_fields


def sample_sharded(args) -> int:
    """Each rank samples its rows of the request into ``part-<rank>.npy``; rank 0 writes the
    manifest once every rank has reported (``ddpm_fast.shards``)."""
    from .._io import check_output_dir
    from ..checkpoint import load_checkpoint
    from ..distributed import file_sha256, world
    from ..rows import shard_rows
    from ..sampling import sample
    from ..shards import prepare_folder, reusable_part, write_manifest, write_part
    from .common import check_backend
    say = Status(args.command, args.quiet)
    with world(args.device or options.default_device()) as w:
        out = check_output_dir(args.out)
        if os.path.exists(os.path.join(out, "samples.npy")):
            raise FileExistsError(17, "holds a single-process run's samples.npy: parts beside it would be mistaken "
                                      "for it; choose another --out", out)
        path = checkpoint_path(args.checkpoint)
        model, schedule, _ = load_checkpoint(path, map_location=w.device)
        kwargs = options.sampler_kwargs(args)
        plan = check_plan(model, schedule, kwargs)
        backend = check_backend(args.backend, str(w.device), args.precision, args.n * plan.steps)
        params = {"n": args.n, "seed": args.seed, **plan_fields(plan, args.prior, args.eta), "backend": backend,
                  "precision": args.precision, "world_size": w.world_size, "checkpoint_sha256": file_sha256(path)}
        rows = shard_rows(args.n, w.rank, w.world_size)
        if w.is_main:
            os.makedirs(out, exist_ok=True)  # every check has passed: the folder is made here
            prepare_folder(out, w.world_size)  # from here until the new manifest, the folder is incomplete
        _check_shared_folder(w, out)
        record, why = reusable_part(out, w.rank, params, rows, noise_device(w.device)) if args.resume else (None, None)
        reused = record is not None
        if why:
            say(f"rank {w.rank}: part-{w.rank:05d}.npy is sampled again: {why}", always=True)
        start = time.perf_counter()
        if not reused:
            check_disk(out, (rows[1] - rows[0]) * 8 + 4096, f"writing rows {rows[0]}-{rows[1]} as {out}/part-*.npy")

            def sample_rows(a, b):
                return sample(model, args.n, schedule=schedule, seed=args.seed, backend=backend,
                              precision=args.precision, device=w.device, rows=(a, b),
                              compile_mode=args.compile_mode, **kwargs)
            if w.is_main:
                say(f"{w.world_size} rank(s) sampling {args.n} points, {plan.describe()}, backend {backend!r} "
                           f"({args.precision}); rank 0: rows [{rows[0]}, {rows[1]})")
            chunk = default_chunk(w.device.type) if args.chunk_size == "auto" else args.chunk_size
            record = write_part(out, w.rank, rows, params, sample_rows, chunk, noise_device(w.device))
        reports = w.gather({**record, "seconds": time.perf_counter() - start, "reused": reused})
        if w.is_main:
            manifest = write_manifest(out, {**params, "checkpoint": path}, reports)
            slowest = max(r["seconds"] for r in reports)
            print(json.dumps({"n": args.n, "world_size": w.world_size, "backend": backend,
                              "precision": args.precision, **plan_fields(plan, args.prior, args.eta),
                              "seconds": round(slowest, 3), "point_steps_per_s": args.n * plan.steps / slowest
                              if slowest > 0 else None, "manifest": manifest,
                              "parts": [{"file": r["file"], "rows": r["rows"], "seconds": round(r["seconds"], 3),
                                         "reused": r["reused"]} for r in reports]}, indent=2))
    return 0


def noise_device(device) -> str:
    """What a part's keyed noise was drawn on: torch's CUDA generators lay their numbers out by the
    GPU's number of SMs, so parts drawn on other GPU models hold other rows."""
    import torch
    if device.type != "cuda":
        return device.type
    props = torch.cuda.get_device_properties(device)
    return f"{props.name} ({props.multi_processor_count} SMs)"


def _check_shared_folder(w, out: str) -> None:
    """Every rank must see the folder rank 0 writes the manifest into (one shared file system):
    rank 0 leaves a token there, and every rank reads it back before any sampling."""
    token = secrets.token_hex(8) if w.is_main else None
    from ..shards import SHARED_MARKER
    marker = os.path.join(out, SHARED_MARKER)
    if w.is_main:
        with open(marker, "w") as f:
            f.write(token)
    token = w.gather(token)[0]  # also the barrier after rank 0's clean-up
    try:
        with open(marker) as f:
            sees = f.read() == token
    except OSError:
        sees = False
    blind = [r for r, ok in enumerate(w.gather(sees)) if not ok]
    if w.is_main:
        os.remove(marker)
    if blind:
        raise RuntimeError(f"ranks {blind} do not see {out} as rank 0 writes it: on several nodes --out must be "
                           "one shared file system")
