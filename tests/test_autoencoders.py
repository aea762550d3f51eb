"""Deterministic autoencoders (wae-mmd, rae): the MMD against numerical integration and InfoVAE's
estimator, the RAE gradient penalty against a hand-written gradient, and what such a model reports."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from vaezoo_plugins.info_vae.mmd import mmd
from vaezoo_plugins.rae.objective import gradient_penalty

from vaezoo.data import as_float
from vaezoo.errors import NotApplicable
from vaezoo.evaluation.measures import evaluate


def _imq_expectation(mean: float, c: float) -> float:
    """E[c / (c + u^2)] for u ~ N(mean, 2), by the trapezoid rule."""
    u = np.linspace(mean - 30, mean + 30, 600_001)
    density = np.exp(-((u - mean) ** 2) / 4) / math.sqrt(4 * math.pi)
    return float(np.trapezoid(density * c / (c + u * u), u))


def test_mmd_estimator_is_unbiased_for_the_population_mmd_of_two_gaussians():
    """1-D: MMD^2(N(0,1), N(m,1)) = 2 E k(u ~ N(0,2)) - 2 E k(u ~ N(m,2)) for the IMQ kernel, c = 2."""
    m, c = 0.8, 2.0
    population = 2 * _imq_expectation(0.0, c) - 2 * _imq_expectation(m, c)
    g = torch.Generator().manual_seed(0)
    estimates = torch.stack([mmd(torch.randn(50, 1, generator=g, dtype=torch.float64),
                                 m + torch.randn(50, 1, generator=g, dtype=torch.float64), "imq")
                             for _ in range(4000)])
    assert abs(float(estimates.mean()) - population) < 4 * float(estimates.std()) / math.sqrt(len(estimates))


def test_wae_penalty_is_infovaes_estimator_with_the_imq_kernel(build_variant, synthetic):
    model, objective = build_variant("wae-mmd")
    x = as_float(synthetic.train[:32])
    torch.manual_seed(1)
    terms = objective(model, x, 0)
    torch.manual_seed(1)
    z = model.encoder(x)
    expected = mmd(z, torch.randn(32, 8), "imq")
    torch.testing.assert_close(terms["mmd"], expected)
    assert float(terms["loss"].detach()) == pytest.approx(float((terms["recon"] + 10.0 * expected).detach()), rel=1e-6)


def test_gradient_penalty_against_a_hand_written_gradient():
    """D(z) = sigmoid(W z + b): d(sum_i D_i)/dz = W^T sigmoid'(W z + b), written out."""
    g = torch.Generator().manual_seed(2)
    weight, bias = torch.randn(30, 4, generator=g, dtype=torch.float64), torch.randn(30, generator=g, dtype=torch.float64)
    z = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    decoded = torch.sigmoid(z @ weight.T + bias)
    s = torch.sigmoid(z.detach() @ weight.T + bias)
    by_hand = ((s * (1 - s)) @ weight).pow(2).sum(-1).mean()
    penalty = gradient_penalty(decoded, z)
    torch.testing.assert_close(penalty, by_hand)
    assert penalty.requires_grad  # it trains the decoder


@pytest.mark.parametrize("regulariser", ["gp", "l2"])
def test_rae_loss_is_its_three_terms(build_variant, synthetic, regulariser):
    model, objective = build_variant("rae", regulariser=regulariser, embedding_weight=0.5, decoder_weight=0.01)
    x = as_float(synthetic.train[:16])
    terms = objective(model, x, 0)
    z = model.encoder(x)
    torch.testing.assert_close(terms["embedding"], 0.5 * z.pow(2).sum(-1).mean())
    if regulariser == "l2":
        torch.testing.assert_close(terms["decoder_regulariser"],
                                   sum(p.pow(2).sum() for p in model.decoder.parameters()))
    expected = terms["recon"] + 0.5 * terms["embedding"] + 0.01 * terms["decoder_regulariser"]
    torch.testing.assert_close(terms["loss"], expected)
    terms["loss"].backward()
    assert all(p.grad is not None for p in model.decoder.parameters())


def test_a_deterministic_code_has_no_elbo_density_or_prior_samples(build_variant, synthetic):
    model, _ = build_variant("wae-mmd")
    result = evaluate(model.eval(), synthetic.test[:20], k=2, batch_size=10)
    assert "neg_elbo" not in result and "nll" not in result and "kl" not in result
    assert set(result["not_applicable"]) == {"neg_elbo", "nll"} and result["recon"] > 0
    with pytest.raises(NotApplicable, match="post-hoc sampler"):
        model.sample(4)
    assert model.representation(as_float(synthetic.test[:3])).shape == (3, 8)


def test_deterministic_autoencoder_trains_and_reports_its_reconstruction(tmp_path, cli):
    run = tmp_path / "wae"
    result = cli("train", "wae-mmd", "--dataset", "synthetic", "--max-steps", "3", "--out", str(run), "--device", "cpu")
    assert result.code == 0, result.err
    assert "test reconstruction" in result.out and "samples.png not drawn" in result.err
    shown = cli("evaluate", str(run), "--device", "cpu")
    assert shown.code == 0 and "neg_elbo: not applicable" in shown.out
    refused = cli("sample", str(run), "--out", str(tmp_path / "s.png"), "--device", "cpu")
    assert refused.code == 2 and "post-hoc sampler" in refused.err


def test_a_fitted_sampler_gives_a_deterministic_autoencoder_samples(tmp_path, cli):
    run = tmp_path / "rae"
    assert cli("train", "rae", "--dataset", "synthetic", "--max-steps", "4", "--out", str(run),
               "--device", "cpu").code == 0
    fitted = cli("fit-sampler", str(run), "--sampler", "gmm", "-o", "components=3", "--device", "cpu")
    assert fitted.code == 0, fitted.err
    drawn = cli("sample", str(run), "--sampler", "gmm", "--n", "9", "--out", str(tmp_path / "g.png"), "--device", "cpu")
    assert drawn.code == 0, drawn.err
    from PIL import Image

    assert Image.open(tmp_path / "g.png").size[0] > 3 * 32  # a 3x3 grid of 32x32 images
