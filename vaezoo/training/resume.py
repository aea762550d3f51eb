"""Where training stands (TrainState), saved in every checkpoint, and picking a run up from its newest one.

A checkpoint holds the model, the objective, every optimizer, every random-number generator and
the TrainState, so a resumed run continues exactly as the uninterrupted one would (bit for bit on CPU).
"""

from __future__ import annotations

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
from vaezoo.storage.files import parse_json
from vaezoo.storage.runs import CONFIG, EPOCH_FILE, METRICS_JSONL, STEP_FILE, RunDir
from vaezoo.training import rng, validation
from vaezoo.training.validation import DATA_ORDER, SUMS
from vaezoo.variant import Recipe, VariantSpec

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
    validation.check_config(config, source)
    spec = registry.variant(str(config["variant"]))
    overrides = {}
    if epochs is not None:
        overrides[EXTENDABLE] = spec.schema[EXTENDABLE].parse(epochs)
    parts, parent = config.get("parts", {}), config.get("parent")
    precision, trackers = config.get("precision", DEFAULT_PRECISION), config.get("trackers", [])
    if not isinstance(parts, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in parts.items()) \
            or not (parent is None or isinstance(parent, dict)):
        raise WeightsError(f"{source} is damaged: parts must map kinds to names and parent be an object")
    if not isinstance(precision, str) or not isinstance(trackers, list) or not all(isinstance(t, str) for t in trackers):
        raise WeightsError(f"{source} is damaged: precision must be a string and trackers a list of names")
    try:
        hp = Recipe.of(spec, registry, parts, config["dataset"]).schema.resolve({**config["hparams"], **overrides})
    except UsageError as exc:
        raise WeightsError(f"{source}: {exc} (was it edited?)") from None
    return StoredRun(spec, hp, config["dataset"], config["seed"], config.get("max_steps"), parts, parent, precision,
                     tuple(trackers))


def save(run: RunDir, state: TrainState, model: nn.Module, objective: nn.Module,
         optimizers: Mapping[str, torch.optim.Optimizer], config: Mapping[str, Any], device: torch.device) -> Path:
    """Write a checkpoint of everything (atomically), then drop the checkpoints it supersedes: older mid-epoch
    ones, and epoch ones beyond the run's --keep-checkpoints (never the one just written)."""
    tensors, meta = checkpoint.checkpoint_tensors(model, objective, optimizers)
    rng_tensors, rng_meta = rng.capture(device)
    tensors.update(rng_tensors)
    tensors[DATA_ORDER] = state.data_order
    tensors.update({f"{SUMS}{key}": value.detach().cpu().contiguous().clone() for key, value in state.sums.items()})
    meta.update(epoch=state.epoch, step=state.step, batch=state.batch, skipped=state.skipped,
                config=dict(config), rng=rng_meta, grad_scaler=state.grad_scaler)
    path = run.write_checkpoint(checkpoint_path(run, state).name, checkpoint.encode(tensors, meta))
    superseded = [p for p in _numbered(run, STEP_FILE) if p != path]
    if run.keep_checkpoints is not None:
        superseded += [p for p in _numbered(run, EPOCH_FILE)[:-run.keep_checkpoints] if p != path]
    run.delete_checkpoints(superseded)
    return path


def _numbered(run: RunDir, pattern) -> list[Path]:
    """The checkpoints named by `pattern`, oldest first."""
    found = [(int(m.group(1)), p) for p in run.checkpoints.glob("*.safetensors") if (m := pattern.fullmatch(p.name))]
    return [p for _, p in sorted(found)]


def checkpoint_path(run: RunDir, state: TrainState) -> Path:
    """Where `save` writes a checkpoint of `state`: epoch-N at an epoch end, else step-N."""
    name = f"step-{state.step:08d}" if state.batch else f"epoch-{state.epoch:04d}"
    return run.checkpoints / f"{name}.safetensors"


def restore(run: RunDir, config: dict[str, Any], model: nn.Module, objective: nn.Module,
            optimizers: Mapping[str, torch.optim.Optimizer], device: torch.device, *, batches_per_epoch: int,
            tidy: bool = True) -> tuple[TrainState, dict[str, Any], list[dict[str, Any]], Path | None]:
    """Load the newest checkpoint into the modules, optimizers and RNGs.

    Returns the state to continue from, the config to keep (config.json's, with `config`'s
    hyperparameters), the metrics records to keep and the checkpoint used (None: start over).
    Everything stored is checked first (vaezoo.training.validation): the run folder, the modules and
    the random-number generators change only once all of it is valid. `tidy` (the process that
    writes) then drops the metrics of an epoch being redone and half-written files.
    """
    stored = run.read_config()
    validation.check_config(stored, run.path / CONFIG)
    _check_same_run(config, "now", stored, "in config.json",
                    f"the data and settings given now do not match {run.path / CONFIG}")
    config = {**stored, "hparams": config["hparams"]}
    found = newest_checkpoint(run)
    counts = {"epoch": 0}
    if found is not None:
        path, tensors, meta = found
        _check_same_run(config, "in config.json", meta["config"], "in the checkpoint",
                        f"{path} belongs to a different run than {run.path / CONFIG} (was it edited?)")
        counts = validation.check_checkpoint(path, tensors, meta, model=model, objective=objective,
                                             optimizers=optimizers, config=config,
                                             batches_per_epoch=batches_per_epoch, device=device)
    epochs = config["hparams"][EXTENDABLE]
    if epochs < counts["epoch"]:
        raise UsageError(f"--epochs {epochs}: {run.path} has already completed {counts['epoch']} epochs")
    records, kept = _metrics_up_to(run, counts["epoch"])
    if found is None:
        state, path = TrainState.start(config["seed"]), None
    else:
        validation.check_sums_match_records(path, tensors, kept)
        state = _load(tensors, meta, counts, model, objective, optimizers, device, path)
    if tidy:
        if len(kept) < len(records):
            run.write_metrics(kept)
        run.remove_temporaries()
    return state, config, kept, path


def newest_checkpoint(run: RunDir) -> tuple[Path, dict[str, Tensor], dict[str, Any]] | None:
    """The checkpoint with the most steps (an epoch end wins a tie), read and decoded; None if there is none."""
    newest: tuple[tuple[int, int], Path, dict[str, Tensor], dict[str, Any]] | None = None
    for pattern in (EPOCH_FILE, STEP_FILE):
        numbered = _numbered(run, pattern)
        if not numbered:
            continue
        path = numbered[-1]
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
        return parse_json(raw[key])
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


def _load(tensors: Mapping[str, Tensor], meta: Mapping[str, Any], counts: Mapping[str, int], model: nn.Module,
          objective: nn.Module, optimizers: Mapping[str, torch.optim.Optimizer], device: torch.device,
          path: Path) -> TrainState:
    """Put a checked checkpoint's contents in place (nothing here can fail on a checked file)."""
    checkpoint.load_module_state(model, tensors, "model/", path)
    checkpoint.load_module_state(objective, tensors, "objective/", path)
    for name, optimizer in optimizers.items():
        checkpoint.restore_optimizer(optimizer, f"optimizer.{name}/", tensors, meta["optimizers"][name])
    rng.restore(tensors, meta["rng"], device, path)
    return TrainState(data_order=tensors[DATA_ORDER], **counts,
                      sums={k[len(SUMS):]: v.to(device) for k, v in tensors.items() if k.startswith(SUMS)},
                      grad_scaler=meta["grad_scaler"])


def _metrics_up_to(run: RunDir, epoch: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """All records, and those of the `epoch` epochs the checkpoint completed (a record of the epoch being redone
    is dropped).

    metrics.jsonl is written just before each epoch's checkpoint, so a kill between the two leaves
    one record more than checkpoints; more than that means checkpoints were deleted.
    """
    records = run.read_metrics()
    kept = [r for r in records if r["epoch"] <= epoch]
    if [r["epoch"] for r in kept] != list(range(1, epoch + 1)) or len(records) > epoch + 1:
        raise WeightsError(
            f"{run.path / METRICS_JSONL} records epochs {[r.get('epoch') for r in records][:20]} but the newest "
            f"checkpoint completed {epoch}: checkpoints are missing or the metrics were edited")
    return records, kept
