"""Built-in experiment trackers: TensorBoard (always there), MLflow and W&B (optional extras)."""

from vaezoo import hookimpl


@hookimpl
def register_trackers(register):
    register("tensorboard", "vaezoo_plugins.trackers.tensorboard_tracker:TensorBoardTracker",
             "TensorBoard event files in RUN/tensorboard (tensorboard --logdir RUN/tensorboard)")
    register("mlflow", "vaezoo_plugins.trackers.mlflow_tracker:MLflowTracker",
             "an MLflow run at $MLFLOW_TRACKING_URI (pip install 'vaezoo[mlflow]')")
    register("wandb", "vaezoo_plugins.trackers.wandb_tracker:WandbTracker",
             "a Weights & Biases run, online or offline ($WANDB_MODE) (pip install 'vaezoo[wandb]')")
