"""The Bernoulli-logits likelihood of pixels in [0, 1]."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaezoo.model.parts import BuildContext


class BernoulliLikelihood(nn.Module):
    """Pixels in [0, 1] as Bernoulli probabilities given by sigmoid(logits)."""

    def __init__(self, ctx: BuildContext):
        super().__init__()

    def log_prob(self, x: Tensor, logits: Tensor) -> Tensor:
        """-sum over pixels of BCE-with-logits, [S..., B]; x broadcasts over leading sample dims."""
        bce = F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none")
        return -bce.flatten(-3).sum(-1)

    def mean(self, logits: Tensor) -> Tensor:
        return torch.sigmoid(logits)
