"""JointVAE: the categorical KL against Monte Carlo, the relaxation's temperature limits, the capacity
per latent type, and the two-group pass."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Categorical, RelaxedOneHotCategorical
from vaezoo_plugins.joint_vae.structure import categorical_kl

from vaezoo.errors import UsageError


def test_categorical_kl_to_uniform_against_monte_carlo_and_its_limits():
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(3, 7, generator=g), -1)
    draws = Categorical(probs=probs).sample((200_000,))  # [N, 3]
    log_ratio = torch.log(probs.gather(-1, draws.T).T) + math.log(7)
    se = log_ratio.std(0) / math.sqrt(len(draws))
    assert torch.all((categorical_kl(probs) - log_ratio.mean(0)).abs() < 4 * se)
    assert float(categorical_kl(torch.full((7,), 1 / 7))) == pytest.approx(0.0, abs=1e-6)
    assert float(categorical_kl(torch.eye(7)[2])) == pytest.approx(math.log(7))


@pytest.mark.parametrize("temperature, check", [
    (0.01, lambda z: z.max(-1).values.mean() > 0.99),  # cold: one-hot samples
    (100.0, lambda z: (z - 1 / 5).abs().max() < 0.05),  # hot: every category about 1/K
])
def test_relaxed_samples_at_temperature_limits(temperature, check):
    torch.manual_seed(1)
    logits = torch.tensor([2.0, 0.0, -1.0, 0.5, 1.0])
    z = RelaxedOneHotCategorical(torch.tensor(temperature), logits=logits).rsample((5000,))
    assert check(z)


def test_cold_relaxation_picks_categories_with_their_probabilities():
    torch.manual_seed(2)
    logits = torch.tensor([2.0, 0.0, -1.0])
    z = RelaxedOneHotCategorical(torch.tensor(0.05), logits=logits).rsample((100_000,))
    frequencies = torch.bincount(z.argmax(-1), minlength=3).double() / len(z)
    torch.testing.assert_close(frequencies, torch.softmax(logits.double(), 0), atol=0.01, rtol=0)


def test_capacity_per_type_and_the_discrete_cap(build_variant):
    model, objective = build_variant("joint-vae", categories=4, discrete_capacity=10.0, capacity_steps=100)
    assert objective.discrete_max == pytest.approx(math.log(4))  # never above the largest categorical KL
    x = torch.rand(8, 1, 32, 32)
    torch.manual_seed(3)
    terms = objective(model, x, 50)
    assert float(terms["capacity_continuous"]) == pytest.approx(2.5)  # 5 nats * 50 / 100
    assert float(terms["capacity_discrete"]) == pytest.approx(math.log(4) / 2)
    expected = terms["recon"] + 100 * ((terms["kl_continuous"] - 2.5).abs()
                                       + (terms["kl_discrete"] - math.log(4) / 2).abs())
    penalty = 0.01 * sum(p.detach().pow(2).sum() for p in model.parameters())
    assert float(terms["loss"].detach()) == pytest.approx(float((expected + penalty).detach()), rel=1e-5)
    assert float(terms["kl"]) == pytest.approx(float(terms["kl_continuous"] + terms["kl_discrete"]), rel=1e-6)


def test_two_groups_their_kls_and_eval_mode_one_hot(build_variant):
    model, _ = build_variant("joint-vae", latent_dim=3, categories=5)
    x = torch.rand(6, 1, 32, 32)
    out = model(x)
    assert [g.name for g in out.groups] == ["continuous", "discrete"]
    mu, logvar, logits = model.encoder(x)
    torch.testing.assert_close(out.groups[0].kl, 0.5 * (logvar.exp() + mu**2 - 1 - logvar))
    torch.testing.assert_close(out.groups[1].kl, categorical_kl(torch.softmax(logits, -1)))
    model.eval()
    z_d = model(x).groups[1].sample
    assert torch.equal(z_d, torch.nn.functional.one_hot(logits.argmax(-1), 5).float())
    assert model.representation(x).shape == (6, 8) and model.sample(4).shape == (4, 1, 32, 32)


def test_objective_refuses_a_model_without_the_two_groups():
    from vaezoo.testing import build_variant

    with pytest.raises(UsageError, match="continuous-and-discrete-groups"):
        build_variant("conv-fashion", parts={"objective": "joint-capacity-elbo"})
