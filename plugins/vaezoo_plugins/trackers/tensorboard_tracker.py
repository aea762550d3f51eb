"""TensorBoard event files in the run folder, written by torch.utils.tensorboard (no TensorFlow)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vaezoo.extras import require
from vaezoo.storage.runs import TENSORBOARD
from vaezoo.training.tracker import Tracker, TrackerStart


class TensorBoardTracker(Tracker):
    """RUN/tensorboard/events.out.tfevents.*: scalars, the epoch pictures, the final pictures and the config.

    On resume the writer purges the steps after the checkpoint (TensorBoard's purge_step), so steps
    redone after a kill appear once. TensorBoard has no artifact store: the model is not sent.
    """

    def __init__(self) -> None:
        require("tensorboard", feature="--track tensorboard", extra=None)
        self._module = require("torch.utils.tensorboard", feature="--track tensorboard", extra=None,
                               package="tensorboard")
        self._step = 0

    def start(self, run: TrackerStart) -> dict[str, str]:
        self._step = run.step
        self.writer = self._module.SummaryWriter(log_dir=str(run.run_dir / TENSORBOARD),
                                                 purge_step=run.step + 1 if run.resumed else None)
        self.writer.add_text("config", f"```\n{json.dumps(dict(run.config), indent=2, sort_keys=True)}\n```",
                             global_step=run.step)
        return {"log_dir": TENSORBOARD}

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self._step = step
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, global_step=step)

    def log_images(self, images: Mapping[str, Any], step: int) -> None:
        for name, image in images.items():
            self.writer.add_image(f"epoch/{name}", image, global_step=step, dataformats="HWC")

    def log_file(self, path: Path, kind: str) -> None:
        if kind == "picture":
            with Image.open(path) as picture:
                image = np.asarray(picture.convert("RGB"))
            self.writer.add_image(f"final/{path.stem}", image, global_step=self._step, dataformats="HWC")

    def finish(self, status: str) -> None:
        self.writer.add_text("status", status, global_step=self._step)
        self.writer.close()
