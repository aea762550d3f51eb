"""A run's records fanned out to its experiment trackers, on a background thread.

The loop hands over only host values it has anyway, at points where it synchronises with the
device anyway (every PROGRESS_EVERY steps, epoch ends, the end); a queue carries them to one worker
thread that calls the trackers. A slow or stuck tracker never holds the loop up, and a tracker that
fails mid-run is reported once and dropped: training goes on. Only the process that writes the run
folder (rank 0 under torchrun) tracks. See docs/tracking.md.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import Tensor

from vaezoo.errors import TrainingInterrupted, VaezooError, WeightsError
from vaezoo.registry import Registry
from vaezoo.storage.runs import TRACKING, RunDir, atomic_write_json, flatten_metrics
from vaezoo.training.tracker import FAILED, FINISHED, INTERRUPTED, Tracker, TrackerStart

#: How long the end of training waits for the trackers to send what is queued (after a second Ctrl-C: briefly).
FINISH_TIMEOUT_S, HURRIED_TIMEOUT_S = 300.0, 10.0


def tracker_names(names: Iterable[str]) -> tuple[str, ...]:
    """The names as given, duplicates dropped; "none" alone means no tracker (clears a config file's list)."""
    unique = tuple(dict.fromkeys(names))
    return () if unique == ("none",) else unique


def open_trackers(names: Sequence[str], registry: Registry) -> dict[str, Tracker]:
    """Build the named trackers before anything is written: an unknown name or a missing extra is one line."""
    return {name: registry.load("tracker", name)() for name in tracker_names(names)}


def read_stored(run: RunDir) -> dict[str, dict[str, str]]:
    """tracking.json: per tracker, the strings that identify its tracked run (empty when there is none)."""
    path = run.path / TRACKING
    if not path.exists():
        return {}
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(stored, dict) or not all(
            isinstance(ids, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in ids.items())
            for ids in stored.values()):
        raise WeightsError(f"{path} must map each tracker to an object of strings (was it edited?)")
    return stored


class Tracking:
    """The trackers of one training invocation; without trackers every method returns at once."""

    def __init__(self, trackers: Mapping[str, Tracker], console: Console):
        self.trackers = dict(trackers)
        self.console = console
        self.failed: dict[str, str] = {}
        self._queue: queue.SimpleQueue[tuple[str, tuple[Any, ...]] | None] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None

    def stored(self, run: RunDir) -> dict[str, dict[str, str]]:
        """The tracked runs a resumed run continues (read, and checked, before anything in the folder changes)."""
        return read_stored(run) if self.trackers else {}

    def start(self, run: RunDir, config: Mapping[str, Any], step: int, stored: Mapping[str, dict[str, str]]) -> None:
        """Open each tracked run (continuing those in `stored`) on this thread, record their ids, start the worker."""
        if not self.trackers:
            return
        name = f"{config['variant']}-{run.path.resolve().name}"
        ids = dict(stored)
        started: list[Tracker] = []
        before = run.unrecorded()
        for tracker_name, tracker in self.trackers.items():
            start = TrackerStart(run.path, name, dict(config), step, stored.get(tracker_name, {}))
            try:
                ids[tracker_name] = dict(tracker.start(start))
            except Exception as exc:
                for opened in started:  # no tracked run is left open as "running"
                    try:
                        opened.finish(FAILED)
                    except Exception:  # already failing: the first error is the one to report
                        pass
                if isinstance(exc, VaezooError):
                    raise
                raise VaezooError(f"tracker '{tracker_name}' could not start: {type(exc).__name__}: {exc}; "
                                  f"fix it and continue with: vaezoo train --resume {run.path}") from exc
            started.append(tracker)
        run.record([*(run.unrecorded() - before), TRACKING])  # files the trackers made here (event files)
        atomic_write_json(run.path / TRACKING, ids)
        self._worker = threading.Thread(target=self._work, name="vaezoo-tracking", daemon=True)
        self._worker.start()

    # -- what the loop calls ------------------------------------------------------------------
    def steps(self, step: int, terms: Mapping[str, Tensor] | None) -> None:
        """The scalar loss terms of `step` (called where the loop syncs with the device anyway)."""
        if self._worker is None or terms is None:
            return
        scalars = {key: value for key, value in terms.items() if value.dim() == 0}
        values = torch.stack([value.detach().float() for value in scalars.values()]).tolist()
        self._put("log_metrics", {f"step/{key}": value for key, value in zip(scalars, values)}, step)

    def epoch(self, record: Mapping[str, Any], model: torch.nn.Module, test_images: Tensor,
              test_labels: Tensor | None = None) -> None:
        """An epoch's metrics record and its pictures (drawn here, without touching training's random state)."""
        if self._worker is None:
            return
        from vaezoo.evaluation.pictures import epoch_pictures

        metrics = {key: value for key, value in flatten_metrics(record, sep="/").items() if key != "step"}  # the x axis
        self._put("log_metrics", metrics, record["step"])
        self._put("log_images", epoch_pictures(model, test_images, test_labels=test_labels), record["step"])

    def files(self, paths: Iterable[Path], kind: str) -> None:
        """Files written to the run folder: the final model ("model") or pictures ("picture")."""
        if self._worker is None:
            return
        for path in paths:
            self._put("log_file", Path(path), kind)

    def __enter__(self) -> Tracking:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, traceback: Any) -> None:
        if kind is None:
            self.close(FINISHED)
        elif issubclass(kind, KeyboardInterrupt):  # a second Ctrl-C: the user wants out now
            self.close(INTERRUPTED, HURRIED_TIMEOUT_S)
        else:
            self.close(INTERRUPTED if issubclass(kind, TrainingInterrupted) else FAILED)

    def close(self, status: str, timeout_s: float = FINISH_TIMEOUT_S) -> None:
        """Finish every tracked run and wait (at most `timeout_s`) for what is queued to be sent."""
        if self._worker is None:
            return
        self._put("finish", status)
        self._queue.put(None)
        self._worker.join(timeout_s)
        if self._worker.is_alive():
            self.console.print(f"warning: the trackers did not finish within {timeout_s:g} s; "
                               "their newest records may be missing", highlight=False, soft_wrap=True)
        self._worker = None

    # -- the worker -----------------------------------------------------------------------------
    def _put(self, method: str, *args: Any) -> None:
        self._queue.put((method, args))

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            method, args = item
            for name, tracker in self.trackers.items():
                if name in self.failed:
                    continue
                try:
                    getattr(tracker, method)(*args)
                except Exception as exc:  # a tracker's failure must not end the training it watches
                    self.failed[name] = f"{type(exc).__name__}: {exc}"
                    self.console.print(f"warning: tracker '{name}' failed in {method} and stops logging: "
                                       f"{self.failed[name]}", highlight=False, soft_wrap=True)
