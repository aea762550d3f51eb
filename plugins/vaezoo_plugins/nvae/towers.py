"""NVAE's two towers, scaled to 32x32 images: the bottom-up encoder and the top-down decoder.

Layout (defaults: channels C = 8, two latent scales, three groups per scale):

    bottom-up  x 32x32 -stem-> C -down-> 16x16 2C -down-> 8x8 4C -[G cells]-> -down-> 4x4 8C -[G cells]->
    top-down   learnt 4x4 8C -[G groups]-> -up-> 8x8 4C -[G groups]-> -up-> 16x16 2C -up-> 32x32 C -> logits

Group l (0 = the top, at the coarsest scale) has `latent_channels` channels at its scale's
resolution. The encoder owns everything that sees x: the cells, the combiners that add the decoder's
state to the encoder's feature at a group, and the heads that turn them into the posterior's move
away from the prior. The decoder owns everything a prior sample needs: the learnt initial state,
the generative cells, the prior heads, the combiners that feed each z back into the state, and the
output layers; so `vaezoo export --part decoder` is the whole generative model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from vaezoo.errors import UsageError
from vaezoo.model.distributions import DiagonalGaussian
from vaezoo.model.parts import BuildContext
from vaezoo_plugins.nvae.cells import DOWN, UP, EncoderCell, GenerativeCell
from vaezoo_plugins.nvae.residual import Residual, normal, standard_normal_like
from vaezoo_plugins.nvae.spectral import Conv2d

IMAGE_SIZE = 32
PREPROCESS_DOWNS = 2  # 32 -> 16 -> 8: the finest latent scale is 8x8, as in NVlabs/NVAE's MNIST model


@dataclass(frozen=True)
class Layout:
    """Sizes of the hierarchy, from the hyperparameters."""

    channels: int
    scales: int
    groups_per_scale: int
    latent_channels: int
    expand: int

    @classmethod
    def of(cls, ctx: BuildContext) -> Layout:
        _, height, width = ctx.input_shape
        if (height, width) != (IMAGE_SIZE, IMAGE_SIZE):
            raise UsageError(f"nvae is laid out for 32x32 images, the dataset has {height}x{width}")
        hp = ctx.hp
        return cls(int(hp["channels"]), int(hp["scales"]), int(hp["groups_per_scale"]), int(hp["latent_channels"]),
                   int(hp["expand"]))

    @property
    def groups(self) -> int:
        return self.scales * self.groups_per_scale

    def scale_of(self, group: int) -> int:
        """0 for the coarsest scale (the top), scales - 1 for the finest."""
        return group // self.groups_per_scale

    def resolution(self, scale: int) -> int:
        return IMAGE_SIZE // 2 ** (PREPROCESS_DOWNS + self.scales - 1 - scale)

    def width(self, scale: int) -> int:
        """Feature channels at a latent scale: C doubles at every halving of the resolution."""
        return self.channels * 2 ** (PREPROCESS_DOWNS + self.scales - 1 - scale)

    def group_shape(self, group: int) -> tuple[int, int, int]:
        side = self.resolution(self.scale_of(group))
        return self.latent_channels, side, side

    def group_size(self, group: int) -> int:
        c, h, w = self.group_shape(group)
        return c * h * w

    def ends_scale(self, group: int) -> bool:
        """The last group of a scale that has a finer one below it: the decoder upsamples after it."""
        return group % self.groups_per_scale == self.groups_per_scale - 1 and self.scale_of(group) < self.scales - 1


class BottomUp(nn.Module):
    """x -> one feature map per latent group, and the posterior of a group given the decoder's state there."""

    def __init__(self, layout: Layout, in_channels: int):
        super().__init__()
        self.layout = layout
        c = layout.channels
        self.stem = Conv2d(in_channels, c, 3, padding=1)
        self.preprocess = nn.Sequential(*(EncoderCell(c * 2**i, DOWN) for i in range(PREPROCESS_DOWNS)))
        # fine to coarse: the scale indices of the decoder reversed
        self.scales = nn.ModuleList(
            nn.ModuleList(EncoderCell(layout.width(s)) for _ in range(layout.groups_per_scale))
            for s in reversed(range(layout.scales)))
        self.downs = nn.ModuleList(EncoderCell(layout.width(s), DOWN) for s in reversed(range(1, layout.scales)))
        top = layout.width(0)
        self.top = nn.Sequential(nn.ELU(), Conv2d(top, top, 1), nn.ELU())
        self.combiners = nn.ModuleList(Conv2d(layout.width(layout.scale_of(g)), layout.width(layout.scale_of(g)), 1)
                                       for g in range(1, layout.groups))
        self.heads = nn.ModuleList(Conv2d(layout.width(layout.scale_of(g)), 2 * layout.latent_channels, 3, padding=1)
                                   for g in range(layout.groups))

    def forward(self, x: Tensor) -> list[Tensor]:
        """[B, C, 32, 32] in [0, 1] -> the feature of each group, top (group 0) first."""
        h = self.preprocess(self.stem(2 * x - 1))
        recorded = []
        for index, cells in enumerate(self.scales):
            for cell in cells:
                h = cell(h)
                recorded.append(h)
            if index < len(self.downs):
                h = self.downs[index](h)
        recorded.pop()  # the last feature is the top group's, through self.top
        return [self.top(h), *reversed(recorded)]

    def residual(self, group: int, feature: Tensor, state: Tensor, prior: DiagonalGaussian) -> Residual:
        """q(z_group | x, z_<group): the encoder's feature plus the decoder's state, as a move from the prior."""
        h = feature if group == 0 else feature + self.combiners[group - 1](state)
        delta_mu, delta_log_sigma = self.heads[group](h).chunk(2, 1)
        return Residual(prior, delta_mu, delta_log_sigma)


#: draw(group, decoder state, prior) -> z of that group [B, D]: a posterior sample, a mean, a prior sample...
Draw = Callable[[int, Tensor, DiagonalGaussian], Tensor]


class TopDown(nn.Module):
    """The generative model: a learnt initial state, then per group a prior, a z and the state updated by it."""

    def __init__(self, layout: Layout, out_channels: int):
        super().__init__()
        self.layout = layout
        top = layout.width(0)
        self.initial = nn.Parameter(torch.rand(top, layout.resolution(0), layout.resolution(0)))
        widths = [layout.width(layout.scale_of(g)) for g in range(layout.groups)]
        self.cells = nn.ModuleList(nn.Identity() if g == 0 else GenerativeCell(widths[g], layout.expand)
                                   for g in range(layout.groups))
        self.priors = nn.ModuleList(nn.Sequential(nn.ELU(), Conv2d(widths[g], 2 * layout.latent_channels, 1))
                                    for g in range(1, layout.groups))
        self.combiners = nn.ModuleList(Conv2d(widths[g] + layout.latent_channels, widths[g], 1)
                                       for g in range(layout.groups))
        self.ups = nn.ModuleList(GenerativeCell(layout.width(s), layout.expand, UP) for s in range(layout.scales - 1))
        finest = layout.width(layout.scales - 1)
        self.postprocess = nn.Sequential(*(GenerativeCell(finest // 2**i, layout.expand, UP)
                                           for i in range(PREPROCESS_DOWNS)))
        self.output = nn.Sequential(nn.ELU(), Conv2d(layout.channels, out_channels, 3, padding=1))

    def prior(self, group: int, state: Tensor) -> DiagonalGaussian:
        """p(z_group | z_<group): N(0, I) for the top group, else from the decoder's state."""
        if group == 0:
            return standard_normal_like(state.new_empty(state.shape[0], self.layout.group_size(0)))
        return normal(*self.priors[group - 1](state).chunk(2, 1))

    def forward(self, batch: int, draw: Draw) -> Tensor:
        """Decoder output (logits) of `batch` images whose latent groups `draw` chooses, top first."""
        state = self.initial.expand(batch, -1, -1, -1)
        for group in range(self.layout.groups):
            state = self.cells[group](state)
            z = draw(group, state, self.prior(group, state))
            state = self.combiners[group](torch.cat([state, z.view(batch, *self.layout.group_shape(group))], 1))
            if self.layout.ends_scale(group):
                state = self.ups[self.layout.scale_of(group)](state)
        return self.output(self.postprocess(state))
