"""The L2 penalty applied as Adam weight decay gives the same training as the penalty in the loss."""

from __future__ import annotations

import copy

import pytest
import torch

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
