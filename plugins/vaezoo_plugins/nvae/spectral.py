"""Spectral regularisation (Vahdat & Kautz 2020, section 3.2): a penalty on the largest singular value
of every convolution's weight, estimated by power iteration whose state lives in buffers.

The weight [out, in, kh, kw] is read as the matrix [out, in * kh * kw], as NVlabs/NVAE does (a
depthwise convolution included). Its spectral norm is sigma = u^T W v at the left and right singular
vectors u, v; a few power-iteration steps per training step refine the u, v of the step before, so
the estimate tracks the weight as it trains. u and v are buffers, so checkpoints carry them and a
resumed run continues with exactly the same estimates.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Power-iteration steps per training step, and at construction (NVlabs/NVAE: 4, and 10x the first time).
STEPS_PER_UPDATE = 4
STEPS_AT_START = 40
EPS = 1e-3  # NVlabs/NVAE's normalisation floor


def power_iteration(matrix: Tensor, u: Tensor, v: Tensor, steps: int) -> None:
    """Refine the unit vectors u [rows] and v [cols] towards the top singular pair of `matrix`, in place."""
    with torch.no_grad():
        for _ in range(steps):
            v.copy_(F.normalize(matrix.t() @ u, dim=0, eps=EPS))
            u.copy_(F.normalize(matrix @ v, dim=0, eps=EPS))


class Conv2d(nn.Conv2d):
    """nn.Conv2d that keeps the power-iteration state (buffers `sr_u`, `sr_v`) of its weight's spectral norm."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        rows, cols = self.out_channels, self.weight[0].numel()
        self.register_buffer("sr_u", F.normalize(torch.randn(rows), dim=0, eps=EPS))
        self.register_buffer("sr_v", F.normalize(torch.randn(cols), dim=0, eps=EPS))
        power_iteration(self.matrix().detach(), self.sr_u, self.sr_v, STEPS_AT_START)

    def matrix(self) -> Tensor:
        """The weight as [out, in * kh * kw]."""
        return self.weight.reshape(self.out_channels, -1)

    def spectral_norm(self, steps: int = STEPS_PER_UPDATE) -> Tensor:
        """sigma = u^T W v after `steps` more power-iteration steps; differentiable in W (u, v held constant)."""
        matrix = self.matrix()
        power_iteration(matrix.detach(), self.sr_u, self.sr_v, steps)
        return self.sr_u.clone() @ matrix @ self.sr_v.clone()


def spectral_penalty(modules: Iterable[nn.Module]) -> Tensor:
    """Sum of the spectral norms of every `Conv2d` among `modules` (advancing their power iteration)."""
    return torch.stack([m.spectral_norm() for m in modules if isinstance(m, Conv2d)]).sum()


def batchnorm_penalty(modules: Iterable[nn.Module]) -> Tensor:
    """Sum over BatchNorm layers of max |scale|: NVAE's companion penalty, against BN's scale growing
    to undo the spectral penalty."""
    return torch.stack([m.weight.abs().max() for m in modules if isinstance(m, nn.BatchNorm2d)]).sum()
