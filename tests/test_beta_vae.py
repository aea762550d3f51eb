"""beta-VAE presets and the capacity schedule of Burgess et al."""

from __future__ import annotations

import pytest
import torch
from vaezoo_plugins.beta_vae.capacity import capacity

from vaezoo.data import as_float


@pytest.mark.parametrize("step, expected", [(0, 0.0), (25_000, 6.25), (50_000, 12.5), (100_000, 25.0), (300_000, 25.0)])
def test_capacity_rises_linearly_then_holds(step, expected):
    assert capacity(step, 25.0, 100_000) == pytest.approx(expected)


def test_capacity_objective_pulls_the_kl_to_the_target(build_variant, synthetic):
    model, objective = build_variant("beta-vae-capacity", latent_dim=4, gamma=10.0, capacity_max=8.0,
                                     capacity_steps=100, **{"lambda": 0.0})
    x = as_float(synthetic.train[:8])
    for step, target in ((0, 0.0), (50, 4.0), (1000, 8.0)):
        torch.manual_seed(0)
        terms = objective(model, x, step)
        assert terms["capacity"].item() == pytest.approx(target)
        expected = terms["recon"] + 10.0 * (terms["kl"] - target).abs()
        assert terms["loss"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_beta_vae_is_the_beta_elbo_with_beta_4(build_variant, synthetic):
    model, objective = build_variant("beta-vae", latent_dim=4, **{"lambda": 0.0})
    torch.manual_seed(0)
    terms = objective(model, as_float(synthetic.train[:8]), 0)
    assert terms["loss"].item() == pytest.approx((terms["recon"] + 4.0 * terms["kl"]).item(), rel=1e-6)
