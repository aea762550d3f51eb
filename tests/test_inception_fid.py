"""The standard FID: pytorch-fid's network with weights read from safetensors (never unpickled), its
Frechet distance checked against vaezoo's own, bad weights refused in one line, the bench's column."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("pytorch_fid")

from pytorch_fid import inception as reference  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from vaezoo.bench import runner  # noqa: E402
from vaezoo.bench.report import write_report  # noqa: E402
from vaezoo.errors import NotApplicable, UsageError  # noqa: E402
from vaezoo.evaluation import inception_fid  # noqa: E402
from vaezoo.evaluation.sample_quality import frechet_distance  # noqa: E402

SMALL = 64  # the first block's width: the same network and loading, a fraction of the compute


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """Random weights of the FID Inception's shape (its blocks keep torchvision's parameter names)."""
    import torchvision

    torch.manual_seed(0)
    network = torchvision.models.inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=True)
    path = tmp_path_factory.mktemp("inception") / "inception.safetensors"
    save_file({key: value.contiguous() for key, value in network.state_dict().items()}, str(path))
    return path


def test_features_are_pytorch_fids_network_with_the_given_weights(weights, monkeypatch):
    from safetensors.torch import load_file

    ours = inception_fid.inception(weights, dims=SMALL)
    monkeypatch.setattr(reference, "load_state_dict_from_url", lambda url, **_: load_file(str(weights)))
    theirs = reference.InceptionV3([reference.InceptionV3.BLOCK_INDEX_BY_DIM[SMALL]]).eval()
    grey = torch.rand(6, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = theirs(grey.expand(-1, 3, -1, -1))[0].mean((2, 3))
    assert torch.allclose(inception_fid.inception_features(ours, grey, batch_size=4), expected, atol=1e-5)


def test_frechet_is_vaezoos_own_computation_and_zero_on_itself(weights):
    network = inception_fid.inception(weights, dims=SMALL)
    generator = torch.Generator().manual_seed(2)
    real = inception_fid.inception_features(network, torch.rand(80, 1, 32, 32, generator=generator))
    dark = inception_fid.inception_features(network, torch.rand(80, 1, 32, 32, generator=generator) ** 3)
    distance = inception_fid.frechet(real, dark)
    assert distance > 0.1
    assert distance == pytest.approx(frechet_distance(real, dark), rel=1e-6)  # scipy's sqrtm against torch's eigh
    assert abs(inception_fid.frechet(real, real)) < 1e-6


def test_weights_are_configured_and_checked(weights, tmp_path, monkeypatch):
    monkeypatch.delenv(inception_fid.WEIGHTS_ENV, raising=False)
    with pytest.raises(NotApplicable, match=inception_fid.WEIGHTS_ENV):
        inception_fid.weights_path()
    monkeypatch.setenv(inception_fid.WEIGHTS_ENV, str(tmp_path / "absent.safetensors"))
    with pytest.raises(NotApplicable, match="no such file"):
        inception_fid.weights_path()
    pickled = tmp_path / "pt_inception.pth"
    pickled.write_bytes(b"\x80\x04 not safetensors")
    with pytest.raises(UsageError, match="not a readable safetensors file"):
        inception_fid.inception(pickled)
    wrong = tmp_path / "wrong.safetensors"
    save_file({"fc.weight": torch.zeros(2, 2)}, str(wrong))
    with pytest.raises(UsageError, match="not the FID Inception weights"):
        inception_fid.inception(wrong)


def test_the_bench_refuses_bad_weights_before_it_writes(tmp_path, monkeypatch, refused):
    from .test_bench import TINY, _write

    bad = tmp_path / "bad.safetensors"
    save_file({"fc.weight": torch.zeros(2, 2)}, str(bad))
    monkeypatch.setenv(inception_fid.WEIGHTS_ENV, str(bad))
    refused("bench", str(_write(tmp_path, TINY)), "--out", str(tmp_path / "o"), "--device", "cpu",
            words=("not the FID Inception weights",))
    assert not (tmp_path / "o").exists()


def test_the_bench_scores_each_sampler_with_the_inception_fid(weights, tmp_path, monkeypatch):
    """With weights configured, every sampler's scores carry the FID of its own draw; the table shows the column."""
    import vaezoo
    from vaezoo.data import as_float
    from vaezoo.evaluation import sample_quality as quality
    from vaezoo.registry import get_registry

    from .test_bench import TINY

    monkeypatch.setenv(inception_fid.WEIGHTS_ENV, str(weights))
    small = inception_fid.inception(weights, dims=SMALL)
    monkeypatch.setattr(runner, "_inception_network", lambda path, device: small)
    runner._REAL_INCEPTION_FEATURES.clear()
    torch.manual_seed(0)
    classifier = quality.FeatureClassifier((1, 32, 32), 10).eval()
    monkeypatch.setattr(runner, "load_or_train_classifier", lambda *args: classifier)
    out = tmp_path / "bench"
    runner.run(TINY, out, get_registry(), device="cpu", only=("conv-fashion",))
    folder = out / "grey" / "conv-fashion" / "seed-0"
    record = json.loads((folder / runner.CELL).read_text())
    real = inception_fid.inception_features(small, as_float(get_registry().load("dataset", "synthetic")(None).test[:64]))
    for sampler in TINY.samplers:  # the gmm as the bench fitted it
        drawn = vaezoo.draw(folder, 64, sampler=sampler, seed=0, device="cpu")
        expected = inception_fid.frechet(real, inception_fid.inception_features(small, drawn))
        assert record["quality"][sampler]["inception_fid"] == pytest.approx(expected, rel=1e-9)
    report = write_report(out, TINY, tmp_path / "r.md")
    assert "| Inception FID |" in report and "pytorch-fid's network" in report
