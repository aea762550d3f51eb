"""S-VAE: the von Mises-Fisher distribution's Bessel function, normaliser, sampler, gradient and KL,
each against an independent computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from vaezoo_plugins.s_vae.distributions import (
    HypersphericalUniform,
    VonMisesFisher,
    cdf_gradient_ratio,
    log_bessel_iv,
    log_normaliser,
    mean_resultant,
)

from vaezoo.model.distributions import kl_or_estimate


def _log_iv_by_quadrature(order: float, x: float) -> float:
    """log I_v(x) from its integral forms: (1/pi) int_0^pi e^(x cos t) dt for v = 0, else
    (x/2)^v / (sqrt(pi) Gamma(v + 1/2)) int_-1^1 e^(x t) (1 - t^2)^(v - 1/2) dt (scaled by e^-x)."""
    if order == 0:
        t = np.linspace(0.0, np.pi, 400_001)
        return x + math.log(np.trapezoid(np.exp(x * (np.cos(t) - 1)) * np.cos(order * t), t) / np.pi)
    t = np.linspace(-1.0, 1.0, 400_001)
    integral = np.trapezoid(np.exp(x * (t - 1)) * (1 - t * t) ** (order - 0.5), t)
    return x + order * math.log(x / 2) - 0.5 * math.log(math.pi) - math.lgamma(order + 0.5) + math.log(integral)


@pytest.mark.parametrize("order", [0.0, 0.5, 1.5, 4.0, 9.0])
@pytest.mark.parametrize("x", [0.3, 2.0, 25.0, 300.0, 900.0, 3000.0])
def test_log_bessel_matches_its_integral(order, x):
    ours = float(log_bessel_iv(order, torch.tensor([x], dtype=torch.float64)))
    assert ours == pytest.approx(_log_iv_by_quadrature(order, x), rel=1e-6, abs=1e-6)


def test_log_bessel_matches_scipy_and_its_derivative_identity():
    special = pytest.importorskip("scipy.special")
    x = torch.tensor([0.1, 1.0, 7.0, 80.0, 650.0, 5000.0], dtype=torch.float64, requires_grad=True)
    for order in (0.0, 1.5, 4.0):
        ours = log_bessel_iv(order, x)
        reference = np.log(special.ive(order, x.detach().numpy())) + x.detach().numpy()
        np.testing.assert_allclose(ours.detach().numpy(), reference, rtol=1e-8)
        grad, = torch.autograd.grad(ours.sum(), x)
        # d/dx log I_v = I_(v+1) / I_v + v / x
        identity = torch.exp(log_bessel_iv(order + 1, x) - ours) + order / x
        torch.testing.assert_close(grad, identity.detach(), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("kappa", [0.5, 4.0, 60.0])
def test_density_integrates_to_one_on_the_circle_and_the_sphere(kappa):
    k = torch.tensor(kappa, dtype=torch.float64)
    theta = np.linspace(0, 2 * np.pi, 200_001)  # S^1: z = (cos, sin), mu^T z = cos theta
    circle = np.trapezoid(np.exp(float(log_normaliser(2, k)) + kappa * np.cos(theta)), theta)
    t = np.linspace(-1, 1, 200_001)  # S^2: area element 2 pi dt for t = mu^T z
    sphere = 2 * np.pi * np.trapezoid(np.exp(float(log_normaliser(3, k)) + kappa * t), t)
    assert circle == pytest.approx(1.0, rel=1e-7) and sphere == pytest.approx(1.0, rel=1e-7)


def _vmf(dims: int, kappa: float, seed: int = 0) -> VonMisesFisher:
    g = torch.Generator().manual_seed(seed)
    loc = torch.randn(1, dims, generator=g, dtype=torch.float64)
    return VonMisesFisher(loc / loc.norm(), torch.tensor([[kappa]], dtype=torch.float64))


@pytest.mark.parametrize("dims, kappa", [(3, 2.0), (10, 15.0), (5, 400.0)])
def test_samples_lie_on_the_sphere_with_the_right_mean(dims, kappa):
    q = _vmf(dims, kappa)
    torch.manual_seed(1)
    z = q.rsample((100_000,))[:, 0]
    assert torch.allclose(z.norm(dim=-1), torch.ones(len(z), dtype=torch.float64), atol=1e-9)
    se = z.std(0) / math.sqrt(len(z))
    assert torch.all((z.mean(0) - q.mean[0]).abs() < 5 * se + 1e-9)


@pytest.mark.parametrize("dims, kappa", [(3, 1.0), (10, 5.0), (4, 200.0)])
def test_implicit_gradient_is_unbiased(dims, kappa):
    """d E[mu^T z] / d kappa = d A_m / d kappa, which sampling through the accepted proposal alone misses."""
    q = _vmf(dims, kappa)
    k = q.concentration.clone().requires_grad_(True)
    torch.manual_seed(2)
    w = (VonMisesFisher(q.loc, k).rsample((100_000,)) * q.loc).sum(-1)
    grad, = torch.autograd.grad(w.mean(), k)
    per_sample = cdf_gradient_ratio(w.detach(), k.detach().expand_as(w), dims)
    kappa_t = torch.tensor(kappa, dtype=torch.float64, requires_grad=True)
    exact, = torch.autograd.grad(mean_resultant(dims, kappa_t), kappa_t)
    assert float(grad) == pytest.approx(float(per_sample.mean()), rel=1e-9)
    assert abs(float(grad) - float(exact)) < 4 * float(per_sample.std()) / math.sqrt(len(w))


def test_implicit_gradient_matches_finite_differences_of_the_inverse_cdf():
    """For one w, dw/dkappa holds F(w | kappa) fixed: w(kappa +- h) = F^-1(F(w | kappa) | kappa +- h)."""
    dims, kappa, w = 5, 3.0, 0.4
    t = np.linspace(-1, 1, 400_001)

    def cdf(k):  # the CDF of w on the grid, by the cumulative trapezoid rule
        density = np.exp(k * (t - 1)) * (1 - t * t) ** ((dims - 3) / 2)
        cumulative = np.concatenate([[0.0], np.cumsum((density[1:] + density[:-1]) / 2 * np.diff(t))])
        return cumulative / cumulative[-1]

    level = np.interp(w, t, cdf(kappa))
    h = 1e-3
    moved = [np.interp(level, cdf(kappa + sign * h), t) for sign in (1, -1)]
    numeric = (moved[0] - moved[1]) / (2 * h)
    ours = float(cdf_gradient_ratio(torch.tensor(w, dtype=torch.float64), torch.tensor(kappa, dtype=torch.float64),
                                    dims))
    assert ours == pytest.approx(numeric, rel=1e-4)


@pytest.mark.parametrize("dims, kappa", [(3, 0.7), (8, 12.0)])
def test_kl_to_uniform_and_entropy_against_monte_carlo(dims, kappa):
    q, p = _vmf(dims, kappa), HypersphericalUniform(dims, dtype=torch.float64)
    torch.manual_seed(3)
    z = q.rsample((200_000,))
    closed, exact = kl_or_estimate(q, p, z)
    assert exact
    log_ratio = q.log_prob(z) - p.log_prob(z)
    assert abs(float(closed) - float(log_ratio.mean())) < 4 * float(log_ratio.std()) / math.sqrt(log_ratio.numel())
    neg_log_q = -q.log_prob(z)
    assert abs(float(q.entropy()) - float(neg_log_q.mean())) < 4 * float(neg_log_q.std()) / math.sqrt(z.shape[0])


def test_uniform_density_is_one_over_the_area():
    assert math.exp(-HypersphericalUniform(3).log_surface()) == pytest.approx(1 / (4 * math.pi))
    assert math.exp(-HypersphericalUniform(2).log_surface()) == pytest.approx(1 / (2 * math.pi))
    z = HypersphericalUniform(6).sample((1000,))
    assert torch.allclose(z.norm(dim=-1), torch.ones(1000))


def test_s_vae_trains_through_its_kappa_and_has_a_density(build_variant):
    model, objective = build_variant("s-vae", latent_dim=5)
    assert "gaussian-posterior" not in model.capabilities and "density" in model.capabilities
    x = torch.rand(16, 1, 32, 32)
    torch.manual_seed(4)
    terms = objective(model, x, 0)
    terms["loss"].backward()
    assert model.encoder.concentration.weight.grad.abs().sum() > 0
    q = model.encoder(x)
    torch.testing.assert_close(terms["kl"], (-q.entropy() + HypersphericalUniform(5).log_surface()).mean())
    torch.testing.assert_close(model.representation(x), q.loc)  # the mode, on the sphere
    from vaezoo.model.bounds import importance_log_likelihood

    assert torch.isfinite(importance_log_likelihood(model, x, 3)).all()
