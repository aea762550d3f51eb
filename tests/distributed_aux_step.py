"""Run by tests/test_distributed.py under torchrun: one step of an objective that owns a discriminator.

Like FactorVAE's, the objective calls the model's submodules directly and trains its discriminator
with its own loss ("aux_loss"), so the loop's backward runs twice. Each process writes OUT/own-RANK
(its gradients without DDP) and OUT/ddp-RANK (its gradients after the DDP step), as safetensors.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from vaezoo_plugins.datasets.synthetic import load_synthetic

from vaezoo.data import as_float
from vaezoo.model import build_model
from vaezoo.model.parts import Objective, Terms
from vaezoo.registry import get_registry
from vaezoo.training import rng
from vaezoo.training.distributed import launch
from vaezoo.training.loop import _backward

LATENT, PER_RANK, SEED = 4, 8, 11


class WithDiscriminator(Objective):
    """-log p(x|z) plus a discriminator term in "loss"; the discriminator's cross-entropy in "aux_loss"."""

    def __init__(self):
        super().__init__()
        self.discriminator = nn.Sequential(nn.Linear(LATENT, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))

    def forward(self, model, x, step):
        z = model.encoder(x).rsample()
        recon = -model.likelihood.log_prob(x, model.decoder(z)).mean()
        permuted = z.detach()[torch.randperm(len(z), device=z.device)]
        aux = F.softplus(-self.discriminator(z.detach())).mean() + F.softplus(self.discriminator(permuted)).mean()
        return Terms(loss=recon + self.discriminator(z).mean(), aux_loss=aux)


def step_gradients(model: nn.Module, objective: nn.Module, forward, x: torch.Tensor, world) -> dict[str, torch.Tensor]:
    """Gradients of one step of the loop's backward, from the noise the loop would draw at step 0."""
    model.zero_grad(set_to_none=True)
    objective.zero_grad(set_to_none=True)
    world.seed_step(SEED, 0)
    _backward(forward(x), model, objective)
    named = [*(("model." + n, p) for n, p in model.named_parameters()),
             *(("objective." + n, p) for n, p in objective.named_parameters())]
    return {name: p.grad.detach().clone(memory_format=torch.contiguous_format) for name, p in named}


def main(out: Path) -> None:
    world, _ = launch(torch.device("cpu"))
    registry = get_registry()
    spec = registry.variant("conv-fashion")
    hp = spec.schema.resolve(texts=[f"latent_dim={LATENT}"])
    data = load_synthetic()
    with world.joined():
        rng.seed_all(SEED)
        model = build_model(spec, hp, data.input_shape, registry)
        objective = WithDiscriminator()
        x = as_float(data.train[world.rank * PER_RANK:(world.rank + 1) * PER_RANK])
        own = step_gradients(model, objective, lambda batch: objective(model, batch, 0), x, world)
        save_file(own, str(out / f"own-{world.rank}.safetensors"))
        ddp = world.wrap(model, objective)
        save_file(step_gradients(model, objective, lambda batch: ddp(batch, 0), x, world),
                  str(out / f"ddp-{world.rank}.safetensors"))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
