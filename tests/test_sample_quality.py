"""Sample-quality measures against closed forms and constructed cases with known answers."""

from __future__ import annotations

import pytest
import torch

from vaezoo.evaluation.sample_quality import (
    accuracy,
    frechet_distance,
    precision_recall,
    train_classifier,
)


def test_frechet_distance_of_gaussians_matches_the_closed_form():
    """Diagonal covariances commute: d^2 = |mu_a - mu_b|^2 + sum_i (sqrt(s_a,i) - sqrt(s_b,i))^2."""
    g = torch.Generator().manual_seed(0)
    mean_a, mean_b = torch.tensor([0.0, 1.0, -1.0]), torch.tensor([0.5, 1.0, 1.0])
    std_a, std_b = torch.tensor([1.0, 2.0, 0.5]), torch.tensor([1.5, 1.0, 0.5])
    a = mean_a + std_a * torch.randn(200_000, 3, generator=g, dtype=torch.float64)
    b = mean_b + std_b * torch.randn(200_000, 3, generator=g, dtype=torch.float64)
    closed = float((mean_a - mean_b).pow(2).sum() + (std_a - std_b).pow(2).sum())
    assert frechet_distance(a, b) == pytest.approx(closed, abs=0.03)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_with_non_commuting_covariances_matches_scipy():
    linalg = pytest.importorskip("scipy.linalg")
    g = torch.Generator().manual_seed(1)
    a = torch.randn(5000, 4, generator=g, dtype=torch.float64) @ torch.randn(4, 4, generator=g, dtype=torch.float64)
    b = torch.randn(5000, 4, generator=g, dtype=torch.float64) @ torch.randn(4, 4, generator=g, dtype=torch.float64) + 1
    ca, cb = torch.cov(a.T).numpy(), torch.cov(b.T).numpy()
    root = linalg.sqrtm(ca @ cb).real
    reference = float(((a.mean(0) - b.mean(0)) ** 2).sum()) + float((ca + cb - 2 * root).trace())
    assert frechet_distance(a, b) == pytest.approx(reference, rel=1e-8)


def test_precision_and_recall_on_constructed_sets():
    g = torch.Generator().manual_seed(2)
    left = torch.randn(500, 2, generator=g) + torch.tensor([-10.0, 0.0])
    right = torch.randn(500, 2, generator=g) + torch.tensor([10.0, 0.0])
    real = torch.cat([left, right])
    assert precision_recall(real, real) == (1.0, 1.0)
    precision, recall = precision_recall(real, torch.randn(300, 2, generator=g) + 100.0)
    assert precision == 0.0 and recall == 0.0
    half = torch.randn(1000, 2, generator=g) + torch.tensor([-10.0, 0.0])  # covers one mode only
    precision, recall = precision_recall(real, half)
    assert precision > 0.95 and recall == pytest.approx(0.5, abs=0.05)


def test_classifier_learns_a_labelled_set(synthetic):
    """Discs above or below the image's middle: a task the feature classifier must learn well."""
    from vaezoo.data import as_float

    images = as_float(synthetic.train)
    rows = torch.arange(32.0)[None, :, None]
    weight = images[:, 0].sum((1, 2)).clamp(min=1e-6)
    centre = (images[:, 0] * rows).sum((1, 2)) / weight
    labels = (centre > 16).long()
    torch.manual_seed(3)
    classifier = train_classifier(images[:768], labels[:768], 2, epochs=3, batch_size=64)
    assert accuracy(classifier, images[768:], labels[768:]) > 0.85
