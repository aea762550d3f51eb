"""The capacity-annealed objective of Burgess et al.: the KL is held near a target that grows."""

from __future__ import annotations

import torch
from torch import nn

from vaezoo.errors import UsageError
from vaezoo.model.parts import BuildContext, Terms
from vaezoo.model.structure import Pass
from vaezoo_plugins.standard.objectives import BetaELBO


def capacity(step: int, capacity_max: float, capacity_steps: int) -> float:
    """C(step): 0 at step 0, rising linearly to `capacity_max` at `capacity_steps`, then held."""
    return capacity_max * min(step, capacity_steps) / capacity_steps


class CapacityELBO(BetaELBO):
    """loss = E[-log p(x|z)] + gamma * |KL - C(step)| (no plain KL term, as in the paper).

    capacity_steps = 0 (the default) ramps C over the whole run, so that every run reaches C_max
    (docs/zoo.md); with the paper's 100,000 steps a default 10-epoch FashionMNIST run (9,370 steps)
    would end at C = 2.3 of 25 nats.
    """

    def __init__(self, ctx: BuildContext):
        super().__init__(ctx, kl_weight=0.0)
        self.gamma = float(ctx.hp["gamma"])
        self.capacity_max = float(ctx.hp["capacity_max"])
        self.capacity_steps = int(ctx.hp["capacity_steps"]) or ctx.total_steps or 0
        if self.capacity_steps < 1:
            raise UsageError("capacity_steps=0 ramps C over the whole run, whose length is not known here; "
                             "set capacity_steps to a number of steps")

    def terms(self, model: nn.Module, out: Pass, step: int) -> Terms:
        terms = super().terms(model, out, step)
        target = capacity(step, self.capacity_max, self.capacity_steps)
        terms["loss"] = terms["loss"] + self.gamma * (terms["kl"] - target).abs()
        terms["capacity"] = torch.tensor(target, device=terms["kl"].device)
        return terms
