"""VampPrior: a proper density (integrates to 1 in 1-D), samples that match it, the Monte Carlo KL."""

from __future__ import annotations

import pytest
import torch
from vaezoo_plugins.standard.divergences import MonteCarloKL
from vaezoo_plugins.vamp_vae.prior import VampPrior

from vaezoo.data import as_float
from vaezoo.hparams import HParams
from vaezoo.model.distributions import DiagonalGaussian
from vaezoo.model.parts import BuildContext


class _BrightnessEncoder(torch.nn.Module):
    """A 1-D encoder whose posterior mean follows the image's brightness, so components differ."""

    def forward(self, x):
        level = x.mean((1, 2, 3))[:, None]
        return DiagonalGaussian(8.0 * level - 4.0, torch.log(0.2 + level))


@pytest.fixture
def prior_1d():
    ctx = BuildContext(HParams({"pseudo_inputs": 4, "latent_dim": 1}), (1, 32, 32),
                       built={"encoder": _BrightnessEncoder()})
    prior = VampPrior(ctx)
    with torch.no_grad():
        prior.pseudo_inputs.copy_(torch.tensor([0.1, 0.3, 0.35, 0.9])[:, None, None, None].expand(4, 1, 32, 32))
    return prior


@torch.no_grad()
def test_density_integrates_to_one_in_1d(prior_1d):
    z = torch.linspace(-40, 40, 200_001)
    density = prior_1d().log_prob(z[:, None]).exp()
    assert float(torch.trapezoid(density, z)) == pytest.approx(1.0, abs=1e-4)
    assert torch.allclose(prior_1d().component_distribution.mean[:, 0], torch.tensor([-3.2, -1.6, -1.2, 3.2]))


@torch.no_grad()
def test_samples_follow_the_density(prior_1d):
    z = torch.linspace(-40, 40, 200_001)
    density = prior_1d().log_prob(z[:, None]).exp()
    mean = torch.trapezoid(z * density, z)
    var = torch.trapezoid((z - mean) ** 2 * density, z)
    torch.manual_seed(0)
    s = prior_1d().sample((40_000,))[:, 0]
    assert float(s.mean()) == pytest.approx(float(mean), abs=4 * float(var.sqrt()) / 200)
    assert float(s.var()) == pytest.approx(float(var), rel=0.05)


@torch.no_grad()
def test_one_pseudo_input_is_its_posterior(build_variant):
    model, _ = build_variant("vamp-vae", latent_dim=3, pseudo_inputs=1)
    z = torch.randn(5, 3)
    posterior = model.encoder(model.prior.pseudo_inputs.clamp(0, 1))  # q(z|u_1), batch of one
    assert torch.allclose(model.prior().log_prob(z), posterior.log_prob(z), atol=1e-5)


def test_pseudo_inputs_are_saved_once_and_learn(build_variant, synthetic):
    model, objective = build_variant("vamp-vae", latent_dim=3, pseudo_inputs=7)
    keys = model.state_dict().keys()
    assert "prior.pseudo_inputs" in keys and not any(k.startswith("prior._encoder") for k in keys)
    objective(model, as_float(synthetic.train[:8]), 0)["loss"].backward()
    assert model.prior.pseudo_inputs.grad.abs().sum() > 0


@torch.no_grad()
def test_monte_carlo_kl_is_unbiased_for_the_closed_form():
    """The trap: a one-sample KL estimate averages to the closed form, within 4 standard errors."""
    from vaezoo_plugins.standard.priors import StandardNormalPrior

    prior = StandardNormalPrior(BuildContext(HParams({"latent_dim": 3}), (1, 32, 32)))
    q = DiagonalGaussian(torch.tensor([[0.5, -1.0, 0.2]]), torch.tensor([[-1.0, 0.3, 0.0]]))
    torch.manual_seed(0)
    z = q.rsample((20_000,))
    estimates = MonteCarloKL(None)(q, z, prior())[:, 0]
    closed = float(q.kl_per_dim(prior()).sum())
    assert float(estimates.mean()) == pytest.approx(closed, abs=4 * float(estimates.std()) / 20_000**0.5)


def test_pseudo_inputs_get_no_weight_decay(build_variant):
    """They are images, not weights: exempt from the L2 penalty's value and from the optimiser's decay."""
    from vaezoo_plugins.standard.objectives import squared_norm

    from vaezoo.training.loop import build_optimizers

    model, objective = build_variant("vamp-vae", latent_dim=3, pseudo_inputs=50)
    with torch.no_grad():
        model.prior.pseudo_inputs.fill_(1.0)  # 50 * 1024 = 51,200 if it were counted
    weights = sum(float(p.detach().double().pow(2).sum()) for name, p in model.named_parameters()
                  if name != "prior.pseudo_inputs")
    assert float(squared_norm(model)) == pytest.approx(weights, rel=1e-5)
    groups = build_optimizers(model, objective, {"lr": 1e-3})["model"].param_groups
    decay = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    assert decay[id(model.prior.pseudo_inputs)] == 0.0
    assert decay[id(model.encoder.mu.weight)] == pytest.approx(0.02)
