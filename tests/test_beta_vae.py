"""beta-VAE presets and the capacity schedule of Burgess et al."""

from __future__ import annotations

import pytest
import torch
from vaezoo_plugins.beta_vae.capacity import capacity

from vaezoo.data import as_float
from vaezoo.errors import UsageError


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


def test_capacity_ramps_over_the_whole_run_by_default(synthetic):
    """capacity_steps = 0 spans the run's planned steps, so C_max is reached whatever its length."""
    from vaezoo.model import build_model, build_objective
    from vaezoo.registry import get_registry

    registry = get_registry()
    spec = registry.variant("beta-vae-capacity")
    hp = spec.schema.resolve({"latent_dim": 2, "capacity_max": 10.0, "lambda": 0.0})
    assert hp["capacity_steps"] == 0
    model = build_model(spec, hp, (1, 32, 32), registry)
    objective = build_objective(model, registry, dataset_size=1024, total_steps=200)
    x = as_float(synthetic.train[:4])
    assert [objective(model, x, step)["capacity"].item() for step in (0, 100, 200, 300)] == [0.0, 5.0, 10.0, 10.0]
    with pytest.raises(UsageError, match="set capacity_steps to a number of steps"):
        build_objective(model, registry, dataset_size=1024)


@pytest.mark.parametrize("epochs, max_steps, processes, expected", [
    (10, None, 1, 10 * (1024 // 64)), (10, 35, 1, 35), (1, 1000, 1, 16), (3, None, 2, 3 * (1024 // 128))])
def test_the_run_knows_its_planned_steps(synthetic, epochs, max_steps, processes, expected):
    from vaezoo.registry import get_registry
    from vaezoo.training.distributed import World
    from vaezoo.training.loop import TrainSetup

    spec = get_registry().variant("beta-vae-capacity")
    setup = TrainSetup(spec, spec.schema.resolve({"epochs": epochs, "batch_size": 64}), synthetic,
                       torch.device("cpu"), max_steps=max_steps, world=World(size=processes))
    assert setup.planned_steps == expected
