"""The L2 penalty applied as Adam weight decay gives the same training as the penalty in the loss."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from vaezoo.model import build_model, build_objective
from vaezoo.registry import get_registry
from vaezoo.training.loop import build_optimizers

LAMBDA, LR, STEPS = 0.01, 1e-3, 3


def _setup(synthetic, **overrides):
    registry = get_registry()
    spec = registry.variant("conv-fashion")
    hp = spec.schema.resolve({"lambda": LAMBDA, "lr": LR, **overrides})
    torch.manual_seed(0)
    model = build_model(spec, hp, synthetic.input_shape, registry)
    return model, build_objective(model, registry)


class PlainReference(nn.Module):
    """conv-fashion written with stock layers only: contiguous weights, nn.ConvTranspose2d, no fold
    path; the penalty differentiated in the loss. Shares no code with vaezoo's parts."""

    def __init__(self):
        super().__init__()
        conv = dict(kernel_size=4, stride=2, padding=1)
        self.encoder = nn.Sequential(nn.Conv2d(1, 32, **conv), nn.ReLU(), nn.Conv2d(32, 32, **conv), nn.ReLU(),
                                     nn.Conv2d(32, 32, **conv), nn.ReLU(), nn.Flatten(), nn.Linear(512, 256),
                                     nn.ReLU(), nn.Linear(256, 256), nn.ReLU())
        self.mu, self.logvar = nn.Linear(256, 10), nn.Linear(256, 10)
        self.dense = nn.Sequential(nn.Linear(10, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                                   nn.Linear(256, 512), nn.ReLU())
        self.deconv = nn.Sequential(nn.ConvTranspose2d(32, 32, **conv), nn.ReLU(), nn.ConvTranspose2d(32, 32, **conv),
                                    nn.ReLU(), nn.ConvTranspose2d(32, 1, **conv))

    def loss(self, x):
        h = self.encoder(x)
        mu, logvar = self.mu(h), self.logvar(h)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        logits = self.deconv(self.dense(z).view(-1, 32, 4, 4))
        recon = nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="sum") / len(x)
        kl = 0.5 * (logvar.exp() + mu**2 - 1 - logvar).sum() / len(x)
        return recon + kl + LAMBDA * sum(p.pow(2).sum() for p in self.parameters())


def test_weight_decay_matches_plain_contiguous_layers_in_float64(synthetic):
    """vaezoo's channels_last weights, fold transposed convolution and fused Adam with weight decay
    train exactly like stock contiguous layers with the penalty in the loss (float64: no rounding
    to hide behind), so a layout or pairing error in the optimizer state shows."""
    model, objective = _setup(synthetic)
    model.double()
    plain = PlainReference().double()
    ours = [p for _, p in model.named_parameters()]
    assert [p.shape for p in ours] == [p.shape for p in _plain_order(plain)]
    with torch.no_grad():
        for mine, theirs in zip(ours, _plain_order(plain)):
            theirs.copy_(mine)
    assert any(not p.is_contiguous() for p in ours)  # the layout under test really differs
    optimizer = build_optimizers(model, objective, {"lr": LR})["model"]
    reference = torch.optim.Adam(plain.parameters(), lr=LR, foreach=False)
    for i, x in enumerate(_batches(synthetic)):
        torch.manual_seed(100 + i)
        terms = objective(model, x.double(), i)
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
        torch.manual_seed(100 + i)
        loss = plain.loss(x.double())
        assert float(terms["loss"].detach()) == pytest.approx(float(loss.detach()), rel=1e-12)
        reference.zero_grad()
        loss.backward()
        reference.step()
    for mine, theirs in zip(ours, _plain_order(plain)):
        torch.testing.assert_close(mine, theirs, rtol=1e-10, atol=1e-12)


def _plain_order(plain: PlainReference) -> list:
    """The reference's parameters in vaezoo's order: encoder trunk, heads, decoder dense, deconv."""
    return [*plain.encoder.parameters(), *plain.mu.parameters(), *plain.logvar.parameters(),
            *plain.dense.parameters(), *plain.deconv.parameters()]


def _train_with_penalty_in_loss(model, batches):
    """The plain formulation: lambda * sum(theta^2) differentiated as part of the loss."""
    optimizer = torch.optim.Adam(model.parameters(), lr=LR, foreach=False)
    for i, x in enumerate(batches):
        torch.manual_seed(100 + i)
        out = model(x)
        loss = out.recon.mean() + out.kl.mean() + LAMBDA * sum(p.pow(2).sum() for p in model.parameters())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def _batches(synthetic):
    return [synthetic.train[i * 16:(i + 1) * 16].float() / 255 for i in range(STEPS)]


def test_weight_decay_matches_penalty_in_loss(synthetic):
    model, objective = _setup(synthetic)
    plain = copy.deepcopy(model)
    start = [p.detach().clone() for p in model.parameters()]
    optimizer = build_optimizers(model, objective, {"lr": LR})["model"]
    assert optimizer.param_groups[0]["weight_decay"] == pytest.approx(2 * LAMBDA)
    for i, x in enumerate(_batches(synthetic)):
        torch.manual_seed(100 + i)
        terms = objective(model, x, i)
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
    _train_with_penalty_in_loss(plain, _batches(synthetic))
    moved = max((p - s).abs().max().item() for p, s in zip(model.parameters(), start))
    assert moved > 1e-3  # the steps did something, so agreement below means something
    for (name, ours), theirs in zip(model.named_parameters(), plain.parameters()):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6, msg=name)


def test_weight_decay_factor_matters(synthetic):
    """Weight decay lambda (not 2 lambda) would be a different optimiser: the test above can fail."""
    model, objective = _setup(synthetic)
    plain = copy.deepcopy(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR, weight_decay=LAMBDA)
    for i, x in enumerate(_batches(synthetic)):
        torch.manual_seed(100 + i)
        objective(model, x, i)["loss"].backward()
        optimizer.step()
        optimizer.zero_grad()
    _train_with_penalty_in_loss(plain, _batches(synthetic))
    gap = max((a - b).abs().max().item() for a, b in zip(model.parameters(), plain.parameters()))
    assert gap > 1e-5


def test_logged_loss_includes_penalty_value(synthetic):
    model, objective = _setup(synthetic)
    x = _batches(synthetic)[0]
    torch.manual_seed(1)
    terms = objective(model, x, 0)
    penalty = LAMBDA * sum(p.detach().double().pow(2).sum() for p in model.parameters())
    expected = terms["recon"].detach().double() + terms["kl"].detach().double() + penalty
    assert float(terms["loss"].detach()) == pytest.approx(float(expected), rel=1e-6)
    assert penalty > 1.0  # large enough that leaving it out would fail the check above


def test_no_penalty_means_no_weight_decay(synthetic):
    model, objective = _setup(synthetic, **{"lambda": 0.0})
    assert build_optimizers(model, objective, {"lr": LR})["model"].param_groups[0]["weight_decay"] == 0.0
