"""IDX reading with header checks, the FashionMNIST loader, batching, and a real-data integration run."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
import torch
from vaezoo_plugins.datasets.idx import load_fashion_mnist, read_idx

from vaezoo.data import DATA_ENV, ImageData, ordered_batches, shuffled_batches
from vaezoo.errors import DataError

from .conftest import ROOT, require_real_data


def idx_bytes(array: torch.Tensor) -> bytes:
    header = bytes([0, 0, 0x08, array.dim()]) + struct.pack(f">{array.dim()}I", *array.shape)
    return header + array.numpy().tobytes()


def test_read_idx_roundtrip_plain_and_gzip(tmp_path):
    images = torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8)
    (tmp_path / "a").write_bytes(idx_bytes(images))
    (tmp_path / "a.gz").write_bytes(gzip.compress(idx_bytes(images)))
    assert torch.equal(read_idx(tmp_path / "a"), images)
    assert torch.equal(read_idx(tmp_path / "a.gz"), images)


@pytest.mark.parametrize("mangle, message", [
    (lambda b: b[:-10], "truncated or corrupt"),
    (lambda b: b[:6], "header cut short"),
    (lambda b: b"\x00\x00\x0d\x03" + b[4:], "bad header"),
    (lambda b: b"hello world, not idx", "bad header"),
])
def test_read_idx_rejects_bad_files(tmp_path, mangle, message):
    path = tmp_path / "bad"
    path.write_bytes(mangle(idx_bytes(torch.zeros(2, 28, 28, dtype=torch.uint8))))
    with pytest.raises(DataError, match=message):
        read_idx(path)


def test_corrupt_gzip_is_a_data_error(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(b"\x00" * 100)[:20])
    with pytest.raises(DataError, match="cannot read"):
        read_idx(path)


def test_loader_checks_counts_and_missing_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_fashion_mnist(tmp_path / "nowhere")
    small = torch.zeros(5, 28, 28, dtype=torch.uint8)
    for name in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte"):
        (tmp_path / f"{name}.gz").write_bytes(gzip.compress(idx_bytes(small)))
    with pytest.raises(DataError, match="expected 60000 images of 28x28"):
        load_fashion_mnist(tmp_path)


def test_shuffled_batches_drop_last_and_cover_without_repeats():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1)
    batches = list(shuffled_batches(images, 3, torch.Generator().manual_seed(0)))
    assert len(batches) == 3 and all(b.shape == (3, 1, 1, 1) for b in batches)
    seen = torch.cat(batches).flatten() * 255
    assert len(set(seen.round().tolist())) == 9
    again = list(shuffled_batches(images, 3, torch.Generator().manual_seed(0)))
    assert all(torch.equal(a, b) for a, b in zip(batches, again))
    assert [b.shape[0] for b in ordered_batches(images, 4)] == [4, 4, 2]
    assert batches[0].dtype == torch.float32 and batches[0].max() <= 1.0


def test_image_data_must_be_uint8():
    with pytest.raises(DataError, match="uint8"):
        ImageData("x", torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 4, dtype=torch.uint8))


def test_real_fashion_mnist_loads_padded(real_data):
    data = load_fashion_mnist(real_data)
    assert data.train.shape == (60000, 1, 32, 32) and data.test.shape == (10000, 1, 32, 32)
    assert data.train.dtype == torch.uint8
    assert data.train[:, :, :2].max() == 0 and data.train[:, :, :, -2:].max() == 0  # zero padding
    # FashionMNIST's mean training pixel is 72.94 / 255 (0.2860): the 28x28 images sit in the centre.
    assert data.train[:, :, 2:30, 2:30].float().mean().item() == pytest.approx(72.94, abs=0.01)


@pytest.mark.slow
def test_real_data_training_few_hundred_steps(cli, tmp_path, real_data):
    result = cli("train", "conv-fashion", "--data-dir", str(real_data), "--device", "cpu",
                 "--max-steps", "300", "--out", str(tmp_path / "run"))
    assert result.code == 0, result.err
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    # After 300 steps the reference model is well below the ~710 nats of an untrained one
    # and still above the ~250 it reaches after 10 epochs.
    assert 250 < record["test"]["neg_elbo"] < 420
    assert record["test"]["kl"] > 1.0  # the posterior is being used


def test_mnist_asked_for_fashion_mnist_files_given(refused, real_data, tmp_path):
    refused("train", "conv-fashion", "--dataset", "mnist", "--data-dir", str(real_data), "--max-steps", "1",
            "--out", str(tmp_path / "run"), words=("is not MNIST", "like FashionMNIST's (72.94)"))
    assert not (tmp_path / "run").exists()


SHORT = ("--max-steps", "1", "--device", "cpu")  # a refusal that fails to happen stays short


def fake_idx_folder(folder: Path, pixel: int) -> Path:
    """60,000 training images of one grey level, in the layout of the real files (only the training file)."""
    folder.mkdir()
    images = torch.full((60000, 28, 28), pixel, dtype=torch.uint8)
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images), compresslevel=1))
    return folder


@pytest.mark.parametrize("dataset, pixel, words", [
    ("mnist", 73, ("is not MNIST", "like FashionMNIST's")),
    ("fashion-mnist", 33, ("is not FashionMNIST", "like MNIST's")),
])
def test_files_of_the_wrong_dataset_are_refused(refused, tmp_path, dataset, pixel, words):
    data = fake_idx_folder(tmp_path / "data", pixel)
    refused("train", "conv-fashion", "--dataset", dataset, "--data-dir", str(data), *SHORT,
            "--out", str(tmp_path / "run"),
            words=(str(data / "train-images-idx3-ubyte.gz"), *words))


def test_a_compressed_file_that_unpacks_beyond_any_idx_is_refused(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(bytes(100_000), compresslevel=1))
    with pytest.raises(DataError, match="more than 1,000 bytes"):
        read_idx(path, largest=1000)


def test_vaezoo_data_is_where_datasets_are_looked_for(refused, tmp_path, monkeypatch):
    data = tmp_path / "from-env"
    data.mkdir()
    five = torch.zeros(5, 28, 28, dtype=torch.uint8)
    (data / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(five)))
    monkeypatch.setenv(DATA_ENV, str(data))
    refused("train", "conv-fashion", *SHORT, "--out", str(tmp_path / "run"), words=(str(data), "expected 60000 images"))
    other = tmp_path / "option"
    other.mkdir()
    refused("train", "conv-fashion", "--data-dir", str(other), *SHORT, "--out", str(tmp_path / "run"),
            words=(str(other),))  # the option wins over the environment


@pytest.mark.parametrize("value, words", [
    ("~nosuchuser-vaezoo/data", ("$VAEZOO_DATA ~nosuchuser-vaezoo/data", "no home folder")),
    ("/nonexistent/vaezoo/data", ("data directory /nonexistent/vaezoo/data", "does not exist")),
])
def test_a_bad_vaezoo_data_is_one_line(refused, tmp_path, monkeypatch, value, words):
    monkeypatch.setenv(DATA_ENV, value)
    refused("train", "conv-fashion", *SHORT, "--out", str(tmp_path / "run"), words=words)


def test_a_missing_dataset_fails_ci_and_skips_elsewhere(tmp_path):
    with pytest.raises(pytest.fail.Exception, match="CI must run the real-data tests"):
        require_real_data(tmp_path, ci=True)
    with pytest.raises(pytest.skip.Exception, match="make data"):
        require_real_data(tmp_path, ci=False)


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize("ci, code", [("true", 2), ("", 0)])
def test_make_data_reports_an_apt_failure_in_ci(tmp_path, ci, code):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool, body in (("apt-get", "exit 100"), ("sudo", 'exec "$@"')):
        (bin_dir / tool).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / tool).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CI": ci}
    result = subprocess.run(["make", "-s", "data", f"FASHION={tmp_path / 'absent.gz'}"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == code, result.stdout + result.stderr
    assert ("error:" if ci else "note:") in result.stdout + result.stderr
