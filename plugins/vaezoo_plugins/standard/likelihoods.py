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

    def log_prob_pixels(self, x: Tensor, logits: Tensor) -> Tensor:
        """log p(x_i|z) per pixel, [S..., B, C, H, W]: minus BCE-with-logits; x broadcasts over sample dims."""
        return -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none")

    def log_prob(self, x: Tensor, logits: Tensor) -> Tensor:
        """The pixels' sum, [S..., B]."""
        return self.log_prob_pixels(x, logits).flatten(-3).sum(-1)

    def mean(self, logits: Tensor) -> Tensor:
        return torch.sigmoid(logits)
