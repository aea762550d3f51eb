"""Resuming a damaged or crafted run: every stored entry is checked before anything is used or written.

Each case is one error line naming the file and the entry, a non-zero exit, no traceback, no crash,
and not one byte of the run folder changed.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from vaezoo.storage import checkpoint

from .conftest import SMALL_RUN, run_subprocess, snapshot

EPOCH_2 = "checkpoints/epoch-0002.safetensors"
STEP_3 = "checkpoints/step-00000003.safetensors"


@pytest.fixture
def run_copy(small_run, tmp_path) -> Path:
    return Path(shutil.copytree(small_run, tmp_path / "run"))


@pytest.fixture
def mid_copy(mid_epoch_run, tmp_path) -> Path:
    return Path(shutil.copytree(mid_epoch_run, tmp_path / "mid"))


def edit_checkpoint(path: Path, tensors: Callable[[dict], None] | None = None,
                    meta: Callable[[dict], None] | None = None) -> None:
    """Rewrite a checkpoint with its tensors and (JSON-decoded) metadata changed in place."""
    saved, raw = checkpoint.read(path)
    decoded = {k: json.loads(v) for k, v in raw.items() if k != checkpoint.FORMAT_KEY}
    if tensors:
        tensors(saved)
    if meta:
        meta(decoded)
    checkpoint.write(path, saved, decoded)


def set_tensor(name: str, value: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[dict], None]:
    def change(tensors: dict) -> None:
        tensors[name] = value(tensors[name])
    return change


def optimizer_group(key: str, value) -> Callable[[dict], None]:
    def change(meta: dict) -> None:
        meta["optimizers"]["model"]["param_groups"][0][key] = value
    return change


def edit_json(path: Path, change: Callable[[dict], None]) -> None:
    config = json.loads(path.read_text())
    change(config)
    path.write_text(json.dumps(config))


MOMENT = "optimizer.model/0/exp_avg"
SECOND = "optimizer.model/0/exp_avg_sq"

CHECKPOINT_CASES = {  # id: (tensor change, metadata change, words of the error)
    "moment-smaller": (set_tensor(MOMENT, lambda t: t.flatten()[:7].clone()), None, (MOMENT, "shape [7]")),
    "moment-reshaped": (set_tensor(MOMENT, lambda t: t.reshape(-1).clone()), None, (MOMENT, "needs")),
    "moment-float64": (set_tensor(MOMENT, lambda t: t.double()), None, (MOMENT, "torch.float64")),
    "moment-nan": (set_tensor(MOMENT, lambda t: t * float("nan")), None, (MOMENT, "NaN")),
    "second-negative": (set_tensor(SECOND, lambda t: -t - 1), None, (SECOND, "negative")),
    "step-too-many": (set_tensor("optimizer.model/0/step", lambda t: t + 1e9), None,
                      ("optimizer.model/0/step", "optimizer steps")),
    "state-missing": (lambda t: t.pop(SECOND), None, ("parameter 0", "exp_avg_sq")),
    "state-foreign": (lambda t: t.update({"optimizer.model/999/exp_avg": torch.zeros(2)}), None,
                      ("optimizer.model/999/exp_avg", "not part of")),
    "state-other-optimizer": (lambda t: t.update({"optimizer.evil/0/x": torch.zeros(2)}), None,
                              ("optimizer.evil/0/x", "no optimizer")),
    "rng-short": (set_tensor("rng/torch", lambda t: t[:100].clone()), None, ("rng/torch",)),
    "rng-garbage": (set_tensor("rng/torch", lambda t: torch.full_like(t, 7)), None, ("rng/torch",)),
    "data-order-short": (set_tensor("rng/data_order", lambda t: t[:10].clone()), None, ("rng/data_order",)),
    "model-nan": (set_tensor("model/encoder.mu.bias", lambda t: t * float("nan")), None,
                  ("model/encoder.mu.bias", "NaN")),
    "model-float64": (set_tensor("model/encoder.mu.bias", lambda t: t.double()), None, ("wrong dtype", "encoder")),
    "optimizers-list": (None, lambda m: m.update(optimizers=[1, 2]), ("'optimizers'",)),
    "optimizers-string": (None, lambda m: m.update(optimizers="model"), ("'optimizers'",)),
    "lr-string": (None, optimizer_group("lr", "0.0001"), ("lr", "'0.0001'")),
    "lr-changed": (None, optimizer_group("lr", 5.0), ("lr = 5.0", "0.0001")),
    "param-groups-not-list": (None, lambda m: m["optimizers"]["model"].update(param_groups="x"),
                              ("param_groups",)),
    "python-rng-gauss": (None, lambda m: m["rng"]["python"].__setitem__(2, "x"), ("'rng'",)),
    "python-rng-word": (None, lambda m: m["rng"]["python"][1].__setitem__(0, 2**40), ("'rng'",)),
    "numpy-rng-short": (None, lambda m: m["rng"]["numpy"]["state"].update(key=[1, 2]), ("'rng'",)),
    "rng-not-object": (None, lambda m: m.update(rng=[]), ("'rng'",)),
    "step-huge": (None, lambda m: m.update(step=2**70), ("step",)),
    "step-inconsistent": (None, lambda m: m.update(step=3), ("step 3 does not follow from epoch 2 and batch 0",)),
    "batch-in-epoch-file": (None, lambda m: m.update(batch=1, step=5), ("epoch-end file",)),
    "skipped-more-than-drawn": (None, lambda m: m.update(skipped=1), ("skipped",)),
    "counter-negative": (None, lambda m: m.update(epoch=-1), ("epoch",)),
}


@pytest.mark.parametrize("tensors, meta, words", CHECKPOINT_CASES.values(), ids=CHECKPOINT_CASES.keys())
def test_a_crafted_checkpoint_is_refused_before_anything_changes(refused, run_copy, tensors, meta, words):
    edit_checkpoint(run_copy / EPOCH_2, tensors, meta)
    refused("train", "--resume", str(run_copy), "--epochs", "3", "--device", "cpu",
            words=(str(run_copy / EPOCH_2), *words), untouched=run_copy)


MID_CASES = {
    "sums-wrong-shape": (set_tensor("sums/kl_per_dim", lambda t: torch.zeros(3)), None, ("running sums",)),
    "sums-matrix": (set_tensor("sums/loss", lambda t: torch.zeros(2, 2)), None, ("sums/loss",)),
    "sums-nan": (set_tensor("sums/recon", lambda t: t * float("nan")), None, ("sums/recon",)),
    "sums-missing": (lambda t: [t.pop(k) for k in list(t) if k.startswith("sums/")], None, ("sums of no terms",)),
    "batch-beyond-epoch": (None, lambda m: m.update(batch=2, step=4), ("batch 2 of an epoch of 2",)),
    "step-name-mismatch": (None, lambda m: m.update(batch=0), ("mid-epoch file holding step 3, batch 0",)),
}


@pytest.mark.parametrize("tensors, meta, words", MID_CASES.values(), ids=MID_CASES.keys())
def test_a_crafted_mid_epoch_checkpoint_is_refused(refused, mid_copy, tensors, meta, words):
    edit_checkpoint(mid_copy / STEP_3, tensors, meta)
    refused("train", "--resume", str(mid_copy), "--device", "cpu", words=(str(mid_copy / STEP_3), *words),
            untouched=mid_copy)


def test_moments_of_a_larger_size_are_refused_not_a_crash(run_copy):
    """In a fresh interpreter: on an unchecked resume, a fused Adam step over these reads and writes out of bounds."""
    edit_checkpoint(run_copy / EPOCH_2, set_tensor(MOMENT, lambda t: torch.zeros(t.numel() * 50)))
    edit_checkpoint(run_copy / EPOCH_2, set_tensor(SECOND, lambda t: torch.zeros(3)))
    before = snapshot(run_copy)
    result = run_subprocess("train", "--resume", str(run_copy), "--epochs", "3", "--device", "cpu")
    assert result.returncode == 1, (result.returncode, result.stderr[-2000:])
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert MOMENT in line and "Traceback" not in result.stderr
    assert snapshot(run_copy) == before


def test_a_numpy_state_past_its_words_is_refused_not_a_crash(run_copy):
    """numpy's set_state crashes the interpreter on this position; it is never reached."""
    edit_checkpoint(run_copy / EPOCH_2, meta=lambda m: m["rng"]["numpy"]["state"].update(pos=10**6))
    before = snapshot(run_copy)
    result = run_subprocess("train", "--resume", str(run_copy), "--epochs", "3", "--device", "cpu")
    assert result.returncode == 1, (result.returncode, result.stderr[-2000:])
    assert "'rng'" in result.stderr and "Traceback" not in result.stderr
    assert snapshot(run_copy) == before


CONFIG_CASES = {
    "max-steps-zero": (lambda c: c.update(max_steps=0), ("max_steps is 0",)),
    "max-steps-negative": (lambda c: c.update(max_steps=-4), ("max_steps is -4",)),
    "seed-beyond-64-bits": (lambda c: c.update(seed=2**70), ("seed", "64 bits")),
    "seed-a-string": (lambda c: c.update(seed="0"), ("seed",)),
    "dataset-empty": (lambda c: c.update(dataset=""), ("dataset is ''",)),
    "world-size-string": (lambda c: c.update(world_size="1"), ("world_size",)),
    "input-shape-zero": (lambda c: c.update(input_shape=[0, 32, 32]), ("input_shape",)),
    "hparams-list": (lambda c: c.update(hparams=[]), ("hparams",)),
}


@pytest.mark.parametrize("change, words", CONFIG_CASES.values(), ids=CONFIG_CASES.keys())
def test_a_damaged_config_is_refused_before_anything_changes(refused, run_copy, change, words):
    edit_json(run_copy / "config.json", change)
    refused("train", "--resume", str(run_copy), "--device", "cpu", words=(str(run_copy / "config.json"), *words),
            untouched=run_copy)


@pytest.mark.parametrize("line, words", [
    ("[1, 2]", ("line 3", "not an object")),
    ('{"epoch": "3", "step": 6, "train": {}, "test": {}}', ("line 3", "'epoch'")),
    ('{"epoch": 3, "step": 6, "train": 5, "test": {}}', ("line 3", "'train'")),
    ('{"epoch": 3, "step": 6, "train": {"loss": 1, "neg_elbo": "x"}, "test": {"neg_elbo": 1}}', ("line 3",)),
    ('{"epoch": 3, "step": 6, "train": {"neg_elbo": 1}, "test": {"neg_elbo": 1}}', ("line 3", "loss")),
])
def test_a_metrics_line_of_the_wrong_shape_is_refused(refused, run_copy, line, words):
    with (run_copy / "metrics.jsonl").open("a") as f:
        f.write(line + "\n")
    refused("train", "--resume", str(run_copy), "--epochs", "4", "--device", "cpu",
            words=(str(run_copy / "metrics.jsonl"), *words), untouched=run_copy)


def test_checkpoints_replaced_by_a_file_is_refused(refused, run_copy):
    shutil.rmtree(run_copy / "checkpoints")
    (run_copy / "checkpoints").write_text("not a folder")
    refused("train", "--resume", str(run_copy), "--device", "cpu",
            words=(str(run_copy / "checkpoints"), "not a folder"), untouched=run_copy)


def test_a_checked_mid_epoch_checkpoint_still_resumes(mid_copy, cli):
    """The checks refuse damage, not real checkpoints: an untouched mid-epoch one resumes."""
    result = cli("train", "--resume", str(mid_copy), "--device", "cpu")
    assert result.code == 0, result.err
    assert "step-00000003.safetensors: 1 epochs and 3 steps done" in result.err


@pytest.mark.parametrize("part", ["config.json", "metrics.jsonl", "vaezoo-manifest.json"])
def test_a_pipe_in_place_of_a_run_file_is_refused_not_waited_on(refused, run_copy, part):
    (run_copy / part).unlink()
    os.mkfifo(run_copy / part)
    refused("train", "--resume", str(run_copy), "--device", "cpu", words=(str(run_copy / part), "not a regular file"))
    refused("train", *SMALL_RUN, "--out", str(run_copy), "--overwrite", words=(str(run_copy / part),))


def test_json_nested_too_deeply_is_damage_not_a_crash(refused, run_copy):
    (run_copy / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    refused("train", "--resume", str(run_copy), "--device", "cpu", words=("config.json is not valid JSON", "nested"),
            untouched=run_copy)
    tensors, raw = checkpoint.read(run_copy / EPOCH_2)
    checkpoint.write(run_copy / EPOCH_2, tensors, {**{k: v for k, v in raw.items() if k != checkpoint.FORMAT_KEY},
                                                   "config": "[" * 100_000})
    for command in ("evaluate", "export"):  # a checkpoint read as the model at its epoch
        refused(command, str(run_copy / EPOCH_2), "-k" if command == "evaluate" else "--part",
                "1" if command == "evaluate" else "model", words=(str(run_copy / EPOCH_2), "run config"))
