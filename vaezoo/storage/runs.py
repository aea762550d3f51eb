"""The run folder: config.json, metrics.jsonl / metrics.csv, checkpoints/, model.safetensors, pictures
(and parent.safetensors for a second-stage model, sampler-NAME.safetensors for fitted samplers).

Every file is written to a temporary name and renamed into place, so a crash never leaves a
half-written file under a real name.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vaezoo.errors import StorageError, UsageError, WeightsError

CONFIG = "config.json"
METRICS_JSONL = "metrics.jsonl"
METRICS_CSV = "metrics.csv"
MODEL = "model.safetensors"
PARENT = "parent.safetensors"  # a second stage's copy of the first stage it trains on
EVAL = "eval.json"  # `vaezoo evaluate` results beside a model
CHECKPOINTS = "checkpoints"
TRACKING = "tracking.json"  # which tracked run (MLflow, W&B...) this run continues on resume
TENSORBOARD = "tensorboard"  # the TensorBoard tracker's event files
SAMPLER_FILE = "sampler-{}.safetensors"  # a post-hoc sampler fitted to the run's model (vaezoo fit-sampler)
TEMPORARY_GLOB = ".*.tmp"  # what atomic_write_bytes leaves behind when killed mid-write


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a hidden temporary file, fsync, then rename: readers see the old file or the new one."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StorageError(f"cannot write {path}: {exc.strerror or exc}; the earlier files are unchanged") from None


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def refuse_overwrite(path: Path, overwrite: bool) -> None:
    """Never replace an earlier result unless asked to."""
    if Path(path).exists() and not overwrite:
        raise UsageError(f"{path} already exists; choose another --out or pass --overwrite")


def flatten_metrics(record: Mapping[str, Any], sep: str = "_") -> dict[str, Any]:
    """{"train": {"loss": 1}, "epoch": 1} -> {"train_loss": 1, "epoch": 1}; lists become _0, _1..."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, Mapping):
            for sub, v in flatten_metrics(value, sep).items():
                flat[f"{key}{sep}{sub}"] = v
        elif isinstance(value, list):
            for i, v in enumerate(value):
                flat[f"{key}{sep}{i}"] = v
        else:
            flat[key] = value
    return flat


class RunDir:
    """One training run's folder."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @classmethod
    def create(cls, path: Path, *, overwrite: bool = False) -> RunDir:
        """A fresh run folder; files there are an error unless `overwrite` (empty folders left by a start that
        failed its checks are not)."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise UsageError(f"--out {path} exists and is not a folder")
        if path.is_dir() and not overwrite and any(p.is_file() for p in path.rglob("*")):
            raise UsageError(f"--out {path} already holds files (an earlier run?); choose another --out, "
                             f"continue it with --resume {path}, or replace it with --overwrite")
        path.mkdir(parents=True, exist_ok=True)
        return cls(path)

    @classmethod
    def existing(cls, path: Path) -> RunDir:
        """A run folder that must already exist (for --resume)."""
        path = Path(path)
        if not path.is_dir():
            raise UsageError(f"--resume {path}: no such run folder")
        return cls(path)

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the folder for this process: a second process training into it is refused.

        The lock is on the folder itself (no lock file to leave behind); the operating system
        releases it when the process ends, even by SIGKILL.
        """
        try:
            import fcntl
        except ImportError:  # no advisory locks on Windows: train unguarded
            yield
            return
        fd = os.open(self.path, os.O_RDONLY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise UsageError(f"{self.path} is in use by another vaezoo process; wait for it to end "
                                 f"or stop it first") from None
            yield
        finally:
            os.close(fd)

    def clear(self) -> None:
        """Delete what an earlier run wrote here (for --overwrite, once the new run's inputs are valid).

        Only vaezoo's own files go: anything else the user keeps in the folder stays.
        """
        for name in (CONFIG, METRICS_JSONL, METRICS_CSV, MODEL, PARENT, TRACKING):
            (self.path / name).unlink(missing_ok=True)
        for file in [*self.path.glob("*.png"), *self.path.glob(SAMPLER_FILE.format("*")),
                     *self.checkpoints.glob("*.safetensors"), *(self.path / TENSORBOARD).glob("events.out.tfevents.*")]:
            file.unlink()
        self.remove_temporaries()

    def remove_temporaries(self) -> None:
        """Delete half-written files a killed process left (never taken for real ones)."""
        for folder in (self.path, self.checkpoints):
            for file in folder.glob(TEMPORARY_GLOB):
                file.unlink()

    def write_config(self, config: Mapping[str, Any]) -> None:
        atomic_write_json(self.path / CONFIG, dict(config))

    def read_config(self) -> dict[str, Any]:
        path = self.path / CONFIG
        try:
            config = json.loads(path.read_text())
        except FileNotFoundError:
            raise WeightsError(f"{self.path} is not a vaezoo run: {CONFIG} is missing") from None
        except (OSError, ValueError) as exc:
            raise WeightsError(f"{path} is not valid JSON: {exc}") from None
        if not isinstance(config, dict) or "variant" not in config or "hparams" not in config:
            raise WeightsError(f"{path} is not a vaezoo run config (no variant or hparams)")
        return config

    def append_metrics(self, record: Mapping[str, Any]) -> None:
        """Append one epoch's record to metrics.jsonl and rewrite metrics.csv from all records."""
        self.write_metrics(self.read_metrics() + [dict(record)])

    def write_metrics(self, records: list[dict[str, Any]]) -> None:
        """Replace metrics.jsonl and metrics.csv with `records`, each atomically."""
        atomic_write_bytes(self.path / METRICS_JSONL,
                           "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode())
        rows = [flatten_metrics(r) for r in records]
        columns = list(dict.fromkeys(k for row in rows for k in row))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_bytes(self.path / METRICS_CSV, buffer.getvalue().encode())

    def read_metrics(self) -> list[dict[str, Any]]:
        path = self.path / METRICS_JSONL
        if not path.exists():
            return []
        records = []
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except ValueError:
                    raise WeightsError(f"{path} line {number} is not valid JSON (edited or damaged?)") from None
        return records
