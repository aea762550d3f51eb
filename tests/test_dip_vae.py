"""DIP-VAE: the covariance estimate and the regulariser against hand computations and known limits."""

from __future__ import annotations

import pytest
import torch
from vaezoo_plugins.dip_vae.objective import aggregate_covariance, dip_regulariser

from vaezoo.data import as_float


def test_regulariser_is_zero_when_the_covariance_is_the_identity():
    # four points whose population covariance is exactly the identity: +-sqrt(2) on each axis
    mu = torch.tensor([[2**0.5, 0.0], [-(2**0.5), 0.0], [0.0, 2**0.5], [0.0, -(2**0.5)]], dtype=torch.float64)
    covariance = aggregate_covariance(mu)
    torch.testing.assert_close(covariance, torch.eye(2, dtype=torch.float64))
    assert float(dip_regulariser(covariance, 10.0, 100.0)) == pytest.approx(0.0, abs=1e-12)


def test_regulariser_of_a_known_covariance_by_hand():
    """mu = (0, 0), (2, 2), (4, 0) [with logvar log 0.5]: Cov_x = [[8/3, 0], [0, 8/9]];
    the type-ii covariance adds 0.5 on the diagonal."""
    mu = torch.tensor([[0.0, 0.0], [2.0, 2.0], [4.0, 0.0]], dtype=torch.float64)
    first = aggregate_covariance(mu)
    torch.testing.assert_close(first, torch.tensor([[8 / 3, 0.0], [0.0, 8 / 9]], dtype=torch.float64))
    assert float(dip_regulariser(first, 3.0, 2.0)) == pytest.approx(2 * ((8 / 3 - 1) ** 2 + (8 / 9 - 1) ** 2))
    correlated = torch.tensor([[0.0, 0.0], [2.0, 2.0], [4.0, 1.0]], dtype=torch.float64)
    second = aggregate_covariance(correlated, torch.full((3, 2), torch.log(torch.tensor(0.5)).item(),
                                                         dtype=torch.float64))
    # Cov_x: var1 = 8/3, var2 = ((-1)^2 + 1^2 + 0^2) / 3 = 2/3, cov12 = E[xy] - E[x]E[y] = (0 + 4 + 4)/3 - 2 * 1 = 2/3
    expected = torch.tensor([[8 / 3 + 0.5, 2 / 3], [2 / 3, 2 / 3 + 0.5]], dtype=torch.float64)
    torch.testing.assert_close(second, expected)
    by_hand = 3.0 * 2 * (2 / 3) ** 2 + 2.0 * ((8 / 3 + 0.5 - 1) ** 2 + (2 / 3 + 0.5 - 1) ** 2)
    assert float(dip_regulariser(second, 3.0, 2.0)) == pytest.approx(by_hand)


@pytest.mark.parametrize("name, dip_type, lambda_d", [("dip-vae-i", "i", 100.0), ("dip-vae-ii", "ii", 10.0)])
def test_objective_adds_the_regulariser_of_the_batch_posteriors(build_variant, synthetic, name, dip_type, lambda_d):
    model, objective = build_variant(name, latent_dim=3)
    assert (objective.second_type, objective.lambda_od, objective.lambda_d) == (dip_type == "ii", 10.0, lambda_d)
    x = as_float(synthetic.train[:16])
    torch.manual_seed(0)
    terms = objective(model, x, 0)
    q = model.encoder(x)
    covariance = aggregate_covariance(q.mu, q.logvar if dip_type == "ii" else None)
    expected = dip_regulariser(covariance, 10.0, lambda_d)
    torch.testing.assert_close(terms["dip"], expected)
    assert float(terms["loss"] - terms["dip"]) == pytest.approx(float(terms["neg_elbo"]) + float(
        0.01 * sum(p.detach().pow(2).sum() for p in model.parameters())), rel=1e-5)
