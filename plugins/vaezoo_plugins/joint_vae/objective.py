"""JointVAE's objective: each type of latent pulled towards a capacity that grows with the steps."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from vaezoo.model.parts import BuildContext, Terms
from vaezoo.model.structure import Pass
from vaezoo_plugins.beta_vae.capacity import capacity
from vaezoo_plugins.joint_vae.structure import CAPABILITY
from vaezoo_plugins.standard.objectives import BetaELBO


class JointCapacityELBO(BetaELBO):
    """loss = E[-log p(x|z)] + gamma |KL_cont - C_cont(step)| + gamma |KL_disc - C_disc(step)|,
    C_disc never above log K, the largest KL a K-way categorical can have (Dupont 2018, eq. 7)."""

    needs = BetaELBO.needs | {CAPABILITY}

    def __init__(self, ctx: BuildContext):
        super().__init__(ctx, kl_weight=0.0)
        hp = ctx.hp
        self.gamma = float(hp["gamma"])
        self.steps = int(hp["capacity_steps"])
        self.continuous_max = float(hp["continuous_capacity"])
        self.discrete_max = min(float(hp["discrete_capacity"]), math.log(int(hp["categories"])))

    def terms(self, model: nn.Module, out: Pass, step: int) -> Terms:
        terms = super().terms(model, out, step)
        kl = {group.name: group.kl_per_image.mean() for group in out.groups}
        targets = {"continuous": capacity(step, self.continuous_max, self.steps),
                   "discrete": capacity(step, self.discrete_max, self.steps)}
        penalty: Tensor = sum(self.gamma * (kl[name] - target).abs() for name, target in targets.items())
        terms["loss"] = terms["loss"] + penalty
        for name, target in targets.items():
            terms[f"kl_{name}"] = kl[name]
            terms[f"capacity_{name}"] = torch.tensor(target, device=penalty.device)
        return terms
