"""Numerical integration on a regular grid: the independent reference for flow densities in 1-D and 2-D."""

from __future__ import annotations

import torch
from torch import Tensor


def grid(dims: int, lo: float, hi: float, n: int) -> tuple[Tensor, float]:
    """Every point of an n^dims grid over [lo, hi]^dims, [n^dims, dims] in float64, and the cell volume."""
    axis = torch.linspace(lo, hi, n, dtype=torch.float64)
    points = torch.stack(torch.meshgrid(*[axis] * dims, indexing="ij"), -1).reshape(-1, dims)
    return points, float(axis[1] - axis[0]) ** dims


def integral(values: Tensor, volume: float) -> float:
    """The Riemann sum of `values` taken on a grid with cells of `volume`."""
    return float(values.sum() * volume)
