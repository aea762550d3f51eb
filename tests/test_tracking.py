"""Experiment trackers: what each logs, read back with the tracker's own reader; results unchanged;
resume continues the same tracked run; logging is off the training thread; one-line errors."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vaezoo.cli import main
from vaezoo.training.tracker import FINISHED, Tracker

from .test_resume import assert_same_results

HAS_MLFLOW = importlib.util.find_spec("mlflow") is not None
HAS_WANDB = importlib.util.find_spec("wandb") is not None
# 1,024 synthetic images at batch 64: 16 steps per epoch; 40 steps end in epoch 3 (epochs end at 16, 32, 40)
TRACKED = ("conv-fashion", "--dataset", "synthetic", "--batch-size", "64", "--epochs", "3", "--max-steps", "40",
           "-o", "latent_dim=4", "--device", "cpu")
EPOCH_STEPS = [16, 32, 40]
STEP_LOGS = [20, 40]  # every PROGRESS_EVERY = 20 steps


def trackers() -> list[str]:
    names = ["--track", "tensorboard"]
    if HAS_MLFLOW:
        names += ["--track", "mlflow"]
    if HAS_WANDB:
        names += ["--track", "wandb"]
    return names


@pytest.fixture(scope="module")
def tracker_env(tmp_path_factory):
    """MLflow on a local file store and W&B offline, both in a temporary folder: no network."""
    root = tmp_path_factory.mktemp("trackers")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", (root / "mlruns").as_uri())
        patch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 wants a database unless told otherwise
        patch.setenv("WANDB_MODE", "offline")
        patch.setenv("WANDB_SILENT", "true")
        patch.delenv("WANDB_DIR", raising=False)
        patch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
        yield root


def train(*args: str) -> None:
    try:
        main(["train", *args])
    except SystemExit as exc:
        assert not exc.code, f"training failed ({exc.code})"


@pytest.fixture(scope="module")
def tracked_run(tracker_env) -> Path:
    path = tracker_env / "tracked"
    train(*TRACKED, *trackers(), "--out", str(path))
    return path


@pytest.fixture(scope="module")
def untracked_run(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("untracked") / "run"
    train(*TRACKED, "--out", str(path))
    return path


def epoch_records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def tensorboard_events(run: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    events.Reload()
    return events


def test_trackers_do_not_change_the_result(tracked_run, untracked_run):
    assert_same_results(tracked_run, untracked_run)
    config = json.loads((tracked_run / "config.json").read_text())
    assert config["trackers"] == trackers()[1::2]


def test_tensorboard_event_files_hold_metrics_pictures_and_config(tracked_run):
    events = tensorboard_events(tracked_run)
    records = epoch_records(tracked_run)
    scalars = events.Tags()["scalars"]
    assert [e.step for e in events.Scalars("train/loss")] == EPOCH_STEPS
    assert [e.value for e in events.Scalars("test/neg_elbo")] == pytest.approx(
        [r["test"]["neg_elbo"] for r in records], rel=1e-6)  # float32 in the event file
    assert [e.value for e in events.Scalars("train/kl_per_dim/3")] == pytest.approx(
        [r["train"]["kl_per_dim"][3] for r in records], rel=1e-6)
    assert [e.step for e in events.Scalars("step/loss")] == STEP_LOGS
    assert {"step/recon", "step/kl", "epoch", "images_per_s"} <= set(scalars)
    images = events.Tags()["images"]
    assert [e.step for e in events.Images("epoch/reconstructions")] == EPOCH_STEPS
    assert {"epoch/samples", "final/samples", "final/traversals", "final/loss"} <= set(images)
    samples = events.Images("epoch/samples")
    assert samples[0].width == samples[0].height > 32  # an 8 x 8 grid
    config_text = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert '"variant": "conv-fashion"' in config_text
    assert json.loads((tracked_run / "tracking.json").read_text())["tensorboard"] == {"log_dir": "tensorboard"}


@pytest.mark.skipif(not HAS_MLFLOW, reason="mlflow is not installed (pip install 'vaezoo[mlflow]')")
def test_mlflow_run_holds_params_metrics_pictures_and_model(tracked_run, tracker_env):
    from mlflow.tracking import MlflowClient

    stored = json.loads((tracked_run / "tracking.json").read_text())["mlflow"]
    client = MlflowClient(tracking_uri=(tracker_env / "mlruns").as_uri())
    run = client.get_run(stored["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["hparams.latent_dim"] == "4" and run.data.params["variant"] == "conv-fashion"
    records = epoch_records(tracked_run)
    history = client.get_metric_history(stored["run_id"], "test/neg_elbo")
    assert [m.step for m in history] == EPOCH_STEPS
    assert [m.value for m in history] == pytest.approx([r["test"]["neg_elbo"] for r in records], rel=1e-12)
    assert [m.step for m in client.get_metric_history(stored["run_id"], "step/loss")] == STEP_LOGS
    artifacts = {a.path for folder in ("", "model", "pictures") for a in client.list_artifacts(stored["run_id"], folder)}
    assert {"config.json", "model/model.safetensors", "pictures/samples.png", "images"} <= artifacts
    logged = Path(client.download_artifacts(stored["run_id"], "model/model.safetensors", str(tracker_env / "dl")))
    weights, reference = load_file(str(logged)), load_file(str(tracked_run / "model.safetensors"))
    assert weights.keys() == reference.keys() and all(torch.equal(weights[k], reference[k]) for k in weights)
    epoch_images = [a.path for a in client.list_artifacts(stored["run_id"], "images")]
    assert sum("reconstructions+step+16+" in p and p.endswith(".png") for p in epoch_images) == 1


def wandb_records(folder: Path) -> list[dict]:
    """The records of a W&B offline run folder, read by W&B's own transaction-log reader."""
    result = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(folder)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


@pytest.mark.skipif(not HAS_WANDB, reason="wandb is not installed (pip install 'vaezoo[wandb]')")
def test_wandb_offline_run_holds_config_metrics_pictures_and_model(tracked_run):
    stored = json.loads((tracked_run / "tracking.json").read_text())["wandb"]
    folders = sorted((tracked_run / "wandb").glob(f"offline-run-*-{stored['id']}"))
    assert len(folders) == 1
    records = wandb_records(folders[0])
    run = next(r["run"] for r in records if r["type"] == "run")
    assert run["run_id"] == stored["id"] and run["project"] == "vaezoo"
    assert run["config"]["update"]["hparams"]["latent_dim"] == 4
    history = [r["history"]["item"] for r in records if r["type"] == "history"]
    by_step = {item["_step"]: item for item in history}
    assert [step for step in by_step if "train/loss" in by_step[step]] == EPOCH_STEPS
    assert [by_step[s]["test/neg_elbo"] for s in EPOCH_STEPS] == pytest.approx(
        [r["test"]["neg_elbo"] for r in epoch_records(tracked_run)], rel=1e-12)
    assert by_step[20]["step/loss"] > 0 and by_step[16]["epoch/samples._type"] == "image-file"
    artifact = next(r["artifact"] for r in records if r["type"] == "artifact")
    assert artifact["type"] == "model"
    assert next(r["exit"] for r in records if r["type"] == "exit").get("exit_code", 0) == 0


def test_resume_continues_the_same_tracked_runs(tracked_run, tracker_env):
    """Killed between epoch 3's metrics and its checkpoint, then resumed: the same tracked runs go on,
    TensorBoard shows the redone steps once, and the result equals the uninterrupted run's."""
    run = Path(shutil.copytree(tracked_run, tracker_env / "resumed"))
    stored = json.loads((run / "tracking.json").read_text())
    (run / "checkpoints" / "epoch-0003.safetensors").unlink()
    (run / "model.safetensors").unlink()
    train("--resume", str(run), "--device", "cpu")
    assert_same_results(run, tracked_run)
    assert json.loads((run / "tracking.json").read_text()) == stored
    events = tensorboard_events(run)
    assert [e.step for e in events.Scalars("train/loss")] == EPOCH_STEPS  # step 40 purged, then logged again
    assert [e.step for e in events.Scalars("step/loss")] == STEP_LOGS
    if HAS_MLFLOW:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=(tracker_env / "mlruns").as_uri())
        assert client.get_run(stored["mlflow"]["run_id"]).info.status == "FINISHED"
        steps = [m.step for m in client.get_metric_history(stored["mlflow"]["run_id"], "train/loss")]
        assert steps.count(40) >= 2 and set(steps) == set(EPOCH_STEPS)  # the copied store's run, continued
    if HAS_WANDB:
        folders = sorted((run / "wandb").glob(f"offline-run-*-{stored['wandb']['id']}*"))
        assert len(folders) == 2
        resumed = next(r["run"] for r in wandb_records(folders[-1]) if r["type"] == "run")
        assert resumed["run_id"] == stored["wandb"]["id"] and resumed.get("resume") is True


class Recorder(Tracker):
    """Records each call and the thread it came on; log_metrics waits for `release` when given one."""

    def __init__(self, release: threading.Event | None = None, fail: bool = False):
        self.calls: list[tuple[str, str]] = []
        self.release, self.fail = release, fail

    def start(self, run):
        self.calls.append(("start", threading.current_thread().name))
        return {"id": "r1"}

    def log_metrics(self, metrics, step):
        self.calls.append(("log_metrics", threading.current_thread().name))
        if self.fail:
            raise RuntimeError("service down")
        if self.release is not None:
            assert self.release.wait(60)

    def log_images(self, images, step):
        self.calls.append(("log_images", threading.current_thread().name))

    def log_file(self, path, kind):
        self.calls.append(("log_file", threading.current_thread().name))

    def finish(self, status):
        self.calls.append((f"finish {status}", threading.current_thread().name))


def train_in_process(tmp_path: Path, trackers: dict[str, Tracker]) -> Path:
    from rich.console import Console
    from vaezoo_plugins.datasets.synthetic import load_synthetic

    from vaezoo.registry import get_registry
    from vaezoo.storage.runs import RunDir
    from vaezoo.training.loop import TrainSetup
    from vaezoo.training.loop import train as train_loop

    registry = get_registry()
    spec = registry.variant("conv-fashion")
    setup = TrainSetup(spec, spec.schema.resolve({"batch_size": 256, "epochs": 2, "latent_dim": 2}), load_synthetic(),
                       torch.device("cpu"), trackers=tuple(trackers))
    run = RunDir.create(tmp_path / "run")
    train_loop(setup, run, registry, Console(stderr=True), trackers=trackers)
    return run.path


def test_a_stuck_tracker_does_not_hold_training_up(tmp_path):
    release = threading.Event()
    recorder = Recorder(release)
    run = tmp_path / "run"
    # The tracker blocks on its first record until the model file exists: training must get there alone.
    watcher = threading.Thread(target=lambda: _set_when(release, run / "model.safetensors"), daemon=True)
    watcher.start()
    train_in_process(tmp_path, {"recorder": recorder})
    assert release.is_set()
    names = [name for name, _ in recorder.calls]
    assert names[0] == "start" and names[-1] == f"finish {FINISHED}"
    assert names.count("log_metrics") == 2 and names.count("log_images") == 2 and names.count("log_file") == 5
    main_thread = threading.main_thread().name
    assert recorder.calls[0][1] == main_thread
    assert {thread for _, thread in recorder.calls[1:]} == {"vaezoo-tracking"}


def _set_when(event: threading.Event, path: Path) -> None:
    import time

    while not path.exists():
        time.sleep(0.01)
    event.set()


def test_a_failing_tracker_is_dropped_and_training_goes_on(tmp_path, capsys):
    broken, healthy = Recorder(fail=True), Recorder()
    run = train_in_process(tmp_path, {"broken": broken, "healthy": healthy})
    assert (run / "model.safetensors").exists()
    assert [name for name, _ in broken.calls] == ["start", "log_metrics"]
    assert [name for name, _ in healthy.calls][-1] == f"finish {FINISHED}"
    err = capsys.readouterr().err
    assert "warning: tracker 'broken' failed in log_metrics and stops logging: RuntimeError: service down" in err
    assert json.loads((run / "tracking.json").read_text()) == {"broken": {"id": "r1"}, "healthy": {"id": "r1"}}


def test_unknown_tracker_is_one_line_with_a_suggestion(refused, tmp_path):
    refused("train", *TRACKED, "--track", "tensorbord", "--out", str(tmp_path / "run"),
            words=("unknown tracker 'tensorbord'", "Did you mean: tensorboard?"), code=2)
    assert not (tmp_path / "run").exists()


def test_missing_extra_is_one_line_naming_it(refused, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    refused("train", *TRACKED, "--track", "tensorboard", "--track", "wandb", "--out", str(tmp_path / "run"),
            words=("--track wandb needs the wandb package: pip install 'vaezoo[wandb]'",), code=2)
    assert not (tmp_path / "run").exists()


def test_damaged_tracking_file_refuses_resume_unchanged(tracked_run, tmp_path, refused):
    run = Path(shutil.copytree(tracked_run, tmp_path / "run"))
    (run / "checkpoints" / "epoch-0003.safetensors").unlink()
    (run / "tracking.json").write_text('{"tensorboard": ["not", "strings"]}')
    refused("train", "--resume", str(run), "--device", "cpu", words=("tracking.json", "was it edited"), untouched=run)


@pytest.mark.slow
def test_under_torchrun_only_rank_0_tracks(tmp_path, monkeypatch):
    from .test_distributed import TRAIN, run_torchrun

    monkeypatch.setenv("WANDB_MODE", "offline")
    result = run_torchrun(tmp_path, *TRAIN, "--track", "tensorboard", *(("--track", "wandb") if HAS_WANDB else ()),
                          "--out", str(tmp_path / "run"))
    assert result.code == 0, result.err
    assert len(list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))) == 1
    assert [e.step for e in tensorboard_events(tmp_path / "run").Scalars("train/loss")] == [16, 32]
    if HAS_WANDB:
        assert len(list((tmp_path / "run" / "wandb").glob("offline-run-*"))) == 1


def test_epoch_pictures_leave_the_random_state_alone_and_skip_what_cannot_be_drawn(build_variant, synthetic):
    from vaezoo.errors import NotApplicable
    from vaezoo.evaluation.pictures import epoch_pictures

    model, _ = build_variant("conv-fashion", latent_dim=2)
    model.eval()
    before = torch.get_rng_state()
    pictures = epoch_pictures(model, synthetic.test[:32])
    assert torch.equal(torch.get_rng_state(), before)
    assert pictures["samples"].dtype.name == "uint8" and pictures["samples"].shape[2] == 3
    assert (pictures["samples"] == epoch_pictures(model, synthetic.test[:32])["samples"]).all()  # same noise

    def no_prior_samples(n):
        raise NotApplicable("this structure cannot draw prior samples")

    model.sample = no_prior_samples
    assert list(epoch_pictures(model, synthetic.test[:32])) == ["reconstructions"]


def test_a_tracker_that_cannot_start_is_one_line_and_closes_the_others(tmp_path):
    from vaezoo.errors import VaezooError

    class Unreachable(Recorder):
        def start(self, run):
            raise ConnectionError("service unreachable")

    first = Recorder()
    with pytest.raises(VaezooError, match="tracker 'second' could not start: ConnectionError: service unreachable"):
        train_in_process(tmp_path, {"first": first, "second": Unreachable()})
    assert [name for name, _ in first.calls] == ["start", "finish failed"]
