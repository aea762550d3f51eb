"""A variant: a named recipe of registered parts plus typed hyperparameters; and a recipe resolved
for one run (the variant with any parts swapped on the command line). Torch-free."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vaezoo.errors import UsageError
from vaezoo.hookspecs import PART_KINDS
from vaezoo.hparams import Param, Schema

if TYPE_CHECKING:
    from vaezoo.registry import Registry

#: The structure a variant gets unless it names one: encoder -> one latent group -> decoder.
DEFAULT_STRUCTURE = "single-latent"
#: Kinds named by their own VariantSpec field rather than in `parts`.
NAMED_APART = ("structure", "objective")


@dataclass(frozen=True)
class VariantSpec:
    """What `vaezoo train NAME` builds: parts by registered name, the structure and objective, the
    hyperparameters, the default dataset.

    `parts` names a part for each kind the structure builds (the default structure builds an
    encoder, decoder, likelihood, prior and divergence). `parent_needs`, when set, makes the
    variant a second stage: it trains on a finished run (`--parent RUN`) whose model has these
    capabilities, e.g. a prior over a first stage's discrete codes.
    """

    name: str
    description: str
    parts: Mapping[str, str]
    objective: str
    params: tuple[Param, ...]
    dataset: str = "fashion-mnist"
    paper: str = ""
    structure: str = DEFAULT_STRUCTURE
    parent_needs: tuple[str, ...] = ()
    schema: Schema = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        unknown = [k for k in self.parts if k not in PART_KINDS or k in NAMED_APART]
        if unknown:
            raise ValueError(f"variant {self.name}: parts may name {', '.join(k for k in PART_KINDS if k not in NAMED_APART)}"
                             f" (structure and objective have fields of their own), not {', '.join(unknown)}")
        object.__setattr__(self, "parts", dict(self.parts))
        object.__setattr__(self, "parent_needs", tuple(self.parent_needs))
        object.__setattr__(self, "schema", Schema(tuple(self.params)))

    def default_parts(self) -> dict[str, str]:
        """Every part kind this variant names, structure and objective included."""
        return {**self.parts, "structure": self.structure, "objective": self.objective}


@dataclass(frozen=True)
class Recipe:
    """A variant as one run builds it: its parts (some possibly swapped) and the hyperparameters
    of the variant, of every part it uses (a part may declare its own, e.g. a likelihood's
    variance) and of the dataset it trains on (an image folder's image size); the variant's own
    declaration of a name wins."""

    spec: VariantSpec
    parts: Mapping[str, str]
    schema: Schema

    @classmethod
    def of(cls, spec: VariantSpec, registry: Registry, swaps: Mapping[str, str] | None = None,
           dataset: str | None = None) -> Recipe:
        """`dataset`: the registered dataset the run uses (default the variant's); its parameters join
        the schema when it is registered."""
        parts = spec.default_parts()
        for kind, name in (swaps or {}).items():
            if kind not in PART_KINDS:
                raise UsageError(f"--part {kind}={name}: '{kind}' is not a part kind; use one of {', '.join(PART_KINDS)}")
            if kind not in parts:
                raise UsageError(f"--part {kind}={name}: variant {spec.name} has no {kind} to swap "
                                 f"(its parts: {', '.join(parts)})")
            registry.get(kind, name)  # an unknown name is an error with suggestions
            parts[kind] = name
        params = list(spec.params)
        entries = [registry.get(kind, name) for kind, name in parts.items()]
        if (dataset or spec.dataset) in registry.names("dataset"):
            entries.append(registry.get("dataset", dataset or spec.dataset))
        for entry in entries:
            params += [p for p in entry.params if p.name not in {q.name for q in params}]
        return cls(spec, parts, Schema(tuple(params)))

    def swaps(self) -> dict[str, str]:
        """The parts that differ from the variant's own: what a run records to be rebuilt."""
        defaults = self.spec.default_parts()
        return {kind: name for kind, name in self.parts.items() if defaults.get(kind) != name}
