"""The run folder: config.json, metrics.jsonl / metrics.csv, checkpoints/, model.safetensors, pictures.

Every file is written to a temporary name and renamed into place, so a crash never leaves a
half-written file under a real name.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import UsageError, WeightsError

CONFIG = "config.json"
METRICS_JSONL = "metrics.jsonl"
METRICS_CSV = "metrics.csv"
MODEL = "model.safetensors"
CHECKPOINTS = "checkpoints"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def refuse_overwrite(path: Path, overwrite: bool) -> None:
    """Never replace an earlier result unless asked to."""
    if Path(path).exists() and not overwrite:
        raise UsageError(f"{path} already exists; choose another --out or pass --overwrite")


def flatten_metrics(record: Mapping[str, Any]) -> dict[str, Any]:
    """{"train": {"loss": 1}, "epoch": 1} -> {"train_loss": 1, "epoch": 1}; lists become _0, _1..."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, Mapping):
            for sub, v in flatten_metrics(value).items():
                flat[f"{key}_{sub}"] = v
        elif isinstance(value, list):
            for i, v in enumerate(value):
                flat[f"{key}_{i}"] = v
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
        """A fresh run folder; an existing run there is an error unless `overwrite`."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise UsageError(f"--out {path} exists and is not a folder")
        if path.is_dir() and any(path.iterdir()) and not overwrite:
            raise UsageError(f"{path} already holds files; choose another --out or pass --overwrite")
        path.mkdir(parents=True, exist_ok=True)
        run = cls(path)
        if overwrite:
            for name in (METRICS_JSONL, METRICS_CSV):
                (path / name).unlink(missing_ok=True)
        run.checkpoints.mkdir(exist_ok=True)
        return run

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
        records = self.read_metrics() + [dict(record)]
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
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
