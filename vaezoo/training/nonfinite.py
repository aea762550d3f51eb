"""Noticing NaN or infinite loss terms without a host-device sync on every step.

`Watch.observe` records on the device the first step whose terms were not all finite (a few
scalar kernels, no sync); the loop reads it back with `first()` only where it syncs anyway (every
PROGRESS_EVERY steps, before each checkpoint, at epoch ends), so no bad state is ever saved.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor

#: Skipping stops being a cure after this many bad batches in a row: the model has diverged.
MAX_SKIPS_IN_A_ROW = 20
_DERIVED = ("neg_elbo", "loss")  # sums of other terms: named last, after the term that caused them


def _values(terms: Mapping[str, Tensor]) -> Tensor:
    """One value per term (vectors summed: a NaN or inf survives the sum)."""
    return torch.stack([value.detach().float() if value.dim() == 0 else value.detach().float().sum()
                        for value in terms.values()])


def describe(values: Mapping[str, float]) -> str:
    """'recon=nan, loss=nan': the non-finite terms, the ones that cause others first."""
    bad = [name for name, value in values.items() if not math.isfinite(value)]
    bad.sort(key=lambda name: _DERIVED.index(name) + 1 if name in _DERIVED else 0)
    return ", ".join(f"{name}={values[name]}" for name in bad)


def nonfinite_now(terms: Mapping[str, Tensor]) -> dict[str, float] | None:
    """The terms' values if any is not finite, else None (syncs with the device)."""
    values = _values(terms)
    return None if bool(torch.isfinite(values).all()) else dict(zip(terms, values.tolist()))


class Watch:
    """The first observed step with a non-finite term, and the terms' values then, kept on the device."""

    def __init__(self) -> None:
        self._names: tuple[str, ...] = ()
        self._step: Tensor | None = None  # -1 while every observed step was finite
        self._values: Tensor | None = None

    def observe(self, terms: Mapping[str, Tensor], step: int) -> None:
        values, names = _values(terms), tuple(terms)
        if names != self._names:  # the objective changed its terms: start over unless a report is pending
            if self.first() is not None:
                return
            self._names = names
            self._step = torch.full((), -1, dtype=torch.long, device=values.device)
            self._values = torch.zeros_like(values)
        new = self._step.lt(0) & ~torch.isfinite(values).all()
        self._step = torch.where(new, step, self._step)
        self._values = torch.where(new, values, self._values)

    def first(self) -> tuple[int, dict[str, float]] | None:
        """(step, values of the terms) of the first non-finite step, or None; syncs with the device."""
        if self._step is None or int(self._step) < 0:
            return None
        return int(self._step), dict(zip(self._names, self._values.tolist()))
