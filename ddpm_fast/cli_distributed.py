"""The CLI's commands under torchrun (``torchrun --nproc-per-node K -m ddpm_fast sample|train|bench``):
a sharded sample folder, data-parallel training and aggregate throughput. ``ddpm_fast.cli``
hands a command here when torchrun launched the process."""
from __future__ import annotations

import json
import time

import torch

from ._io import check_output_dir
from .distributed import file_sha256, world


def sample_sharded(args) -> int:
    """Each rank samples its rows of the request into ``part-<rank>.npy``; rank 0 writes the
    manifest once every rank has reported (``ddpm_fast.shards``)."""
    from .backends import resolve_backend
    from .checkpoint import load_checkpoint
    from .cli import _check_disk, _checkpoint_path, _plan_fields, _sampler_kwargs, _say
    from .rows import shard_rows
    from .samplers import make_plan
    from .sampling import sample
    from .shards import prepare_folder, reusable_part, write_manifest, write_part
    with world(args.device) as w:
        out = check_output_dir(args.out)
        path = _checkpoint_path(args.checkpoint)
        model, schedule, _ = load_checkpoint(path, map_location=w.device)
        backend = resolve_backend(args.backend, w.device, args.precision).name
        kwargs = _sampler_kwargs(args)
        plan = make_plan(schedule, final_noise=True, tuned_grids=model.tuned_grids, **kwargs)
        params = {"n": args.n, "seed": args.seed, **_plan_fields(plan, args), "backend": backend,
                  "precision": args.precision, "device_type": w.device.type, "world_size": w.world_size,
                  "checkpoint": path, "checkpoint_sha256": file_sha256(path)}
        rows = shard_rows(args.n, w.rank, w.world_size)
        if w.is_main:
            _check_disk(out, args.n * 8 + 4096 * w.world_size, f"writing {args.n} points as .npy parts")
            prepare_folder(out, w.world_size)  # from here until the new manifest, the folder is incomplete
        w.barrier()
        record = reusable_part(out, w.rank, params, rows) if args.resume else None
        reused = record is not None
        start = time.perf_counter()
        if not reused:
            def sample_rows(a, b):
                return sample(model, args.n, schedule=schedule, seed=args.seed, backend=backend,
                              precision=args.precision, device=w.device, rows=(a, b), **kwargs)
            if w.is_main:
                _say(args, f"{w.world_size} rank(s) sampling {args.n} points, {plan.describe()}, backend {backend!r} "
                           f"({args.precision}); rank 0: rows {rows[0]}-{rows[1]}")
            record = write_part(out, w.rank, rows, params, sample_rows, args.chunk_size)
        reports = w.gather({**record, "seconds": time.perf_counter() - start, "reused": reused})
        if w.is_main:
            manifest = write_manifest(out, params, reports)
            slowest = max(r["seconds"] for r in reports)
            print(json.dumps({"n": args.n, "world_size": w.world_size, "backend": backend,
                              "precision": args.precision, **_plan_fields(plan, args),
                              "seconds": round(slowest, 3), "point_steps_per_s": args.n * plan.steps / slowest
                              if slowest > 0 else None, "manifest": manifest,
                              "parts": [{"file": r["file"], "rows": r["rows"], "seconds": round(r["seconds"], 3),
                                         "reused": r["reused"]} for r in reports]}, indent=2))
    return 0
