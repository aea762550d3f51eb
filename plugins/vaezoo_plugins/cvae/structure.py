"""The conditional VAE (Sohn et al. 2015): q(z|x, y) and p(x|z, y), with y an image's label.

The trainer, evaluation and `vaezoo sample --label` hand the labels over through
`Structure.conditioned_on`; this structure reads them as `self.condition` and gives the encoder's
heads and the decoder the label one-hot beside the features or the code. The prior is N(0, I).
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaezoo.errors import DataError, NotApplicable
from vaezoo.hparams import HParams
from vaezoo.model.distributions import DiagonalGaussian
from vaezoo.model.parts import BuildContext
from vaezoo.model.structure import ImportanceDraw, Pass, latent_group
from vaezoo_plugins.standard.structures import SingleLatent
from vaezoo_plugins.standard.trunks import base_trunk


class ConditionalEncoder(nn.Module):
    """(x, y one-hot) -> q(z|x, y): a registered encoder's trunk, its features and y into Gaussian heads."""

    gaussian_posterior = True
    interface = "(x, y one-hot) -> q(z|x, y)"
    wraps_base_encoder = True

    def __init__(self, ctx: BuildContext):
        super().__init__()
        self.trunk, features = base_trunk(ctx)
        features += int(ctx.hp["classes"])
        self.mu = nn.Linear(features, ctx.latent_dim)
        self.logvar = nn.Linear(features, ctx.latent_dim)

    def forward(self, x: Tensor, y: Tensor) -> DiagonalGaussian:
        h = torch.cat([self.trunk(x), y], -1)
        return DiagonalGaussian(self.mu(h), self.logvar(h))


class ConditionalLatent(SingleLatent):
    """The single-latent pass with the label beside the encoder's features and the decoder's code."""

    def __init__(self, ctx: BuildContext):
        nn.Module.__init__(self)
        self.classes = int(ctx.hp["classes"])
        self.encoder = ctx.part("encoder")
        with_label = replace(ctx, hp=HParams({**ctx.hp, "latent_dim": ctx.latent_dim + self.classes}))
        self.decoder = with_label.build("decoder", ctx.parts["decoder"])
        self.likelihood = ctx.part("likelihood")
        self.prior = ctx.part("prior")
        self.divergence = ctx.part("divergence")
        self.capabilities = frozenset({"density", "elbo", "single-group", "flat-code", "prior-samples",
                                       "inference-network", "gaussian-posterior", "conditional"})

    def one_hot(self, count: int | None = None) -> Tensor:
        """The labels being conditioned on, one-hot; for `count` samples without labels, every class in turn."""
        labels = self.condition
        if labels is None:
            if count is None:
                raise NotApplicable("a conditional model needs the images' labels (a dataset with labels)")
            labels = torch.arange(count, device=self.prior().mean.device) % self.classes
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.classes):
            raise DataError(f"labels run from {int(labels.min())} to {int(labels.max())}, outside the model's "
                            f"{self.classes} classes (-o classes=N)")
        return F.one_hot(labels.long(), self.classes).to(self.prior().mean.dtype)

    def forward(self, x: Tensor) -> Pass:
        y = self.one_hot()
        q = self.encoder(x, y)
        z = q.rsample()
        out = self.decoder(torch.cat([z, y], -1))
        recon = -self.likelihood.log_prob(x, out)
        return Pass([latent_group(q, z, self.prior(), self.divergence)], out, recon)

    def importance_draw(self, x: Tensor) -> ImportanceDraw:
        y = self.one_hot()
        q, p = self.encoder(x, y), self.prior()

        def draw(k: int) -> tuple[Tensor, Tensor]:
            z = q.rsample((k,))
            out = self.decoder(torch.cat([z, y.expand(k, *y.shape)], -1))
            return self.likelihood.log_prob(x, out), p.log_prob(z) - q.log_prob(z)

        return draw

    @torch.no_grad()
    def representation(self, x: Tensor) -> Tensor:
        return self.encoder(x, self.one_hot()).mean

    @torch.no_grad()
    def decode_representation(self, z: Tensor) -> Tensor:
        y = self.one_hot(len(z))
        return self.likelihood.mean(self.decoder(torch.cat([z, y.expand(*z.shape[:-1], -1)], -1)))

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        return self.decode_representation(self.prior().sample((n,)))
