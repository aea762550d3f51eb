"""A gated PixelCNN over a grid of discrete codes (van den Oord et al. 2016, Conditional Image
Generation with PixelCNN Decoders): p(c) = prod_i p(c_i | c_<i) in raster order.

Causality is built into the shapes rather than masked weights. The vertical stack sees only the rows
above: its input is the embedded grid shifted down one row, and its convolutions (kernel
(k//2 + 1) x k, padded above only) reach no lower than their own row. The horizontal stack sees the
codes to the left in the same row: its input is shifted right one column, its convolutions (1 x
(k//2 + 1), padded on the left) reach no further right than their own column. Each layer feeds the
vertical stack into the horizontal one (1x1), so the horizontal stack, read out for the logits,
sees every earlier code (no blind spot) once the layers cover the grid. Both stacks use the
gated activation tanh(a) * sigmoid(b); the horizontal stack is residual. The first layer uses a
7-wide kernel, as in the paper, the rest 3-wide: five layers cover an 8x8 grid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaezoo_plugins.standard.networks import LAYOUT

FIRST_KERNEL, KERNEL = 7, 3


def _gate(x: Tensor) -> Tensor:
    a, b = x.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedLayer(nn.Module):
    """One gated layer: (vertical, horizontal) feature maps [B, C, h, w] -> the next layer's."""

    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.half = kernel // 2
        self.vertical = nn.Conv2d(channels, 2 * channels, (self.half + 1, kernel))
        self.horizontal = nn.Conv2d(channels, 2 * channels, (1, self.half + 1))
        self.vertical_to_horizontal = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.horizontal_out = nn.Conv2d(channels, channels, 1)

    def forward(self, vertical: Tensor, horizontal: Tensor) -> tuple[Tensor, Tensor]:
        v = self.vertical(F.pad(vertical, (self.half, self.half, self.half, 0)))  # rows above and own row
        h = self.horizontal(F.pad(horizontal, (self.half, 0, 0, 0))) + self.vertical_to_horizontal(v)
        return _gate(v), horizontal + self.horizontal_out(_gate(h))


class GatedPixelCNN(nn.Module):
    """An autoregressive model of code grids [B, h, w] over `num_codes` symbols."""

    def __init__(self, num_codes: int, channels: int, layers: int):
        super().__init__()
        self.num_codes = num_codes
        self.embed = nn.Embedding(num_codes, channels)
        self.layers = nn.ModuleList(GatedLayer(channels, FIRST_KERNEL if i == 0 else KERNEL) for i in range(layers))
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, channels, 1), nn.ReLU(),
                                  nn.Conv2d(channels, num_codes, 1))
        self.to(memory_format=LAYOUT)  # channels_last: -8 % per CPU training step (A/B)

    def logits_of_embedded(self, embedded: Tensor) -> Tensor:
        """Logits [B, K, h, w] of each position's code given the embedded grid [B, C, h, w] before it."""
        vertical = F.pad(embedded, (0, 0, 1, 0))[:, :, :-1]  # row i holds row i - 1
        horizontal = F.pad(embedded, (1, 0, 0, 0))[:, :, :, :-1]  # column j holds column j - 1
        for layer in self.layers:
            vertical, horizontal = layer(vertical, horizontal)
        return self.head(horizontal)

    def forward(self, codes: Tensor) -> Tensor:
        """Logits [B, K, h, w] of p(c_i | c_<i) at every position of code grids [B, h, w]."""
        return self.logits_of_embedded(self.embed(codes).permute(0, 3, 1, 2))

    def log_prob(self, codes: Tensor) -> Tensor:
        """[B] log p(c) of each grid: the sum of its positions' conditional log-probabilities."""
        return -F.cross_entropy(self(codes), codes, reduction="none").flatten(1).sum(1)

    @torch.no_grad()
    def sample(self, n: int, shape: tuple[int, int]) -> Tensor:
        """n grids [n, h, w] drawn position by position in raster order.

        Row i's logits depend on rows <= i only, so each step runs the network on those rows alone.
        """
        height, width = shape
        device = self.embed.weight.device
        codes = torch.zeros(n, height, width, dtype=torch.int64, device=device)
        for i in range(height):
            for j in range(width):
                logits = self(codes[:, :i + 1])[:, :, i, j]
                codes[:, i, j] = torch.multinomial(torch.softmax(logits, dim=1), 1)[:, 0]
        return codes
