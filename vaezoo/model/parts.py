"""The interfaces of the parts a VAE is made of, and the context they are built from.

A registered part is a factory ``factory(ctx: BuildContext) -> nn.Module`` (a class whose
constructor takes the context works). Shapes: B is the batch, D the latent size, S optional
leading sample dimensions (IWAE-style k samples).

Encoder     forward(x: [B, C, H, W]) -> DiagonalGaussian with mu, logvar: [B, D]
Decoder     forward(z: [..., D]) -> decoder output (e.g. logits [..., C, H, W])
Likelihood  log_prob(x: [B, C, H, W], out: [S..., B, ...]) -> [S..., B]  log p(x|z)
            mean(out) -> [..., C, H, W]  the image shown to people (sigmoid of logits)
Prior       log_prob(z: [..., D]) -> [...];  sample(n) -> [n, D]
            gaussian() -> DiagonalGaussian | None  (for closed-form divergences)
Divergence  forward(q, z: [B, D], prior) -> [B, D] per-dimension or [B]  D(q(z|x) || p(z))
Objective   forward(model, x, step) -> Terms; an nn.Module so it may own trainable modules
            (a discriminator) that the trainer gives their own optimiser.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from vaezoo.hparams import HParams
from vaezoo.model.distributions import DiagonalGaussian


@dataclass
class BuildContext:
    """What a part factory gets: resolved hyperparameters, the data shape and the parts built so far."""

    hp: HParams
    input_shape: tuple[int, int, int]
    built: dict[str, nn.Module] = field(default_factory=dict)
    dataset_size: int | None = None  # training images, for estimators that need N (objectives only)
    total_steps: int | None = None  # optimiser steps the run will take, for schedules (objectives only)

    @property
    def latent_dim(self) -> int:
        return int(self.hp["latent_dim"])


class Terms(dict):
    """Scalar loss terms of one batch (per image). Must hold "loss"; the trainer logs the rest.

    Conventional keys: neg_elbo, recon (the negative log-likelihood), kl, and kl_per_dim ([D]).
    "aux_loss" (optional) is minimised by the objective's own parameters only.
    """


class Prior(nn.Module):
    """Base for priors: subclasses implement log_prob and sample."""

    def gaussian(self) -> DiagonalGaussian | None:
        """The prior as one diagonal Gaussian when it is one, else None (no closed-form KL)."""
        return None


class Objective(nn.Module):
    """Base for objectives. `aux_optimizer` builds the optimiser for the objective's own parameters.

    `l2_weight` (lambda) declares a penalty lambda * sum(theta^2) on the model's parameters. Its
    gradient 2 * lambda * theta is applied by the trainer as the optimiser's (L2, not decoupled)
    weight decay, which is exact and cheaper than differentiating the sum; so an objective with
    l2_weight > 0 adds the penalty's *value* to "loss" without autograd (e.g. under torch.no_grad).
    """

    l2_weight: float = 0.0

    def forward(self, model: nn.Module, x: Tensor, step: int) -> Terms:  # pragma: no cover - interface
        raise NotImplementedError

    def aux_optimizer(self) -> torch.optim.Optimizer | None:
        """The optimiser for parameters the objective owns (none by default)."""
        return None

