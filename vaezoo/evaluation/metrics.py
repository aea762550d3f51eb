"""Registered metrics: the contract a metric plugin fulfils, and running chosen metrics on a model.

A plugin registers a `Metric` by import path (`register_metrics`). Its `compute(truth, rng,
**settings)` returns named scores; `params` are its typed settings with their defaults (a user
changes one with `--metric-option NAME.SETTING=VALUE`); `requires` names the modules it imports
and how to install them, checked before anything runs. Every metric gets its own generator seeded
with the evaluation seed, so its result does not depend on which other metrics ran.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vaezoo.errors import UsageError, VaezooError
from vaezoo.evaluation.ground_truth import EncodedGrid
from vaezoo.hparams import Param, Schema

if TYPE_CHECKING:
    from vaezoo.registry import Registry

__all__ = ["ALL", "EncodedGrid", "Metric", "Planned", "plan", "run"]

#: Selects every registered metric.
ALL = "disentanglement"


@dataclass(frozen=True)
class Metric:
    """A metric: `compute(truth: GroundTruth, rng: numpy Generator, **settings) -> {score: value}`."""

    compute: Callable[..., Mapping[str, float]]
    params: tuple[Param, ...]
    headline: str  # the score people quote, shown first
    paper: str = ""
    requires: Mapping[str, str] = field(default_factory=dict)  # module -> how to install it
    schema: Schema = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "schema", Schema(tuple(self.params)))


@dataclass(frozen=True)
class Planned:
    """One metric to run, with its resolved settings."""

    name: str
    metric: Metric
    settings: dict[str, Any]


def plan(selection: str | Iterable[str], options: Iterable[str], registry: Registry) -> list[Planned]:
    """The metrics `selection` names (a comma list, or "disentanglement" for all), with `options`
    ("metric.setting=value") applied; unknown names, bad values and missing packages are errors
    here, before anything is computed."""
    texts = selection.split(",") if isinstance(selection, str) else list(selection)
    names: list[str] = []
    for text in (t.strip() for t in texts):
        for name in registry.names("metric") if text == ALL else [text] if text else []:
            if name not in names:
                names.append(name)
    if not names:
        raise UsageError(f"name at least one metric, or '{ALL}' for all of them: {', '.join(registry.names('metric'))}")
    metrics = {name: _load(name, registry) for name in names}
    chosen: dict[str, list[str]] = {name: [] for name in names}
    for option in options:
        name, dot, setting = option.partition(".")
        if not dot or name not in chosen:
            raise UsageError(f"metric option '{option}' must look like METRIC.SETTING=VALUE for a chosen metric "
                             f"({', '.join(names)})")
        chosen[name].append(setting)
    for name, metric in metrics.items():
        for module, install in metric.requires.items():
            if importlib.util.find_spec(module) is None:
                raise UsageError(f"metric {name} needs the Python package {module}, which is not installed: {install}")
    return [Planned(name, metrics[name], metrics[name].schema.resolve(texts=chosen[name]).to_dict()) for name in names]


def _load(name: str, registry: Registry) -> Metric:
    entry = registry.get("metric", name)
    metric = entry.load()
    if not isinstance(metric, Metric):
        raise VaezooError(f"metric '{name}' from plugin '{entry.plugin}' is not a vaezoo.evaluation.metrics.Metric")
    return metric


def run(planned: list[Planned], grid: EncodedGrid, seed: int) -> dict[str, Any]:
    """Every planned metric on a model's representation of a dataset, with its settings, seed and time."""
    import numpy as np

    truth = grid.ground_truth()
    results = {}
    for p in planned:
        started = time.perf_counter()
        scores = p.metric.compute(truth, np.random.default_rng(seed), **p.settings)
        results[p.name] = {"scores": {k: v if isinstance(v, int) else float(v) for k, v in scores.items()},
                           "headline": p.metric.headline,
                           "settings": p.settings, "seed": seed, "seconds": time.perf_counter() - started,
                           "paper": p.metric.paper}
    return {"representation": "posterior mean or code", "factors": list(truth.names), "factor_sizes": list(truth.sizes),
            "images_encoded": grid.encoded, "metrics": results}
