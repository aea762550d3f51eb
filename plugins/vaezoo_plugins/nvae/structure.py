"""The NVAE structure (Vahdat & Kautz 2020): a bidirectional encoder and a top-down hierarchy of latent groups.

One pass: the bottom-up tower reads x once; the top-down decoder then draws each group from a
posterior that is a residual move away from that group's prior (both depending on the groups
above), so every group carries q, p, its sample and its closed-form KL. Spectral regularisation of
every convolution (and NVAE's BatchNorm-scale penalty) is added to the training loss by the pass
itself, in train mode only, as `losses["spectral"]` and `losses["bn_scale"]`.

BatchNorm: training uses batch statistics. Evaluation, importance sampling, reconstruction and
`decode_representation` run in eval mode on the running statistics of training (NVlabs/NVAE does the
same for its test bound). `sample` first re-estimates the decoder's statistics on prior draws, as
NVlabs/NVAE does before sampling, on a copy, so the model itself is left unchanged.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from vaezoo.model.distributions import DiagonalGaussian
from vaezoo.model.parts import BuildContext
from vaezoo.model.structure import ImportanceDraw, LatentGroup, Pass, Structure
from vaezoo_plugins.nvae.spectral import batchnorm_penalty, spectral_penalty
from vaezoo_plugins.nvae.towers import BottomUp, Layout, TopDown

#: Prior draws that re-estimate the decoder's BatchNorm statistics before sampling (a cumulative average).
READJUST_BATCHES, READJUST_SIZE = 5, 100
#: Images per top-down pass when importance sampling. With the encoder run once per batch this made
#: K = 8 importance samples of a batch of 500 1.6x faster than the default path through `forward`
#: (which decodes all 4,000 at once; passes of about 500 keep the activations in cache). One CPU thread.
PASS_IMAGES = 512


class NVAEHierarchy(Structure):
    """Groups top first (group 0: the coarsest scale's first); `representation` is the top group's posterior mean."""

    capabilities = frozenset({"density", "elbo", "flat-code", "prior-samples", "inference-network"})

    def __init__(self, ctx: BuildContext):
        super().__init__()
        self.layout = Layout.of(ctx)
        self.likelihood = ctx.part("likelihood")
        self.encoder = BottomUp(self.layout, ctx.input_shape[0])
        self.decoder = TopDown(self.layout, ctx.output_channels)
        self.spectral_weight = float(ctx.hp["spectral_weight"])
        # With channels_last weights oneDNN's depthwise and small convolutions made a CPU training step
        # about 2x faster (measured); Module.to changes only the 4-d convolution weights.
        self.to(memory_format=torch.channels_last)

    def forward(self, x: Tensor) -> Pass:
        logits, groups = self._infer(self.encoder(x), x.shape[0], lambda q: q.rsample())
        losses = {}
        if self.training and self.spectral_weight:
            losses = {"spectral": self.spectral_weight * spectral_penalty(self.modules()),
                      "bn_scale": self.spectral_weight * batchnorm_penalty(self.modules())}
        return Pass(groups, logits, -self.likelihood.log_prob(x, logits), losses=losses)

    def _infer(self, features: list[Tensor], batch: int, choose) -> tuple[Tensor, list[LatentGroup]]:
        """Decoder output and group records when each group's z is `choose(q)`, q its posterior."""
        groups: list[LatentGroup] = []

        def draw(group: int, state: Tensor, prior: DiagonalGaussian) -> Tensor:
            residual = self.encoder.residual(group, features[group], state, prior)
            q = residual.posterior()
            z = choose(q)
            groups.append(LatentGroup(z, residual.kl(), q, prior, name=f"z{group + 1}"))
            return z

        return self.decoder(batch, draw), groups

    def importance_draw(self, x: Tensor) -> ImportanceDraw:
        """Runs the bottom-up tower once; each draw repeats only the top-down pass, at most PASS_IMAGES
        images at a time (same estimates as the default path through `forward`, faster: see PASS_IMAGES)."""
        features = self.encoder(x)
        batch = x.shape[0]

        def tiled(k: int) -> tuple[Tensor, Tensor]:
            logits, groups = self._infer([f.repeat(k, 1, 1, 1) for f in features], k * batch, lambda q: q.rsample())
            log_px_z = self.likelihood.log_prob(x, logits.view(k, batch, *logits.shape[1:]))
            ratio = sum(g.prior.log_prob(g.sample) - g.posterior.log_prob(g.sample) for g in groups)
            return log_px_z, ratio.view(k, batch)

        def draw(k: int) -> tuple[Tensor, Tensor]:
            per_pass = max(1, PASS_IMAGES // batch)
            pieces = [tiled(min(per_pass, k - done)) for done in range(0, k, per_pass)]
            return torch.cat([p[0] for p in pieces]), torch.cat([p[1] for p in pieces])

        return draw

    def inference_parameters(self) -> Iterator[nn.Parameter]:
        """The encoder's: the bottom-up tower and the heads and combiners of every posterior."""
        return self.encoder.parameters()

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """Every group at its posterior mean, top down."""
        logits, _ = self._infer(self.encoder(x), x.shape[0], lambda q: q.mean)
        return self.likelihood.mean(logits)

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        decoder = self._readjusted_decoder()
        return self.likelihood.mean(decoder(n, lambda group, state, prior: prior.sample()))

    @torch.no_grad()
    def representation(self, x: Tensor) -> Tensor:
        """[B, D_top]: the top group's posterior mean (the top group's prior is N(0, I))."""
        top, = self.encoder(x)[:1]
        state = self.decoder.initial.expand(x.shape[0], -1, -1, -1)
        return self.encoder.residual(0, top, state, self.decoder.prior(0, state)).posterior().mean

    @torch.no_grad()
    def decode_representation(self, z: Tensor) -> Tensor:
        """Images from top-group codes, every lower group at its prior mean given the groups above."""
        logits = self.decoder(z.shape[0], lambda group, state, prior: z if group == 0 else prior.mean)
        return self.likelihood.mean(logits)

    def _readjusted_decoder(self) -> TopDown:
        """A copy of the decoder whose BatchNorm statistics are the average over prior draws."""
        decoder = copy.deepcopy(self.decoder)
        for module in decoder.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.reset_running_stats()
                module.momentum = None  # a cumulative average over the draws below
        decoder.train()
        for _ in range(READJUST_BATCHES):
            decoder(READJUST_SIZE, lambda group, state, prior: prior.sample())
        return decoder.eval()
