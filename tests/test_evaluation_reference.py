"""Evaluation's fast paths against a straightforward computation of the same numbers.

`vaezoo.evaluation.measures.evaluate` decodes importance samples in cache-sized pieces, streams the
log-mean-exp over the draws and, without gradients, runs the one-channel transposed convolution as
one product and strided additions. The reference below recomputes every measure of conv-fashion
from the model's weights with plain torch.nn.functional calls in float64, drawing the same random
numbers in the same order, so any difference beyond float32 rounding is a bug in a fast path.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vaezoo.evaluation.measures import ACTIVE_UNIT_THRESHOLD, evaluate
from vaezoo.model import bounds
from vaezoo.model.bounds import importance_log_likelihood
from vaezoo.model.structure import Structure
from vaezoo.testing import build_variant

LATENT = 10


def reference_networks(model: Structure):
    """encode(x) -> (mu, logvar) and decode(z) -> logits of conv-fashion, in float64, from its weights."""
    w = {name: value.detach().double().contiguous() for name, value in model.state_dict().items()}

    def encode(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = x.double()
        for i in (0, 2, 4):
            h = F.relu(F.conv2d(h, w[f"encoder.trunk.{i}.weight"], w[f"encoder.trunk.{i}.bias"], stride=2, padding=1))
        h = h.flatten(1)
        for i in (7, 9):
            h = F.relu(F.linear(h, w[f"encoder.trunk.{i}.weight"], w[f"encoder.trunk.{i}.bias"]))
        return (F.linear(h, w["encoder.mu.weight"], w["encoder.mu.bias"]),
                F.linear(h, w["encoder.logvar.weight"], w["encoder.logvar.bias"]))

    def decode(z: torch.Tensor) -> torch.Tensor:
        h = z.double().reshape(-1, LATENT)
        for i in (0, 2, 4):
            h = F.relu(F.linear(h, w[f"decoder.dense.{i}.weight"], w[f"decoder.dense.{i}.bias"]))
        h = h.view(-1, 32, 4, 4)
        for i in (0, 2, 4):
            h = F.conv_transpose2d(h, w[f"decoder.deconv.{i}.weight"], w[f"decoder.deconv.{i}.bias"], stride=2, padding=1)
            h = F.relu(h) if i < 4 else h
        return h.view(*z.shape[:-1], 1, 32, 32)

    return encode, decode


def log_bernoulli(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """log p(x|logits) summed over the pixels: x * l - log(1 + e^l)."""
    return (x.double() * logits - torch.logaddexp(torch.zeros_like(logits), logits)).flatten(-3).sum(-1)


def log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return (-0.5 * (math.log(2 * math.pi) + logvar + (z - mu) ** 2 / logvar.exp())).sum(-1)


def reference_evaluation(model: Structure, images: torch.Tensor, k: int, batch_size: int, seed: int) -> dict:
    """Every measure of `evaluate`, straightforwardly, with the random draws `evaluate` makes, in its order:
    one code per image for the ELBO pass, then k per image in draws of SAMPLES_PER_PASS // batch."""
    encode, decode = reference_networks(model)
    batches = [images[i:i + batch_size].float() / 255 for i in range(0, len(images), batch_size)]
    torch.manual_seed(seed)
    recon = kl = 0.0
    for x in batches:  # the ELBO pass: one reparameterised code per image, KL in closed form
        mu, logvar = encode(x)
        z = mu + (0.5 * logvar).exp() * torch.randn(mu.shape).double()
        recon -= float(log_bernoulli(x, decode(z)).sum())
        kl += float((0.5 * (logvar.exp() + mu**2 - 1 - logvar)).sum())
    nll = squared_error = 0.0
    means = []
    for x in batches:  # importance sampling, then reconstructions and posterior means
        mu, logvar = encode(x)
        chunk = max(1, bounds.SAMPLES_PER_PASS // len(x))
        log_w = []
        for done in range(0, k, chunk):
            z = mu + (0.5 * logvar).exp() * torch.randn(min(chunk, k - done), *mu.shape).double()
            log_w.append(log_bernoulli(x, decode(z)) + log_normal(z, torch.zeros_like(z), torch.zeros_like(z))
                         - log_normal(z, mu, logvar))
        nll -= float((torch.logsumexp(torch.cat(log_w), 0) - math.log(k)).sum())
        squared_error += float((torch.sigmoid(decode(mu)) - x).pow(2).flatten(1).mean(1).sum())
        means.append(mu)
    n = len(images)
    variance = torch.cat(means).var(0, correction=0)
    return {"recon": recon / n, "kl": kl / n, "neg_elbo": (recon + kl) / n, "nll": nll / n,
            "mse": squared_error / n, "posterior_mean_variance": variance.tolist(),
            "active_units": int((variance > ACTIVE_UNIT_THRESHOLD).sum())}


@pytest.fixture(scope="module")
def trained_a_little():
    """conv-fashion after a few steps on blobs (so codes and decodings are not those of an initial model)."""
    model, objective = build_variant("conv-fashion", seed=0)
    generator = torch.Generator().manual_seed(1)
    images = (torch.rand(64, 1, 32, 32, generator=generator) < 0.3).to(torch.uint8) * 255
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step in range(5):
        loss = objective(model, images.float() / 255, step)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), images[:37]


@pytest.mark.parametrize("cache_samples", [bounds.CACHE_SAMPLES, 7, 40])
def test_evaluate_equals_a_straightforward_computation(trained_a_little, monkeypatch, cache_samples):
    """Uneven batches, draws of several samples, pieces that split the samples (40: 2 of 16 images)
    and the batch (7: 7 images of one sample), and the default: every measure to float32 rounding."""
    model, images = trained_a_little
    monkeypatch.setattr(bounds, "CACHE_SAMPLES", cache_samples)
    monkeypatch.setattr(bounds, "SAMPLES_PER_PASS", 48)  # 3 samples of a 16-image batch per draw: 4 draws for K = 11
    torch.manual_seed(5)
    result = evaluate(model, images, k=11, batch_size=16)
    expected = reference_evaluation(model, images, k=11, batch_size=16, seed=5)
    for key in ("recon", "kl", "neg_elbo", "nll", "mse"):
        assert result[key] == pytest.approx(expected[key], rel=2e-6), key
    torch.testing.assert_close(torch.tensor(result["posterior_mean_variance"]),
                               torch.tensor(expected["posterior_mean_variance"], dtype=torch.float32),
                               rtol=1e-5, atol=1e-7)
    assert result["active_units"] == expected["active_units"]
    assert result["importance_samples"] == 11 and result["images"] == len(images)


def test_pieces_change_nothing_but_rounding(trained_a_little, monkeypatch):
    """The whole draw decoded at once (the path before pieces) and in pieces of 5 codes: the same estimate."""
    model, images = trained_a_little
    x = images.float() / 255
    estimates = {}
    for cache in (10**9, 5):
        monkeypatch.setattr(bounds, "CACHE_SAMPLES", cache)
        torch.manual_seed(2)
        estimates[cache] = importance_log_likelihood(model, x, 9)
    torch.testing.assert_close(estimates[5], estimates[10**9], rtol=1e-6, atol=1e-4)


class Recorded(Structure):
    """A structure whose importance weights are given: draw(k) hands out the next k rows of `log_w`."""

    capabilities = frozenset({"density"})

    def __init__(self, log_w: torch.Tensor):
        super().__init__()
        self.log_w, self.asked = log_w, []

    def importance_draw(self, x):
        done = 0

        def draw(k):
            nonlocal done
            self.asked.append(k)
            rows = self.log_w[done:done + k]
            done += k
            return rows, torch.zeros_like(rows)

        return draw


def test_the_log_mean_exp_streams_over_draws_of_bounded_size(monkeypatch):
    """K = 1,000 weights spread over 300 nats, 4 images, draws of at most SAMPLES_PER_PASS // 4 = 3
    samples: the running log-sum-exp equals the log-mean-exp of all weights at once."""
    monkeypatch.setattr(bounds, "SAMPLES_PER_PASS", 12)
    log_w = torch.randn(1000, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 100
    model = Recorded(log_w)
    estimate = importance_log_likelihood(model, torch.zeros(4, 1, 2, 2), 1000)
    assert max(model.asked) == 3 and sum(model.asked) == 1000
    expected = torch.logsumexp(log_w, 0) - math.log(1000)
    torch.testing.assert_close(estimate, expected, rtol=0, atol=1e-9)
