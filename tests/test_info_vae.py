"""InfoVAE's MMD: unbiased, 0 for equal distributions, the Gaussian closed form for the RBF kernel."""

from __future__ import annotations

import math

import pytest
import torch
from vaezoo_plugins.info_vae.mmd import mmd

from vaezoo.errors import UsageError

D = 3


def _rbf_mean_kernel(shift: float, var_a: float, var_b: float) -> float:
    """E k(a, b) for a ~ N(0, var_a I), b ~ N(shift e_1, var_b I), k = exp(-|a - b|^2 / (2 D))."""
    c, s = 2.0 * D, var_a + var_b
    return (1 + 2 * s / c) ** (-D / 2) * math.exp(-shift**2 / (c + 2 * s))


def _samples(reps: int, n: int, shift: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    a = torch.randn(reps, n, D, generator=generator, dtype=torch.float64)
    b = torch.randn(reps, n, D, generator=generator, dtype=torch.float64)
    b[..., 0] += shift
    return a, b


@pytest.mark.parametrize("shift", [0.0, 1.0])
def test_rbf_estimate_averages_to_the_closed_form(shift):
    g = torch.Generator().manual_seed(0)
    a, b = _samples(200, 50, shift, g)
    estimates = torch.stack([mmd(a[r], b[r], "rbf") for r in range(len(a))])
    closed = 2 * _rbf_mean_kernel(0.0, 1.0, 1.0) - 2 * _rbf_mean_kernel(shift, 1.0, 1.0)
    error = float(estimates.std()) / math.sqrt(len(a))
    assert float(estimates.mean()) == pytest.approx(closed, abs=4 * error)
    if shift:
        assert closed > 20 * error  # clearly positive, not noise


@pytest.mark.parametrize("kernel", ["rbf", "imq"])
def test_near_zero_for_one_distribution_and_positive_for_a_shift(kernel):
    g = torch.Generator().manual_seed(1)
    same = [float(mmd(*pair, kernel)) for pair in zip(*_samples(50, 100, 0.0, g))]
    shifted = [float(mmd(*pair, kernel)) for pair in zip(*_samples(50, 100, 1.0, g))]
    spread = torch.tensor(same).std().item()
    assert abs(sum(same) / len(same)) < 4 * spread / len(same) ** 0.5  # unbiased: mean 0 within 4 standard errors
    assert min(shifted) > max(same)
    x = torch.randn(200, D, generator=g)
    assert abs(float(mmd(x, x.clone(), kernel))) < 0.02  # identical samples: only the O(1/n) diagonal


@pytest.mark.parametrize("kernel, k", [
    ("rbf", lambda d2: math.exp(-d2 / (2 * D))),
    ("imq", lambda d2: 2 * D / (2 * D + d2)),
])
def test_matches_a_hand_written_u_statistic(kernel, k):
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(4, D, generator=g, dtype=torch.float64), torch.randn(5, D, generator=g, dtype=torch.float64)

    def kern(u, v):
        return k(float(((u - v) ** 2).sum()))

    aa = sum(kern(a[i], a[j]) for i in range(4) for j in range(4) if i != j) / 12
    bb = sum(kern(b[i], b[j]) for i in range(5) for j in range(5) if i != j) / 20
    ab = sum(kern(a[i], b[j]) for i in range(4) for j in range(5)) / 20
    assert float(mmd(a, b, kernel)) == pytest.approx(aa + bb - 2 * ab, rel=1e-12)


def test_objective_weights_follow_the_paper(build_variant, synthetic):
    from vaezoo.data import as_float

    model, objective = build_variant("info-vae", latent_dim=4, alpha=0.25, info_lambda=10.0, **{"lambda": 0.0})
    torch.manual_seed(0)
    terms = objective(model, as_float(synthetic.train[:8]), 0)
    expected = terms["recon"] + 0.75 * terms["kl"] + 9.25 * terms["mmd"]
    assert terms["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    with pytest.raises(UsageError, match="alpha \\+ info_lambda >= 1"):
        build_variant("info-vae", latent_dim=4, alpha=0.0, info_lambda=0.5)
