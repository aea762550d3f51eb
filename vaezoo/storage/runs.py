"""The run folder: config.json, metrics.jsonl / metrics.csv, checkpoints/, model.safetensors, pictures
(and parent.safetensors for a second-stage model, tracking.json and tensorboard/ for trackers);
beside it, what other commands write there (eval.json, sampler-NAME.safetensors).

Every file goes through the one write path (vaezoo.storage.files): a crash never leaves a
half-written file under a real name. The folder's manifest records what vaezoo writes there, so
--overwrite and checkpoint retention delete exactly that and nothing a user put beside it; parts
of a run folder that are symbolic links are refused rather than followed.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vaezoo.errors import UsageError, WeightsError
from vaezoo.storage.files import (
    atomic_write_bytes,
    atomic_write_json,
    is_temporary,
    make_folder,
    parse_json,
    refuse_overwrite,
    remove_file,
)

CONFIG = "config.json"
METRICS_JSONL = "metrics.jsonl"
METRICS_CSV = "metrics.csv"
MODEL = "model.safetensors"
PARENT = "parent.safetensors"  # a second stage's copy of the first stage it trains on
CHECKPOINTS = "checkpoints"
RECONSTRUCTIONS, SAMPLES, TRAVERSALS, LOSS = "reconstructions.png", "samples.png", "traversals.png", "loss.png"
TRACKING = "tracking.json"  # which tracked run (MLflow, W&B...) this run continues on resume
TENSORBOARD = "tensorboard"  # the TensorBoard tracker's event files
EVAL = "eval.json"  # `vaezoo evaluate` results beside a model
SAMPLER_FILE = "sampler-{}.safetensors"  # a post-hoc sampler fitted to the run's model (vaezoo fit-sampler)
#: The files every run writes at the top of its folder.
RUN_FILES = (CONFIG, METRICS_JSONL, METRICS_CSV, MODEL, RECONSTRUCTIONS, SAMPLES, TRAVERSALS, LOSS)
MANIFEST = "vaezoo-manifest.json"
EPOCH_FILE = re.compile(r"epoch-(\d+)\.safetensors")  # written at each epoch end (--keep-checkpoints)
STEP_FILE = re.compile(r"step-(\d+)\.safetensors")  # mid-epoch (--checkpoint-every, Ctrl-C): newest only
#: The names (relative, '/'-separated) training writes in a run folder; no other command replaces them.
TRAINING_NAMES = (
    re.compile("|".join(map(re.escape, (*RUN_FILES, PARENT, TRACKING)))),
    re.compile(f"{CHECKPOINTS}/({EPOCH_FILE.pattern}|{STEP_FILE.pattern})"),
    re.compile(rf"{TENSORBOARD}/events\.out\.tfevents\.[\w.-]+"),
)
#: What other commands write beside a run's model (recorded when they do, so --overwrite removes them too).
BESIDE_NAMES = (re.compile(re.escape(EVAL)), re.compile(SAMPLER_FILE.format(r"[A-Za-z0-9][\w.+-]*")))
#: Every name vaezoo writes in a run folder: only these may ever be deleted there, and only when the
#: manifest records them. A new kind of run file is added to one of the lists above.
OWNED_NAMES = (*TRAINING_NAMES, *BESIDE_NAMES)

__all__ = ["atomic_write_bytes", "atomic_write_json", "refuse_overwrite", "RunDir"]  # the write path, re-exported


def owned_name(name: str, names: tuple[re.Pattern, ...] = OWNED_NAMES) -> bool:
    """A name vaezoo writes in a run folder (OWNED_NAMES, or the list given)."""
    return any(pattern.fullmatch(name) for pattern in names)


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


def refuse_run_files(path: Path) -> None:
    """Only training writes a run's own files: an export, an evaluation or a picture never replaces them."""
    path = Path(path)
    for folder, name in ((path.parent, path.name), (path.parent.parent, f"{path.parent.name}/{path.name}")):
        if (owned_name(name, TRAINING_NAMES) or name == MANIFEST) and RunDir(folder).is_run():
            raise UsageError(f"{path} is one of the files of the run in {folder}, which only training writes; "
                             "choose another --out")


class RunDir:
    """One training run's folder.

    `fresh`: a new run is starting here, so the folder must not hold another run unless
    `overwrite`; checked under the lock, where no other process can finish a run in between.
    `keep_checkpoints`: how many epoch checkpoints to keep (None: all).
    """

    def __init__(self, path: Path, *, fresh: bool = False, overwrite: bool = False,
                 keep_checkpoints: int | None = None):
        self.path = Path(path)
        self.fresh, self.overwrite, self.keep_checkpoints = fresh, overwrite, keep_checkpoints
        self._locked = False

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @classmethod
    def create(cls, path: Path, *, overwrite: bool = False, keep_checkpoints: int | None = None) -> RunDir:
        """The folder for a new run (made if needed); whether it already holds a run is checked by `lock`."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise UsageError(f"--out {path} exists and is not a folder")
        make_folder(path)
        return cls(path, fresh=True, overwrite=overwrite, keep_checkpoints=keep_checkpoints)

    @classmethod
    def existing(cls, path: Path, *, keep_checkpoints: int | None = None) -> RunDir:
        """A run folder that must already exist (for --resume)."""
        path = Path(path)
        if not path.is_dir():
            raise UsageError(f"--resume {path}: no such run folder")
        run = cls(path, keep_checkpoints=keep_checkpoints)
        run.check_layout()  # before reading any of it (a pipe named config.json would block the read)
        return run

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the folder for this process, then check it: a second process training into it is refused.

        The lock is on the folder itself (no lock file to leave behind); the operating system
        releases it when the process ends, even by SIGKILL. Taking it again inside is a no-op.
        """
        if self._locked:
            yield
            return
        try:
            import fcntl
        except ImportError:  # no advisory locks on Windows: train unguarded
            fcntl = None
        fd = os.open(self.path, os.O_RDONLY) if fcntl is not None else None
        try:
            if fd is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    raise UsageError(f"{self.path} is in use by another vaezoo process; wait for it to end "
                                     f"or stop it first") from None
            self._locked = True
            self.check()
            yield
        finally:
            self._locked = False
            if fd is not None:
                os.close(fd)

    def check(self) -> None:
        """A new run does not replace another by accident, and the folder's parts are what vaezoo writes there."""
        if self.fresh and self.holds_files():
            if not self.overwrite:
                raise UsageError(f"--out {self.path} already holds files (an earlier run?); choose another --out, "
                                 f"continue it with --resume {self.path}, or replace it with --overwrite")
            self.check_layout()
            if not self.is_run():
                raise UsageError(f"--out {self.path} holds files but no vaezoo run, and --overwrite replaces only "
                                 "a run; choose a new or empty folder")
        self.check_layout()

    def check_layout(self) -> None:
        """Refuse a folder whose parts are links or of the wrong kind: vaezoo would read, write or delete elsewhere."""
        parts = [self.path / name for name in (*RUN_FILES, MANIFEST, CHECKPOINTS)]
        if self.checkpoints.is_dir() and not self.checkpoints.is_symlink():
            parts += [p for p in self.checkpoints.iterdir() if owned_name(f"{CHECKPOINTS}/{p.name}")]
        for part in parts:
            if part.is_symlink():
                raise WeightsError(f"{part} is a symbolic link; vaezoo does not follow links inside a run folder "
                                   "(replace it with the file itself, or choose another folder)")
            folder = part == self.checkpoints
            if part.exists() and not (part.is_dir() if folder else part.is_file()):
                raise WeightsError(f"{part} is {'not a folder' if folder else 'not a regular file'}, "
                                   "which a vaezoo run folder cannot use")

    def holds_files(self) -> bool:
        """Files (an empty folder left by a start that failed its checks does not count)."""
        return any(p.is_file() or p.is_symlink() for p in self.path.rglob("*"))

    def is_run(self) -> bool:
        """A training run written by vaezoo: a manifest, or (runs from before manifests) checkpoints or a run config
        (an exported folder's config.json has no seed)."""
        if (self.path / MANIFEST).is_file() or (self.checkpoints.is_dir() and (self.path / CONFIG).is_file()):
            return True
        try:
            return "seed" in self.read_config()
        except WeightsError:
            return False

    # -- what vaezoo wrote here -----------------------------------------------------------------
    def owned(self) -> list[str]:
        """The names (relative, '/'-separated) this folder's record says vaezoo wrote, that are still its names.

        Runs written before manifests existed: the names vaezoo writes, if config.json is a vaezoo run config.
        """
        manifest = self.path / MANIFEST
        if manifest.is_file():
            try:
                record = parse_json(manifest.read_text())
                names = record["files"]
                if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
                    raise TypeError
            except (OSError, ValueError, KeyError, TypeError):
                raise WeightsError(f"{manifest} is damaged, so vaezoo cannot tell which files it wrote here; "
                                   f"delete it to fall back to the names vaezoo writes") from None
        elif self.is_run():
            names = [*RUN_FILES, *(f"{CHECKPOINTS}/{p.name}" for p in self._checkpoint_files())]
        else:
            names = []
        return sorted({n for n in names if owned_name(n)})

    def unrecorded(self) -> set[str]:
        """Names training writes that are in the folder but not in its record (what a tracker's
        library just created, say): compared before and after, they tell what vaezoo made."""
        if not self.path.is_dir():
            return set()
        found = {p.relative_to(self.path).as_posix() for p in self.path.rglob("*") if p.is_file()}
        return {name for name in found if owned_name(name, TRAINING_NAMES)} - set(self.owned())

    def record_beside(self, path: Path) -> None:
        """Record a file another command is about to write beside this run's model (eval.json, a
        fitted sampler), when this folder is a run, so --overwrite removes it with the run."""
        path = Path(path)
        if path.parent.resolve() == self.path.resolve() and owned_name(path.name, BESIDE_NAMES) and self.is_run():
            self.record([path.name])

    def _checkpoint_files(self) -> list[Path]:
        return list(self.checkpoints.iterdir()) if self.checkpoints.is_dir() else []

    def record(self, names: Iterable[str] = (), *, forget: Iterable[str] = ()) -> None:
        """Add `names` to the manifest (before they are written) and drop `forget` (once deleted)."""
        current = set(self.owned())
        updated = (current | set(names)) - set(forget)
        if updated != current or not (self.path / MANIFEST).is_file():
            atomic_write_json(self.path / MANIFEST, {"files": sorted(updated), "written_by": "vaezoo"})

    def clear(self) -> None:
        """Delete what an earlier run wrote here (for --overwrite, once the new run's inputs are valid).

        Only the files the folder's record names go, never through a link: anything else stays.
        Then the manifest is started afresh for the run about to write here.
        """
        self.check_layout()
        for name in self.owned():
            remove_file(self.path / name)
        self.remove_temporaries()
        remove_file(self.path / MANIFEST)
        self.record(RUN_FILES)

    def remove_temporaries(self) -> None:
        """Delete half-written files a killed vaezoo process left (only ones named like its temporaries)."""
        for folder in (self.path, self.checkpoints):
            if folder.is_dir() and not folder.is_symlink():
                for file in folder.iterdir():
                    if is_temporary(file.name):
                        remove_file(file)

    def delete_checkpoints(self, paths: Iterable[Path]) -> None:
        """Delete checkpoints this run wrote (superseded, or beyond --keep-checkpoints) and forget them."""
        owned = set(self.owned())
        names = [f"{CHECKPOINTS}/{Path(p).name}" for p in paths]
        gone = [n for n in names if n in owned]
        for name in gone:
            remove_file(self.path / name)
        if gone:
            self.record(forget=gone)

    # -- reading and writing --------------------------------------------------------------------
    def write_checkpoint(self, name: str, data: bytes) -> Path:
        """checkpoints/NAME, recorded in the manifest before it is written."""
        path = self.checkpoints / name
        self.record([f"{CHECKPOINTS}/{name}"])
        atomic_write_bytes(path, data)
        return path

    def write_config(self, config: Mapping[str, Any]) -> None:
        atomic_write_json(self.path / CONFIG, dict(config))

    def read_config(self) -> dict[str, Any]:
        path = self.path / CONFIG
        try:
            config = parse_json(path.read_text())
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
        """Every epoch's record, each checked to be one (an edited or damaged line is one WeightsError)."""
        path = self.path / METRICS_JSONL
        if not path.exists():
            return []
        try:
            lines = path.read_text().splitlines()
        except (OSError, ValueError) as exc:
            raise WeightsError(f"{path} cannot be read: {exc}") from None
        records = []
        for number, line in enumerate(lines, 1):
            if line.strip():
                try:
                    record = parse_json(line)
                except ValueError:
                    raise WeightsError(f"{path} line {number} is not valid JSON (edited or damaged?)") from None
                problem = _record_problem(record)
                if problem:
                    raise WeightsError(f"{path} line {number} is not an epoch record ({problem}; edited or damaged?)")
                records.append(record)
        return records


def _number(value: Any) -> bool:
    return type(value) in (int, float)


def _measure(value: Any, depth: int = 0) -> bool:
    """A logged measure: a number, a flag (kl_estimated), or a list or table of them (per dimension, per group)."""
    if _number(value) or type(value) is bool:
        return True
    if depth < 2 and isinstance(value, list):
        return all(_measure(v, depth + 1) for v in value)
    if depth < 2 and isinstance(value, dict):
        return all(isinstance(k, str) and _measure(v, depth + 1) for k, v in value.items())
    return False


def _record_problem(record: Any) -> str | None:
    """What is wrong with one metrics.jsonl record, or None: the shape the loop writes and the loss curves read."""
    if not isinstance(record, dict):
        return "not an object"
    for key in ("epoch", "step"):
        if type(record.get(key)) is not int or record[key] < 0:
            return f"'{key}' is not a whole number"
    for split in ("train", "test"):
        terms = record.get(split)
        if not isinstance(terms, dict) or not terms:
            return f"'{split}' holds no measures"
        if not all(map(_measure, terms.values())):
            return f"'{split}' holds something other than measures"
    if not _number(record["train"].get("loss")):
        return "'train' has no loss"
    return None
