"""A benchmark protocol: the data, the training budget, the seeds and the evaluation, fixed for every variant."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vaezoo.errors import UsageError

if TYPE_CHECKING:
    from vaezoo.registry import Registry


@dataclass(frozen=True)
class Published:
    """A number the literature reports for a protocol's dataset: context for the table, not a target (its
    source used its own architecture and budget, which `source` states)."""

    variant: str  # our variant that corresponds
    dataset: str  # the protocol's dataset label
    nll: float  # -log p(x), nats, on the original image (784 values for FashionMNIST)
    source: str


@dataclass(frozen=True)
class Ordering:
    """A paper's headline claim as an ordering of test -log p(x): `better` beats `worse`."""

    better: str
    worse: str
    claim: str  # who says so


@dataclass(frozen=True)
class Protocol:
    """What `vaezoo bench` runs: every selected variant x dataset x seed, trained and evaluated alike.

    datasets: label -> registered dataset (e.g. "grey" and "binarized" versions of one data set).
    overrides: variant -> hyperparameters changed to fit the budget (printed beside the table).
    parents: second-stage variant -> the first-stage variant whose run (same dataset and seed) it trains on.
    region: (top, bottom, left, right) of the original image in a padded one, measured apart.
    quality_dataset: the dataset label whose samples are scored (Frechet distance, precision, recall).
    samplers: where the scored samples come from: "prior" (the model's own) and post-hoc samplers,
    each fitted to the run's training codes first (models without a flat code score the prior only).
    published, orderings: the literature's numbers and headline orderings, printed beside the table.
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
    samplers: tuple[str, ...] = ("prior", "gmm")
    published: tuple[Published, ...] = ()
    orderings: tuple[Ordering, ...] = ()

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
            for key in ("seeds", "variants", "exclude", "region", "samplers"):
                if values.get(key) is not None:
                    values[key] = tuple(values[key])
            for key, kind in (("published", Published), ("orderings", Ordering)):
                if not all(isinstance(item, Mapping) for item in values.get(key, ())):
                    raise UsageError(f"{source}: {key} must be a list of objects")
                values[key] = tuple(kind(**item) for item in values.get(key, ()))
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
               *protocol.parents.values(), *protocol.samplers,
               *(text for p in protocol.published for text in (p.variant, p.dataset, p.source)),
               *(text for o in protocol.orderings for text in (o.better, o.worse, o.claim)))
    numbers = [p.nll for p in protocol.published]
    if not all(type(v) is int for v in ints) or not all(isinstance(v, str) for v in strings) \
            or not all(type(v) in (int, float) and math.isfinite(v) for v in numbers) \
            or not all(isinstance(v, Mapping) for v in protocol.overrides.values()):
        raise UsageError(f"protocol {protocol.name}: values have the wrong types (numbers must be whole, names "
                         "strings, overrides objects)")


def load_protocol(name_or_path: str, registry: Registry) -> Protocol:
    """A registered protocol by name, or one from a JSON file (untrusted: every key and type checked)."""
    if name_or_path in registry.names("protocol"):
        protocol = registry.load("protocol", name_or_path)
        if not isinstance(protocol, Protocol):
            raise UsageError(f"protocol '{name_or_path}' from plugin '{registry.get('protocol', name_or_path).plugin}' "
                             "is not a vaezoo.bench.protocol.Protocol")
        return protocol
    path = Path(name_or_path)
    if not path.is_file():
        raise UsageError(f"protocol '{name_or_path}' is neither registered ({', '.join(registry.names('protocol'))}) "
                         "nor a JSON file")
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path} is not a readable JSON protocol ({exc})") from None
    if not isinstance(values, dict):
        raise UsageError(f"{path}: a protocol is a JSON object")
    return Protocol.from_dict(values, str(path))
