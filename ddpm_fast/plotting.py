"""The original's pictures: dataset, q(x_t) grid, reverse trajectory; plus loss curve and a GIF.

Each function draws with matplotlib's Agg backend, writes ``path`` (through a temporary
file and a rename, so an old picture is never left half-overwritten) and returns it.
Point clouds are drawn with equal axes, so the S-curve keeps its shape.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.animation import FuncAnimation, PillowWriter  # noqa: E402

from ._io import atomic_path  # noqa: E402
from .diffusion import q_sample  # noqa: E402
from .schedule import Schedule  # noqa: E402

_DOT = dict(color="tab:red", edgecolor="white", s=5)


def _scatter(ax, points: torch.Tensor, title: str | None = None) -> None:
    points = points.detach().cpu().float()
    ax.scatter(points[:, 0], points[:, 1], **_DOT)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_axis_off()
    if title:
        ax.set_title(title)


def save_figure(fig, path):
    try:
        with atomic_path(path) as temp:
            fig.savefig(temp, dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path



def plot_log_log(curves: dict, path, xlabel: str, ylabel: str, title: str, x_base: int = 10,
                 hlines: tuple = ()) -> str:
    """{label: [(x, y), ...]} as lines with markers on log-log axes (the benchmarks' pictures);
    ``hlines``: (y, label, linestyle) reference lines."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, points in curves.items():
        ax.plot(*zip(*sorted(points)), marker="o", label=label)
    for y, label, style in hlines:
        ax.axhline(y, color="gray", linestyle=style, linewidth=1, label=label)
    ax.set_xscale("log", base=x_base)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)

def plot_dataset(points: torch.Tensor, path, title: str = "dataset"):
    """One scatter plot of ``points`` [N, 2] (the data, or samples: say which in ``title``)."""
    if points.shape[0] == 0:
        raise ValueError("no points to plot")
    fig, ax = plt.subplots(figsize=(4, 4))
    _scatter(ax, points, title)
    return save_figure(fig, path)


def plot_q_grid(points: torch.Tensor, schedule: Schedule, path, seed: int = 0):
    """q(x_t) for t = 0, 5, ..., 95: 20 panels in 2 rows of 10 (for T = 100)."""
    if points.shape[0] == 0:
        raise ValueError("no points to plot")
    gen = torch.Generator().manual_seed(seed)
    steps = list(range(0, schedule.n_steps, max(1, schedule.n_steps // 20)))[:20]
    fig, axs = plt.subplots(2, 10, figsize=(28, 3))
    for ax, t in zip(axs.flat, steps):
        # schedule index t is the (t+1)-th noising step: q_sample(x_0, t) draws x_{t+1}, as
        # p_sample at index t turns x_{t+1} into x_t (x_T at the start, x_0 at the end)
        _scatter(ax, q_sample(points, t, schedule, generator=gen), f"$q(x_{{{t + 1}}})$, t = {t + 1}")
    for ax in list(axs.flat)[len(steps):]:
        ax.set_axis_off()
    fig.suptitle(f"forward process: the data after t of {schedule.n_steps} noising steps", y=1.04)
    return save_figure(fig, path)


def plot_trajectory(states: torch.Tensor, path, n_steps: int = 100, every: int = 10,
                    title: str = "reverse process: from noise $x_T$ to samples $x_0$", timesteps=None):
    """Panels of reverse-process states [K, N, 2]: x_seq[every], x_seq[2 every], ..., the states
    after every-th, 2 every-th, ... steps of the T = ``n_steps`` step loop, titled by their t;
    ``timesteps``: each panel's t instead (a few-step sampler's grid)."""
    if states.shape[0] == 0 or states.shape[1] == 0:
        raise ValueError("no states to plot")
    fig, axs = plt.subplots(1, states.shape[0], figsize=(2.8 * states.shape[0], 3), squeeze=False)
    for k, (ax, state) in enumerate(zip(axs[0], states)):
        # x_seq[j] is x_{T-j}: the state after the step at t is labelled t, as the original
        t = timesteps[k] if timesteps is not None else n_steps - every * (k + 1)
        _scatter(ax, state, f"$x_{{{t}}}$, t = {t}")
    fig.suptitle(title, y=1.04)
    return save_figure(fig, path)


def plot_loss(losses, path):
    if not losses:
        raise ValueError("no losses to plot")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(range(1, len(losses) + 1), losses)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean training loss")
    ax.set_title(f"training loss, {len(losses)} epoch{'s' * (len(losses) != 1)}")
    ax.grid(True, alpha=0.3)
    return save_figure(fig, path)


def frame_limits(points: torch.Tensor, pad: float = 0.05) -> tuple:
    """((x_lo, x_hi), (y_lo, y_hi)): a square frame around every point of ``points`` [N, 2] (the
    same scale on both axes, so a shape is not squashed), with a margin of ``pad`` of its side."""
    finite = points[torch.isfinite(points).all(dim=1)]
    if finite.shape[0] == 0:
        return (-1.0, 1.0), (-1.0, 1.0)
    lo, hi = finite.min(0).values, finite.max(0).values
    center, half = (lo + hi) / 2, float((hi - lo).max()) / 2 * (1 + 2 * pad) or 1.0
    return ((float(center[0]) - half, float(center[0]) + half), (float(center[1]) - half, float(center[1]) + half))


def animate_reverse(trajectory: torch.Tensor, path, frames: int = 26, fps: int = 8, labels=None):
    """A GIF of the reverse process; ``trajectory`` is [K+1, N, 2] from x_T to x_0; ``labels``:
    the t of each state (default: T, T-1, ..., 0 for the K = T step sampler)."""
    idx = torch.linspace(0, trajectory.shape[0] - 1, frames).round().long().tolist()
    fig, ax = plt.subplots(figsize=(4, 4))
    dots = ax.scatter(*trajectory[idx[0]].cpu().T, **_DOT)
    ax.set_axis_off()
    ax.set_aspect("equal", adjustable="box")  # one scale on both axes: the S keeps its shape
    steps_total = trajectory.shape[0] - 1

    def draw(k):
        state = trajectory[idx[k]].cpu()
        dots.set_offsets(state.numpy())
        (x_lo, x_hi), (y_lo, y_hi) = frame_limits(state)  # zooms in from the noise to the data
        ax.set_xlim(x_lo, x_hi)
        ax.set_ylim(y_lo, y_hi)
        ax.set_title(f"t = {labels[idx[k]] if labels is not None else steps_total - idx[k]} "
                     f"(frame {x_hi - x_lo:.2g} wide)")
        return (dots,)

    try:
        with atomic_path(path) as temp:
            FuncAnimation(fig, draw, frames=len(idx), blit=False).save(temp, writer=PillowWriter(fps=fps))
    finally:
        plt.close(fig)
    return path
