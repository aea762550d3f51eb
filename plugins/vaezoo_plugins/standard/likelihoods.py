"""Likelihoods p(x|z) of pixels from a decoder's output: Bernoulli, continuous Bernoulli, Gaussian,
256-way categorical (the discretised logistic mixture has its own module).

Each `log_prob(x, out)` sums `log_prob_pixels` (per value, [S..., B, C, H, W]) over the C*H*W values
of an image and broadcasts x over the decoder output's leading sample dimensions; `support` says
what it is a probability of (see vaezoo.model.parts), which decides how evaluation counts bits per
dimension.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaezoo.model.parts import BuildContext

#: Below this |logit| the continuous Bernoulli's normaliser and mean use their Taylor series: the
#: closed forms cancel catastrophically near lambda = 1/2 (0/0 at exactly 1/2).
CB_TAYLOR_BELOW = 0.25
#: The smallest standard deviation a learnt or predicted Gaussian may take (its density is unbounded as sigma -> 0).
GAUSSIAN_MIN_STD = 1e-3
LEVELS = 256


def sum_image(values: Tensor) -> Tensor:
    """[..., C, H, W] -> [...]: the sum over each image's values."""
    return values.flatten(-3).sum(-1)


class BernoulliLikelihood(nn.Module):
    """Pixels in [0, 1] as Bernoulli probabilities given by sigmoid(logits).

    A probability mass over {0, 1}: on grey values (FashionMNIST) it is the customary
    reconstruction term but not a normalised likelihood; the continuous Bernoulli is one.
    """

    support = "binary"

    def __init__(self, ctx: BuildContext):
        super().__init__()

    def log_prob_pixels(self, x: Tensor, logits: Tensor) -> Tensor:
        """log p(x_i|z) per pixel, [S..., B, C, H, W]: minus BCE-with-logits; x broadcasts over sample dims."""
        return -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none")

    def log_prob(self, x: Tensor, logits: Tensor) -> Tensor:
        """The pixels' sum, [S..., B]."""
        return self.log_prob_pixels(x, logits).flatten(-3).sum(-1)

    def mean(self, logits: Tensor) -> Tensor:
        return torch.sigmoid(logits)


def cb_log_normalizer(logits: Tensor) -> Tensor:
    """log C(lambda) of the continuous Bernoulli, lambda = sigmoid(logits) (Loaiza-Ganem & Cunningham 2019).

    C = 2 atanh(1 - 2 lambda) / (1 - 2 lambda) = l / tanh(l / 2) in terms of the logit l, an even
    function; for a = |l|: log C = log a - log(1 - e^-a) + log(1 + e^-a), exact and free of clamping
    at any a > 0. Near a = 0 the first two terms cancel, so there log C = log 2 + log(y coth y),
    y = a / 2, by its series y^2/3 - 7y^4/90 + 62y^6/2835 - 127y^8/18900 (error < 1e-11 below 0.25).
    """
    a = logits.abs()
    small = a < CB_TAYLOR_BELOW
    safe = torch.where(small, torch.ones_like(a), a)  # keeps the unused branch (and its gradient) finite
    exact = torch.log(safe) - torch.log(-torch.expm1(-safe)) + torch.log1p(torch.exp(-safe))
    y2 = (a / 2) ** 2
    series = math.log(2) + y2 * (1 / 3 + y2 * (-7 / 90 + y2 * (62 / 2835 - y2 * 127 / 18900)))
    return torch.where(small, series, exact)


def cb_mean(logits: Tensor) -> Tensor:
    """E[x] of the continuous Bernoulli: lambda / (2 lambda - 1) + 1 / (2 atanh(1 - 2 lambda))
    = 1 / (1 - e^-l) - 1 / l; near l = 0 its series 1/2 + l/12 - l^3/720 + l^5/30240 - l^7/1209600."""
    small = logits.abs() < CB_TAYLOR_BELOW
    safe = torch.where(small, torch.ones_like(logits), logits)
    exact = -1 / torch.expm1(-safe) - 1 / safe
    l2 = logits * logits
    series = 0.5 + logits * (1 / 12 + l2 * (-1 / 720 + l2 * (1 / 30240 - l2 / 1209600)))
    return torch.where(small, series, exact)


class ContinuousBernoulliLikelihood(BernoulliLikelihood):
    """The continuous Bernoulli: the Bernoulli's log-probability plus its log-normaliser, a proper
    density on [0, 1]; the image shown is its mean, not lambda (Loaiza-Ganem & Cunningham 2019)."""

    support = "continuous"

    def log_prob_pixels(self, x: Tensor, logits: Tensor) -> Tensor:
        return super().log_prob_pixels(x, logits) + cb_log_normalizer(logits)

    def mean(self, logits: Tensor) -> Tensor:
        return cb_mean(logits)


class GaussianLikelihood(nn.Module):
    """N(x; mu, sigma^2) per value, mu from the decoder; sigma, by `gaussian_variance`:

    fixed      sigma = gaussian_std for every value;
    learnt     one log-sigma per value of the data shape [C, H, W], shared by every image, learnt
               with the model (initialised at gaussian_std);
    predicted  the decoder predicts mu and log-sigma per value of each image (2 output channels per
               data channel: mu first, then log-sigma).
    Learnt and predicted sigmas are kept above GAUSSIAN_MIN_STD.
    """

    support = "continuous"

    def __init__(self, ctx: BuildContext):
        super().__init__()
        self.variance = ctx.hp["gaussian_variance"]
        self.fixed_log_std = math.log(ctx.hp["gaussian_std"])
        if self.variance == "learnt":
            self.log_std = nn.Parameter(torch.full(ctx.input_shape, self.fixed_log_std))

    def decoder_channels(self, data_channels: int) -> int:
        return 2 * data_channels if self.variance == "predicted" else data_channels

    def log_prob_pixels(self, x: Tensor, out: Tensor) -> Tensor:
        mu, log_std = self._split(out)
        log_std = log_std.clamp(min=math.log(GAUSSIAN_MIN_STD)) if self.variance != "fixed" else log_std
        standard = (x - mu) * torch.exp(-log_std)
        return -0.5 * standard.square() - log_std - 0.5 * math.log(2 * math.pi)

    def log_prob(self, x: Tensor, out: Tensor) -> Tensor:
        return sum_image(self.log_prob_pixels(x, out))

    def mean(self, out: Tensor) -> Tensor:
        return self._split(out)[0]

    def _split(self, out: Tensor) -> tuple[Tensor, Tensor]:
        if self.variance == "predicted":
            mu, log_std = out.chunk(2, dim=-3)
            return mu, log_std
        if self.variance == "learnt":
            return out, self.log_std
        return out, torch.tensor(self.fixed_log_std, dtype=out.dtype, device=out.device)


class Categorical256Likelihood(nn.Module):
    """Each 8-bit value a 256-way categorical: 256 decoder output channels per data channel (channel
    c's logits are outputs 256c .. 256c + 255). Memory grows as 256 x the image per decoded image."""

    support = "8-bit"

    def __init__(self, ctx: BuildContext):
        super().__init__()

    def decoder_channels(self, data_channels: int) -> int:
        return LEVELS * data_channels

    def log_prob_pixels(self, x: Tensor, out: Tensor) -> Tensor:
        logits = out.unflatten(-3, (-1, LEVELS))  # [..., C, 256, H, W]
        index = (x * (LEVELS - 1)).round().long().unsqueeze(-3).expand(*logits.shape[:-3], 1, *logits.shape[-2:])
        chosen = logits.gather(-3, index).squeeze(-3)
        return chosen - torch.logsumexp(logits, dim=-3)

    def log_prob(self, x: Tensor, out: Tensor) -> Tensor:
        return sum_image(self.log_prob_pixels(x, out))

    def mean(self, out: Tensor) -> Tensor:
        probs = torch.softmax(out.unflatten(-3, (-1, LEVELS)), dim=-3)
        levels = torch.arange(LEVELS, dtype=out.dtype, device=out.device) / (LEVELS - 1)
        return (probs * levels[:, None, None]).sum(-3)
