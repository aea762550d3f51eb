"""Held-out measures of a trained model, batched over images."""

from __future__ import annotations

import torch
from torch import Tensor

from .data import ordered_batches
from .model import VAE


@torch.no_grad()
def elbo_sums(model: VAE, images: Tensor, batch_size: int = 1000) -> dict[str, Tensor]:
    """Sums over `images` of the negative ELBO's terms: "recon", "kl" and, when per dimension, "kl_per_dim".

    Sums rather than means so that shards of a test set (one per process) add up.
    """
    sums: dict[str, Tensor] = {}
    for x in ordered_batches(images, batch_size):
        out = model(x)
        batch = {"recon": out.recon.sum(), "kl": out.kl.sum()}
        if out.divergence.dim() == 2:
            batch["kl_per_dim"] = out.divergence.sum(0)
        sums = {key: sums[key] + value if key in sums else value for key, value in batch.items()}
    return sums


def per_image(sums: dict[str, Tensor], n: int) -> dict[str, float | list[float]]:
    """Per-image averages of `elbo_sums` over `n` images, with their total "neg_elbo" (beta = 1, no penalty)."""
    result: dict[str, float | list[float]] = {
        "neg_elbo": float(sums["recon"] + sums["kl"]) / n, "recon": float(sums["recon"]) / n,
        "kl": float(sums["kl"]) / n}
    if "kl_per_dim" in sums:
        result["kl_per_dim"] = (sums["kl_per_dim"] / n).tolist()
    return result


def elbo_terms(model: VAE, images: Tensor, batch_size: int = 1000) -> dict[str, float | list[float]]:
    """Per-image averages of the negative ELBO (beta = 1, no penalty), its reconstruction and KL terms."""
    return per_image(elbo_sums(model, images, batch_size), images.shape[0])
