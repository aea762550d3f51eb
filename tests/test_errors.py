"""Every bad input gets one error line naming the problem, a non-zero exit, no traceback, and no file changed."""

from __future__ import annotations

import errno
import gzip
import json
import os
import shutil
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from vaezoo import hookimpl
from vaezoo.cli import DEBUG_ENV, main
from vaezoo.errors import StorageError, UnknownNameError
from vaezoo.storage import checkpoint
from vaezoo.storage.runs import atomic_write_bytes
from vaezoo.variant import VariantSpec

SYNTHETIC = ("--dataset", "synthetic", "--max-steps", "1")  # a refusal that fails to happen stays short


@pytest.fixture
def old_run(tmp_path) -> Path:
    """A folder holding an earlier run's files, which no refused command may touch."""
    run = tmp_path / "old"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text('{"variant": "conv-fashion", "hparams": {}}\n')
    (run / "metrics.jsonl").write_text('{"epoch": 1}\n')
    (run / "checkpoints" / "epoch-0001.safetensors").write_bytes(b"earlier weights")
    return run


@pytest.fixture
def run_copy(small_run, tmp_path) -> Path:
    return Path(shutil.copytree(small_run, tmp_path / "run"))


@pytest.mark.parametrize("args, words", [
    (["conv-fashon"], ("unknown variant 'conv-fashon'", "Did you mean: conv-fashion")),
    (["conv-fashion", "--beta", "-1"], ("beta", "outside the valid range")),
    (["conv-fashion", "--epochs", "0"], ("epochs", "outside the valid range")),
    (["conv-fashion", "--batch-size", "-5"], ("batch_size", "outside the valid range")),
    (["conv-fashion", "--batch-size", "0"], ("batch_size", "outside the valid range")),
    (["conv-fashion", "--lr", "fast"], ("lr", "'fast' is not a valid float")),
    (["conv-fashion", "-o", "btea=2"], ("unknown option 'btea'", "Did you mean: beta")),
    (["conv-fashion", "-o", "beta"], ("key=value",)),
    (["conv-fashion", "--batch-size", "2000"], ("batch size 2000 is larger than the training set (1024 images)",)),
    (["conv-fashion", "--device", "tpu"], ("--device 'tpu'",)),
    (["conv-fashion", "--device", "cuda:99"], ("--device cuda",)),
])
def test_bad_training_options_leave_an_existing_run_alone(refused, old_run, args, words):
    refused("train", *args, *SYNTHETIC, "--out", str(old_run), "--overwrite", words=words, untouched=old_run, code=2)


def test_unavailable_cuda_is_refused(refused, old_run):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present here")
    refused("train", "conv-fashion", *SYNTHETIC, "--device", "cuda", "--out", str(old_run),
            words=("no CUDA device is available", "--device cpu"), untouched=old_run)


def test_existing_run_is_not_overwritten_without_overwrite(refused, old_run):
    refused("train", "conv-fashion", *SYNTHETIC, "--out", str(old_run),
            words=(str(old_run), "already holds files", "--overwrite", "--resume"), untouched=old_run)


class _MisspeltPartPlugin:
    @hookimpl
    def register_variants(self, register):
        from vaezoo.registry import get_registry

        reference = get_registry().variant("conv-fashion")
        register(VariantSpec("misspelt", "conv-fashion with a typo in its encoder",
                             {**reference.parts, "encoder": "conv23"}, reference.objective, reference.params))


def test_unknown_part_is_named_with_a_suggestion(refused, fresh_registry, old_run, tmp_path):
    fresh_registry.load_entry_points("none")
    fresh_registry.add_plugin(_MisspeltPartPlugin(), "misspelt")
    refused("train", "misspelt", *SYNTHETIC, "--out", str(old_run), "--overwrite",
            words=("unknown encoder 'conv23'", "Did you mean: conv"), untouched=old_run)
    new = tmp_path / "new"
    for _ in range(2):  # a start that failed its checks does not block the next try
        refused("train", "misspelt", *SYNTHETIC, "--out", str(new), words=("unknown encoder 'conv23'",))


def _idx_header(count: int) -> bytes:
    return bytes([0, 0, 8, 3]) + struct.pack(">3I", count, 28, 28)


@pytest.mark.parametrize("name, content, words", [
    ("train-images-idx3-ubyte", _idx_header(60000) + bytes(100), ("truncated or corrupt", "47040000 values")),
    ("train-images-idx3-ubyte", b"\x00\x00\x09\x03" + bytes(20), ("not an IDX file", "bad header")),
    ("train-images-idx3-ubyte.gz", gzip.compress(_idx_header(60000) + bytes(10))[:-5], ("cannot read",)),
    ("train-images-idx3-ubyte.gz", gzip.compress(_idx_header(10) + bytes(10 * 28 * 28)), ("expected 60000 images",)),
])
def test_truncated_or_corrupt_idx_files(refused, tmp_path, old_run, name, content, words):
    data = tmp_path / "data"
    data.mkdir()
    (data / name).write_bytes(content)
    refused("train", "conv-fashion", "--data-dir", str(data), "--device", "cpu", "--out", str(old_run), "--overwrite",
            words=(name.split(".")[0], *words), untouched=tmp_path)


@pytest.mark.parametrize("make", [lambda p: None, lambda p: p.write_text("not a folder")], ids=["missing", "a file"])
def test_missing_or_unreadable_data_directory(refused, tmp_path, old_run, make):
    data = tmp_path / "data"
    make(data)
    refused("train", "conv-fashion", "--data-dir", str(data), "--device", "cpu", "--out", str(old_run), "--overwrite",
            words=(f"data directory {data}", "does not exist or is not a directory"), untouched=tmp_path)


def test_resume_of_a_missing_folder(refused, tmp_path):
    refused("train", "--resume", str(tmp_path / "nope"), words=("no such run folder",), code=2)


def test_resume_refuses_settings_that_would_change_the_run(refused, run_copy):
    refused("train", "--resume", str(run_copy), "--beta", "4", "--seed", "1",
            words=("--beta, --seed cannot be given", "--epochs"), untouched=run_copy, code=2)


def test_resume_cannot_shrink_the_run(refused, run_copy):
    refused("train", "--resume", str(run_copy), "--epochs", "1",
            words=("--epochs 1", "already completed 2 epochs"), untouched=run_copy, code=2)


def test_a_run_in_use_by_another_process_is_refused(refused, run_copy):
    fcntl = pytest.importorskip("fcntl")
    fd = os.open(run_copy, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # what a training process holds; another open of the folder is another holder
        refused("train", "--resume", str(run_copy), "--device", "cpu",
                words=(str(run_copy), "in use by another vaezoo process"), untouched=run_copy, code=2)
    finally:
        os.close(fd)


def _edit_config(run: Path, **changes) -> None:
    config = json.loads((run / "config.json").read_text())
    for key, value in changes.items():
        if key in config["hparams"]:
            config["hparams"][key] = value
        else:
            config[key] = value
    (run / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("damage, words", [
    (lambda run: (run / "config.json").unlink(), ("is not a vaezoo run", "config.json is missing")),
    (lambda run: (run / "config.json").write_text("{variant: conv"), ("config.json is not valid JSON",)),
    (lambda run: _edit_config(run, beta=4.0), ("epoch-0002.safetensors belongs to a different run", "hparams.beta is 1.0 in the checkpoint but 4.0 in config.json")),
    (lambda run: _edit_config(run, seed=7), ("different run", "seed is 0 in the checkpoint but 7 in config.json")),
    (lambda run: _edit_config(run, lr="fast"), ("config.json", "option lr: expected a float")),
    (lambda run: _edit_config(run, variant="conv-fashon"), ("unknown variant 'conv-fashon'",)),
], ids=["missing", "not-json", "beta-edited", "seed-edited", "bad-value", "unknown-variant"])
def test_resume_with_missing_or_edited_config(refused, run_copy, damage, words):
    damage(run_copy)
    refused("train", "--resume", str(run_copy), "--device", "cpu", words=words, untouched=run_copy)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _foreign(path: Path) -> None:
    save_file({"weight": torch.zeros(3)}, str(path))


def _wrong_model(path: Path) -> None:
    tensors, meta = checkpoint.read(path)
    dropped = next(k for k in tensors if k.startswith("model/encoder"))
    del tensors[dropped]
    checkpoint.write(path, tensors, {k: v for k, v in meta.items() if k != checkpoint.FORMAT_KEY})


def _no_checkpoints(path: Path) -> None:
    for file in path.parent.glob("*.safetensors"):
        file.unlink()


@pytest.mark.parametrize("damage, words", [
    (_truncate, ("epoch-0002.safetensors is not a readable safetensors file",)),
    (lambda p: p.write_bytes(b"\x07" * 4000), ("epoch-0002.safetensors is not a readable safetensors file",)),
    (_foreign, ("epoch-0002.safetensors", "not one written by vaezoo")),
    (_wrong_model, ("epoch-0002.safetensors does not match the model", "missing: encoder")),
    (_no_checkpoints, ("records epochs [1, 2]", "checkpoints are missing")),
], ids=["truncated", "corrupt", "foreign", "wrong-model", "missing"])
def test_resume_from_a_bad_checkpoint(refused, run_copy, damage, words):
    damage(run_copy / "checkpoints" / "epoch-0002.safetensors")
    refused("train", "--resume", str(run_copy), "--device", "cpu", words=words, untouched=run_copy)


def test_debug_shows_the_traceback_for_that_invocation_only(monkeypatch, capsys):
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    with pytest.raises(UnknownNameError):
        main(["--debug", "train", "conv-fashon"])
    assert DEBUG_ENV not in os.environ
    with pytest.raises(SystemExit) as exc:  # the next call is back to one line
        main(["train", "conv-fashon"])
    assert exc.value.code == 2 and "Traceback" not in capsys.readouterr().err
    monkeypatch.setenv(DEBUG_ENV, "1")
    with pytest.raises(UnknownNameError):
        main(["train", "conv-fashon"])


def test_a_full_disk_keeps_the_earlier_file(tmp_path, monkeypatch):
    target = tmp_path / "metrics.jsonl"
    target.write_text("earlier")

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(StorageError, match=f"cannot write {target}: No space left on device"):
        atomic_write_bytes(target, b"newer")
    assert target.read_text() == "earlier" and list(tmp_path.iterdir()) == [target]
