"""MADE (Germain et al. 2015): a dense network whose outputs for variable i read only the variables
before i in a chosen ordering, so one pass gives the parameters of every autoregressive conditional.

The building block of the autoregressive flows (an IAF posterior, MAF and IAF samplers over codes).
Degrees are deterministic (hidden unit k has degree 1 + k mod (D - 1), or k mod D with a context), so
a model rebuilds with the same masks from its hyperparameters alone and the masks are not saved.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def step_order(features: int, step: int, reverse: bool) -> Tensor:
    """The variable ordering of step `step` of a stack: 0..D-1, or with `reverse` reversed on odd steps
    (so every variable is, in some step, conditioned on every other)."""
    order = torch.arange(features)
    return order.flip(0) if reverse and step % 2 else order


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 mask [out, in]."""

    def __init__(self, mask: Tensor):
        super().__init__(mask.shape[1], mask.shape[0])
        self.register_buffer("mask", mask.to(self.weight.dtype), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """x [..., D] (and an optional context [..., C]) -> [..., outputs, D], output [..., j, i]
    depending on x only through the variables that come before i in `order`.

    order: a permutation of 0..D-1, the position of each variable in the autoregressive ordering
    (default: the natural one). The context (the encoder's h in an IAF posterior) is added, unmasked,
    to the first hidden layer, as Kingma et al. 2016 feed it. ELU activations as in their paper.
    """

    def __init__(self, features: int, hidden: tuple[int, ...], outputs: int = 2, context: int = 0,
                 order: Tensor | None = None):
        super().__init__()
        if not hidden:
            raise ValueError("MADE needs at least one hidden layer")
        order = torch.arange(features) if order is None else torch.as_tensor(order)
        if sorted(order.tolist()) != list(range(features)):
            raise ValueError(f"order must be a permutation of 0..{features - 1}")
        self.features, self.outputs = features, outputs
        self.register_buffer("order", order, persistent=False)
        degree_in = order + 1  # variable i is the order[i]+1-th in the ordering
        # Hidden degrees cycle through 1..D-1; with a context also through 0: units that read the
        # context alone, so that even the first variable's outputs depend on it.
        low = 0 if context else 1
        degrees = [degree_in] + [low + torch.arange(width) % max(features - low, 1) for width in hidden]
        self.hidden = nn.ModuleList(MaskedLinear((d_out[:, None] >= d_in[None, :]).float())
                                    for d_in, d_out in zip(degrees[:-1], degrees[1:]))
        degree_out = degree_in.repeat(outputs)  # output j * D + i belongs to variable i
        self.out = MaskedLinear((degree_out[:, None] > degrees[-1][None, :]).float())
        self.context = nn.Linear(context, hidden[0], bias=False) if context else None

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        h = self.hidden[0](x)
        if self.context is not None:
            if context is None:
                raise ValueError("this MADE was built with a context; pass one")
            h = h + self.context(context)
        h = F.elu(h)
        for layer in self.hidden[1:]:
            h = F.elu(layer(h))
        return self.out(h).unflatten(-1, (self.outputs, self.features))
