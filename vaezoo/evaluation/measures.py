"""Held-out measures of a trained model, batched over images (and over importance samples)."""

from __future__ import annotations

import torch
from torch import Tensor

from vaezoo.data import ordered_batches
from vaezoo.model.bounds import log_mean_exp, log_weights
from vaezoo.model.distributions import DiagonalGaussian
from vaezoo.model.vae import VAE

#: Decoded images per decoder call; bounds memory when k samples of a whole batch are decoded.
SAMPLES_PER_PASS = 4096
#: A latent dimension is active when Var_x(E[z_d | x]) exceeds this (Burda et al. 2016).
ACTIVE_UNIT_THRESHOLD = 0.01


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


@torch.no_grad()
def importance_log_likelihood(model: VAE, x: Tensor, k: int, q: DiagonalGaussian | None = None) -> Tensor:
    """[B] estimate of log p(x) from k importance samples per image, decoded in chunks.

    With k = 1 it is a one-sample ELBO; it rises towards log p(x) as k grows.
    """
    q = model.encoder(x) if q is None else q
    chunk = max(1, SAMPLES_PER_PASS // x.shape[0])
    log_w = torch.cat([log_weights(model, x, min(chunk, k - done), q) for done in range(0, k, chunk)])
    return log_mean_exp(log_w)


@torch.no_grad()
def evaluate(model: VAE, images: Tensor, k: int, batch_size: int) -> dict[str, float | int | list[float]]:
    """The ELBO terms, the importance-sampled -log p(x), active units and reconstruction MSE, per image."""
    result: dict[str, float | int | list[float]] = dict(elbo_terms(model, images, batch_size))
    nll = squared_error = 0.0
    means = []
    for x in ordered_batches(images, batch_size):
        q = model.encoder(x)
        nll = nll - importance_log_likelihood(model, x, k, q).sum()
        squared_error = squared_error + (model.decode_mean(q.mean) - x).pow(2).flatten(1).mean(1).sum()
        means.append(q.mean)
    variance = torch.cat(means).var(0, correction=0)
    n = images.shape[0]
    result.update(
        nll=float(nll) / n, importance_samples=k, mse=float(squared_error) / n,
        posterior_mean_variance=variance.tolist(),
        active_units=int((variance > ACTIVE_UNIT_THRESHOLD).sum()), images=n,
    )
    return result
