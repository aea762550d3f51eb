"""A benchmark protocol: the data, the training budget, the seeds and the evaluation, fixed for every variant."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vaezoo.errors import UsageError


@dataclass(frozen=True)
class Protocol:
    """What `vaezoo bench` runs: every selected variant x dataset x seed, trained and evaluated alike.

    datasets: label -> registered dataset (e.g. "grey" and "binarized" versions of one data set).
    overrides: variant -> hyperparameters changed to fit the budget (printed beside the table).
    parents: second-stage variant -> the first-stage variant whose run (same dataset and seed) it trains on.
    region: (top, bottom, left, right) of the original image in a padded one, measured apart.
    quality_dataset: the dataset label whose samples are scored (Frechet distance, precision, recall).
    """

    name: str
    datasets: Mapping[str, str]
    epochs: int
    seeds: tuple[int, ...]
    importance_samples: int
    variants: tuple[str, ...] = ()  # empty: every registered variant
    exclude: tuple[str, ...] = ()
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    parents: Mapping[str, str] = field(default_factory=dict)
    region: tuple[int, int, int, int] | None = None
    quality_dataset: str | None = None
    sample_images: int = 2000
    classifier_epochs: int = 2

    def __post_init__(self):
        _check_types(self)
        if self.epochs < 1 or self.importance_samples < 1 or not self.seeds or not self.datasets:
            raise UsageError(f"protocol {self.name}: epochs and importance_samples must be at least 1, "
                             "and seeds and datasets non-empty")
        if self.quality_dataset is not None and self.quality_dataset not in self.datasets:
            raise UsageError(f"protocol {self.name}: quality_dataset '{self.quality_dataset}' is not one of its "
                             f"datasets ({', '.join(self.datasets)})")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str) -> Protocol:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise UsageError(f"{source}: unknown protocol keys {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        try:
            values = dict(values)
            for key in ("seeds", "variants", "exclude", "region"):
                if values.get(key) is not None:
                    values[key] = tuple(values[key])
            return cls(**values)
        except TypeError as exc:
            raise UsageError(f"{source}: not a protocol ({exc})") from None
        except UsageError as exc:
            raise UsageError(f"{source}: {exc}") from None


def _check_types(protocol: Protocol) -> None:
    if not (isinstance(protocol.datasets, Mapping) and isinstance(protocol.overrides, Mapping)
            and isinstance(protocol.parents, Mapping)):
        raise UsageError(f"protocol {protocol.name}: datasets, overrides and parents must be objects")
    ints = (protocol.epochs, protocol.importance_samples, protocol.sample_images, protocol.classifier_epochs,
            *protocol.seeds, *(protocol.region or ()))
    strings = (*protocol.datasets.values(), *protocol.variants, *protocol.exclude, *protocol.parents,
               *protocol.parents.values())
    if not all(type(v) is int for v in ints) or not all(isinstance(v, str) for v in strings) \
            or not all(isinstance(v, Mapping) for v in protocol.overrides.values()):
        raise UsageError(f"protocol {protocol.name}: values have the wrong types (numbers must be whole, names "
                         "strings, overrides objects)")


#: Grey levels as Bernoulli probabilities (the reference model's protocol) and dynamically
#: binarised images (the literature's), 2 seeds, a 2-epoch budget a 2-core CPU can afford for the
#: whole zoo; variants whose default cost many decoder passes per image are cut to 8 samples.
FASHION_MNIST = Protocol(
    name="fashion-mnist",
    datasets={"grey": "fashion-mnist", "binarized": "binarized-fashion-mnist"},
    epochs=2,
    seeds=(0, 1),
    importance_samples=100,
    overrides={"ciwae": {"k": 8}, "miwae": {"m": 2, "k": 4}, "piwae": {"m": 2, "k": 4}},
    region=(2, 30, 2, 30),
    quality_dataset="grey",
)

BUILT_IN = {FASHION_MNIST.name: FASHION_MNIST}


def load_protocol(name_or_path: str) -> Protocol:
    """A built-in protocol by name, or one from a JSON file (untrusted: every key and type checked)."""
    if name_or_path in BUILT_IN:
        return BUILT_IN[name_or_path]
    path = Path(name_or_path)
    if not path.is_file():
        raise UsageError(f"protocol '{name_or_path}' is neither built in ({', '.join(BUILT_IN)}) nor a JSON file")
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path} is not a readable JSON protocol ({exc})") from None
    if not isinstance(values, dict):
        raise UsageError(f"{path}: a protocol is a JSON object")
    return Protocol.from_dict(values, str(path))
