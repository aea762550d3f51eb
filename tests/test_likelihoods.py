"""The likelihoods: every one normalised (summed over all 8-bit values, or integrated), against
independent closed forms, stable where their formulas are not, and their bits per dimension."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import ContinuousBernoulli, Normal
from vaezoo_plugins.standard.likelihoods import (
    BernoulliLikelihood,
    Categorical256Likelihood,
    ContinuousBernoulliLikelihood,
    GaussianLikelihood,
    cb_log_normalizer,
    cb_mean,
)
from vaezoo_plugins.standard.logistic_mixture import (
    DiscretizedLogisticMixture,
    parameter_channels,
)

from vaezoo.evaluation.measures import bits_basis, bits_per_dim
from vaezoo.hparams import HParams
from vaezoo.model.parts import BuildContext

LEVELS = torch.arange(256, dtype=torch.float64) / 255


def build(cls, shape=(1, 1, 1), **hp):
    return cls(BuildContext(HParams({"latent_dim": 2, **hp}), shape)).double()


def pixels(values: torch.Tensor, channels: int) -> torch.Tensor:
    """[N, C] values -> N one-pixel images [N, C, 1, 1]."""
    return values.view(-1, channels, 1, 1)


def every_pixel(channels: int) -> torch.Tensor:
    """All 256^C one-pixel images of `channels` 8-bit channels, [256^C, C, 1, 1] in [0, 1]."""
    grid = torch.cartesian_prod(*[LEVELS] * channels) if channels > 1 else LEVELS[:, None]
    return pixels(grid, channels)


# -- continuous Bernoulli ----------------------------------------------------------------------
def closed_form_log_c(lam: torch.Tensor) -> torch.Tensor:
    """log C(lambda) = log(2 atanh(1 - 2 lambda) / (1 - 2 lambda)), straight from the paper, float64."""
    return torch.log(2 * torch.atanh(1 - 2 * lam) / (1 - 2 * lam))


def test_cb_normaliser_matches_the_closed_form_in_float64():
    # the closed form itself loses digits near lambda = 1/2 and lambda -> 0 or 1; between, float64 is exact enough
    logits = torch.cat([torch.linspace(-12, 12, 241), torch.tensor([1e-3, -0.2, 0.24999, 0.25001, 0.7])]).double()
    expected = closed_form_log_c(torch.sigmoid(logits))
    assert torch.allclose(cb_log_normalizer(logits), expected, rtol=0, atol=1e-10)
    # float32 with no cancellation: within a few float32 ulps of log C ~ 1..3
    assert torch.allclose(cb_log_normalizer(logits.float()).double(), expected, rtol=0, atol=1e-6)
    # far out, where lambda is not representable away from 0 or 1: log C = log|l| + 2 e^-|l| + O(e^-3|l|)
    far = torch.tensor([-60.0, 40.0, 80.0], dtype=torch.float64)
    assert torch.allclose(cb_log_normalizer(far), far.abs().log() + 2 * torch.exp(-far.abs()), rtol=0, atol=1e-15)


def test_cb_normaliser_is_smooth_and_finite_at_one_half():
    logits = torch.tensor([0.0, 1e-8, -1e-6, 1e-3, 0.4999, 0.5, 0.5001], requires_grad=True)
    values = cb_log_normalizer(logits)
    assert values[0].item() == pytest.approx(math.log(2), abs=1e-7)
    values.sum().backward()
    assert torch.isfinite(logits.grad).all()
    # the series and the exact form agree where they meet (|l| = 0.25), in float64
    a = torch.tensor([0.25 - 1e-13, 0.25], dtype=torch.float64)
    assert abs(cb_log_normalizer(a)[0] - cb_log_normalizer(a)[1]) < 1e-11
    m = cb_mean(a)
    assert abs(m[0] - m[1]) < 1e-12
    # d/dl log C = l/6 near 0 (from log 2 + l^2/12), so the gradient at 1e-3 is 1.667e-4
    assert logits.grad[3].item() == pytest.approx(1e-3 / 6, rel=1e-3)


@pytest.mark.parametrize("logit", [-40.0, -6.0, -0.3, 0.0, 1e-5, 0.25, 2.0, 15.0, 40.0])
def test_cb_density_integrates_to_one(logit):
    """Simpson's rule over [0, 1] of exp(log_prob), in float64."""
    likelihood = build(ContinuousBernoulliLikelihood)
    n = 200_001
    x = torch.linspace(0, 1, n, dtype=torch.float64)
    density = likelihood.log_prob(pixels(x, 1), torch.full((n, 1, 1, 1), logit, dtype=torch.float64)).exp()
    weights = torch.ones(n, dtype=torch.float64)
    weights[1:-1:2], weights[2:-1:2] = 4, 2
    integral = (density * weights).sum() / (3 * (n - 1))
    assert integral.item() == pytest.approx(1.0, abs=1e-6)
    mean = (x * density * weights).sum() / (3 * (n - 1))
    assert cb_mean(torch.tensor(logit, dtype=torch.float64)).item() == pytest.approx(mean.item(), abs=1e-6)


def test_cb_agrees_with_torch_distributions_where_it_is_accurate():
    logits = torch.linspace(-8, 8, 101, dtype=torch.float64)
    x = torch.rand(101, dtype=torch.float64)
    reference = ContinuousBernoulli(logits=logits)
    ours = build(ContinuousBernoulliLikelihood).log_prob(pixels(x, 1), pixels(logits, 1))
    assert torch.allclose(ours, reference.log_prob(x), atol=1e-6)
    assert torch.allclose(cb_mean(logits), reference.mean, atol=1e-6)


# -- Gaussian -------------------------------------------------------------------------------
@pytest.mark.parametrize("variance", ["fixed", "learnt", "predicted"])
def test_gaussian_matches_normal_and_integrates_to_one(variance):
    likelihood = build(GaussianLikelihood, (1, 1, 1), gaussian_variance=variance, gaussian_std=0.3)
    channels = likelihood.decoder_channels(1)
    assert channels == (2 if variance == "predicted" else 1)
    out = torch.tensor([[0.4, math.log(0.2)]], dtype=torch.float64)[:, :channels].view(1, channels, 1, 1)
    sigma = {"fixed": 0.3, "predicted": 0.2, "learnt": math.exp(likelihood.log_std.item()) if variance == "learnt" else 0}[variance]
    x = torch.linspace(0.4 - 12 * sigma, 0.4 + 12 * sigma, 400_001, dtype=torch.float64)
    log_p = likelihood.log_prob(pixels(x, 1), out.expand(len(x), -1, -1, -1))
    reference = Normal(torch.tensor(0.4, dtype=torch.float64), torch.tensor(sigma, dtype=torch.float64))
    assert torch.allclose(log_p, reference.log_prob(x), atol=1e-10)
    assert torch.trapezoid(log_p.exp(), x).item() == pytest.approx(1.0, abs=1e-9)
    assert likelihood.mean(out).flatten().tolist() == [0.4]


def test_gaussian_learnt_variance_is_a_per_value_parameter():
    likelihood = GaussianLikelihood(BuildContext(HParams({"gaussian_variance": "learnt", "gaussian_std": 0.5}),
                                                 (3, 4, 4)))
    assert likelihood.log_std.shape == (3, 4, 4) and likelihood.log_std.requires_grad
    assert torch.allclose(likelihood.log_std, torch.full((3, 4, 4), math.log(0.5)))
    x = torch.rand(2, 3, 4, 4)
    out = torch.rand(5, 2, 3, 4, 4)  # 5 importance samples broadcast against the batch
    assert likelihood.log_prob(x, out).shape == (5, 2)


# -- 8-bit likelihoods: sums over every value --------------------------------------------------
@pytest.mark.parametrize("channels", [1, 2])
def test_categorical_sums_to_one_over_every_value(channels):
    likelihood = build(Categorical256Likelihood, (channels, 1, 1))
    assert likelihood.decoder_channels(channels) == 256 * channels
    x = every_pixel(channels)
    out = torch.randn(1, 256 * channels, 1, 1, dtype=torch.float64).expand(len(x), -1, -1, -1)
    assert likelihood.log_prob(x, out).exp().sum().item() == pytest.approx(1.0, abs=1e-10)
    probs = torch.softmax(out[0, :256, 0, 0], 0)
    assert likelihood.mean(out[:1])[0, 0].item() == pytest.approx((probs * LEVELS).sum().item(), abs=1e-12)


def test_categorical_uniform_logits_are_eight_bits_per_dimension():
    likelihood = build(Categorical256Likelihood, (3, 2, 2))
    nats = -likelihood.log_prob(torch.rand(4, 3, 2, 2, dtype=torch.float64), torch.zeros(4, 768, 2, 2, dtype=torch.float64))
    assert torch.allclose(nats, torch.full((4,), 12 * math.log(256), dtype=torch.float64))
    assert bits_per_dim(nats[0].item(), (3, 2, 2)) == pytest.approx(8.0, abs=1e-12)


def test_logistic_mixture_channel_counts():
    assert parameter_channels(10, 3) == 100 and parameter_channels(10, 1) == 30  # PixelCNN++: 10 per component for RGB
    likelihood = build(DiscretizedLogisticMixture, (3, 8, 8), logistic_mixtures=5)
    assert likelihood.decoder_channels(3) == 50


@pytest.mark.parametrize("channels, components", [(1, 1), (1, 4), (2, 3)])
def test_logistic_mixture_sums_to_one_over_every_value(channels, components):
    likelihood = build(DiscretizedLogisticMixture, (channels, 1, 1), logistic_mixtures=components)
    torch.manual_seed(channels * 10 + components)
    out = torch.randn(1, parameter_channels(components, channels), 1, 1, dtype=torch.float64)
    x = every_pixel(channels)
    total = likelihood.log_prob(x, out.expand(len(x), -1, -1, -1)).exp().sum()
    assert total.item() == pytest.approx(1.0, abs=1e-9)


def test_logistic_mixture_colour_sums_to_each_red_marginal():
    """RGB with the channels coupled: for a red value r, the sum over all 65,536 (green, blue) pairs is
    the mixture's red marginal sum_k pi_k P_k(r), which the one-channel mixture gives alone."""
    likelihood = build(DiscretizedLogisticMixture, (3, 1, 1), logistic_mixtures=2)
    torch.manual_seed(3)
    out = torch.randn(1, 20, 1, 1, dtype=torch.float64)
    out[:, 14:] *= 3  # strong couplings between the channels
    logits, red_mean, red_scale = out[:, :2], out[:, 2:8:3], out[:, 8:14:3]
    red = build(DiscretizedLogisticMixture, (1, 1, 1), logistic_mixtures=2)
    rest = every_pixel(2).view(-1, 2)
    for r in (0, 37, 128, 255):
        x = pixels(torch.cat([LEVELS[r].expand(len(rest), 1), rest], 1), 3)
        total = likelihood.log_prob(x, out.expand(len(x), -1, -1, -1)).exp().sum()
        marginal = red.log_prob(LEVELS[r].view(1, 1, 1, 1), torch.cat([logits, red_mean, red_scale], 1)).exp()
        assert total.item() == pytest.approx(marginal.item(), rel=1e-9)


def test_logistic_mixture_matches_a_hand_computed_component():
    """One component, one channel: P(k) = sigmoid((x + 1/255 - mu) / s) - sigmoid((x - 1/255 - mu) / s)
    on the [-1, 1] scale, and the edge bins take the tails."""
    likelihood = build(DiscretizedLogisticMixture, (1, 1, 1), logistic_mixtures=1)
    mu, log_s = 0.1, math.log(0.05)
    out = torch.tensor([0.0, mu, log_s], dtype=torch.float64).view(1, 3, 1, 1)
    s = math.exp(log_s)

    def sig(v: float) -> float:
        return 1 / (1 + math.exp(-v))

    for k in (0, 100, 140, 255):
        x = 2 * k / 255 - 1
        upper, lower = (x + 1 / 255 - mu) / s, (x - 1 / 255 - mu) / s
        expected = sig(upper) if k == 0 else sig(-lower) if k == 255 else sig(upper) - sig(lower)
        got = likelihood.log_prob(torch.tensor(k / 255, dtype=torch.float64).view(1, 1, 1, 1), out).exp().item()
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-300)
    assert likelihood.mean(out).item() == pytest.approx((mu + 1) / 2)


def test_logistic_mixture_is_finite_far_in_the_tails():
    """A bin 20 scales from the mean still has a finite log-probability and gradient."""
    likelihood = build(DiscretizedLogisticMixture, (3, 2, 2), logistic_mixtures=2)
    out = torch.zeros(1, 20, 2, 2, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        out[:, 2:8] = -0.9  # means near 0 on the [0, 1] scale
        out[:, 8:14] = -7.0  # the smallest scale
    log_p = likelihood.log_prob(torch.full((1, 3, 2, 2), 200 / 255, dtype=torch.float64), out)
    log_p.sum().backward()
    assert torch.isfinite(log_p).all() and log_p.item() < -1000 and torch.isfinite(out.grad).all()


def test_logistic_mixture_colour_coupling_follows_pixelcnnpp():
    """Green's mean is shifted by tanh(coefficient) times red's value, blue's by red and green."""
    likelihood = build(DiscretizedLogisticMixture, (3, 1, 1), logistic_mixtures=1)
    coeffs = torch.tensor([0.5, -0.3, 0.8], dtype=torch.float64)
    out = torch.tensor([0.0, 0.1, 0.2, -0.3, *[math.log(0.1)] * 3, *torch.atanh(coeffs).tolist()],
                       dtype=torch.float64).view(1, 10, 1, 1)
    x = torch.tensor([0.8, 0.3, 0.6], dtype=torch.float64).view(1, 3, 1, 1)
    r, g = 2 * 0.8 - 1, 2 * 0.3 - 1
    means = [0.1, 0.2 + 0.5 * r, -0.3 - 0.3 * r + 0.8 * g]
    single = build(DiscretizedLogisticMixture, (1, 1, 1), logistic_mixtures=1)
    expected = sum(single.log_prob(x[:, c:c + 1], torch.tensor([0.0, means[c], math.log(0.1)],
                                                               dtype=torch.float64).view(1, 3, 1, 1))
                   for c in range(3))
    assert likelihood.log_prob(x, out).item() == pytest.approx(expected.item(), rel=1e-12)


# -- Bernoulli and the bits-per-dimension bases ------------------------------------------------
def test_bernoulli_sums_to_one_over_zero_and_one():
    likelihood = build(BernoulliLikelihood)
    logits = torch.randn(1, 1, 1, 1, dtype=torch.float64).expand(2, -1, -1, -1)
    assert likelihood.log_prob(pixels(torch.tensor([0.0, 1.0], dtype=torch.float64), 1), logits).exp().sum().item() \
        == pytest.approx(1.0)


def test_bits_basis():
    assert bits_basis("8-bit", torch.uint8)[0] == 0.0
    assert bits_basis("binary", torch.uint8)[0] == 0.0
    assert bits_basis("continuous", torch.uint8)[0] == pytest.approx(math.log2(255))
    assert bits_basis("continuous", torch.float32)[0] == 0.0
    # a density that is uniform on [0, 1] gives each of the 255-wide grid's cells about 1/255,
    # i.e. log2(255) bits per dimension: the offset turns 0 nats into that
    assert bits_per_dim(0.0, (3, 8, 8), bits_basis("continuous", torch.uint8)[0]) == pytest.approx(math.log2(255))


@pytest.mark.parametrize("name, support", [("bernoulli", "binary"), ("continuous-bernoulli", "continuous"),
                                           ("gaussian", "continuous"), ("categorical-256", "8-bit"),
                                           ("discretized-logistic", "8-bit")])
def test_every_registered_likelihood_declares_its_support(name, support, build_variant):
    model, _ = build_variant("conv-fashion", parts={"likelihood": name})
    assert model.likelihood_support == support



@pytest.mark.parametrize("cls, channels, hp", [(BernoulliLikelihood, 1, {}), (ContinuousBernoulliLikelihood, 1, {}),
                                              (GaussianLikelihood, 2, {"gaussian_variance": "predicted", "gaussian_std": 0.1}),
                                              (Categorical256Likelihood, 256, {})])
def test_per_value_log_probabilities_sum_to_the_image_log_probability(cls, channels, hp):
    likelihood = build(cls, (3, 4, 4), **hp)
    x = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.float64) / 255
    out = torch.randn(5, 2, 3 * channels, 4, 4, dtype=torch.float64)
    per_value = likelihood.log_prob_pixels(x, out)
    assert per_value.shape == (5, 2, 3, 4, 4)
    assert torch.allclose(per_value.flatten(-3).sum(-1), likelihood.log_prob(x, out))
