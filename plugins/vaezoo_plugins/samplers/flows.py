"""Small normalising flows over the codes: autoregressive affine steps (a MADE each) after a fixed
standardisation, fitted by maximum likelihood with Adam.

MAF (Papamakarios et al. 2017) runs the steps inverted, so the density of a code is one pass per
step and a sample D passes; IAF (Kingma et al. 2016) runs them forward, so a sample is one pass and
a density D passes (fitting is slower). Both use the MAF form x = u exp(s) + m of the steps.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import AffineTransform, TransformedDistribution

from vaezoo.model.distributions import DiagonalGaussian
from vaezoo.model.parts import BuildContext
from vaezoo.model.samplers import Sampler
from vaezoo_plugins.standard.flows import AffineAutoregressive
from vaezoo_plugins.standard.made import MADE, step_order


class FlowSampler(Sampler):
    """N(0, I) through `flow_steps` autoregressive steps, then codes = loc + scale * that."""

    one_pass_samples: bool  # True: the steps run forward when sampling (IAF); False: inverted (MAF)

    def __init__(self, ctx: BuildContext):
        super().__init__()
        d, hidden = ctx.latent_dim, (int(ctx.hp["flow_hidden"]),) * 2
        self.mades = nn.ModuleList(MADE(d, hidden, outputs=2, order=step_order(d, t, True))
                                   for t in range(int(ctx.hp["flow_steps"])))
        self.epochs, self.lr, self.batch_size = int(ctx.hp["epochs"]), float(ctx.hp["lr"]), int(ctx.hp["batch_size"])
        self.register_buffer("loc", torch.zeros(d))  # the standardisation, set from the codes by fit
        self.register_buffer("scale", torch.ones(d))

    def distribution(self) -> TransformedDistribution:
        steps = [AffineAutoregressive(made, gated=False) for made in self.mades]
        if not self.one_pass_samples:
            steps = [step.inv for step in steps]
        zeros = self.loc.new_zeros(self.loc.shape)
        return TransformedDistribution(DiagonalGaussian(zeros, zeros),
                                       [*steps, AffineTransform(self.loc, self.scale, event_dim=1)],
                                       validate_args=False)

    def fit(self, codes: Tensor) -> None:
        codes = codes.to(self.loc.dtype)
        self.loc.copy_(codes.mean(0))
        self.scale.copy_(codes.std(0).clamp_min(1e-6))
        optimizer = torch.optim.Adam(self.parameters(), lr=self.lr)
        batch = min(self.batch_size, codes.shape[0])
        self.train()
        for _ in range(self.epochs):
            order = torch.randperm(codes.shape[0], device=codes.device)
            for start in range(0, codes.shape[0] - batch + 1, batch):
                loss = -self.distribution().log_prob(codes[order[start:start + batch]]).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        self.eval()

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        return self.distribution().sample((n,))

    def log_prob(self, codes: Tensor) -> Tensor:
        return self.distribution().log_prob(codes.to(self.loc.dtype))


class MAFSampler(FlowSampler):
    one_pass_samples = False


class IAFSampler(FlowSampler):
    one_pass_samples = True
