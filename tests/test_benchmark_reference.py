"""The benchmark's plain scripts compute the same model and objective as vaezoo's conv-fashion."""

from __future__ import annotations

import gzip
import importlib.util

import pytest
import torch
from vaezoo_plugins.datasets.idx import FILES

from vaezoo.model import build_model
from vaezoo.registry import get_registry

from .conftest import ROOT
from .test_data import idx_bytes


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("train_speed", ROOT / "benchmarks" / "train_speed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("trunk_twice", [False, True])
def test_plain_model_is_vaezoo_model(bench, synthetic, trunk_twice):
    registry = get_registry()
    spec = registry.variant("conv-fashion")
    torch.manual_seed(0)
    ours = build_model(spec, spec.schema.resolve(), synthetic.input_shape, registry)
    torch.manual_seed(0)
    plain = bench.Model(trunk_twice=trunk_twice)
    theirs = list(plain.parameters())
    assert [p.shape for p in ours.parameters()] == [p.shape for p in theirs]
    for a, b in zip(ours.parameters(), theirs):
        assert torch.equal(a, b)  # same seed, same construction order: the same initial weights
    x = synthetic.train[:8].float() / 255
    torch.manual_seed(1)
    out = ours(x)
    torch.manual_seed(1)
    recon, kl = plain.neg_elbo_terms(x)
    torch.testing.assert_close(recon, out.recon)
    torch.testing.assert_close(kl, out.kl)


def test_plain_batches_are_the_padded_images(bench, tmp_path):
    """Both plain scripts read IDX files through torchvision.datasets.FashionMNIST, offline."""
    images = torch.randint(0, 256, (10, 28, 28), dtype=torch.uint8)
    for images_name, labels_name in FILES.values():
        (tmp_path / f"{images_name}.gz").write_bytes(gzip.compress(idx_bytes(images)))
        (tmp_path / f"{labels_name}.gz").write_bytes(gzip.compress(idx_bytes(torch.zeros(10, dtype=torch.uint8))))
    root = bench.torchvision_root(tmp_path, tmp_path / "torchvision")
    for kind in ("faithful", "fixed"):
        dataset = bench.plain_data(kind, root, torch.device("cpu"))
        batches = list(bench.plain_batches(dataset, 4, torch.Generator().manual_seed(0)))
        assert len(batches) == 2 and all(b.shape == (4, 1, 32, 32) for b in batches)
        seen = torch.cat(batches)
        assert seen[:, :, :2].abs().sum() == 0 and seen.max() <= 1.0
        inner = (seen[:, 0, 2:30, 2:30] * 255).round().to(torch.uint8)
        assert all(any(torch.equal(img, orig) for orig in images) for img in inner)
