"""Typed, range-checked hyperparameters, declared once per variant.

Torch-free: `vaezoo info` and `vaezoo list` read schemas without importing torch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from vaezoo.errors import UnknownNameError, UsageError

_TYPES = {"float": float, "int": int, "bool": bool, "str": str}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Param:
    """One hyperparameter: its type, default and valid range (bounds inclusive unless stated)."""

    name: str
    type: str  # one of "float", "int", "bool", "str"
    default: Any
    help: str = ""
    low: float | None = None
    high: float | None = None
    low_exclusive: bool = False
    choices: tuple[str, ...] = ()

    def __post_init__(self):
        if self.type not in _TYPES:
            raise ValueError(f"param {self.name}: type must be one of {sorted(_TYPES)}")
        self.check(self.default)

    @property
    def range_text(self) -> str:
        if self.choices:
            return " | ".join(self.choices)
        if self.low is None and self.high is None:
            return ""
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "inf" if self.high is None else f"{self.high:g}"
        return f"{'(' if self.low_exclusive else '['}{lo}, {hi}{']' if self.high is not None else ')'}"

    def parse(self, text: str) -> Any:
        """Turn command-line text into a checked value of this parameter's type."""
        text = text.strip()
        try:
            if self.type == "bool":
                low = text.lower()
                if low not in _TRUE | _FALSE:
                    raise ValueError
                value: Any = low in _TRUE
            elif self.type == "int":
                value = int(text)
            elif self.type == "float":
                value = float(text)
            else:
                value = text
        except ValueError:
            raise UsageError(f"option {self.name}: '{text}' is not a valid {self.type}") from None
        return self.check(value)

    def check(self, value: Any) -> Any:
        """Validate an already-typed value (from Python or JSON) and return it normalised."""
        kind = _TYPES[self.type]
        if self.type == "float" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise UsageError(f"option {self.name}: expected a {self.type}, got {value!r}")
        if self.type == "float" and not math.isfinite(value):
            raise UsageError(f"option {self.name}: must be a finite number, got {value}")
        if self.choices and value not in self.choices:
            raise UsageError(f"option {self.name}: must be one of {', '.join(self.choices)}, got {value!r}")
        if self.low is not None and (value < self.low or (self.low_exclusive and value == self.low)):
            raise UsageError(f"option {self.name}: {value} is outside the valid range {self.range_text}")
        if self.high is not None and value > self.high:
            raise UsageError(f"option {self.name}: {value} is outside the valid range {self.range_text}")
        return value


@dataclass(frozen=True)
class Schema:
    """An ordered set of parameters; resolves user overrides against the defaults."""

    params: tuple[Param, ...]
    _by_name: dict[str, Param] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        by_name = {p.name: p for p in self.params}
        if len(by_name) != len(self.params):
            raise ValueError("duplicate parameter names in schema")
        object.__setattr__(self, "_by_name", by_name)

    def __iter__(self) -> Iterator[Param]:
        return iter(self.params)

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def __getitem__(self, name: str) -> Param:
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownNameError("option", name, self._by_name) from None

    def defaults(self) -> HParams:
        return HParams({p.name: p.default for p in self.params})

    def resolve(self, overrides: Mapping[str, Any] | None = None, texts: Iterable[str] = ()) -> HParams:
        """Defaults, then typed `overrides`, then `key=value` texts; every name and value checked."""
        values = {p.name: p.default for p in self.params}
        for name, value in (overrides or {}).items():
            values[name] = self[name].check(value)
        for text in texts:
            name, sep, raw = text.partition("=")
            if not sep:
                raise UsageError(f"option '{text}' must look like key=value")
            param = self[name.strip()]
            values[param.name] = param.parse(raw)
        return HParams(values)


class HParams(Mapping[str, Any]):
    """Resolved hyperparameters: read-only mapping with attribute access (`hp.beta`, `hp["lambda"]`)."""

    def __init__(self, values: Mapping[str, Any]):
        self._values = dict(values)

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):  # copy/pickle probe dunders before _values exists
            raise AttributeError(key)
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(key) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"HParams({self._values!r})"

    def to_dict(self) -> dict[str, Any]:
        return dict(self._values)


def training_params(*, lr: float, batch_size: int, epochs: int, latent_dim: int | None) -> tuple[Param, ...]:
    """The parameters every variant shares, with the variant's own defaults.

    latent_dim=None leaves it out, for a stage whose latent is its parent's (a prior over its codes).
    """
    shared = (
        Param("lr", "float", lr, "Adam learning rate", low=0.0, low_exclusive=True),
        Param("batch_size", "int", batch_size, "images per optimisation step and process (torchrun: global batch = this x processes)", low=1),
        Param("epochs", "int", epochs, "passes over the training set", low=1),
    )
    if latent_dim is None:
        return shared
    return (*shared, Param("latent_dim", "int", latent_dim, "size of the latent code z", low=1))
