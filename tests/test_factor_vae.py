"""FactorVAE: the permutation, the discriminator's TC estimate against the Gaussian closed form,
and the trainer routing each loss to its own parameters."""

from __future__ import annotations

import math

import pytest
import torch
from vaezoo_plugins.factor_vae.discriminator import permute_dims

from vaezoo.data import as_float
from vaezoo.training.loop import _backward


def test_permutation_keeps_each_dimension_and_breaks_the_pairing():
    torch.manual_seed(0)
    z = torch.arange(200.0).reshape(100, 2)
    z[:, 1] = z[:, 0]  # perfectly dependent
    p = permute_dims(z)
    for d in range(2):
        assert torch.equal(p[:, d].sort().values, z[:, d].sort().values)
    assert (p[:, 0] == p[:, 1]).float().mean() < 0.1


@pytest.mark.slow
def test_discriminator_estimates_the_total_correlation_of_a_gaussian(build_variant, one_thread):
    """z ~ N(0, [[1, r], [r, 1]]) has TC = -log(1 - r^2) / 2; the trained density ratio should find it.

    On independent samples the mean log-ratio is -KL(prod q || q) = -1.27 nats; a saturating
    discriminator under-reaches there, so only its sign and size are checked.
    """
    rho = 0.8
    _, objective = build_variant("factor-vae", latent_dim=2, disc_hidden=32, disc_lr=3e-4)
    optimizer = objective.aux_optimizer()
    chol = torch.linalg.cholesky(torch.tensor([[1.0, rho], [rho, 1.0]]))
    torch.manual_seed(0)
    for _ in range(800):
        loss = objective.discriminator_loss(torch.randn(256, 2) @ chol.T)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        estimate = objective.total_correlation(torch.randn(20_000, 2) @ chol.T)
        independent = objective.total_correlation(torch.randn(20_000, 2))
    assert float(estimate) == pytest.approx(-0.5 * math.log(1 - rho**2), abs=0.08)
    assert float(independent) < -0.5


def test_losses_reach_only_their_own_parameters(build_variant, synthetic):
    model, objective = build_variant("factor-vae", latent_dim=3, disc_hidden=16)
    torch.manual_seed(0)
    terms = objective(model, as_float(synthetic.train[:8]), 0)
    model_params, disc_params = list(model.parameters()), list(objective.parameters())
    expected_model = torch.autograd.grad(terms["loss"], model_params, retain_graph=True)
    expected_disc = torch.autograd.grad(terms["aux_loss"], disc_params, retain_graph=True)
    _backward(terms, model, objective)
    assert all(torch.allclose(p.grad, g) for p, g in zip(model_params, expected_model))
    assert all(torch.allclose(p.grad, g) for p, g in zip(disc_params, expected_disc))
    assert terms["tc"].requires_grad and expected_disc[0].abs().sum() > 0


def test_negatives_come_from_the_independent_second_batch(build_variant, synthetic):
    """Algorithm 2 of Kim & Mnih: the discriminator's class 1 is a permutation of an independent batch's codes."""
    model, objective = build_variant("factor-vae", latent_dim=3, disc_hidden=16)
    assert objective.extra_batches == 1
    x, other = as_float(synthetic.train[:8]), as_float(synthetic.train[8:16])
    torch.manual_seed(5)
    terms = objective(model, torch.cat([x, other]), 0)
    torch.manual_seed(5)
    z = model(x).z
    with torch.no_grad():
        negatives = permute_dims(model(other).z)
    logits = objective.discriminator(torch.cat([z.detach(), negatives]))
    labels = torch.cat([torch.zeros(8, dtype=torch.long), torch.ones(8, dtype=torch.long)])
    torch.testing.assert_close(terms["aux_loss"], torch.nn.functional.cross_entropy(logits, labels))
    same_batch = objective.discriminator_loss(z)
    assert abs(float(same_batch) - float(terms["aux_loss"])) > 1e-4
    _, first_wave = build_variant("factor-vae", latent_dim=3, disc_hidden=16, negatives="same-batch")
    assert first_wave.extra_batches == 0


def test_independent_batch_is_a_function_of_seed_and_step(synthetic):
    from vaezoo.data import independent_batch

    images = synthetic.train
    a, again = independent_batch(images, 16, 0, 7), independent_batch(images, 16, 0, 7)
    assert torch.equal(a, again) and a.shape == (16, 1, 32, 32)
    assert not torch.equal(a, independent_batch(images, 16, 0, 8))
    assert not torch.equal(a, independent_batch(images, 16, 1, 7))
    halves = [independent_batch(images, 16, 0, 7, part=(rank, 2)) for rank in (0, 1)]
    assert torch.equal(torch.cat(halves), a)  # under torchrun each process trains on its slice


def test_factor_vae_with_independent_negatives_resumes_bit_for_bit(tmp_path, cli):
    from .test_resume import assert_same_results

    args = ("factor-vae", "--dataset", "synthetic", "--batch-size", "256", "-o", "disc_hidden=16", "--device", "cpu")
    assert cli("train", *args, "--epochs", "2", "--out", str(tmp_path / "whole")).code == 0
    assert cli("train", *args, "--epochs", "1", "--out", str(tmp_path / "cut")).code == 0
    assert cli("train", "--resume", str(tmp_path / "cut"), "--epochs", "2", "--device", "cpu").code == 0
    assert_same_results(tmp_path / "cut", tmp_path / "whole")
