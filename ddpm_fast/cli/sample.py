"""``sample``, ``demo`` and ``plot``: points and pictures from a trained model."""
from __future__ import annotations

import json
import os

from ..constants import DATASETS, PRECISIONS
from . import options
from .common import Status, check_disk, check_plan, draw, load, loss_history, plan_fields

PICTURES = ("dataset.png", "q_grid.png", "reverse_trajectory.png", "reverse.gif")
SAMPLE_FILES = ("samples.npy", "samples.csv", "samples.png")


def add_parsers(sub, command) -> None:
    p = command("demo", "the main job: bundled model, 10,000 samples, pictures, quality, timing")
    options.add_common(p, 10_000, backend=False, n_type=options.at_least_2)
    p.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="fp32 (float32-level error), tf32 or bf16 (faster on a GPU)")
    p.add_argument("--out", default="runs/demo", help="directory for the pictures")
    p.set_defaults(func=cmd_demo)

    p = command("sample", "sample points to samples.npy, samples.csv and samples.png")
    options.add_common(p, 10_000)
    p.add_argument("--out", default="runs/sample", help="directory for the samples (under torchrun: part-<rank>.npy "
                                                        "and manifest.json)")
    p.add_argument("--chunk-size", type=options.chunk_size, default="auto",
                   help="rows sampled (and, under torchrun, written) at a time; auto: 16384 on a CPU (a chunk "
                        "stays in cache), 1048576 on a GPU; with row-keyed noise (torchrun, --keyed, or more "
                        "points than this) the rows depend on it only by float32 rounding")
    p.add_argument("--keyed", action="store_true",
                   help="row-keyed noise: draw the noise a torchrun run of any world size draws, so the rows "
                        "agree with its rows to float32 rounding (default: keyed only when the points are cut into "
                        "chunks; unchunked eager keeps torch's stream)")
    p.add_argument("--resume", action="store_true",
                   help="under torchrun: keep the parts of an earlier run of this command whose sha256 still matches")
    p.set_defaults(func=cmd_sample)

    p = command("plot", "dataset, q(x_t) grid, reverse trajectory, loss curve, GIF")
    options.add_common(p, 10_000)
    p.add_argument("--dataset", default="s_curve", choices=DATASETS, help="the data to draw beside the model")
    p.add_argument("--out", default="runs/plot", help="directory for the pictures")
    p.set_defaults(func=cmd_plot)


def cmd_sample(args) -> int:
    from ..distributed import launched_by_torchrun
    if launched_by_torchrun():  # each rank its rows: part-<rank>.npy and manifest.json
        from .torchrun import sample_sharded
        return sample_sharded(args)
    if args.resume:
        raise ValueError("--resume continues a sharded run (torchrun ... -m ddpm_fast sample): without torchrun "
                         "sample writes samples.npy, .csv and .png in one piece")
    import numpy as np

    from .._io import check_outputs, staged_outputs
    from ..plotting import plot_dataset
    device, say, sampling = args.device or options.default_device(), Status(args.command, args.quiet), \
        options.sampler_kwargs(args)
    names = check_outputs(args.out, SAMPLE_FILES)
    if os.path.exists(os.path.join(args.out, "manifest.json")):
        raise FileExistsError(17, "holds a sharded run (manifest.json, part-*.npy): samples.npy beside them would "
                                  "be mistaken for it; choose another --out", args.out)
    check_disk(args.out, args.n * (8 + 34) + 200_000, f"writing {args.n} points as .npy and .csv")
    model, schedule, _ = load(args.checkpoint, device)
    points, backend, seconds, plan = draw(model, schedule, args.n, device=device, backend=args.backend,
                                          precision=args.precision, compile_mode=args.compile_mode, seed=args.seed,
                                          sampler_kwargs=sampling,
                                          say=say, chunk_size=args.chunk_size, keyed=args.keyed or None)
    array = points.cpu().numpy()
    with staged_outputs() as staged:  # all three replace the old ones together, or none does
        np.save(staged.path(names[0]), array)
        np.savetxt(staged.path(names[1]), array, delimiter=",", header="x,y", comments="", fmt="%.9g")
        plot_dataset(points, staged.path(names[2]), title=f"{args.n} samples ({backend}, {args.precision}"
                     + (")" if plan.reference else f"; {plan.name}, {plan.steps} steps)"))
    print(json.dumps({"n": args.n, "backend": backend, "precision": args.precision,
                      **plan_fields(plan, args.prior, args.eta), "seconds": round(seconds, 3), "written": names},
                     indent=2))
    return 0


def draw_pictures(model, schedule, out: str, data, n_trajectory: int, *, dataset: str, seed: int, sampling: dict,
                  **sample_values) -> list[str]:
    """The original's pictures plus the GIF: dataset, q(x_t) grid, reverse trajectory.
    ``sample_values``: draw()'s device, backend, precision, compile_mode and say."""
    from .._io import staged_outputs
    from ..plotting import animate_reverse, plot_dataset, plot_q_grid, plot_trajectory
    trajectory, _, _, plan = draw(model, schedule, n_trajectory, seed=seed, sampler_kwargs=sampling,
                                  trajectory=True, **sample_values)
    sample_values["say"]("drawing the pictures")
    n_panels = min(10, plan.steps)  # the states after evenly spaced steps, the last one x_0
    panels = sorted({round(plan.steps * (k + 1) / n_panels) for k in range(n_panels)})
    labels = plan.state_labels()
    title = "reverse process: from noise $x_T$ to samples $x_0$" + (
        "" if plan.reference else f" ({plan.name}, {plan.steps} steps)")
    with staged_outputs() as staged:
        plot_dataset(data, staged.path(os.path.join(out, "dataset.png")), title=f"dataset: {dataset}")
        plot_q_grid(data, schedule, staged.path(os.path.join(out, "q_grid.png")), seed=seed)
        plot_trajectory(trajectory[panels], staged.path(os.path.join(out, "reverse_trajectory.png")),
                        title=title, timesteps=[labels[j] for j in panels])
        animate_reverse(trajectory, staged.path(os.path.join(out, "reverse.gif")), labels=labels)
    return [os.path.join(out, name) for name in PICTURES]


def cmd_plot(args) -> int:
    from .._io import check_outputs
    from ..data import make_dataset
    from ..plotting import plot_loss
    device, say, sampling = args.device or options.default_device(), Status(args.command, args.quiet), \
        options.sampler_kwargs(args)
    check_outputs(args.out, (*PICTURES, "loss.png"))
    model, schedule, meta = load(args.checkpoint, device)
    check_plan(model, schedule, sampling)
    written = draw_pictures(model, schedule, args.out, make_dataset(args.dataset, args.n, seed=args.seed), args.n,
                            dataset=args.dataset, seed=args.seed, sampling=sampling, device=device,
                            backend=args.backend, precision=args.precision, compile_mode=args.compile_mode, say=say)
    losses = loss_history(meta)
    if losses:
        written.append(plot_loss(losses, os.path.join(args.out, "loss.png")))
    elif "losses" in meta:
        say("the checkpoint's loss history is not a list of positive finite numbers: loss.png not drawn")
    print("\n".join(written))
    return 0


def cmd_demo(args) -> int:
    from .._io import check_outputs
    from ..data import make_dataset
    from ..metrics import quality_report
    from ..plotting import plot_dataset
    from .common import check_backend, check_plan
    device, say = args.device or options.default_device(), Status(args.command, args.quiet)
    out = args.out
    check_outputs(out, (*PICTURES, "samples.png"))
    model, schedule, _ = load(args.checkpoint, device)
    steps = check_plan(model, schedule, {}).steps  # T, or a distilled student's own K
    values = dict(device=device, backend=check_backend("auto", device, args.precision, args.n * steps),
                  precision=args.precision,
                  compile_mode=args.compile_mode, say=say)
    say("warm-up call (compilation and capture are not timed)")
    draw(model, schedule, args.n, seed=args.seed, sampler_kwargs={}, **values)
    points, backend, seconds, _ = draw(model, schedule, args.n, seed=args.seed, sampler_kwargs={}, **values)
    say("scoring against fresh data")
    report = quality_report(points, "s_curve", seed=args.seed)
    plot_dataset(points, os.path.join(out, "samples.png"), title=f"{args.n} samples ({backend}, {args.precision})")
    draw_pictures(model, schedule, out, make_dataset("s_curve", args.n, seed=args.seed), 2000, dataset="s_curve",
                  seed=args.seed, sampling={}, **values)
    print(f"sampled {args.n} points x {steps} steps with backend {backend!r} "
          f"({args.precision}) on {device} in {seconds:.3f} s "
          f"({args.n * steps / seconds / 1e6:.2f} M point-steps/s)")
    print(f"quality vs fresh data: SWD {report['swd']:.5f} (data-vs-data floor {report['swd_floor']:.5f}), "
          f"MMD² {report['mmd']:.2e} (floor {report['mmd_floor']:.2e})")
    print(f"pictures in {out}/: dataset.png q_grid.png samples.png reverse_trajectory.png reverse.gif")
    return 0
