"""Held-out measures of a trained model, batched over images (and over importance samples).

Whatever the structure, the ELBO's terms are the true ones: -log p(x|z) and KL(q || p) summed over
latent groups (closed form where known, else Monte Carlo, and the result says which); a training
divergence that is not the KL (JS-G) is reported beside them under its own name. What a structure
does not have (a density for importance sampling, a flat code for active units) is reported as
not applicable rather than guessed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from vaezoo.data import labelled_batches, ordered_batches
from vaezoo.errors import NotApplicable, UsageError
from vaezoo.model.bounds import importance_log_likelihood
from vaezoo.model.structure import Structure

#: A latent dimension is active when Var_x(E[z_d | x]) exceeds this (Burda et al. 2016).
ACTIVE_UNIT_THRESHOLD = 0.01


@torch.no_grad()
def elbo_sums(model: Structure, images: Tensor, batch_size: int = 1000, labels: Tensor | None = None) -> dict[str, Tensor]:
    """Sums over `images` of the negative ELBO's terms: "recon", "kl", and where they apply
    "divergence" (a training divergence that is not the KL), "kl_per_dim" (one group with a
    per-dimension KL) and "kl_per_group" (several groups), plus "kl_estimated" (1 when any KL was
    a Monte Carlo estimate).

    Sums rather than means so that shards of a test set (one per process) add up. `labels` condition
    a conditional model (every function here takes them).
    """
    sums: dict[str, Tensor] = {}
    for x, y in labelled_batches(images, labels, batch_size):
        with model.conditioned_on(y):
            out = model(x)
        batch = {"recon": out.recon.sum()}
        if not out.has_kl:  # a deterministic code: reconstruction only
            sums = {key: sums[key] + value if key in sums else value for key, value in batch.items()}
            continue
        batch.update(kl=out.kl.sum(), kl_estimated=torch.tensor(float(not out.kl_exact), device=x.device))
        if not out.divergence_is_kl:
            batch["divergence"] = out.divergence.sum()
        if len(out.groups) == 1 and out.groups[0].kl.dim() == 2:
            batch["kl_per_dim"] = out.groups[0].kl.sum(0)
        elif len(out.groups) > 1:
            batch["kl_per_group"] = torch.stack([group.kl_per_image.sum() for group in out.groups])
        sums = {key: sums[key] + value if key in sums else value for key, value in batch.items()}
    return sums


def per_image(sums: Mapping[str, Tensor], n: int) -> dict[str, float | bool | list[float]]:
    """Per-image averages of `elbo_sums` over `n` images, with their total "neg_elbo" (beta = 1, no penalty)."""
    result: dict[str, float | bool | list[float]] = {}
    for key, total in sums.items():
        if key == "kl_estimated":
            result[key] = bool(total > 0)
        elif total.dim():
            result[key] = (total / n).tolist()
        else:
            result[key] = float(total) / n
    if "kl" in result:
        result["neg_elbo"] = result["recon"] + result["kl"]
    return result


def elbo_terms(model: Structure, images: Tensor, batch_size: int = 1000,
               labels: Tensor | None = None) -> dict[str, float | bool | list[float]]:
    """Per-image averages of the negative ELBO (beta = 1, no penalty), its reconstruction and KL terms."""
    return per_image(elbo_sums(model, images, batch_size, labels), images.shape[0])


class RegionLikelihood(nn.Module):
    """A model's likelihood counted on a region of the image only (the original 28x28 of a padded
    FashionMNIST image, say): log p(x_region | z) from the likelihood's per-pixel log_prob_pixels."""

    def __init__(self, likelihood: nn.Module, mask: Tensor):
        super().__init__()
        self.likelihood = likelihood
        self.mask = mask

    def log_prob(self, x: Tensor, out: Tensor) -> Tensor:
        return (self.likelihood.log_prob_pixels(x, out) * self.mask).flatten(-3).sum(-1)

    def mean(self, out: Tensor) -> Tensor:
        return self.likelihood.mean(out)


def check_region(region: tuple[int, int, int, int], input_shape: tuple[int, ...]) -> None:
    """A region of rows top:bottom and columns left:right inside [C, H, W] images, or a UsageError."""
    top, bottom, left, right = region
    height, width = input_shape[-2:]
    if not (0 <= top < bottom <= height and 0 <= left < right <= width):
        raise UsageError(f"region {tuple(region)} is not inside the {height}x{width} image")


@contextmanager
def counted_on(model: Structure, region: tuple[int, int, int, int]) -> Iterator[int]:
    """Within, `model` counts log p(x|z) on rows region[0]:region[1], columns region[2]:region[3]
    only; yields the number of values counted. Needs a structure that keeps its likelihood as
    `likelihood` and a likelihood with per-pixel log_prob_pixels."""
    check_region(region, model.input_shape)
    top, bottom, left, right = region
    channels, height, width = model.input_shape
    likelihood = getattr(model, "likelihood", None)
    if not hasattr(likelihood, "log_prob_pixels"):
        raise NotApplicable("the model's likelihood gives no per-pixel log-probabilities to count a region with")
    mask = torch.zeros(channels, height, width, device=next(model.parameters()).device)
    mask[:, top:bottom, left:right] = 1.0
    model.likelihood = RegionLikelihood(likelihood, mask)
    try:
        yield int(mask.sum())
    finally:
        model.likelihood = likelihood


def bits_per_dim(nats: float, input_shape: tuple[int, ...], offset: float = 0.0) -> float:
    """Nats per image as bits per pixel and channel: nats / (D ln 2) with D = C * H * W, plus `offset` bits."""
    return nats / (math.prod(input_shape) * math.log(2)) + offset


def bits_basis(support: str | None, dtype: torch.dtype) -> tuple[float, str]:
    """(offset in bits per dimension, what the number is) for a likelihood's support on data of `dtype`.

    A probability mass (8-bit or binary values) needs no offset. A density over [0, 1] evaluated at
    8-bit data x = k / 255 becomes a probability per cell of the 8-bit grid (width 1/255 per value)
    by the change of variables to k: -log P(k) ~= -log p(x) + D log 255, so log2(255) bits are added
    per dimension; the usual convention scales by 256 and adds 8 bits for uniformly dequantised data
    (a difference of 0.0056 bits). On real-valued data a density's bits per dimension are reported as
    they are, and may be negative.
    """
    if support == "continuous" and dtype == torch.uint8:
        return math.log2(255), "a density on the 8-bit grid x = k/255, plus log2(255) bits per dimension"
    if support == "continuous":
        return 0.0, "a density over real values, with no offset"
    return 0.0, "a probability mass over the data's values"


@torch.no_grad()
def evaluate(model: Structure, images: Tensor, k: int, batch_size: int, labels: Tensor | None = None) -> dict[str, object]:
    """The ELBO terms, importance-sampled -log p(x), active units, reconstruction MSE and the
    structure's own measures, per image; "not_applicable" names what this model lacks and why."""
    result: dict[str, object] = dict(elbo_terms(model, images, batch_size, labels))
    not_applicable: dict[str, str] = {}
    if "neg_elbo" not in result:
        not_applicable["neg_elbo"] = "the model's code is deterministic: it has no KL, so no ELBO"
    has_density = "density" in model.capabilities
    if not has_density:
        not_applicable["nll"] = "the model has no density to importance-sample (log q(z|x) and log p(z) of its codes)"
    nll = squared_error = 0.0
    codes = []
    for x, y in labelled_batches(images, labels, batch_size):
        with model.conditioned_on(y):
            if has_density:
                nll = nll - importance_log_likelihood(model, x, k).sum()
            squared_error = squared_error + (model.reconstruct(x) - x).pow(2).flatten(1).mean(1).sum()
            if "flat-code" in model.capabilities:
                codes.append(model.representation(x))
    n = images.shape[0]
    shape = tuple(images.shape[1:])
    offset, basis = bits_basis(model.likelihood_support, images.dtype)
    result.update(mse=float(squared_error) / n, images=n, bits_per_dim_basis=basis)
    if "neg_elbo" in result:
        result["neg_elbo_bits_per_dim"] = bits_per_dim(result["neg_elbo"], shape, offset)
    if has_density:
        result.update(nll=float(nll) / n, importance_samples=k,
                      nll_bits_per_dim=bits_per_dim(float(nll) / n, shape, offset))
    if codes:
        variance = torch.cat(codes).flatten(1).var(0, correction=0)
        result.update(posterior_mean_variance=variance.tolist(),
                      active_units=int((variance > ACTIVE_UNIT_THRESHOLD).sum()))
    else:
        not_applicable["active_units"] = "the model has no flat code"
    own = model.measures(ordered_batches(images, batch_size))
    if own:
        result["structure_measures"] = own
    if not_applicable:
        result["not_applicable"] = not_applicable
    return result



@torch.no_grad()
def region_measures(model: Structure, images: Tensor, k: int, batch_size: int,
                    region: tuple[int, int, int, int], labels: Tensor | None = None) -> dict[str, object]:
    """The negative ELBO, its terms and the importance-sampled -log p(x) with log p(x|z) counted on
    `region` only (rows top:bottom, columns left:right): e.g. FashionMNIST's 784 original pixels of
    its zero-padded 32x32 images, the number the literature reports."""
    with counted_on(model, region) as values:
        terms = elbo_terms(model, images, batch_size, labels)
        result: dict[str, object] = {"region": list(region), "values": values,
                                     **{key: terms[key] for key in ("neg_elbo", "recon", "kl") if key in terms}}
        if "density" in model.capabilities:
            nll = 0.0
            for x, y in labelled_batches(images, labels, batch_size):
                with model.conditioned_on(y):
                    nll += float(-importance_log_likelihood(model, x, k).sum())
            result.update(nll=nll / images.shape[0], importance_samples=k)
    return result
