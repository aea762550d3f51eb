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


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """A two-step conv-fashion run on the synthetic images. Read-only: copy it before writing into it."""
    import vaezoo

    return vaezoo.train("conv-fashion", hparams={"batch_size": 32}, dataset="synthetic", max_steps=2,
                        device="cpu", out=tmp_path_factory.mktemp("runs") / "run")
