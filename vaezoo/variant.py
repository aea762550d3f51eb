"""A variant: a named recipe of registered parts plus typed hyperparameters. Torch-free."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from vaezoo.hparams import Param, Schema

#: Parts every variant names; an objective is named separately.
MODEL_PARTS = ("encoder", "decoder", "likelihood", "prior", "divergence")


@dataclass(frozen=True)
class VariantSpec:
    """What `vaezoo train NAME` builds: parts by registered name, the objective, the hyperparameters."""

    name: str
    description: str
    parts: Mapping[str, str]
    objective: str
    params: tuple[Param, ...]
    dataset: str = "fashion-mnist"
    paper: str = ""
    schema: Schema = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        missing = [k for k in MODEL_PARTS if k not in self.parts]
        extra = [k for k in self.parts if k not in MODEL_PARTS]
        if missing or extra:
            raise ValueError(f"variant {self.name}: parts must name exactly {MODEL_PARTS} (missing {missing}, extra {extra})")
        object.__setattr__(self, "parts", dict(self.parts))
        object.__setattr__(self, "schema", Schema(tuple(self.params)))
