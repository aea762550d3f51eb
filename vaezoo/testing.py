"""Helpers for testing a plugin's parts and variants without a training run."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from vaezoo.model.building import build_model, build_objective
from vaezoo.model.parts import Objective
from vaezoo.model.structure import Structure
from vaezoo.registry import Registry, get_registry


def build_variant(name: str, *, input_shape: tuple[int, int, int] = (1, 32, 32), dataset_size: int = 1024,
                  parts: Mapping[str, str] | None = None, parent: Structure | None = None,
                  registry: Registry | None = None, seed: int | None = 0, dataset: str | None = None,
                  total_steps: int = 1000, **hparams) -> tuple[Structure, Objective]:
    """(model, objective) of a registered variant, exactly as training builds them.

    `hparams` override the defaults by name (`build_variant("iwae", k=3)`; use `**{"lambda": 0}` for
    names that are Python keywords), `parts` swaps parts by kind, `seed` seeds the weights (None
    leaves the generator alone), `dataset` adds a registered dataset's parameters to the schema,
    `total_steps` is the run length schedules see.
    """
    registry = registry or get_registry()
    if seed is not None:
        torch.manual_seed(seed)
    model = build_model(registry.variant(name), hparams, input_shape, registry, parts=parts, parent=parent,
                        dataset=dataset)
    return model, build_objective(model, registry, dataset_size=dataset_size, total_steps=total_steps)
