"""Shared fixtures: in-process and subprocess CLI runners, an isolated registry, synthetic data."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from vaezoo import registry as registry_module
from vaezoo.cli import main

ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = Path("/usr/share/datasets/fashion-mnist")


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
