"""Data-parallel training under torchrun: sharding, rank-0 writes, averaged metrics, one-step exactness, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vaezoo.data import shuffled_batches
from vaezoo.errors import DataError, DistributedError, UsageError
from vaezoo.training.distributed import World, launch, step_seed

from .conftest import Result

TORCHRUN_ENV = {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}
#: A few dozen steps: 1024 synthetic images, 2 x 32 per step -> 16 steps per epoch.
TRAIN = ("train", "conv-fashion", "--dataset", "synthetic", "--device", "cpu", "--batch-size", "32",
         "--epochs", "2", "-o", "latent_dim=4", "--seed", "3")


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _rank_of(pid: int) -> str | None:
    try:
        entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    return next((e[5:].decode() for e in entries if e.startswith(b"RANK=")), None)


@contextmanager
def torchrun(tmp_path: Path, *args: str, module: bool = True) -> Iterator[subprocess.Popen]:
    """`torchrun --standalone --nproc_per_node 2 -m vaezoo ARGS` (or a script: ARGS, `module` false).

    Its workers run in sessions of their own: any still alive are killed on the way out.
    """
    logs = tmp_path / f"torchrun-{time.monotonic_ns()}"
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("VAEZOO_DEBUG", None)
    with open(f"{logs}.out", "w") as out, open(f"{logs}.err", "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                                 *(("-m", "vaezoo") if module else ()), *args], stdout=out, stderr=err, text=True,
                                env=env)
        proc.logs = logs  # type: ignore[attr-defined]
        try:
            yield proc
        finally:
            for pid in _children(proc.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.kill()
            proc.wait()


def run_torchrun(tmp_path: Path, *args: str, timeout: float = 300) -> Result:
    with torchrun(tmp_path, *args) as proc:
        code = proc.wait(timeout)
    return Result(code, Path(f"{proc.logs}.out").read_text(), Path(f"{proc.logs}.err").read_text())


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def strip_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("images_per_s", "seconds")} for r in rows]


# ---- without torchrun -------------------------------------------------------------------------


def test_parts_of_every_batch_are_disjoint_and_make_up_the_single_process_batch():
    images = torch.arange(40, dtype=torch.uint8).reshape(40, 1, 1, 1)
    alone = list(shuffled_batches(images, 6, torch.Generator().manual_seed(1), skip=1))
    parts = [list(shuffled_batches(images, 6, torch.Generator().manual_seed(1), skip=1, part=(r, 3))) for r in range(3)]
    assert len(alone) == 40 // 6 - 1 and all(len(p) == len(alone) for p in parts)
    for step, batch in enumerate(alone):
        assert all(p[step].shape[0] == 2 for p in parts)
        assert torch.equal(torch.cat([p[step] for p in parts]), batch)


def test_launch_reads_the_torchrun_environment():
    cpu = torch.device("cpu")
    assert launch(cpu, env={}) == (World(), cpu)
    world, device = launch(cpu, 30, env={"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
    assert world == World(1, 2, "gloo", timeout_s=30) and device == cpu and world.part == (1, 2)
    assert not world.is_main and world.config(16) == {"world_size": 2, "global_batch_size": 32}


@pytest.mark.parametrize("env, message", [
    ({"RANK": "0"}, "RANK set but WORLD_SIZE, LOCAL_RANK not: start distributed training with torchrun"),
    ({**TORCHRUN_ENV, "RANK": "x"}, "RANK='x' is not a whole number"),
    ({**TORCHRUN_ENV, "RANK": "2"}, "RANK=2 is not below WORLD_SIZE=2"),
])
def test_a_broken_torchrun_environment_is_a_usage_error(env, message):
    with pytest.raises(UsageError, match=message):
        launch(torch.device("cpu"), env=env)


def test_each_process_and_step_draws_from_its_own_seed():
    seeds = {step_seed(7, rank, step) for rank in range(4) for step in range(50)}
    assert len(seeds) == 200 and step_seed(7, 1, 3) == step_seed(7, 1, 3) != step_seed(8, 1, 3)


@pytest.mark.parametrize("args, message", [
    (["--batch-size", "600", "--out", "r"], "batch size 600 x 2 processes is larger than the training set (1024 images)"),
    ([], "under torchrun name the run folder with --out: every process must agree on it"),
])
def test_bad_torchrun_options_are_one_line_errors(cli, tmp_path, monkeypatch, args, message):
    for name, value in TORCHRUN_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    result = cli(*TRAIN[:-6], *args)
    assert result.code == 2 and result.err.strip().count("\n") == 0 and message in result.err
    assert not list(tmp_path.iterdir())


# ---- torchrun, 2 processes, gloo on the CPU ---------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("args, words", [
    (["--batch-size", "600"], "batch size 600 x 2 processes"),  # every process meets it alike: rank 0 prints it
    (["--dataset", "fashion-mnist", "--data-dir", "/nonexistent/data"], "data directory /nonexistent/data"),  # per machine
])
def test_an_error_is_printed_once_not_once_per_process(tmp_path, args, words):
    result = run_torchrun(tmp_path, *TRAIN, *args, "--out", str(tmp_path / "run"))
    assert result.code != 0
    errors = [line for line in (result.out + result.err).splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and words in errors[0], result.err[-3000:]


@pytest.mark.parametrize("exception, rank, local_rank, printed", [
    (UsageError("x"), "1", "1", False), (UsageError("x"), "0", "0", True),
    (DataError("x"), "1", "1", False), (DataError("x"), "2", "0", True),  # the second machine's first process
    (DistributedError("x"), "1", "0", False), (KeyboardInterrupt(), "1", "0", False),
    (DataError("x"), "", "", True),  # not under torchrun
])
def test_who_prints_an_error_under_torchrun(monkeypatch, exception, rank, local_rank, printed):
    from vaezoo.cli import _reports

    monkeypatch.setenv("RANK", rank)
    monkeypatch.setenv("LOCAL_RANK", local_rank)
    assert _reports(exception) is printed


@pytest.mark.parametrize("rank, local_rank, waits", [("1", "1", True), ("0", "0", False), ("", "", False)])
def test_a_silent_process_waits_so_the_one_that_prints_is_not_stopped_first(monkeypatch, capsys, rank, local_rank, waits):
    """torchrun stops every process when the first exits: a silent one must not exit first (seen in CI)."""
    import vaezoo.cli

    slept = []
    monkeypatch.setattr(vaezoo.cli.time, "sleep", slept.append)
    monkeypatch.setenv("RANK", rank)
    monkeypatch.setenv("LOCAL_RANK", local_rank)
    with pytest.raises(SystemExit) as exit_:
        vaezoo.cli.main(["train", "no-such-variant"])
    assert exit_.value.code == 2 and slept == ([vaezoo.cli.SILENT_EXIT_GRACE_S] if waits else [])
    assert ("error:" in capsys.readouterr().err) is not waits


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory) -> tuple[Path, Result]:
    tmp = tmp_path_factory.mktemp("ddp")
    result = run_torchrun(tmp, *TRAIN, "--out", str(tmp / "run"))
    assert result.code == 0, result.err
    return tmp / "run", result


@pytest.mark.slow
def test_only_rank_0_writes_one_run_folder(two_process_run):
    run, result = two_process_run
    assert result.out.count("done:") == 1 and result.err.count("epoch 1/2") == 1
    assert "x 2 processes (gloo)" in result.err
    assert {"config.json", "metrics.jsonl", "metrics.csv", "model.safetensors", "reconstructions.png",
            "samples.png", "traversals.png", "loss.png"} <= {p.name for p in run.iterdir()}
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch-0001.safetensors",
                                                                       "epoch-0002.safetensors"]
    assert [(r["epoch"], r["step"]) for r in records(run)] == [(1, 16), (2, 32)]
    assert len((run / "metrics.csv").read_text().splitlines()) == 3 and not list(run.rglob("*.tmp"))
    config = json.loads((run / "config.json").read_text())
    assert (config["hparams"]["batch_size"], config["world_size"], config["global_batch_size"]) == (32, 2, 64)


@pytest.mark.slow
def test_one_step_equals_a_single_process_step_on_the_union(tmp_path, monkeypatch):
    """Same initial weights, the union of both shards, each rank's own noise: same gradient, weights and metrics."""
    from vaezoo_plugins.datasets.synthetic import load_synthetic

    from vaezoo.data import as_float
    from vaezoo.evaluation.measures import elbo_sums
    from vaezoo.model import build_model, build_objective
    from vaezoo.model.distributions import DiagonalGaussian
    from vaezoo.registry import get_registry
    from vaezoo.training import rng
    from vaezoo.training.loop import build_optimizers

    seed, per_rank, latent = 5, 8, 4
    run = tmp_path / "run"
    result = run_torchrun(tmp_path, "train", "conv-fashion", "--dataset", "synthetic", "--device", "cpu",
                          "--batch-size", str(per_rank), "--lr", "1e-3", "-o", f"latent_dim={latent}",
                          "--seed", str(seed), "--max-steps", "1", "--out", str(run))
    assert result.code == 0, result.err

    registry, data = get_registry(), load_synthetic()
    spec = registry.variant("conv-fashion")
    hp = spec.schema.resolve(texts=[f"batch_size={per_rank}", "lr=1e-3", f"latent_dim={latent}"])
    rng.seed_all(seed)  # as train() does before building
    model = build_model(spec, hp, data.input_shape, registry)
    objective = build_objective(model, registry, dataset_size=data.train.shape[0])
    optimizer = build_optimizers(model, objective, hp)["model"]
    order = torch.randperm(data.train.shape[0], generator=torch.Generator().manual_seed(seed))
    union = as_float(data.train[order[:2 * per_rank]])  # rank r trains on the r-th half
    noise = []
    for rank in range(2):  # the draw each rank's reparameterisation makes after its step reseed
        rng.seed_all(step_seed(seed, rank, 0))
        noise.append(torch.randn(per_rank, latent))
    eps = torch.cat(noise)
    with monkeypatch.context() as patch:
        patch.setattr(DiagonalGaussian, "rsample", lambda self, sample_shape=(): self.mu + self.std * eps[:len(self.mu)])
        rank0_alone = objective(model, union[:per_rank], 0)["loss"].item()
        terms = objective(model, union, 0)
    terms["loss"].backward()
    optimizer.step()

    weights = load_file(run / "model.safetensors")
    for name, value in model.state_dict().items():
        # Adam's first step is lr * g / (|g| + 1e-8): a gradient element near 1e-8 can move by a small fraction of lr
        torch.testing.assert_close(weights[name], value, rtol=1e-5, atol=1e-2 * float(hp["lr"]), msg=name)
    saved = load_file(run / "checkpoints" / "epoch-0001.safetensors")
    for index, parameter in enumerate(model.parameters()):  # Adam's first moment after one step: 0.1 x gradient
        torch.testing.assert_close(saved[f"optimizer.model/{index}/exp_avg"], optimizer.state[parameter]["exp_avg"],
                                   rtol=1e-4, atol=1e-9)
    record, = records(run)
    for key in ("loss", "recon", "kl"):
        assert record["train"][key] == pytest.approx(terms[key].item(), rel=1e-5)
    assert record["train"]["loss"] != pytest.approx(rank0_alone, rel=1e-3)  # not rank 0's shard alone
    test = elbo_sums(model, data.test)  # the analytic KL needs no noise: every test image, exactly once
    assert record["test"]["kl"] == pytest.approx(test["kl"].item() / len(data.test), rel=1e-5)
    assert record["test"]["kl_per_dim"] == pytest.approx((test["kl_per_dim"] / len(data.test)).tolist(), rel=1e-5)


@pytest.mark.slow
def test_ddp_averages_the_gradients_of_an_objective_with_its_own_discriminator(tmp_path):
    """Submodules called directly and two backward passes ("loss", then "aux_loss"), as in FactorVAE."""
    script = Path(__file__).with_name("distributed_aux_step.py")
    with torchrun(tmp_path, str(script), str(tmp_path), module=False) as proc:
        code = proc.wait(300)
    assert code == 0, Path(f"{proc.logs}.err").read_text()
    own = [load_file(tmp_path / f"own-{rank}.safetensors") for rank in range(2)]
    ddp = [load_file(tmp_path / f"ddp-{rank}.safetensors") for rank in range(2)]
    assert any(name.startswith("objective.discriminator.") for name in own[0])
    for name in own[0]:
        assert not torch.allclose(own[0][name], own[1][name]), name  # the ranks' batches differ
        expected = (own[0][name] + own[1][name]) / 2
        for rank in range(2):
            torch.testing.assert_close(ddp[rank][name], expected, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the rank-1 process through /proc")
def test_a_stuck_process_ends_the_job_which_then_resumes_exactly(tmp_path, two_process_run, cli):
    """Rank 1 stops answering: rank 0 gives up after --dist-timeout with a message; --resume finishes the run."""
    uninterrupted, _ = two_process_run
    run = tmp_path / "run"
    with torchrun(tmp_path, *TRAIN, "--checkpoint-every", "2", "--dist-timeout", "10", "--out", str(run)) as proc:
        deadline = time.monotonic() + 240
        while not list((run / "checkpoints").glob("step-*.safetensors")):
            assert proc.poll() is None and time.monotonic() < deadline, "no mid-epoch checkpoint appeared"
            time.sleep(0.02)
        rank1 = next(pid for pid in _children(proc.pid) if _rank_of(pid) == "1")
        os.kill(rank1, signal.SIGSTOP)  # hangs, as a process stuck in a driver or on a dead node would
        err = Path(f"{proc.logs}.err")
        while "error:" not in err.read_text() and proc.poll() is None:
            assert time.monotonic() < deadline, "rank 0 kept waiting for the stopped process"
            time.sleep(0.2)
        assert "error:" in err.read_text(), err.read_text()[-3000:]
        os.kill(rank1, signal.SIGKILL)
        code = proc.wait(60)
    message = next(line for line in err.read_text().splitlines() if "error:" in line)
    assert code != 0 and not (run / "model.safetensors").exists()
    assert "process 0 of 2 lost the others" in message and "did not answer for 10 s" in message

    single = cli("train", "--resume", str(run), "--device", "cpu")
    assert single.code == 1 and "world_size is 2 in config.json but 1 now" in single.err

    resumed = run_torchrun(tmp_path, "train", "--resume", str(run), "--device", "cpu")
    assert resumed.code == 0, resumed.err
    assert resumed.err.count("resuming") == 1
    expected, got = load_file(uninterrupted / "model.safetensors"), load_file(run / "model.safetensors")
    assert all(torch.equal(expected[name], got[name]) for name in expected)
    for want, have in zip(strip_timing(records(uninterrupted)), strip_timing(records(run)), strict=True):
        assert have["step"] == want["step"] and have["test"] == want["test"]
        for key, value in want["train"].items():
            assert have["train"][key] == pytest.approx(value, rel=1e-5), key


@pytest.mark.parametrize("message, lost", [
    ("[../gloo/transport/tcp/pair.cc:534] Connection closed by peer [127.0.0.1]:1234", True),
    ("Application timeout caused pair closure", True),
    ("NCCL communicator was aborted", True),
    ("mat1 and mat2 shapes cannot be multiplied (64x512 and 256x10)", False),
])
def test_lost_peer_errors_are_told_apart_from_bugs(message, lost):
    from vaezoo.training.distributed import _lost_peer

    assert _lost_peer(RuntimeError(message)) is lost
