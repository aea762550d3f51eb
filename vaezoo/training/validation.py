"""Checking a stored training state against the run's config and the model built for it, before any of it is used.

A checkpoint or config.json may be damaged or crafted. Everything resume restores is checked
here first: the run's settings, the step counters, the data-order and random-number states, the
running sums, the model's and objective's tensors and every optimizer's state, which must have
the layout one step of the same optimizer on the same parameters creates (a moment of the wrong
size makes a fused Adam step read and write out of bounds). A bad entry is one WeightsError naming
the file and the entry; nothing in the run folder changes until all of it checks out.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vaezoo.errors import WeightsError
from vaezoo.storage import checkpoint
from vaezoo.storage.runs import EPOCH_FILE, STEP_FILE
from vaezoo.training import rng

#: Counters beyond this are not a run that happened (and would overflow the 64-bit step the loop keeps on the device).
LARGEST_COUNT = 2**53
#: Optimizer state that is a running mean of squares: negative values are damage (their square root is NaN).
NONNEGATIVE_STATE = ("step", "exp_avg_sq", "max_exp_avg_sq", "square_avg")
DATA_ORDER = "rng/data_order"
SUMS = "sums/"
MODEL, OBJECTIVE = "model/", "objective/"


def check_config(config: Mapping[str, Any], source: Path) -> None:
    """The settings in a run's config.json that the loop uses directly, beyond the hyperparameters."""
    seed, max_steps, dataset = config.get("seed"), config.get("max_steps"), config.get("dataset")
    world, shape = config.get("world_size", 1), config.get("input_shape")
    problems = []
    if not isinstance(config.get("hparams"), dict):
        problems.append("hparams is not an object")
    if not isinstance(dataset, str) or not dataset:
        problems.append(f"dataset is {dataset!r}, not a name")
    try:
        rng.check_seed(seed, "seed")
    except Exception as exc:
        problems.append(str(exc))
    if not (max_steps is None or (type(max_steps) is int and 1 <= max_steps <= LARGEST_COUNT)):
        problems.append(f"max_steps is {max_steps!r}, not null or a whole number of at least 1")
    if not (type(world) is int and world >= 1):
        problems.append(f"world_size is {world!r}, not a whole number of at least 1")
    if not (isinstance(shape, list) and len(shape) == 3 and all(type(d) is int and d > 0 for d in shape)):
        problems.append(f"input_shape is {shape!r}, not three positive whole numbers")
    if problems:
        raise WeightsError(f"{source} is damaged or was edited: {'; '.join(problems)}")


def check_checkpoint(path: Path, tensors: Mapping[str, Tensor], meta: Mapping[str, Any], *, model: nn.Module,
                     objective: nn.Module, optimizers: Mapping[str, torch.optim.Optimizer], config: Mapping[str, Any],
                     batches_per_epoch: int, device: torch.device) -> dict[str, int]:
    """Check every entry of a decoded checkpoint; return its counters (epoch, step, batch, skipped)."""
    counts = _check_counts(path, meta, config, batches_per_epoch)
    rng.check_generator_state(tensors.get(DATA_ORDER), path, DATA_ORDER)
    rng.check(tensors, meta["rng"], device, path)
    _check_sums(path, tensors, counts)
    for prefix, module in ((MODEL, model), (OBJECTIVE, objective)):
        checkpoint.check_module_state(module, tensors, prefix, path)
        _check_finite_parameters(module, tensors, prefix, path)
    saved = meta["optimizers"]
    if not isinstance(saved, Mapping) or set(saved) != set(optimizers):
        found = sorted(saved) if isinstance(saved, Mapping) else type(saved).__name__
        raise WeightsError(f"{path}: its 'optimizers' entry holds {found} but this run has {sorted(optimizers)}")
    known = {f"optimizer.{name}/" for name in optimizers}
    for name in tensors:
        if name.startswith("optimizer.") and not any(name.startswith(prefix) for prefix in known):
            raise WeightsError(f"{path}: tensor {name} belongs to no optimizer of this run")
    for name, optimizer in optimizers.items():
        check_optimizer_state(path, name, optimizer, tensors, saved[name], counts["step"])
    return counts


def _check_counts(path: Path, meta: Mapping[str, Any], config: Mapping[str, Any],
                  batches_per_epoch: int) -> dict[str, int]:
    counts = {key: meta.get(key) for key in ("epoch", "step", "batch", "skipped")}
    bad = [key for key, value in counts.items() if type(value) is not int or not 0 <= value <= LARGEST_COUNT]
    if bad:
        raise WeightsError(f"{path} is damaged: its {', '.join(bad)} is not a plausible whole number")
    epoch, step, batch, skipped = counts.values()
    max_steps = config.get("max_steps")
    problems = []
    if skipped > batch:
        problems.append(f"{skipped} batches skipped of {batch} drawn")
    if batch >= batches_per_epoch:
        problems.append(f"batch {batch} of an epoch of {batches_per_epoch} batches")
    cut_short = max_steps is not None and step == max_steps and not batch  # the last epoch ended at max_steps
    if step != epoch * batches_per_epoch + batch and not cut_short:
        problems.append(f"step {step} does not follow from epoch {epoch} and batch {batch} "
                        f"at {batches_per_epoch} batches per epoch (or the data given now is not the run's)")
    if max_steps is not None and step > max_steps:
        problems.append(f"step {step} beyond max_steps {max_steps}")
    epoch_file, step_file = EPOCH_FILE.fullmatch(path.name), STEP_FILE.fullmatch(path.name)
    if epoch_file and (int(epoch_file.group(1)) != epoch or batch):
        problems.append(f"an epoch-end file holding epoch {epoch}, batch {batch}")
    if step_file and (int(step_file.group(1)) != step or not batch):
        problems.append(f"a mid-epoch file holding step {step}, batch {batch}")
    if problems:
        raise WeightsError(f"{path} is damaged or was edited: {'; '.join(problems)}")
    return counts


def _check_sums(path: Path, tensors: Mapping[str, Tensor], counts: Mapping[str, int]) -> None:
    """The running sums of the epoch in progress: finite float scalars or vectors, present iff a batch was used."""
    sums = {name: t for name, t in tensors.items() if name.startswith(SUMS)}
    for name, value in sums.items():
        if not value.is_floating_point() or value.dim() > 1 or not bool(torch.isfinite(value).all()):
            raise WeightsError(f"{path}: tensor {name} is not a finite running sum (a float scalar or vector)")
    used = counts["batch"] - counts["skipped"]
    if bool(used) != bool(sums) or (used and f"{SUMS}loss" not in sums):
        raise WeightsError(f"{path} is damaged: it holds sums of {sorted(sums) or 'no'} terms "
                           f"after {used} batches used in the epoch in progress")


def check_sums_match_records(path: Path, tensors: Mapping[str, Tensor], records: list[dict[str, Any]]) -> None:
    """Each epoch sums the same terms: the sums carried mid-epoch must have the shapes of the last record's."""
    sums = {name[len(SUMS):]: t for name, t in tensors.items() if name.startswith(SUMS)}
    if not sums or not records:
        return
    logged = {key: len(v) if isinstance(v, list) else None for key, v in records[-1]["train"].items()}
    shapes = {key: t.numel() if t.dim() else None for key, t in sums.items()}
    if logged != shapes:
        raise WeightsError(f"{path}: its running sums {shapes} do not have the terms and sizes the earlier epochs "
                           f"logged {logged} (damaged or edited)")


def _check_finite_parameters(module: nn.Module, tensors: Mapping[str, Tensor], prefix: str, path: Path) -> None:
    """Trainable weights are never checkpointed non-finite (the loop checks the loss first): such a file is damaged."""
    for name, _ in module.named_parameters():
        value = tensors[prefix + name]
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise WeightsError(f"{path}: tensor {prefix}{name} holds NaN or infinite values (damaged?)")


def check_optimizer_state(path: Path, name: str, optimizer: torch.optim.Optimizer, tensors: Mapping[str, Tensor],
                          saved: Any, steps_taken: int) -> None:
    """One optimizer's saved state against the state one step of a copy of it creates on the same parameters."""
    where = f"{path}: optimizer '{name}'"
    if not isinstance(saved, Mapping) or not isinstance(saved.get("param_groups"), list) \
            or not isinstance(saved.get("scalars"), Mapping):
        raise WeightsError(f"{where} is damaged: its param_groups or scalars are missing")
    reference = _one_step_state(optimizer)
    _check_param_groups(where, saved["param_groups"], reference["param_groups"])
    expected = reference["state"]
    prefix = f"optimizer.{name}/"
    seen: dict[int, set[str]] = {}
    for key, value in tensors.items():
        if not key.startswith(prefix):
            continue
        index_text, _, entry = key[len(prefix):].partition("/")
        index = int(index_text) if index_text.isdecimal() else -1
        want = expected.get(index, {}).get(entry)
        if not isinstance(want, Tensor):
            raise WeightsError(f"{where}: tensor {key} is not part of this optimizer's state")
        if value.shape != want.shape or value.dtype != want.dtype:
            raise WeightsError(f"{where}: tensor {key} has shape {list(value.shape)} and dtype {value.dtype}, "
                               f"but its parameter needs {list(want.shape)} and {want.dtype}")
        _check_plausible(where, key, entry, value, steps_taken)
        seen.setdefault(index, set()).add(entry)
    for index_text, values in saved["scalars"].items():
        index = int(index_text) if isinstance(index_text, str) and index_text.isdecimal() else -1
        for entry, value in (values.items() if isinstance(values, Mapping) else [("?", values)]):
            want = expected.get(index, {}).get(entry, _MISSING)
            if isinstance(want, Tensor) or want is _MISSING or type(value) is not type(want):
                raise WeightsError(f"{where}: scalar state {index_text}/{entry} = {value!r} is not part of its state")
            seen.setdefault(index, set()).add(entry)
    for index, entries in seen.items():  # a parameter has all of its state or none (never stepped)
        if entries != set(expected[index]):
            raise WeightsError(f"{where}: the state of parameter {index} has {sorted(entries)}, "
                               f"expected {sorted(expected[index])}")


_MISSING = object()


def _one_step_state(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The state_dict of a copy of `optimizer` after one step with zero gradients: the layout a saved state must
    have."""
    probe = copy.deepcopy(optimizer)
    for group in probe.param_groups:
        for param in group["params"]:
            param.grad = torch.zeros_like(param)
    probe.step()
    return probe.state_dict()


def _check_param_groups(where: str, saved: list[Any], expected: list[dict[str, Any]]) -> None:
    """Hyperparameters come from the run's config, so the saved ones must be the same (a string lr is not)."""
    if len(saved) != len(expected):
        raise WeightsError(f"{where} has {len(saved)} parameter groups, this run {len(expected)}")
    for number, (group, want) in enumerate(zip(saved, expected)):
        if not isinstance(group, Mapping):
            raise WeightsError(f"{where}: parameter group {number} is not an object")
        for key, value in want.items():
            if key in ("foreach", "fused", "capturable", "differentiable"):
                continue  # how the kernel runs, chosen for this device, not what it computes
            have = group.get(key, _MISSING)
            if have is _MISSING:
                continue  # written by an older torch without this option; this run's value is used
            same = list(have) == list(value) if isinstance(value, (tuple, list)) and isinstance(have, (tuple, list)) \
                else type(have) is type(value) and have == value
            if not same:
                raise WeightsError(f"{where}: parameter group {number} has {key} = {have!r}, but this run's config "
                                   f"gives {value!r} (damaged or edited)")


def _check_plausible(where: str, key: str, entry: str, value: Tensor, steps_taken: int) -> None:
    if value.is_floating_point() and not bool(torch.isfinite(value).all()):
        raise WeightsError(f"{where}: tensor {key} holds NaN or infinite values")
    if entry in NONNEGATIVE_STATE and bool((value < 0).any()):
        raise WeightsError(f"{where}: tensor {key} holds negative values, which this state never has")
    if entry == "step":
        steps = float(value.max()) if value.numel() else 0.0
        if steps != math.floor(steps) or steps > steps_taken:
            raise WeightsError(f"{where}: tensor {key} counts {steps:g} optimizer steps, "
                               f"but the checkpoint records only {steps_taken} batches drawn")
