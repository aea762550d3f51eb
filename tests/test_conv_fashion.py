"""The reference model's exact architecture and every loss term against independent computations."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vaezoo.errors import UsageError
from vaezoo.model import build_model, build_objective
from vaezoo.model.distributions import DiagonalGaussian
from vaezoo.registry import get_registry


def conv_fashion(**overrides):
    registry = get_registry()
    spec = registry.variant("conv-fashion")
    hp = spec.schema.resolve(overrides)
    torch.manual_seed(0)
    model = build_model(spec, hp, (1, 32, 32), registry)
    return model, build_objective(model, registry, dataset_size=60000), hp


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts():
    model, _, _ = conv_fashion()
    assert count(model.encoder) == 235_636
    assert count(model.decoder) == 233_537
    assert count(model) == 469_173


def test_layer_shapes():
    model, _, _ = conv_fashion()
    convs = [m for m in model.encoder.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding) for c in convs] == [
        (1, 32, (4, 4), (2, 2), (1, 1)), (32, 32, (4, 4), (2, 2), (1, 1)), (32, 32, (4, 4), (2, 2), (1, 1))]
    dense = [(m.in_features, m.out_features) for m in model.encoder.modules() if isinstance(m, nn.Linear)]
    assert dense == [(512, 256), (256, 256), (256, 10), (256, 10)]
    dense = [(m.in_features, m.out_features) for m in model.decoder.modules() if isinstance(m, nn.Linear)]
    assert dense == [(10, 256), (256, 256), (256, 512)]
    deconvs = [m for m in model.decoder.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding) for c in deconvs] == [
        (32, 32, (4, 4), (2, 2), (1, 1)), (32, 32, (4, 4), (2, 2), (1, 1)), (32, 1, (4, 4), (2, 2), (1, 1))]


def test_shapes_through_the_model_and_trunk_runs_once():
    model, _, _ = conv_fashion()
    calls = []
    model.encoder.trunk.register_forward_hook(lambda *args: calls.append(1))
    x = torch.rand(5, 1, 32, 32)
    q = model.encoder(x)
    assert q.mu.shape == q.logvar.shape == (5, 10)
    assert len(calls) == 1
    assert model.decoder(q.mu).shape == (5, 1, 32, 32)
    assert model.decoder(torch.randn(3, 5, 10)).shape == (3, 5, 1, 32, 32)  # leading sample dims kept


def test_other_input_sizes_are_refused_clearly():
    registry = get_registry()
    spec = registry.variant("conv-fashion")
    with pytest.raises(UsageError, match="32x32"):
        build_model(spec, spec.schema.defaults(), (1, 28, 28), registry)


def test_bernoulli_likelihood_matches_hand_computation():
    model, _, _ = conv_fashion()
    logits = torch.tensor([[[[2.0, -1.0], [0.0, 3.0]]]])
    x = torch.tensor([[[[1.0, 0.0], [0.5, 0.25]]]])
    p = torch.sigmoid(logits)
    by_hand = (x * torch.log(p) + (1 - x) * torch.log(1 - p)).sum()
    assert model.likelihood.log_prob(x, logits).item() == pytest.approx(by_hand.item(), rel=1e-6)
    assert torch.equal(model.likelihood.mean(logits), p)


def test_analytic_kl_matches_hand_case_and_monte_carlo():
    q = DiagonalGaussian(torch.tensor([[0.5, -1.0]]), torch.log(torch.tensor([[0.25, 2.0]])))
    model, _, _ = conv_fashion(latent_dim=2)
    kl = model.divergence(q, None, model.prior())
    # KL(N(m, s2) || N(0, 1)) = (s2 + m^2 - 1 - log s2) / 2
    expected = [(0.25 + 0.25 - 1 - math.log(0.25)) / 2, (2 + 1 - 1 - math.log(2)) / 2]
    assert kl[0].tolist() == pytest.approx(expected, rel=1e-6)
    torch.manual_seed(1)
    z = q.rsample((200_000,))
    samples = (q.log_prob(z) - model.prior().log_prob(z))[:, 0]
    stderr = samples.std().item() / math.sqrt(samples.numel())
    assert abs(samples.mean().item() - sum(expected)) < 4 * stderr


def test_gaussian_kl_general_form_and_zero_at_equality():
    torch.manual_seed(2)
    q = DiagonalGaussian(torch.randn(4, 3), torch.randn(4, 3))
    p = DiagonalGaussian(torch.randn(4, 3), torch.randn(4, 3))
    assert torch.allclose(q.kl_per_dim(q), torch.zeros(4, 3), atol=1e-6)
    z = q.rsample((100_000,))
    mc = (q.log_prob_per_dim(z) - p.log_prob_per_dim(z)).mean(0)
    assert torch.allclose(mc, q.kl_per_dim(p), atol=0.05, rtol=0.02)
    standard = DiagonalGaussian(torch.zeros(3), torch.zeros(3))
    by_hand = 0.5 * (q.logvar.exp() + q.mu**2 - 1 - q.logvar)  # KL(N(m, s2) || N(0, 1))
    assert torch.allclose(q.kl_per_dim(standard), by_hand, atol=1e-6)


def test_standard_normal_prior_density():
    model, _, _ = conv_fashion(latent_dim=2)
    z = torch.tensor([[0.0, 0.0], [1.0, -2.0]])
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    assert torch.allclose(model.prior().log_prob(z), expected)
    assert model.prior().sample((7,)).shape == (7, 2)


@pytest.mark.parametrize("beta, lam", [(1.0, 0.01), (4.0, 0.0), (0.0, 0.5)])
def test_objective_is_the_specified_loss(beta, lam):
    """loss = sum BCE / B + beta * KL / B + lambda * sum theta^2, recomputed independently."""
    model, objective, _ = conv_fashion(beta=beta, **{"lambda": lam})
    x = torch.rand(6, 1, 32, 32)
    torch.manual_seed(3)
    terms = objective(model, x, step=0)
    torch.manual_seed(3)
    h = model.encoder.trunk(x)
    mu, logvar = model.encoder.mu(h), model.encoder.logvar(h)
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    logits = model.decoder(z)
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / 6
    kl = -0.5 * torch.sum(1 + logvar - mu**2 - logvar.exp()) / 6
    l2 = sum((p**2).sum() for p in model.parameters())
    assert terms["recon"].item() == pytest.approx(bce.item(), rel=1e-5)
    assert terms["kl"].item() == pytest.approx(kl.item(), rel=1e-5)
    assert terms["neg_elbo"].item() == pytest.approx((bce + kl).item(), rel=1e-5)
    assert terms["loss"].item() == pytest.approx((bce + beta * kl + lam * l2).item(), rel=1e-5)
    assert terms["kl_per_dim"].shape == (10,)
    assert terms["kl_per_dim"].sum().item() == pytest.approx(kl.item(), rel=1e-5)


def test_kl_is_zero_and_reconstruction_is_entropy_in_known_limit():
    """With q = N(0, I) and constant logits 0, KL = 0 and the loss is 1024 * log 2 for x in {0, 1}."""
    model, objective, _ = conv_fashion(**{"lambda": 0.0})
    for module in (model.encoder.mu, model.encoder.logvar, model.decoder.deconv[-1]):
        nn.init.zeros_(module.weight)
        nn.init.zeros_(module.bias)
    x = (torch.rand(4, 1, 32, 32) > 0.5).float()
    terms = objective(model, x, step=0)
    assert terms["kl"].item() == pytest.approx(0.0, abs=1e-7)
    assert terms["recon"].item() == pytest.approx(1024 * math.log(2), rel=1e-6)


def test_channels_last_weights_compute_what_contiguous_ones_do():
    """The conv parts keep their convolution weights channels_last (faster on the CPU); same function."""
    model, _, _ = conv_fashion()
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last) and not c.weight.is_contiguous()
               for c in convs if c.weight.shape[1] > 1)
    plain = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    assert all(p.is_contiguous() for p in plain.parameters())
    torch.manual_seed(1)
    x, z = torch.rand(16, 1, 32, 32), torch.randn(16, 10)
    upstream = torch.randn(16, 1, 32, 32)
    outputs = []
    for m in (model, plain):
        q = m.encoder(x)
        logits = m.decoder(z)
        (q.mu.square().sum() + q.logvar.sum() + (logits * upstream).sum()).backward()
        outputs.append((q.mu, q.logvar, logits, [p.grad for p in m.parameters()]))
    (mu, logvar, logits, grads), (mu0, logvar0, logits0, grads0) = outputs
    torch.testing.assert_close(mu, mu0, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logvar, logvar0, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logits, logits0, rtol=1e-5, atol=1e-5)
    for g, g0 in zip(grads, grads0, strict=True):
        torch.testing.assert_close(g, g0, rtol=1e-4, atol=1e-5)
