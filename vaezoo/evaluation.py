"""Held-out measures of a trained model, batched over images."""

from __future__ import annotations

import torch
from torch import Tensor

from .data import ordered_batches
from .model import VAE


@torch.no_grad()
def elbo_terms(model: VAE, images: Tensor, batch_size: int = 1000) -> dict[str, float | list[float]]:
    """Per-image averages of the negative ELBO (beta = 1, no penalty), its reconstruction and KL terms."""
    recon = kl = 0.0
    kl_dims: Tensor | None = None
    for x in ordered_batches(images, batch_size):
        out = model(x)
        recon = recon + out.recon.sum()
        kl = kl + out.kl.sum()
        if out.divergence.dim() == 2:
            kl_dims = out.divergence.sum(0) if kl_dims is None else kl_dims + out.divergence.sum(0)
    n = images.shape[0]
    result: dict[str, float | list[float]] = {
        "neg_elbo": float(recon + kl) / n, "recon": float(recon) / n, "kl": float(kl) / n}
    if kl_dims is not None:
        result["kl_per_dim"] = (kl_dims / n).tolist()
    return result
