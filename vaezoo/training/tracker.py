"""The contract of an experiment tracker (TensorBoard, MLflow, W&B or a plugin's own).

A tracker is registered through the `register_trackers` hook as a factory taking no arguments;
the factory checks its dependencies (a missing one is a `vaezoo.errors.MissingExtraError`) so a
run never starts with a tracker that cannot work. vaezoo then calls `start` on the training
thread and every other method on one background thread, in order, with plain host values:
Python numbers, uint8 numpy images and file paths. A tracker never sees a tensor, so it can
never make the training loop wait for the device. See docs/tracking.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: How a tracked run ended: `Tracker.finish` receives one of these.
FINISHED, FAILED, INTERRUPTED = "finished", "failed", "interrupted"


@dataclass(frozen=True)
class TrackerStart:
    """What a tracker learns when training starts or resumes."""

    run_dir: Path  # the run folder (a tracker may keep its files there)
    run_name: str  # VARIANT-FOLDER, for the tracker's own listing
    config: Mapping[str, Any]  # the run's config.json
    step: int = 0  # global step training continues from: 0 for a new run, the checkpoint's on resume
    stored: Mapping[str, Any] = field(default_factory=dict)  # what `start` returned last time (resume)

    @property
    def resumed(self) -> bool:
        return bool(self.stored)


class Tracker:
    """Receives a run's config, metrics, pictures and model; subclasses override what they support."""

    def start(self, run: TrackerStart) -> dict[str, str]:
        """Open (or, given `run.stored`, continue) the tracked run; return what identifies it.

        The returned strings are kept in the run folder's tracking.json and handed back as
        `run.stored` on resume. That file is user-editable: validate what comes back.
        """
        return {}

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Scalars at a global step: "step/loss" every few steps, "train/loss", "test/neg_elbo"... per epoch."""

    def log_images(self, images: Mapping[str, Any], step: int) -> None:
        """Named uint8 numpy images [H, W, 3] at a global step (reconstructions and samples per epoch)."""

    def log_file(self, path: Path, kind: str) -> None:
        """A file of the run: kind "model" (model.safetensors) or "picture" (the final PNGs)."""

    def finish(self, status: str) -> None:
        """Close the tracked run: status is FINISHED, FAILED or INTERRUPTED."""
