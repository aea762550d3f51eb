"""Killed, interrupted or cut-short runs resume to exactly the result of an uninterrupted run (CPU)."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from vaezoo.training import rng
from vaezoo.training.stopping import StopRequests

from .conftest import SMALL_RUN

TIMING = ("images_per_s", "seconds")  # wall-clock fields: the only ones allowed to differ


def results(run: Path) -> tuple[dict[str, torch.Tensor], list[dict]]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return load_file(str(run / "model.safetensors")), [{k: v for k, v in r.items() if k not in TIMING} for r in records]


def assert_same_results(run: Path, reference: Path) -> None:
    weights, records = results(run)
    ref_weights, ref_records = results(reference)
    assert records == ref_records
    assert weights.keys() == ref_weights.keys()
    assert all(torch.equal(weights[k], ref_weights[k]) for k in weights)


def test_rng_states_survive_json():
    def draws():
        return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]

    rng.seed_all(5)
    tensors, meta = rng.capture(torch.device("cpu"))
    meta = json.loads(json.dumps(meta))
    first = draws()
    rng.seed_all(6)
    rng.restore(tensors, meta, torch.device("cpu"), Path("checkpoint"))
    assert draws() == first


def test_stop_requests_catch_sigterm_once_then_give_way():
    before = signal.getsignal(signal.SIGTERM)
    with StopRequests() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested and stop.name == "SIGTERM"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is before


def killed_after_last_metrics(finished: Path, copy: Path) -> Path:
    """A copy of a finished two-epoch run in the state a SIGKILL leaves after epoch 2's metrics but
    mid-way through its checkpoint."""
    run = Path(shutil.copytree(finished, copy))
    (run / "checkpoints" / "epoch-0002.safetensors").rename(run / "checkpoints" / ".epoch-0002.safetensors.0123456789ab.vaezoo-tmp")
    (run / "model.safetensors").unlink()
    return run


def test_kill_between_metrics_and_checkpoint_redoes_the_epoch_once(small_run, tmp_path, cli):
    run = killed_after_last_metrics(small_run, tmp_path / "run")
    result = cli("train", "--resume", str(run), "--device", "cpu")
    assert result.code == 0, result.err
    assert "epoch-0001.safetensors: 1 epochs and 2 steps done" in result.err
    assert_same_results(run, small_run)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch-0001.safetensors", "epoch-0002.safetensors"]


def test_ctrl_c_mid_epoch_then_resume_matches_an_uninterrupted_run(mid_epoch_run, small_run, tmp_path, cli):
    """In this process: stopped by a real SIGINT in the third step (epoch 2, batch 1), resumed from the step-3
    checkpoint, the run ends with the uninterrupted run's weights and metrics, bit for bit."""
    run = Path(shutil.copytree(mid_epoch_run, tmp_path / "run"))
    assert [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1]
    result = cli("train", "--resume", str(run), "--device", "cpu")
    assert result.code == 0, result.err
    assert "step-00000003.safetensors: 1 epochs and 3 steps done" in result.err
    assert_same_results(run, small_run)


def test_resume_extends_a_finished_run(small_run, tmp_path, cli):
    run = Path(shutil.copytree(small_run, tmp_path / "run"))
    result = cli("train", "--resume", str(run), "--epochs", "3", "--device", "cpu")
    assert result.code == 0, result.err
    _, records = results(run)
    assert records[:2] == results(small_run)[1] and [r["epoch"] for r in records] == [1, 2, 3]
    assert json.loads((run / "config.json").read_text())["hparams"]["epochs"] == 3


def test_overwrite_replaces_only_the_old_runs_files(small_run, tmp_path, cli):
    run = Path(shutil.copytree(small_run, tmp_path / "run"))
    (run / "notes.txt").write_text("mine")
    result = cli("train", *SMALL_RUN, "--epochs", "1", "--max-steps", "1", "--out", str(run), "--overwrite")
    assert result.code == 0, result.err
    assert [r["step"] for r in results(run)[1]] == [1]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch-0001.safetensors"]
    assert (run / "notes.txt").read_text() == "mine"


def _start(*args: str) -> subprocess.Popen:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.Popen([sys.executable, "-m", "vaezoo", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _when(path: Path, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, f"training ended before {path.name} appeared: {process.communicate()}"
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)


def killed_at_first_checkpoint_then_resumed(cli, run: Path, *train_args: str) -> None:
    """Train into `run` with a checkpoint every epoch, SIGKILL it once the first is written, resume it to the end."""
    process = _start("train", *train_args, "--out", str(run), "--checkpoint-every", "1")
    _when(run / "checkpoints" / "epoch-0001.safetensors", process)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    result = cli("train", "--resume", str(run), "--device", "cpu")
    assert result.code == 0, result.err


@pytest.mark.slow
def test_sigkill_and_ctrl_c_then_resume_match_an_uninterrupted_run(small_run, tmp_path, cli):
    """2 epochs of 2 steps: SIGKILL in epoch 2, resume, Ctrl-C at once, resume: same weights and metrics."""
    run = tmp_path / "run"
    checkpoints = run / "checkpoints"

    first = _start("train", *SMALL_RUN, "--out", str(run), "--checkpoint-every", "1")
    _when(checkpoints / "epoch-0001.safetensors", first)
    first.send_signal(signal.SIGKILL)
    first.communicate()
    assert first.returncode == -signal.SIGKILL

    second = _start("train", "--resume", str(run), "--checkpoint-every", "1", "--device", "cpu")
    assert second.stderr.readline().startswith("training conv-fashion")
    assert second.stderr.readline().startswith(f"resuming {run} from {checkpoints}")
    second.send_signal(signal.SIGINT)
    _, err = second.communicate()
    assert second.returncode == 130, err
    [line] = [line for line in err.splitlines() if line.startswith("error:")]
    assert "interrupted by Ctrl-C at step" in line and f"vaezoo train --resume {run}" in line
    assert "Traceback" not in err
    [mid_epoch] = checkpoints.glob("step-*.safetensors")  # written on Ctrl-C, after one more step
    assert str(mid_epoch) in line

    result = cli("train", "--resume", str(run), "--device", "cpu")
    assert result.code == 0, result.err
    assert_same_results(run, small_run)
    assert sorted(p.name for p in checkpoints.iterdir()) == [f"epoch-000{e}.safetensors" for e in (1, 2)]

