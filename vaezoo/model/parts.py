"""The interfaces of the parts a VAE is made of, and the context they are built from.

A registered part is a factory ``factory(ctx: BuildContext) -> nn.Module`` (a class whose
constructor takes the context works). Shapes: B is the batch, D the latent size, S optional
leading sample dimensions (k importance samples).

Structure   owns the pass: forward(x) -> Pass (see vaezoo.model.structure); builds its parts
            with ctx.part(kind). The default, "single-latent", is encoder -> z -> decoder.
Encoder     forward(x: [B, C, H, W]) -> q(z|x), a torch.distributions.Distribution
            (e.g. DiagonalGaussian with batch [B], event [D]); what a structure expects from it is
            the structure's to say.
Decoder     forward(z: [S..., B, D]) -> decoder output (e.g. logits [S..., B, C', H, W]), where
            C' = ctx.output_channels (what the likelihood needs per data channel).
Likelihood  log_prob(x: [B, C, H, W], out: [S..., B, ...]) -> [S..., B]  log p(x|z)
            mean(out) -> [S..., B, C, H, W]  the image shown to people (sigmoid of logits)
            decoder_channels(data_channels) -> int  (optional; default: one output per data channel)
            `support` (class attribute, optional): "8-bit" (a probability mass over the 256 levels
            of 8-bit data, which it then needs), "binary" (a mass over {0, 1} per value) or
            "continuous" (a density); evaluation counts bits per dimension from it.
Prior       forward() -> p(z), a Distribution with event [D] that broadcasts against q's batch.
Divergence  forward(q, z: [B, D], p) -> [B, D] per dimension or [B]: what training penalises.
            `measures_kl` (class attribute) says whether it is the KL(q || p) itself (then
            evaluation reuses it), `exact` whether it is closed form rather than an estimate.
Objective   forward(model, x, step) -> Terms; an nn.Module so it may own trainable modules
            (a discriminator) that the trainer gives their own optimiser.

Any part class may declare `needs`: the model capabilities (vaezoo.model.structure.CAPABILITIES)
it cannot work without; building refuses a combination that lacks one, with one line. It may also
declare `interface`, a short text of what it takes and gives ("x -> q(z|x)"): a `--part` swap is
refused when the variant's own part and the swapped-in one both declare one and they differ.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from vaezoo.errors import UsageError
from vaezoo.hparams import HParams

if TYPE_CHECKING:
    from vaezoo.registry import Registry


@dataclass
class BuildContext:
    """What a part factory gets: hyperparameters, the data shape, the variant's parts by kind.

    `part(kind)` builds the variant's part of that kind once and returns the same module to every
    caller (a VampPrior and the structure share one encoder); `build(kind, name)` builds another
    registered part afresh, for parts that wrap one (a flow posterior around a conv encoder).
    """

    hp: HParams
    input_shape: tuple[int, int, int]
    built: dict[str, nn.Module] = field(default_factory=dict)
    dataset_size: int | None = None  # training images, for estimators that need N (objectives only)
    parts: Mapping[str, str] = field(default_factory=dict)  # kind -> registered name
    registry: Registry | None = None
    parent: nn.Module | None = None  # a finished earlier stage this model builds on (frozen)
    total_steps: int | None = None  # optimiser steps the run will take, for schedules (objectives only)

    @property
    def latent_dim(self) -> int:
        return int(self.hp["latent_dim"])

    @property
    def output_channels(self) -> int:
        """Decoder output channels: what the variant's likelihood needs for the data's channels."""
        channels = self.input_shape[0]
        likelihood = self.part("likelihood") if "likelihood" in self.parts or "likelihood" in self.built else None
        return likelihood.decoder_channels(channels) if hasattr(likelihood, "decoder_channels") else channels

    def part(self, kind: str) -> nn.Module:
        """The variant's part of `kind`, built on first request and shared afterwards."""
        if kind not in self.built:
            if kind not in self.parts:
                raise UsageError(f"this variant names no {kind}, but one of its parts needs one")
            self.built[kind] = self.build(kind, self.parts[kind])
        return self.built[kind]

    def build(self, kind: str, name: str) -> nn.Module:
        """A fresh instance of the registered `kind` part `name`, built from this context."""
        from vaezoo.registry import get_registry

        return (self.registry or get_registry()).load(kind, name)(self)


class PartRef:
    """Holds another part without making it a submodule: its weights are not saved twice and it is
    not trained twice, but calls go through (e.g. a VampPrior using the model's own encoder)."""

    def __init__(self, module: nn.Module):
        self.module = module

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)


class Terms(dict):
    """Scalar loss terms of one batch (per image). Must hold "loss"; the trainer logs every entry.

    Conventional keys (all optional): neg_elbo, recon (the negative log-likelihood), kl (the true
    KL(q || p)), divergence (the training divergence when it is not the KL), kl_per_dim ([D]).
    "aux_loss" (optional) is minimised by the objective's own parameters only.
    """


class Objective(nn.Module):
    """Base for objectives. `aux_optimizer` builds the optimiser for the objective's own parameters.

    `l2_weight` (lambda) declares a penalty lambda * sum(theta^2) on the model's trainable
    parameters. Its gradient 2 * lambda * theta is applied by the trainer as the optimiser's (L2,
    not decoupled) weight decay, which is exact and cheaper than differentiating the sum; so an
    objective with l2_weight > 0 adds the penalty's *value* to "loss" without autograd.
    `needs` names the model capabilities the objective requires (checked before training).
    `extra_batches` asks the trainer for that many independent random batches of the same size
    appended to x (the step's own batch comes first): for estimators that contrast a batch with an
    independent one. A class that sets `graph_safe = True` itself (not inherited) declares that its
    forward is the same tensor operations at every step (no use of `step`, no host syncs), so the
    trainer may record the step as a CUDA graph (vaezoo.training.graphs).
    """

    l2_weight: float = 0.0
    needs: frozenset[str] = frozenset()
    extra_batches: int = 0

    def forward(self, model: nn.Module, x: Tensor, step: int) -> Terms:  # pragma: no cover - interface
        raise NotImplementedError

    def aux_optimizer(self) -> torch.optim.Optimizer | None:
        """The optimiser for parameters the objective owns (none by default)."""
        return None
