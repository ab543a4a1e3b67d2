"""2-D toy datasets from scikit-learn, scaled to the S-curve's extent (about [-0.1, 0.1] x [-0.2, 0.2])."""
from __future__ import annotations

import numpy as np
import torch

from ._checks import check_fits
from ._values import check_count
from .constants import DATASETS


def _sklearn():
    """scikit-learn's dataset generators, imported on first use: the import takes a second or two,
    which ``import ddpm_fast`` and the command line's start-up should not pay."""
    from sklearn import datasets

    return datasets


def make_s_curve(n: int = 10_000, noise: float = 0.1, seed: int | None = None) -> torch.Tensor:
    """The original data: columns 0 and 2 of sklearn's 3-D S-curve, divided by 10. [n, 2] float32."""
    points, _ = _sklearn().make_s_curve(n, noise=noise, random_state=seed)
    return torch.Tensor(points[:, [0, 2]] / 10.0).float()


def _rescale(points: np.ndarray) -> torch.Tensor:
    # Map each axis onto the S-curve's ranges, x in [-0.1, 0.1] and y in [-0.2, 0.2].
    lo, hi = points.min(axis=0), points.max(axis=0)
    unit = (points - lo) / np.where(hi > lo, hi - lo, 1.0) * 2 - 1
    return torch.from_numpy(unit * np.array([0.1, 0.2])).float()


def make_dataset(name: str = "s_curve", n: int = 10_000, noise: float | None = None,
                 seed: int | None = None) -> torch.Tensor:
    """One of ``DATASETS`` as an [n, 2] float32 tensor. ``noise`` defaults per dataset."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    n = check_count(n, "n")
    check_fits(n * 6 * 8, torch.device("cpu"), f"a dataset of {n} points")  # scikit-learn's float64 draw
    if n == 0:
        return torch.empty(0, 2)
    if name == "s_curve":
        return make_s_curve(n, 0.1 if noise is None else noise, seed)
    skd = _sklearn()
    if name == "moons":
        points, _ = skd.make_moons(n, noise=0.05 if noise is None else noise, random_state=seed)
    elif name == "circles":
        points, _ = skd.make_circles(n, noise=0.03 if noise is None else noise, factor=0.5,
                                     random_state=seed)
    else:  # swiss_roll
        points, _ = skd.make_swiss_roll(n, noise=0.5 if noise is None else noise, random_state=seed)
        points = points[:, [0, 2]]
    return _rescale(points)
