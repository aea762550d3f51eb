"""A model structure owns the pass from x to its latents and back; everything else reads its record.

The record (`Pass`) holds one `LatentGroup` per latent group (posterior, prior, sample, KL and the
training divergence) plus the decoder output, the reconstruction term and any extra loss terms the
structure adds (a codebook loss). Objectives, evaluation and pictures read only this record and
the `Structure` methods below, so they work for a flat Gaussian code, a hierarchy of groups, a flow
posterior or a codebook alike; what does not apply to a structure raises `NotApplicable`.

Capabilities are how parts and objectives say what they need from a model, by name, checked once
before training (see CAPABILITIES).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from vaezoo.errors import NotApplicable
from vaezoo.model.distributions import kl_or_estimate

#: The capabilities a structure may provide, and what each promises.
CAPABILITIES = {
    "density": "log q(z|x) and log p(x, z) of its own samples, for importance-sampled -log p(x)",
    "single-group": "exactly one latent group, so Pass.z and Pass.q are defined",
    "gaussian-posterior": "every posterior is a vaezoo DiagonalGaussian (closed forms, minibatch estimators); an "
                          "encoder that returns one says so with the class attribute gaussian_posterior = True",
    "flat-code": "representation(x) gives one code vector per image (traversals, metrics, active units)",
    "prior-samples": "the prior over the latent can be sampled: sample(n) draws real samples",
    "inference-network": "inference_parameters() gives the parameters of q apart from the generative model's",
    "elbo": "every latent group has a KL to its prior, so the ELBO is defined (not so for a deterministic code)",
    "conditional": "the model is conditioned on each image's label (a dataset with labels; sample --label)",
    "discrete-codes": "the one latent group's sample is an integer grid of codes [B, *code_shape] in "
                      "range(num_codes), and decode_codes(codes) gives the images of such a grid: what a prior "
                      "stage over the codes trains on and samples through",
}

@dataclass
class LatentGroup:
    """One latent group of one pass: what was sampled, from what, and what it costs.

    kl: KL(posterior || prior) per image [B] or per dimension [B, D]; closed form where one is
    known, else a Monte Carlo estimate at `sample` (then `kl_exact` is False); None for a
    deterministic code, which has neither (then the model has no ELBO).
    divergence: what training penalises instead, when that is not the KL (JS-G, ...); else None.
    """

    sample: Tensor
    kl: Tensor | None
    posterior: Distribution | None = None
    prior: Distribution | None = None
    divergence: Tensor | None = None
    kl_exact: bool = True
    name: str = "z"

    @property
    def kl_per_image(self) -> Tensor:
        if self.kl is None:
            raise NotApplicable(f"latent group '{self.name}' is a deterministic code: it has no KL")
        return self.kl.sum(-1) if self.kl.dim() == 2 else self.kl

    @property
    def divergence_per_image(self) -> Tensor:
        if self.divergence is None:
            return self.kl_per_image
        return self.divergence.sum(-1) if self.divergence.dim() == 2 else self.divergence


@dataclass
class Pass:
    """One stochastic pass of a batch: latent groups, decoder output, -log p(x|z) [B], extra terms.

    losses: terms the structure asks to be added to the loss as they are (batch scalars, already
    weighted, e.g. a codebook and a commitment loss); stats: batch scalars logged only.
    """

    groups: list[LatentGroup]
    out: Tensor
    recon: Tensor
    losses: dict[str, Tensor] = field(default_factory=dict)
    stats: dict[str, Tensor] = field(default_factory=dict)

    @property
    def kl(self) -> Tensor:
        """KL(q || p) of every group, summed, per image [B]."""
        return _sum(group.kl_per_image for group in self.groups)

    @property
    def divergence(self) -> Tensor:
        """The training divergence of every group, summed, per image [B] (the KL where a group has no other)."""
        return _sum(group.divergence_per_image for group in self.groups)

    @property
    def kl_exact(self) -> bool:
        return all(group.kl_exact for group in self.groups)

    @property
    def has_kl(self) -> bool:
        """Whether every group has a KL, i.e. the pass has an ELBO."""
        return all(group.kl is not None for group in self.groups)

    @property
    def divergence_is_kl(self) -> bool:
        return all(group.divergence is None for group in self.groups)

    def _single(self) -> LatentGroup:
        if len(self.groups) != 1:
            raise NotApplicable(f"this model has {len(self.groups)} latent groups, not one")
        return self.groups[0]

    @property
    def z(self) -> Tensor:
        """The sample of the only latent group (objectives that need "single-group")."""
        return self._single().sample

    @property
    def q(self) -> Distribution:
        """The posterior of the only latent group."""
        posterior = self._single().posterior
        if posterior is None:
            raise NotApplicable("this model's latent group has no posterior distribution")
        return posterior


def _sum(values: Iterable[Tensor]) -> Tensor:
    total = None
    for value in values:
        total = value if total is None else total + value
    if total is None:
        raise NotApplicable("this model has no latent group")
    return total


def latent_group(q: Distribution, z: Tensor, p: Distribution, divergence: nn.Module, name: str = "z") -> LatentGroup:
    """The group record of sample `z` of `q` against prior `p`, measured by a divergence part.

    A divergence that measures the KL (`measures_kl`, the default) is reused as the group's KL; any
    other is kept as the training divergence beside the KL (closed form or Monte Carlo).
    """
    value = divergence(q, z, p)
    if getattr(divergence, "measures_kl", True):
        return LatentGroup(z, value, q, p, kl_exact=getattr(divergence, "exact", True), name=name)
    kl, exact = kl_or_estimate(q, p, z)
    return LatentGroup(z, kl, q, p, divergence=value, kl_exact=exact, name=name)


#: draw(k) -> (log p(x|z) [k, B], log p(z) - log q(z|x) [k, B]) for k fresh samples per image.
ImportanceDraw = Callable[[int], tuple[Tensor, Tensor]]


class Structure(nn.Module):
    """Base for model structures: the nn.Module that is saved, loaded, trained and evaluated.

    Subclasses build their parts in __init__ (ctx.part(kind)), implement `forward` and whichever
    of the methods below their capabilities promise; the defaults say what does not apply. A second
    stage keeps the finished first stage it was built on (ctx.parent) as `self.parent`. A class that
    sets `graph_safe = True` itself declares that its forward is the same tensor operations every
    time, so a training step may be recorded as a CUDA graph (vaezoo.training.graphs).
    """

    input_shape: tuple[int, int, int]  # set by build_model
    condition: Tensor | None = None  # the labels a conditional structure reads, set by conditioned_on
    #: set by build_model from the likelihood part's `support` ("8-bit", "binary", "continuous"; see
    #: vaezoo.model.parts): what -log p(x) measures, hence how bits per dimension are counted
    likelihood_support: str | None = None
    capabilities: frozenset[str] = frozenset()

    def train(self, mode: bool = True) -> Structure:
        """Train mode for the model's own parts; a frozen parent stage (`self.parent`) stays in eval mode."""
        super().train(mode)
        parent = getattr(self, "parent", None)
        if isinstance(parent, nn.Module):
            parent.eval()
        return self

    def forward(self, x: Tensor) -> Pass:  # pragma: no cover - interface
        raise NotImplementedError

    @contextmanager
    def conditioned_on(self, labels: Tensor | None) -> Iterator[None]:
        """Within, a conditional structure (capability "conditional") reads `labels` as the labels of
        the images it is given (`self.condition`); for others, and for None, nothing changes."""
        if labels is None or "conditional" not in self.capabilities:
            yield
            return
        self.condition = labels
        try:
            yield
        finally:
            self.condition = None

    def importance_draw(self, x: Tensor) -> ImportanceDraw:
        """A sampler of importance-weight terms for `x` (needs "density").

        The default repeats the batch k times through `forward`, summing log p(z_g | z_<g) -
        log q(z_g | x, z_<g) over the groups, which any structure whose groups carry their
        posterior and prior supports; a structure may override it with a faster path.
        """
        if "density" not in self.capabilities:
            raise NotApplicable(f"{type(self).__name__} has no density: importance sampling does not apply")

        def draw(k: int) -> tuple[Tensor, Tensor]:
            repeated = x.expand(k, *x.shape).reshape(k * x.shape[0], *x.shape[1:])
            out = self(repeated)
            ratio = _sum(g.prior.log_prob(g.sample) - g.posterior.log_prob(g.sample) for g in out.groups)
            return -out.recon.view(k, -1), ratio.view(k, -1)

        return draw

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:  # pragma: no cover - interface
        """Images decoded from the most likely code of x (what people look at)."""
        raise NotImplementedError

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        """n images from the prior (needs "prior-samples")."""
        raise NotApplicable(f"{type(self).__name__} cannot draw prior samples")

    @torch.no_grad()
    def representation(self, x: Tensor) -> Tensor:
        """[B, D] the code people traverse and metrics read (needs "flat-code")."""
        raise NotApplicable(f"{type(self).__name__} has no flat code to traverse or measure")

    @torch.no_grad()
    def decode_representation(self, z: Tensor) -> Tensor:
        """Images decoded from codes shaped like `representation`'s."""
        raise NotApplicable(f"{type(self).__name__} has no flat code to decode")

    def inference_parameters(self) -> Iterable[nn.Parameter]:
        """The parameters of the posteriors only (needs "inference-network")."""
        raise NotApplicable(f"{type(self).__name__} does not separate its inference network")

    @torch.no_grad()
    def measures(self, batches: Iterable[Tensor]) -> dict[str, float]:
        """Measures of this structure over a data split beyond the ELBO's (codebook usage, ...)."""
        return {}
