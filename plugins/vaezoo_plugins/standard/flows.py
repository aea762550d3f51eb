"""Autoregressive affine flow steps as `torch.distributions` transforms, built on a MADE.

One step maps x to y = x * scale + shift, where scale_i and shift_i read only the variables before
i (a MADE of x, plus an optional fixed context), so its Jacobian is triangular with log|det| =
sum_i log scale_i. The forward map is one MADE pass; the inverse takes D passes, each fixing one
more variable. Used forward, a stack is an inverse autoregressive flow (Kingma et al. 2016: cheap
samples, as a posterior needs); used through `.inv`, a masked autoregressive flow (Papamakarios et
al. 2017: cheap densities, as fitting to data needs).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Transform, constraints

from vaezoo_plugins.standard.made import MADE

#: |log scale| of an ungated step stays below this: s -> B tanh(s / B), smooth and one to one.
LOG_SCALE_BOUND = 3.0


class AffineAutoregressive(Transform):
    """One autoregressive affine step over the last dimension; the MADE gives two outputs per variable.

    gated: the numerically stable update of Kingma et al. 2016, sigma = sigmoid(s),
      y = sigma * x + (1 - sigma) * m, log|det| = sum log sigma;
    else the MAF form of Papamakarios et al. 2017, y = x * exp(s) + m, log|det| = sum s, with s
      softly bounded to (-3, 3) (LOG_SCALE_BOUND) so that a code unlike the training ones cannot
      overflow the density (a fitted MAF gave -inf to held-out codes without it).
    With cache_size=1 the step remembers its last (x, y) and log-scale, so log_prob of a sample it
    has just drawn costs neither an inversion nor another MADE pass.
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, made: MADE, context: Tensor | None = None, *, gated: bool = True, cache_size: int = 1):
        super().__init__(cache_size=cache_size)
        self.made, self.context, self.gated = made, context, gated
        self._last: tuple[Tensor, Tensor, Tensor] | None = None  # (x, y, log scale) of the last call

    def with_cache(self, cache_size: int = 1) -> AffineAutoregressive:
        if self._cache_size == cache_size:
            return self
        return AffineAutoregressive(self.made, self.context, gated=self.gated, cache_size=cache_size)

    def _affine(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(scale, shift, log scale) at x, each [..., D]."""
        m, s = self.made(x, self.context).unbind(-2)
        if self.gated:
            sigma = torch.sigmoid(s)
            return sigma, (1 - sigma) * m, F.logsigmoid(s)
        s = LOG_SCALE_BOUND * torch.tanh(s / LOG_SCALE_BOUND)
        return torch.exp(s), m, s

    def _remember(self, x: Tensor, y: Tensor, log_scale: Tensor) -> None:
        if self._cache_size:
            self._last = (x, y, log_scale)

    def _call(self, x: Tensor) -> Tensor:
        scale, shift, log_scale = self._affine(x)
        y = scale * x + shift
        self._remember(x, y, log_scale)
        return y

    def _inverse(self, y: Tensor) -> Tensor:
        """D passes, pass t solving for the t-th variable of the ordering from the exact ones before
        it (the rest stay 0, so no stray value can overflow); the last pass's scale and shift read
        only exact variables, so its log-scale is the step's at the result."""
        x = torch.zeros_like(y)
        for t in range(y.shape[-1]):
            scale, shift, log_scale = self._affine(x)
            x = torch.where(self.made.order == t, (y - shift) / scale, x)
        self._remember(x, y, log_scale)
        return x

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        """sum_i log scale_i(x), [...]; from the last call when (x, y) are its tensors."""
        if self._last is not None and x is self._last[0] and y is self._last[1]:
            return self._last[2].sum(-1)
        return self._affine(x)[2].sum(-1)
