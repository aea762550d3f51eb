"""Where training stands (TrainState), saved in every checkpoint, and picking a run up from its newest one.

A checkpoint holds the model, the objective, every optimizer, every random-number generator and
the TrainState, so a resumed run continues exactly as the uninterrupted one would (bit for bit on CPU).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from vaezoo.errors import UsageError, WeightsError
from vaezoo.hparams import HParams
from vaezoo.registry import Registry
from vaezoo.storage import checkpoint
from vaezoo.storage.runs import CONFIG, METRICS_JSONL, RunDir
from vaezoo.training import rng
from vaezoo.variant import Recipe, VariantSpec

EPOCH_FILE = re.compile(r"epoch-(\d+)\.safetensors")  # written at each epoch end, all kept
STEP_FILE = re.compile(r"step-(\d+)\.safetensors")  # mid-epoch (--checkpoint-every, Ctrl-C): newest only
DATA_ORDER = "rng/data_order"
SUMS = "sums/"
#: Config keys that decide a run's result: a checkpoint and the run it continues must agree on them.
RESULT_KEYS = ("variant", "parts", "parent", "hparams", "dataset", "input_shape", "seed", "max_steps", "world_size",
               "precision")
#: What a config.json written before --precision existed trained in.
DEFAULT_PRECISION = "32"
#: The one hyperparameter --resume may change: more epochs extend a run.
EXTENDABLE = "epochs"


@dataclass
class TrainState:
    """Where training stands besides the modules and optimizers; the one structure every checkpoint stores."""

    data_order: Tensor  # data-order generator state at the start of the epoch in progress
    epoch: int = 0  # epochs completed
    step: int = 0  # batches drawn so far: the global step objectives (and their schedules) see
    batch: int = 0  # batches drawn in the epoch in progress
    skipped: int = 0  # of those, skipped for a non-finite loss (--skip-nonfinite)
    sums: dict[str, Tensor] = field(default_factory=dict)  # running sums of the epoch's loss terms
    grad_scaler: dict[str, Any] | None = None  # the float16 gradient scaler's state (--precision 16)

    @classmethod
    def start(cls, seed: int) -> TrainState:
        return cls(data_order=torch.Generator().manual_seed(seed).get_state())

    def order(self) -> torch.Generator:
        """The data-order generator as it was when the epoch in progress began."""
        generator = torch.Generator()
        generator.set_state(self.data_order)
        return generator

    def finish_epoch(self, order: torch.Generator) -> None:
        """Count the epoch as done; the next one starts from `order`'s current state."""
        self.epoch += 1
        self.batch = self.skipped = 0
        self.sums = {}
        self.data_order = order.get_state()


class StoredRun(NamedTuple):
    """The settings a run folder's config.json fixes for --resume."""

    spec: VariantSpec
    hp: HParams
    dataset: str
    seed: int
    max_steps: int | None
    parts: dict[str, str]  # swapped from the variant's own
    parent: dict[str, Any] | None  # what the parent stage in parent.safetensors must be
    precision: str
    trackers: tuple[str, ...]


def stored_run(run: RunDir, registry: Registry, epochs: str | None = None) -> StoredRun:
    """Read and check config.json; `epochs` (the --epochs text) may extend the run."""
    config = run.read_config()
    source = run.path / CONFIG
    spec = registry.variant(str(config["variant"]))
    overrides = {}
    if epochs is not None:
        overrides[EXTENDABLE] = spec.schema[EXTENDABLE].parse(epochs)
    seed, max_steps = config.get("seed"), config.get("max_steps")
    parts, parent = config.get("parts", {}), config.get("parent")
    precision, trackers = config.get("precision", DEFAULT_PRECISION), config.get("trackers", [])
    if not isinstance(config["hparams"], dict) or not isinstance(config.get("dataset"), str) \
            or type(seed) is not int or not (max_steps is None or type(max_steps) is int) \
            or not isinstance(parts, dict) or not (parent is None or isinstance(parent, dict)):
        raise WeightsError(f"{source} is damaged: hparams, dataset, seed, max_steps, parts or parent has the wrong type")
    if not isinstance(precision, str) or not isinstance(trackers, list) or not all(isinstance(t, str) for t in trackers):
        raise WeightsError(f"{source} is damaged: precision must be a string and trackers a list of names")
    try:
        hp = Recipe.of(spec, registry, parts, config["dataset"]).schema.resolve({**config["hparams"], **overrides})
    except UsageError as exc:
        raise WeightsError(f"{source}: {exc} (was it edited?)") from None
    return StoredRun(spec, hp, config["dataset"], seed, max_steps, parts, parent, precision, tuple(trackers))


def save(run: RunDir, state: TrainState, model: nn.Module, objective: nn.Module,
         optimizers: Mapping[str, torch.optim.Optimizer], config: Mapping[str, Any], device: torch.device) -> Path:
    """Write a checkpoint of everything (atomically) and drop the mid-epoch ones it supersedes."""
    tensors, meta = checkpoint.checkpoint_tensors(model, objective, optimizers)
    rng_tensors, rng_meta = rng.capture(device)
    tensors.update(rng_tensors)
    tensors[DATA_ORDER] = state.data_order
    tensors.update({f"{SUMS}{key}": value.detach().cpu().contiguous().clone() for key, value in state.sums.items()})
    meta.update(epoch=state.epoch, step=state.step, batch=state.batch, skipped=state.skipped,
                config=dict(config), rng=rng_meta, grad_scaler=state.grad_scaler)
    path = checkpoint_path(run, state)
    checkpoint.write(path, tensors, meta)
    for older in run.checkpoints.glob("step-*.safetensors"):
        if older != path:
            older.unlink()
    return path


def checkpoint_path(run: RunDir, state: TrainState) -> Path:
    """Where `save` writes a checkpoint of `state`: epoch-N at an epoch end, else step-N."""
    name = f"step-{state.step:08d}" if state.batch else f"epoch-{state.epoch:04d}"
    return run.checkpoints / f"{name}.safetensors"


def restore(run: RunDir, config: dict[str, Any], model: nn.Module, objective: nn.Module,
            optimizers: Mapping[str, torch.optim.Optimizer], device: torch.device,
            *, tidy: bool = True) -> tuple[TrainState, dict[str, Any], list[dict[str, Any]], Path | None]:
    """Load the newest checkpoint into the modules, optimizers and RNGs.

    Returns the state to continue from, the config to keep (config.json's, with `config`'s
    hyperparameters), the metrics records to keep and the checkpoint used (None: start over).
    Every check runs before anything in the run folder changes; `tidy` (the process that writes)
    then drops the metrics of an epoch being redone and half-written files.
    """
    stored = run.read_config()
    _check_same_run(config, "now", stored, "in config.json",
                    f"the data and settings given now do not match {run.path / CONFIG}")
    config = {**stored, "hparams": config["hparams"]}
    found = newest_checkpoint(run)
    if found is None:
        state, path = TrainState.start(config["seed"]), None
    else:
        path, tensors, meta = found
        _check_same_run(config, "in config.json", meta["config"], "in the checkpoint",
                        f"{path} belongs to a different run than {run.path / CONFIG} (was it edited?)")
        state = _load(path, tensors, meta, model, objective, optimizers, device)
    epochs = config["hparams"][EXTENDABLE]
    if epochs < state.epoch:
        raise UsageError(f"--epochs {epochs}: {run.path} has already completed {state.epoch} epochs")
    records = _metrics_up_to(run, state.epoch, tidy)
    if tidy:
        run.remove_temporaries()
    return state, config, records, path


def newest_checkpoint(run: RunDir) -> tuple[Path, dict[str, Tensor], dict[str, Any]] | None:
    """The checkpoint with the most steps (an epoch end wins a tie), read and decoded; None if there is none."""
    newest: tuple[tuple[int, int], Path, dict[str, Tensor], dict[str, Any]] | None = None
    for pattern in (EPOCH_FILE, STEP_FILE):
        numbered = [(int(m.group(1)), p) for p in run.checkpoints.glob("*.safetensors") if (m := pattern.fullmatch(p.name))]
        if not numbered:
            continue
        path = max(numbered)[1]
        tensors, raw = checkpoint.read(path)
        meta = {key: _decode(raw, key, path) for key in ("epoch", "step", "batch", "skipped", "config", "optimizers", "rng")}
        meta["grad_scaler"] = _decode(raw, "grad_scaler", path) if "grad_scaler" in raw else None
        if not all(type(meta[key]) is int for key in ("epoch", "step", "batch", "skipped")):
            raise WeightsError(f"{path} is damaged: its epoch, step, batch or skipped count is not a whole number")
        rank = (meta["step"], meta["epoch"])
        if newest is None or rank > newest[0]:
            newest = (rank, path, tensors, meta)
    return None if newest is None else newest[1:]


def _decode(raw: Mapping[str, str], key: str, path: Path) -> Any:
    try:
        return json.loads(raw[key])
    except (KeyError, ValueError):
        raise WeightsError(f"{path} is not a vaezoo training checkpoint (its '{key}' entry is missing or damaged)") from None


def _result(config: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of `config` that decide the result, hyperparameters flattened, the extendable one left out."""
    flat = {key: config.get(key) for key in RESULT_KEYS if key != "hparams"}
    flat["precision"] = config.get("precision", DEFAULT_PRECISION)  # runs from before --precision: float32
    hparams = config.get("hparams")
    if isinstance(hparams, Mapping):
        flat.update({f"hparams.{k}": v for k, v in hparams.items() if k != EXTENDABLE})
    return flat


def _check_same_run(config: Mapping[str, Any], label: str, other: Any, other_label: str, problem: str) -> None:
    mine, theirs = _result(config), _result(other if isinstance(other, Mapping) else {})
    differences = [f"{key} is {theirs.get(key)!r} {other_label} but {mine.get(key)!r} {label}"
                   for key in sorted(set(mine) | set(theirs)) if mine.get(key) != theirs.get(key)]
    if differences:
        raise WeightsError(f"{problem}: {'; '.join(differences[:3])}")


def _load(path: Path, tensors: Mapping[str, Tensor], meta: Mapping[str, Any], model: nn.Module,
          objective: nn.Module, optimizers: Mapping[str, torch.optim.Optimizer], device: torch.device) -> TrainState:
    if set(meta["optimizers"]) != set(optimizers):
        raise WeightsError(f"{path} holds optimizers {sorted(meta['optimizers'])} but this run has {sorted(optimizers)}")
    checkpoint.load_module_state(model, tensors, "model/", path)
    checkpoint.load_module_state(objective, tensors, "objective/", path)
    try:
        for name, optimizer in optimizers.items():
            checkpoint.restore_optimizer(optimizer, f"optimizer.{name}/", tensors, meta["optimizers"][name])
        state = TrainState(data_order=tensors[DATA_ORDER], epoch=int(meta["epoch"]), step=int(meta["step"]),
                           batch=int(meta["batch"]), skipped=int(meta["skipped"]),
                           sums={k[len(SUMS):]: v.to(device) for k, v in tensors.items() if k.startswith(SUMS)},
                           grad_scaler=meta["grad_scaler"])
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise WeightsError(f"{path} does not match this run's optimizers or state ({exc})") from None
    rng.restore(tensors, meta["rng"], device, path)
    return state


def _metrics_up_to(run: RunDir, epoch: int, tidy: bool) -> list[dict[str, Any]]:
    """The records of the `epoch` epochs the checkpoint completed; a record of the epoch being redone is dropped.

    metrics.jsonl is written just before each epoch's checkpoint, so a kill between the two leaves
    one record more than checkpoints; more than that means checkpoints were deleted.
    """
    records = run.read_metrics()
    kept = [r for r in records if isinstance(r.get("epoch"), int) and r["epoch"] <= epoch]
    if [r["epoch"] for r in kept] != list(range(1, epoch + 1)) or len(records) > epoch + 1:
        raise WeightsError(
            f"{run.path / METRICS_JSONL} records epochs {[r.get('epoch') for r in records]} but the newest "
            f"checkpoint completed {epoch}: checkpoints are missing or the metrics were edited")
    if tidy and len(kept) < len(records):
        run.write_metrics(kept)
    return kept
