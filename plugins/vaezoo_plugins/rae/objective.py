"""The regularised autoencoder objective of Ghosh et al. 2020 (RAE).

loss = E[-log p(x|z)] + beta * ||z||^2 / 2 + lambda_dec * R(decoder), with R either
    l2: the decoder's sum of squared parameters (RAE-L2), or
    gp: the gradient penalty ||grad_z sum_i D_i(z)||^2 on the decoded image D(z) (RAE-GP), the
        gradient of the summed output as the authors' TensorFlow code takes it (tf.gradients).
The prior is replaced by an ex-post density fitted to the codes (a post-hoc sampler).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vaezoo.errors import UsageError
from vaezoo.model.parts import BuildContext, Objective, Terms


def gradient_penalty(decoded: Tensor, z: Tensor) -> Tensor:
    """Batch mean of ||d(sum_i decoded_i) / dz||^2, differentiable (for the loss)."""
    grad, = torch.autograd.grad(decoded.sum(), z, create_graph=True)
    return grad.pow(2).sum(-1).mean()


class RegularisedAutoencoder(Objective):
    """RAE: reconstruction + beta * ||z||^2 / 2 + lambda_dec * R(decoder)."""

    needs = frozenset({"single-group"})

    def __init__(self, ctx: BuildContext):
        super().__init__()
        model = ctx.built["model"]
        if not all(hasattr(model, part) for part in ("decoder", "likelihood")):
            raise UsageError("the rae objective regularises a structure's `decoder` and needs its `likelihood`")
        self.embedding_weight = float(ctx.hp["embedding_weight"])
        self.decoder_weight = float(ctx.hp["decoder_weight"])
        self.regulariser = ctx.hp["regulariser"]

    def forward(self, model: nn.Module, x: Tensor, step: int) -> Terms:
        out = model(x)
        recon = out.recon.mean()
        embedding = 0.5 * out.z.pow(2).sum(-1).mean()
        if self.regulariser == "gp":
            regulariser = gradient_penalty(model.likelihood.mean(out.out), out.z)
        else:
            regulariser = sum(p.pow(2).sum() for p in model.decoder.parameters())
        loss = recon + self.embedding_weight * embedding + self.decoder_weight * regulariser
        return Terms(loss=loss, recon=recon, embedding=embedding, decoder_regulariser=regulariser)
