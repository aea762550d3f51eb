"""The discretised logistic mixture likelihood of 8-bit images (Salimans et al. 2017, PixelCNN++).

Per pixel, K components share one mixture weight across the pixel's C channels; within a component
channel c is a logistic discretised to the 256 levels, whose mean depends linearly on the channels
before it (for RGB: green on red, blue on red and green). Per pixel the decoder outputs, for each
component, 1 mixture logit, C means, C log-scales and C(C-1)/2 coefficients:
K (1 + 2C + C(C-1)/2) channels, 10K for colour and 3K for grey images, in that order.
Its log-probability is per pixel, not per channel value (the channels are coupled), so it has no
per-value `log_prob_pixels`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaezoo.model.parts import BuildContext

#: Log-scales are kept in [-7, 7] (PixelCNN++'s floor, and a ceiling so the bin mass stays above 0).
LOG_SCALE_MIN, LOG_SCALE_MAX = -7.0, 7.0
HALF_BIN = 1.0 / 255  # half the width of one of the 256 bins on the [-1, 1] scale
EDGE = 0.999  # values beyond +-EDGE on the [-1, 1] scale are the edge bins, which extend to +-infinity


def parameter_channels(components: int, channels: int) -> int:
    return components * (1 + 2 * channels + channels * (channels - 1) // 2)


class DiscretizedLogisticMixture(nn.Module):
    support = "8-bit"

    def __init__(self, ctx: BuildContext):
        super().__init__()
        self.components = int(ctx.hp["logistic_mixtures"])
        self.channels = ctx.input_shape[0]

    def decoder_channels(self, data_channels: int) -> int:
        return parameter_channels(self.components, data_channels)

    def _split(self, out: Tensor, channels: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """out [..., K(1+2C+C(C-1)/2), H, W] -> logits [..., K, H, W], means and log-scales
        [..., K, C, H, W], coefficients [..., K, C(C-1)/2, H, W] (tanh-squashed)."""
        k, pairs = self.components, channels * (channels - 1) // 2
        logits, means, log_scales, coeffs = out.split([k, k * channels, k * channels, k * pairs], dim=-3)
        means, log_scales = (t.unflatten(-3, (k, channels)) for t in (means, log_scales))
        coeffs = torch.tanh(coeffs.unflatten(-3, (k, pairs)))
        return logits, means, log_scales.clamp(LOG_SCALE_MIN, LOG_SCALE_MAX), coeffs

    @staticmethod
    def _coupled(means: Tensor, coeffs: Tensor, previous: Tensor) -> Tensor:
        """Each channel's mean plus its coefficients times the channels before it (`previous`
        [..., 1 or K, C, H, W] on the [-1, 1] scale): the channels' autoregression within a pixel."""
        channels, pair = means.shape[-3], 0
        shifted = [means[..., 0, :, :]]
        for c in range(1, channels):
            terms = coeffs[..., pair:pair + c, :, :] * previous[..., :c, :, :]
            shifted.append(means[..., c, :, :] + terms.sum(-3))
            pair += c
        return torch.stack(shifted, dim=-3)

    def log_prob(self, x: Tensor, out: Tensor) -> Tensor:
        """log sum_k pi_k prod_c P(x_c | k, x_<c), summed over pixels -> [S..., B].

        A bin's mass sigma(a) - sigma(b), a - b = 2 / (255 s), is computed as
        log sigma(a) + log sigma(-b) + log(1 - e^-(a - b)): exact, with no cancellation however
        small the mass; the edge bins are log sigma(a) (x = 0) and log sigma(-b) (x = 255).
        """
        logits, means, log_scales, coeffs = self._split(out, x.shape[-3])
        value = (2 * x - 1).unsqueeze(-4)  # [B, 1, C, H, W] on the [-1, 1] scale
        centred = value - self._coupled(means, coeffs, value)
        inverse_scale = torch.exp(-log_scales)
        upper = inverse_scale * (centred + HALF_BIN)
        lower = inverse_scale * (centred - HALF_BIN)
        interior = F.logsigmoid(upper) + F.logsigmoid(-lower) + torch.log(-torch.expm1(-2 * HALF_BIN * inverse_scale))
        per_channel = torch.where(value < -EDGE, F.logsigmoid(upper),
                                  torch.where(value > EDGE, F.logsigmoid(-lower), interior))
        per_component = per_channel.sum(-3) + torch.log_softmax(logits, dim=-3)  # [..., K, H, W]
        return torch.logsumexp(per_component, dim=-3).flatten(-2).sum(-1)

    def mean(self, out: Tensor) -> Tensor:
        """The mixture's mean image, each component's channels coupled through the means of the
        channels before them: the mean of the logistic mixture before discretisation (the edge bins
        shift the discrete mean slightly), clamped to [0, 1]."""
        channels = self.channels
        logits, means, _, coeffs = self._split(out, channels)
        coupled = means.clone()
        for c in range(1, channels):
            coupled[..., c, :, :] = self._coupled(means, coeffs, coupled.clamp(-1, 1))[..., c, :, :]
        weights = torch.softmax(logits, dim=-3).unsqueeze(-3)
        return ((weights * coupled.clamp(-1, 1)).sum(-4) + 1).div(2).clamp(0, 1)
