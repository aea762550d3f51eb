"""Shared fixtures: in-process and subprocess CLI runners, an isolated registry, synthetic data."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from vaezoo import registry as registry_module
from vaezoo.cli import main

ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist (`make data`)
REAL_DATA_FILES = ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz")


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys):
    """Run the CLI in this process: cli("list", "--json") -> Result(code, out, err)."""

    def run(*args: str) -> Result:
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def run_subprocess(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
                   timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m vaezoo ARGS` in a fresh interpreter (for import-time and entry-point checks)."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "vaezoo", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=timeout)


def require_real_data(folder: Path = REAL_DATA, ci: bool | None = None) -> Path:
    """`folder` if it holds FashionMNIST; else skip the test, except in CI (CI=true), where a missing dataset
    fails the run: a suite whose real-data tests silently skipped has not tested them."""
    missing = [name for name in REAL_DATA_FILES if not (folder / name).is_file()]
    if not missing:
        return folder
    ci = os.environ.get("CI", "").lower() == "true" if ci is None else ci
    message = f"FashionMNIST is not in {folder} (missing {', '.join(missing)}; `make data` installs it)"
    if ci:
        pytest.fail(f"{message}; CI must run the real-data tests", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def real_data() -> Path:
    """The real FashionMNIST folder, for every test that reads it (one condition for the whole suite)."""
    return require_real_data()


@pytest.fixture
def fresh_registry():
    """A new, empty registry installed as the process-wide one for the test, restored after."""
    saved = registry_module._default
    reg = registry_module.Registry()
    registry_module.reset_registry(reg)
    yield reg
    registry_module.reset_registry(saved)


@pytest.fixture(scope="session")
def synthetic():
    from vaezoo_plugins.datasets.synthetic import load_synthetic

    return load_synthetic()


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes: compare two to show that nothing changed."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


@pytest.fixture
def refused(cli):
    """Run the CLI expecting a refusal: non-zero exit, one error line naming `words`, no traceback,
    and (given `untouched`) no file under that folder changed."""

    def run(*args: str, words: tuple[str, ...], untouched: Path | None = None, code: int | None = None) -> Result:
        before = snapshot(untouched) if untouched is not None else None
        result = cli(*args)
        assert result.code != 0 and (code is None or result.code == code), (result.code, result.err)
        assert "Traceback" not in result.err + result.out
        errors = [line for line in result.err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, result.err
        for word in words:
            assert word in errors[0], (word, errors[0])
        if untouched is not None:
            assert snapshot(untouched) == before
        return result

    return run


SMALL_RUN = ("conv-fashion", "--dataset", "synthetic", "--batch-size", "512", "--epochs", "2", "--device", "cpu")


def train_into(path: Path, *args: str) -> Path:
    """`vaezoo train ARGS --out PATH` in this process; the finished run folder."""
    try:
        main(["train", *args, "--out", str(path)])
    except SystemExit as exc:
        assert not exc.code, f"training {args[0]} failed ({exc.code})"
    return path


@pytest.fixture(scope="session")
def small_run(tmp_path_factory) -> Path:
    """A finished two-epoch synthetic run (2 steps per epoch); copy it before changing it."""
    return train_into(tmp_path_factory.mktemp("small") / "run", *SMALL_RUN)


@contextmanager
def ctrl_c_during(step: int) -> Iterator[None]:
    """A real SIGINT to this process while training runs its step number `step` (counted from 0)."""
    from vaezoo.training.distributed import World

    original = World.seed_step

    def seed_step(self, seed, current):
        if current == step:
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, seed, current)

    World.seed_step = seed_step
    try:
        yield
    finally:
        World.seed_step = original


@pytest.fixture(scope="session")
def mid_epoch_run(tmp_path_factory) -> Path:
    """SMALL_RUN stopped by Ctrl-C in its third step (epoch 2, batch 1): epoch-0001 and step-00000003
    checkpoints, one metrics record. Resumed, it must reach small_run's result. Copy it before changing it."""
    path = tmp_path_factory.mktemp("mid") / "run"
    with ctrl_c_during(2):
        try:
            main(["train", *SMALL_RUN, "--out", str(path)])
        except SystemExit as exc:
            assert exc.code == 130, f"the interrupted run ended with {exc.code}"
    assert sorted(p.name for p in (path / "checkpoints").iterdir()) == ["epoch-0001.safetensors",
                                                                         "step-00000003.safetensors"]
    return path


def independent_elbo(model, images, samples: int = 32, seed: int = 0) -> tuple[float, float, float]:
    """The per-image ELBO terms of `images` (uint8) computed apart from vaezoo's measures, for a model with a
    Gaussian posterior, a standard normal prior and Bernoulli pixels: the closed-form KL(q || N(0, I)) from
    the posterior's mean and standard deviation, and -E_q[log p(x|z)] by Monte Carlo with the Bernoulli
    log-likelihood written out in float64.

    Returns (reconstruction, kl, se): se is the standard error of a measure that draws one z per image.
    """
    import torch

    x = images.double() / 255
    with torch.no_grad():
        q = model.encoder(x.float())
        mu, std = q.mean.double(), (q.stddev if hasattr(q, "stddev") else q.std).double()
        kl = 0.5 * (std**2 + mu**2 - 1 - 2 * std.log()).sum(-1)
        eps = torch.randn((samples, *mu.shape), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        z = (mu + std * eps).reshape(-1, mu.shape[-1]).float()
        p = model.decode_representation(z).double().reshape(samples, *x.shape).clamp(1e-12, 1 - 1e-12)
    recon = -(x * p.log() + (1 - x) * (1 - p).log()).flatten(2).sum(-1)  # [samples, images]
    within = float(recon.var(0).mean())  # the noise of one draw per image, averaged over images
    return float(recon.mean()), float(kl.mean()), (within / x.shape[0] * (1 + 1 / samples)) ** 0.5


@pytest.fixture
def build_variant():
    """build_variant("iwae", k=3) -> (model, objective) on 1x32x32 inputs, from the real registry."""
    from vaezoo.testing import build_variant

    def build(name: str, dataset_size: int = 1024, **overrides):
        return build_variant(name, dataset_size=dataset_size, seed=None, **overrides)

    return build


@pytest.fixture
def one_thread():
    """Many tiny steps: extra threads only add synchronisation (2 s becomes 70 s on a busy 2-core box)."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)
