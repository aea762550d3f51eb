"""JS-G-alpha: the closed form against numerical integration of its definition, and its limits."""

from __future__ import annotations

import math

import pytest
import torch
from vaezoo_plugins.gjs_vae.divergence import GeometricJS, skew_geometric_js

from vaezoo.errors import UsageError
from vaezoo.hparams import HParams
from vaezoo.model.distributions import DiagonalGaussian
from vaezoo.model.parts import BuildContext

Q = (0.7, 0.5**2)  # q(z|x) = N(0.7, 0.25)
P = (-0.3, 1.4)  # the prior, deliberately not N(0, 1)


def _gaussian(mu: float, var: float) -> DiagonalGaussian:
    return DiagonalGaussian(torch.tensor([mu], dtype=torch.float64), torch.tensor([math.log(var)], dtype=torch.float64))


def _numerical(alpha: float, dual: bool) -> float:
    """The definition integrated on a grid: G = q^a p^(1-a) / Z, then the weighted KLs."""
    z = torch.linspace(-15, 15, 100_001, dtype=torch.float64)
    log_q, log_p = (_gaussian(*spec).log_prob(z[:, None]) for spec in (Q, P))
    log_g_unnormalised = alpha * log_q + (1 - alpha) * log_p
    log_g = log_g_unnormalised - torch.log(torch.trapezoid(log_g_unnormalised.exp(), z))

    def kl(log_a, log_b):
        return float(torch.trapezoid(log_a.exp() * (log_a - log_b), z))

    if dual:
        return (1 - alpha) * kl(log_g, log_q) + alpha * kl(log_g, log_p)
    return (1 - alpha) * kl(log_q, log_g) + alpha * kl(log_p, log_g)


@pytest.mark.parametrize("dual", [False, True])
@pytest.mark.parametrize("alpha", [0.1, 0.5, 0.9])
def test_closed_form_matches_numerical_integration(alpha, dual):
    closed = float(skew_geometric_js(_gaussian(*Q), _gaussian(*P), alpha, dual))
    assert closed == pytest.approx(_numerical(alpha, dual), rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("dual, at_zero, at_one", [
    (False, "q||p", "p||q"),  # plain: alpha -> 0 is the VAE's KL(q || p)
    (True, "p||q", "q||p"),  # dual: the ends swap
])
def test_limits_are_the_two_kls(dual, at_zero, at_one):
    q, p = _gaussian(*Q), _gaussian(*P)
    kls = {"q||p": float(q.kl_per_dim(p)), "p||q": float(p.kl_per_dim(q))}
    assert kls["q||p"] != pytest.approx(kls["p||q"], rel=0.05)  # the two ends are distinguishable
    for alpha, name in ((0.0, at_zero), (1.0, at_one)):
        assert float(skew_geometric_js(q, p, alpha, dual)) == pytest.approx(kls[name], rel=1e-12)
    # and continuously so
    assert float(skew_geometric_js(q, p, 1e-6, dual)) == pytest.approx(kls[at_zero], rel=1e-4)
    assert float(skew_geometric_js(q, p, 1 - 1e-6, dual)) == pytest.approx(kls[at_one], rel=1e-4)


def test_half_skew_is_symmetric_and_zero_only_for_equal_distributions():
    q, p = _gaussian(*Q), _gaussian(*P)
    assert float(skew_geometric_js(q, p, 0.5)) == pytest.approx(float(skew_geometric_js(p, q, 0.5)), rel=1e-12)
    assert float(skew_geometric_js(q, p, 0.5)) > 0.05
    assert float(skew_geometric_js(q, q, 0.5)) == pytest.approx(0.0, abs=1e-12)


class MixturePrior(torch.nn.Module):
    """A prior that is not one Gaussian: an equal mixture of two."""

    def forward(self):
        components = DiagonalGaussian(torch.tensor([[-1.0, 0.0], [1.0, 0.0]]), torch.zeros(2, 2))
        return torch.distributions.MixtureSameFamily(torch.distributions.Categorical(logits=torch.zeros(2)), components)


def test_part_needs_a_gaussian_prior():
    ctx = BuildContext(HParams({"alpha": 0.5, "dual": False, "latent_dim": 2}), (1, 32, 32),
                       built={"prior": MixturePrior()})
    with pytest.raises(UsageError, match="Gaussian prior"):
        GeometricJS(ctx)
