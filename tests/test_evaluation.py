"""The held-out measures against independent computations on a model small enough to integrate.

The tiny model has a 1-D latent and four Bernoulli pixels, so log p(x) = log ∫ p(x|z) p(z) dz
and the ELBO = ∫ q(z|x) log(p(x, z) / q(z|x)) dz are computed here by quadrature in numpy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from vaezoo_plugins.standard.divergences import AnalyticGaussianKL
from vaezoo_plugins.standard.likelihoods import BernoulliLikelihood
from vaezoo_plugins.standard.priors import StandardNormalPrior
from vaezoo_plugins.standard.structures import SingleLatent

from vaezoo.evaluation.measures import ACTIVE_UNIT_THRESHOLD, evaluate
from vaezoo.hparams import HParams
from vaezoo.model.bounds import importance_log_likelihood
from vaezoo.model.distributions import DiagonalGaussian
from vaezoo.model.parts import BuildContext
from vaezoo.model.structure import Structure

W = np.array([2.0, -1.5, 1.0, 0.5])
B = np.array([0.2, -0.3, 0.1, 0.0])
LOGVAR = -1.0  # the encoder's variance: deliberately not the true posterior's, so bounds are loose


class TinyEncoder(nn.Module):
    """q(z|x) = N(slope * (number of lit pixels) - 0.5, exp(LOGVAR))."""

    def __init__(self, slope: float):
        super().__init__()
        self.slope = slope

    def forward(self, x):
        s = x.flatten(1).sum(1, keepdim=True)
        return DiagonalGaussian(self.slope * s - 0.5, torch.full_like(s, LOGVAR))


class TinyDecoder(nn.Module):
    """z [..., 1] -> logits [..., 1, 2, 2] = W z + B."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(1, 4)
        with torch.no_grad():
            self.linear.weight.copy_(torch.tensor(W, dtype=torch.float32)[:, None])
            self.linear.bias.copy_(torch.tensor(B, dtype=torch.float32))

    def forward(self, z):
        return self.linear(z).unflatten(-1, (1, 2, 2))


def tiny_model(slope: float = 0.3) -> Structure:
    """The single-latent structure around the tiny parts (given to it prebuilt through the context)."""
    ctx = BuildContext(HParams({"latent_dim": 1}), (1, 2, 2))
    ctx.built.update(encoder=TinyEncoder(slope), decoder=TinyDecoder(), likelihood=BernoulliLikelihood(ctx),
                     prior=StandardNormalPrior(ctx))
    ctx.built["divergence"] = AnalyticGaussianKL(ctx)
    model = SingleLatent(ctx)
    model.input_shape = ctx.input_shape
    return model


#: All 16 binary 2x2 images, [16, 1, 2, 2] floats in {0, 1}.
PATTERNS = torch.tensor([[(i >> b) & 1 for b in range(4)] for i in range(16)], dtype=torch.float32).view(16, 1, 2, 2)


def _log_joint_grid(x: np.ndarray, z: np.ndarray) -> np.ndarray:
    """log p(x|z) + log p(z) for each pattern (rows) and grid point z (columns), in float64."""
    logits = W[None, :, None] * z[None, None, :] + B[None, :, None]  # [1, 4, Z]
    log_px_z = (x[:, :, None] * logits - np.logaddexp(0.0, logits)).sum(1)  # Bernoulli log-likelihood
    return log_px_z - 0.5 * (z**2 + np.log(2 * np.pi))


def quadrature(slope: float = 0.3) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """log p(x), the ELBO, E_q[log p(x|z)] and Var_q[log p(x|z)] of each pattern by the trapezoid rule on a
    fine grid."""
    x = PATTERNS.view(16, 4).double().numpy()
    z = np.linspace(-12.0, 12.0, 200_001)
    log_joint = _log_joint_grid(x, z)
    peak = log_joint.max(1, keepdims=True)
    log_px = np.log(np.trapezoid(np.exp(log_joint - peak), z, axis=1)) + peak[:, 0]
    mu = slope * x.sum(1, keepdims=True) - 0.5
    log_q = -0.5 * (np.log(2 * np.pi) + LOGVAR + (z[None] - mu) ** 2 / np.exp(LOGVAR))
    q = np.exp(log_q)
    elbo = np.trapezoid(q * (log_joint - log_q), z, axis=1)
    log_px_z = log_joint + 0.5 * (z**2 + np.log(2 * np.pi))
    recon_mean = np.trapezoid(q * log_px_z, z, axis=1)
    recon_var = np.trapezoid(q * (log_px_z - recon_mean[:, None]) ** 2, z, axis=1)
    return log_px, elbo, recon_mean, recon_var


def test_quadrature_is_accurate():
    """Guard the reference itself: the posterior integrates to one and the ELBO is below log p(x)."""
    log_px, elbo, _, _ = quadrature()
    assert np.all(elbo < log_px)
    # summing p(x) over all 16 binary images must give 1
    assert np.exp(log_px).sum() == pytest.approx(1.0, abs=1e-9)


def test_one_sample_is_exactly_the_one_sample_elbo():
    """K = 1: log w = log p(x|z) + log p(z) - log q(z|x) for the very z the model's forward pass draws."""
    model = tiny_model()
    torch.manual_seed(3)
    estimate = importance_log_likelihood(model, PATTERNS, 1)
    torch.manual_seed(3)
    q = model.encoder(PATTERNS)
    z = q.rsample()
    by_hand = (model.likelihood.log_prob(PATTERNS, model.decoder(z)) + model.prior().log_prob(z) - q.log_prob(z))
    torch.testing.assert_close(estimate, by_hand, rtol=0, atol=1e-5)


def test_one_sample_estimate_averages_to_the_elbo():
    """E[log w] with K = 1 is the ELBO computed by quadrature, and the analytic-KL ELBO agrees too."""
    _, elbo, _, _ = quadrature()
    torch.manual_seed(0)
    model = tiny_model()
    draws = 20_000
    with torch.no_grad():
        log_w = sum(model.importance_draw(PATTERNS)(draws)).double()  # [draws, 16]: independent K = 1 estimates
        one_pass = model(PATTERNS.repeat(2000, 1, 1, 1))  # 2,000 draws of each pattern in one batch
    mean, se = log_w.mean(0).numpy(), (log_w.std(0) / draws**0.5).numpy()
    assert np.all(np.abs(mean - elbo) < 4 * se + 1e-4), (mean - elbo, se)
    # the model's own pass: reconstruction by one sample, KL in closed form
    neg_elbo = (one_pass.recon + one_pass.kl).view(2000, 16).double()
    assert np.all(np.abs(-neg_elbo.mean(0).numpy() - elbo) < 4 * (neg_elbo.std(0) / 2000**0.5).numpy() + 1e-4)


def test_importance_sampled_estimate_converges_to_log_px():
    """The gap log p(x) - estimate is positive, shrinks as K grows (by more than its noise) and
    vanishes within its standard error at K = 10,000."""
    log_px, _, _, _ = quadrature()
    torch.manual_seed(1)
    model = tiny_model()
    gap, se = {}, {}
    for k, repeats in ((1, 40), (10, 40), (100, 40), (10_000, 4)):
        estimates = torch.stack([importance_log_likelihood(model, PATTERNS, k) for _ in range(repeats)]).double()
        gaps = torch.tensor(log_px) - estimates  # [repeats, 16]
        gap[k], se[k] = float(gaps.mean()), float(gaps.std() / gaps.numel() ** 0.5)
    for small, large in ((1, 10), (10, 100)):
        assert gap[small] - gap[large] > 4 * (se[small] ** 2 + se[large] ** 2) ** 0.5, (gap, se)
    assert gap[100] > -4 * se[100]
    assert abs(gap[10_000]) < 4 * se[10_000] and se[10_000] < 0.005, (gap, se)


@pytest.mark.parametrize("slope, active", [(0.3, 1), (0.05, 0)])
def test_evaluate_matches_hand_computation(slope, active):
    """Whole-set measures over uneven batches: KL, posterior-mean variance, active units and MSE by hand,
    the sampled -log p(x) and -ELBO against quadrature."""
    repeats = 50
    images = (PATTERNS.repeat(repeats, 1, 1, 1) * 255).to(torch.uint8)  # 800 images
    torch.manual_seed(2)
    result = evaluate(tiny_model(slope), images, k=500, batch_size=333)
    log_px, elbo, recon_mean_q, recon_var = quadrature(slope)
    x = PATTERNS.view(16, 4).double().numpy()
    mu = slope * x.sum(1) - 0.5
    kl = 0.5 * (np.exp(LOGVAR) + mu**2 - 1.0 - LOGVAR)
    # number of lit pixels over all 16 patterns is Binomial(4, 1/2): variance 1, so Var[mu] = slope^2
    assert result["posterior_mean_variance"][0] == pytest.approx(slope**2, rel=1e-5)
    assert result["active_units"] == int(slope**2 > ACTIVE_UNIT_THRESHOLD) == active
    assert result["kl"] == pytest.approx(kl.mean(), rel=1e-5)
    assert result["kl_per_dim"] == pytest.approx([kl.mean()], rel=1e-5)
    recon_mean = 1 / (1 + np.exp(-(W[None] * mu[:, None] + B[None])))
    assert result["mse"] == pytest.approx(((recon_mean - x) ** 2).mean(), rel=1e-5)
    # at K = 500 the estimate's bias is under 0.02 nats for both encoders; its noise is far smaller
    assert result["nll"] == pytest.approx(-log_px.mean(), abs=0.03)
    se = (recon_var.mean() / images.shape[0]) ** 0.5  # one reconstruction sample per image, KL exact
    assert abs(result["neg_elbo"] + elbo.mean()) < 4 * se
    assert abs(result["recon"] + recon_mean_q.mean()) < 4 * se  # -E_q[log p(x|z)] by quadrature
    assert result["images"] == 800 and result["importance_samples"] == 500


def _log_px_first_pixel(x: np.ndarray) -> np.ndarray:
    """log p(x_00) = log ∫ Bernoulli(x_00; sigmoid(W_0 z + B_0)) N(z; 0, 1) dz, by the trapezoid rule."""
    z = np.linspace(-12.0, 12.0, 200_001)
    logits = W[0] * z + B[0]
    log_joint = x[:, None] * logits[None] - np.logaddexp(0.0, logits)[None] - 0.5 * (z**2 + np.log(2 * np.pi))
    peak = log_joint.max(1, keepdims=True)
    return np.log(np.trapezoid(np.exp(log_joint - peak), z, axis=1)) + peak[:, 0]


def test_region_measures_count_only_the_region_and_match_quadrature():
    from vaezoo.evaluation.measures import region_measures

    model = tiny_model()
    images = (PATTERNS.repeat(50, 1, 1, 1) * 255).to(torch.uint8)
    torch.manual_seed(4)
    whole = region_measures(model, images, k=200, batch_size=400, region=(0, 2, 0, 2))
    torch.manual_seed(4)
    full = evaluate(model, images, k=200, batch_size=400)
    assert whole["values"] == 4 and whole["neg_elbo"] == pytest.approx(full["neg_elbo"], rel=1e-6)
    torch.manual_seed(5)
    corner = region_measures(model, images, k=2000, batch_size=400, region=(0, 1, 0, 1))
    expected = -_log_px_first_pixel(PATTERNS[:, 0, 0, 0].double().numpy()).mean()
    assert corner["values"] == 1 and corner["nll"] == pytest.approx(expected, abs=0.01)
    assert corner["neg_elbo"] >= corner["nll"] - 0.01  # still a bound, on one pixel
    assert isinstance(model.likelihood, BernoulliLikelihood)  # the region's likelihood is swapped back


def test_region_outside_the_image_is_an_error_not_a_missing_measure():
    from vaezoo.errors import NotApplicable, UsageError
    from vaezoo.evaluation.measures import region_measures

    with pytest.raises(UsageError, match="not inside") as refused:
        region_measures(tiny_model(), (PATTERNS * 255).to(torch.uint8), 1, 16, (0, 3, 0, 2))
    assert not isinstance(refused.value, NotApplicable)


def test_a_region_outside_the_image_is_refused_before_anything_is_measured(small_run, tmp_path, refused):
    import shutil

    run = Path(shutil.copytree(small_run, tmp_path / "run"))
    refused("evaluate", str(run), "--region", "0:40,0:40", "--device", "cpu",
            words=("not inside the 32x32 image",), untouched=run)
