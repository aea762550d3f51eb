"""The VAE as a composition of registered parts, and building one from a variant."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from vaezoo.hparams import HParams
from vaezoo.model.distributions import DiagonalGaussian
from vaezoo.model.parts import BuildContext, Objective
from vaezoo.registry import Registry
from vaezoo.variant import MODEL_PARTS, VariantSpec


@dataclass
class Pass:
    """One stochastic pass x -> q(z|x) -> z -> p(x|z), with the ELBO's two terms per image."""

    q: DiagonalGaussian
    z: Tensor
    out: Tensor
    recon: Tensor  # -log p(x|z), [B]
    divergence: Tensor  # [B, D] per dimension, or [B]

    @property
    def kl(self) -> Tensor:
        """The divergence summed over latent dimensions, [B]."""
        return self.divergence.sum(-1) if self.divergence.dim() == 2 else self.divergence


class VAE(nn.Module):
    """Encoder, decoder, likelihood, prior and divergence: nothing else."""

    input_shape: tuple[int, int, int]  # set by build_model

    def __init__(self, encoder: nn.Module, decoder: nn.Module, likelihood: nn.Module,
                 prior: nn.Module, divergence: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.likelihood = likelihood
        self.prior = prior
        self.divergence = divergence

    def forward(self, x: Tensor) -> Pass:
        q = self.encoder(x)
        z = q.rsample()
        out = self.decoder(z)
        recon = -self.likelihood.log_prob(x, out)
        return Pass(q, z, out, recon, self.divergence(q, z, self.prior))

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """Mean image decoded from the posterior mean (what people look at)."""
        return self.likelihood.mean(self.decoder(self.encoder(x).mean))

    @torch.no_grad()
    def decode_mean(self, z: Tensor) -> Tensor:
        return self.likelihood.mean(self.decoder(z))

    @torch.no_grad()
    def representation(self, x: Tensor) -> Tensor:
        """[B, D] the code people traverse and metrics read: the posterior mean."""
        return self.encoder(x).mean

    @torch.no_grad()
    def decode_representation(self, z: Tensor) -> Tensor:
        """Images decoded from codes shaped like `representation`'s."""
        return self.decode_mean(z)

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        return self.decode_mean(self.prior.sample(n))


def build_model(spec: VariantSpec, hp: HParams, input_shape: tuple[int, int, int], registry: Registry) -> VAE:
    """Build the model from registered parts, in MODEL_PARTS order (later parts may use earlier ones)."""
    ctx = BuildContext(hp, tuple(input_shape))
    for kind in MODEL_PARTS:
        ctx.built[kind] = registry.load(kind, spec.parts[kind])(ctx)
    model = VAE(**ctx.built)
    model.input_shape = ctx.input_shape
    return model


def build_objective(spec: VariantSpec, hp: HParams, model: VAE, registry: Registry,
                    dataset_size: int | None = None, total_steps: int | None = None) -> Objective:
    """Build the variant's objective for `model`; it sees the parts, the training-set size and the run's length."""
    ctx = BuildContext(hp, model.input_shape, dict(model.named_children()), dataset_size=dataset_size,
                       total_steps=total_steps)
    ctx.built["model"] = model
    return registry.load("objective", spec.objective)(ctx)
