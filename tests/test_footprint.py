"""Sizes from untrusted files and options are estimated before anything is allocated; what cannot fit is one
line (vaezoo's TooLargeError), not an allocation traceback or a process the kernel kills."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import vaezoo
from vaezoo import footprint
from vaezoo.errors import TooLargeError
from vaezoo.model import build_model, build_objective
from vaezoo.registry import get_registry
from vaezoo.storage import checkpoint

from .conftest import SMALL_RUN

GIB = 2**30


@pytest.fixture
def run(small_run, tmp_path) -> Path:
    return Path(shutil.copytree(small_run, tmp_path / "run"))


@pytest.fixture
def eight_gib(monkeypatch):
    """A machine with 8 GiB free, whatever this one has: the refusals do not depend on the test machine."""
    monkeypatch.setattr(footprint, "available_bytes", lambda device: 8 * GIB)


def rewrite_metadata(source: Path, target: Path, **changes) -> Path:
    tensors, meta = checkpoint.read(source)
    decoded = {k: v for k, v in meta.items() if k != checkpoint.FORMAT_KEY}
    for key, value in changes.items():
        decoded[key] = value if isinstance(value, str) else json.dumps(value)
    checkpoint.write(target, tensors, decoded)
    return target


def hparams_of(run: Path) -> dict:
    return json.loads((run / "config.json").read_text())["hparams"]


@pytest.mark.parametrize("change, variant", [
    (lambda hp: {"hparams": {**hp, "latent_dim": 2**40}}, None),
    (lambda hp: {"input_shape": [10**9, 32, 32]}, None),
    (lambda hp: {"hparams": {**hp, "pseudo_inputs": 10**6}}, "vamp-vae"),
], ids=["latent-2**40", "channels-10**9", "million-pseudo-inputs"])
def test_weights_whose_metadata_describes_a_huge_model(run, tmp_path, refused, eight_gib, change, variant):
    hp = hparams_of(run)
    if variant:
        spec = get_registry().variant(variant)
        hp = spec.schema.resolve({k: v for k, v in hp.items() if k in spec.schema}).to_dict()
        change = (lambda extra: lambda _: {"variant": variant, "hparams": {**hp, **extra}})(
            change(hp)["hparams"] | {})
    path = rewrite_metadata(run / "model.safetensors", tmp_path / "huge.safetensors", **change(hp))
    with pytest.raises(TooLargeError, match="would need about .* of memory, but 8.0 GiB is available"):
        vaezoo.load(path)
    refused("evaluate", str(path), "-k", "1", words=(str(path), "nothing was allocated"))


def test_huge_training_options_are_refused_before_the_run_folder(refused, tmp_path, eight_gib):
    out = tmp_path / "run"
    refused("train", *SMALL_RUN, "-o", "latent_dim=1000000", "--out", str(out),
            words=("training conv-fashion", "8.0 GiB is available"), code=1)
    refused("train", "vamp-vae", "--dataset", "synthetic", "--max-steps", "1", "-o", "pseudo_inputs=2000000",
            "--out", str(out),
            words=("training vamp-vae",), code=1)
    assert not out.exists()


def test_requests_too_large_to_fit(small_run, tmp_path, refused, eight_gib):
    refused("sample", str(small_run), "--n", "1000000000", "--out", str(tmp_path / "s.png"),
            words=("drawing 1,000,000,000 images",), untouched=tmp_path)
    refused("evaluate", str(small_run), "-k", "1000000000000", "--out", str(tmp_path / "e.json"),
            words=("1,000,000,000,000 importance samples",), untouched=tmp_path)


@pytest.mark.parametrize("seed", ["18446744073709551616", "-9223372036854775809", str(2**70)])
def test_seeds_outside_64_bits(small_run, tmp_path, refused, seed):
    for args in (("train", *SMALL_RUN, "--max-steps", "1", "--out", str(tmp_path / "r")),
                 ("evaluate", str(small_run), "-k", "1", "--out", str(tmp_path / "e.json")),
                 ("sample", str(small_run), "--out", str(tmp_path / "s.png"))):
        refused(*args, "--seed", seed, words=("--seed", "64 bits"), code=2)
    assert list(tmp_path.iterdir()) == []


def test_a_file_larger_than_the_memory_is_not_read(tmp_path, monkeypatch):
    """The header claims a 64 MiB tensor and the file really holds it (sparse): refused before reading a byte of it."""
    path = tmp_path / "big.safetensors"
    checkpoint.write(path, {"w": torch.zeros(16 * 2**20)}, {"variant": "conv-fashion"})
    monkeypatch.setattr(footprint, "available_bytes", lambda device: 16 * 2**20)
    with pytest.raises(TooLargeError, match=f"reading {path}"):
        checkpoint.read(path)


@pytest.mark.parametrize("variant", ["conv-fashion", "vamp-vae", "factor-vae"])
def test_the_estimate_counts_what_a_real_build_and_pass_create(variant):
    """The meta-device count equals the parameters and buffers of a real build, and is close to the tensors one
    real training pass creates (counted the same way on the CPU, where some layers take another kernel)."""
    registry = get_registry()
    spec = registry.variant(variant)
    hp = spec.schema.resolve({"latent_dim": 6})
    shape = (1, 32, 32)
    meta = footprint.on_meta(lambda: build_model(spec, hp, shape, registry))
    real = build_model(spec, hp, shape, registry)
    real_tensors = (*real.parameters(), *real.buffers())
    assert footprint.state_bytes(meta) == sum(t.numel() * t.element_size() for t in real_tensors)
    meta_objective = footprint.on_meta(lambda: build_objective(meta, registry, dataset_size=1024, total_steps=1))
    real_objective = build_objective(real, registry, dataset_size=1024, total_steps=1)
    on_meta = footprint.forward_bytes(lambda: meta_objective(meta, torch.empty(8, *shape, device="meta"), 0))
    on_cpu = footprint.peak_bytes(lambda: real_objective(real, torch.rand(8, *shape), 0))
    # the CPU's one-output-channel transposed convolution (vaezoo.model.layers) unfolds, which PyTorch's does not
    assert on_meta == pytest.approx(on_cpu, rel=0.4) and on_meta > 8 * 4 * 32 * 32  # more than the batch itself


def test_available_memory_comes_from_the_platform(monkeypatch, tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       32000000 kB\nMemAvailable:    1000000 kB\n")
    monkeypatch.setattr(footprint, "_MEMINFO", meminfo)
    monkeypatch.setattr(footprint, "_CGROUP", tmp_path / "no-cgroup")
    assert footprint.host_available_bytes() == 1_000_000 * 1024
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    (cgroup / "memory.max").write_text(f"{512 * 2**20}\n")
    (cgroup / "memory.current").write_text(f"{12 * 2**20}\n")
    monkeypatch.setattr(footprint, "_CGROUP", cgroup)
    assert footprint.host_available_bytes() == 500 * 2**20  # the container's room is smaller
    monkeypatch.setattr(footprint, "_MEMINFO", tmp_path / "none")
    monkeypatch.setattr(footprint, "_CGROUP", tmp_path / "no-cgroup")
    assert footprint.host_available_bytes() > 0  # os.sysconf's pages where there is no /proc
