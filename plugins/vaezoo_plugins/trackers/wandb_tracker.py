"""A Weights & Biases run; $WANDB_MODE=offline keeps it in RUN/wandb for `wandb sync` later."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vaezoo.errors import WeightsError
from vaezoo.extras import require
from vaezoo.storage.runs import TRACKING
from vaezoo.training.tracker import FINISHED, Tracker, TrackerStart

PROJECT = "vaezoo"  # unless $WANDB_PROJECT names another
RUN_ID = re.compile(r"[a-z0-9_-]{1,64}")


class WandbTracker(Tracker):
    """The config, metrics by step, epoch pictures, the final pictures and the model as a "model" artifact.

    Files go to $WANDB_DIR, else the run folder. Resume continues the same W&B run (its id is kept
    in tracking.json); W&B drops steps it has already seen, so steps redone after a kill count once.
    """

    def __init__(self) -> None:
        self._wandb = require("wandb", feature="--track wandb", extra="wandb")

    def start(self, run: TrackerStart) -> dict[str, str]:
        wandb = self._wandb
        stored_id = run.stored.get("id")
        if stored_id is not None and not RUN_ID.fullmatch(stored_id):
            raise WeightsError(f"{run.run_dir / TRACKING}: the W&B run id {stored_id!r} is not one (was it edited?)")
        project = os.environ.get("WANDB_PROJECT") or run.stored.get("project") or PROJECT
        self.run = wandb.init(project=project, name=run.run_name, dir=os.environ.get("WANDB_DIR") or str(run.run_dir),
                              config=dict(run.config), id=stored_id, resume="allow" if stored_id else None,
                              reinit="create_new", settings=wandb.Settings(console="off", silent=True))
        if stored_id:
            self.run.config.update(dict(run.config), allow_val_change=True)  # --epochs may have extended it
        return {"id": self.run.id, "project": project}

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self.run.log(dict(metrics), step=step)

    def log_images(self, images: Mapping[str, Any], step: int) -> None:
        self.run.log({f"epoch/{name}": self._wandb.Image(image) for name, image in images.items()}, step=step)

    def log_file(self, path: Path, kind: str) -> None:
        if kind == "model":
            artifact = self._wandb.Artifact(f"{self.run.id}-model", type="model")
            artifact.add_file(str(path))
            self.run.log_artifact(artifact)
        else:
            self.run.log({f"final/{path.stem}": self._wandb.Image(str(path))})

    def finish(self, status: str) -> None:
        self.run.finish(exit_code=0 if status == FINISHED else 1)
