"""The IAF posterior of Kingma et al. 2016: a base encoder's Gaussian pushed through T inverse
autoregressive flow steps, each a MADE fed the encoder's features h as context.

q(z_T|x) = q_0(z_0|x) prod_t |det dz_t/dz_{t-1}|^-1, returned as a `TransformedDistribution`: its
rsample is one MADE pass per step, and its log_prob of that sample reads the steps' cached
log-determinants (no inversion), so the single-latent structure, the Monte Carlo KL and importance
sampling work on it unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import TransformedDistribution

from vaezoo.errors import UsageError
from vaezoo.model.parts import BuildContext
from vaezoo.registry import get_registry
from vaezoo_plugins.standard.flows import AffineAutoregressive
from vaezoo_plugins.standard.made import MADE, step_order

#: Initial bias of the gate pre-activations s: sigmoid(2) = 0.88, so each step starts close to the
#: identity (the paper: "initialize ... such that its outputs s_t are ... close to +1 or +2").
GATE_INIT = 2.0


class IAFEncoder(nn.Module):
    """x -> q(z|x): the base encoder's trunk gives features h, its heads q_0(z|x); T IAF steps follow.

    The base encoder (hyperparameter iaf_base, a registered encoder) must expose `trunk(x) -> h`
    [B, F] and `posterior(h) -> q_0`, a Gaussian with rsample; the conv encoders do.
    """

    interface = "x -> q(z|x)"

    def __init__(self, ctx: BuildContext):
        super().__init__()
        base_name = str(ctx.hp["iaf_base"])
        registry = ctx.registry or get_registry()
        if registry.get("encoder", base_name).target == f"{__name__}:{type(self).__name__}":
            raise UsageError(f"iaf_base '{base_name}' is an IAF encoder itself; name the encoder it wraps (e.g. conv)")
        self.base = ctx.build("encoder", base_name)
        if not (isinstance(getattr(self.base, "trunk", None), nn.Module) and callable(getattr(self.base, "posterior", None))):
            raise UsageError(f"encoder '{base_name}' cannot be the base of an IAF posterior: it needs a trunk(x) "
                             "module and a posterior(features) method")
        features = self._feature_size(ctx.input_shape)
        latent, hidden = ctx.latent_dim, (int(ctx.hp["iaf_hidden"]),) * int(ctx.hp["iaf_layers"])
        self.steps = nn.ModuleList(
            MADE(latent, hidden, outputs=2, context=features, order=step_order(latent, t, ctx.hp["iaf_ordering"] == "reverse"))
            for t in range(int(ctx.hp["iaf_steps"])))
        with torch.no_grad():
            for made in self.steps:
                made.out.bias[latent:].fill_(GATE_INIT)  # outputs [m, s]: the second half is s

    def _feature_size(self, input_shape: tuple[int, int, int]) -> int:
        """The trunk's feature width, from one probe image (eval mode: no running statistics change)."""
        mode = self.base.training
        try:
            with torch.no_grad():
                return int(self.base.eval().trunk(torch.zeros(1, *input_shape)).shape[-1])
        finally:
            self.base.train(mode)

    def forward(self, x: Tensor) -> TransformedDistribution:
        h = self.base.trunk(x)
        steps = [AffineAutoregressive(made, h) for made in self.steps]
        return TransformedDistribution(self.base.posterior(h), steps, validate_args=False)
