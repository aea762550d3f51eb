"""An MLflow run through MlflowClient (no global active-run state), at $MLFLOW_TRACKING_URI."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vaezoo.errors import WeightsError
from vaezoo.extras import require
from vaezoo.storage.runs import TRACKING, flatten_metrics
from vaezoo.training.tracker import FAILED, FINISHED, INTERRUPTED, Tracker, TrackerStart

EXPERIMENT = "vaezoo"  # unless $MLFLOW_EXPERIMENT_NAME names another
RUN_ID = re.compile(r"[0-9a-f]{32}")
STATUS = {FINISHED: "FINISHED", FAILED: "FAILED", INTERRUPTED: "KILLED"}
MAX_PARAM = 6000  # MLflow's limit on a parameter value's length


class MLflowTracker(Tracker):
    """Parameters (the flattened config), metrics by step, epoch pictures, the final pictures and the model.

    The store is $MLFLOW_TRACKING_URI, else MLflow's default; resuming uses the store the run began
    in unless $MLFLOW_TRACKING_URI says otherwise. Steps redone after a kill are logged again (MLflow
    keeps both values; on the CPU they are equal).
    """

    def __init__(self) -> None:
        self._mlflow = require("mlflow", feature="--track mlflow", extra="mlflow", package="mlflow-skinny")
        from mlflow.tracking import MlflowClient

        self._client_class = MlflowClient

    def start(self, run: TrackerStart) -> dict[str, str]:
        uri = os.environ.get("MLFLOW_TRACKING_URI") or run.stored.get("tracking_uri") or self._mlflow.get_tracking_uri()
        self.client = self._client_class(tracking_uri=uri)
        if run.resumed:
            self.run_id = run.stored.get("run_id", "")
            if not RUN_ID.fullmatch(self.run_id):
                raise WeightsError(f"{run.run_dir / TRACKING}: the MLflow run id {self.run_id!r} is not one (was it edited?)")
            self.client.get_run(self.run_id)  # missing from this store: an error naming the run id
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            name = os.environ.get("MLFLOW_EXPERIMENT_NAME", EXPERIMENT)
            experiment = self.client.get_experiment_by_name(name)
            experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name)
            self.run_id = self.client.create_run(experiment_id, run_name=run.run_name,
                                                 tags={"vaezoo.run_dir": str(run.run_dir.resolve())}).info.run_id
            params = {key: str(value)[:MAX_PARAM] for key, value in flatten_metrics(dict(run.config), sep=".").items()}
            self._batch(params=[self._entities.Param(key, value) for key, value in params.items()])
        self.client.log_dict(self.run_id, dict(run.config), "config.json")  # on resume: the extended config
        return {"run_id": self.run_id, "tracking_uri": uri}

    @property
    def _entities(self) -> Any:
        import mlflow.entities

        return mlflow.entities

    def _batch(self, **entries: Any) -> None:
        self.client.log_batch(self.run_id, **entries)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        self._batch(metrics=[self._entities.Metric(key, float(value), now, step) for key, value in metrics.items()])

    def log_images(self, images: Mapping[str, Any], step: int) -> None:
        for name, image in images.items():
            self.client.log_image(self.run_id, image, key=name, step=step)

    def log_file(self, path: Path, kind: str) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path="model" if kind == "model" else "pictures")

    def finish(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status=STATUS[status])
