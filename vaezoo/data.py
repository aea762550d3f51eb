"""Datasets as whole tensors in memory: no per-item Python work while training."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch
from torch import Tensor

from vaezoo.errors import DataError

DATA_ENV = "VAEZOO_DATA"


@dataclass(frozen=True)
class Factors:
    """The ground-truth factors of variation behind a dataset's images (dSprites: shape, scale, ...).

    `values[f]` is factor f's grid of values; a split's codes [N, F] (int64) index into them, one
    row per image of that split. `rows(codes)` finds the train images showing given factor codes:
    metrics that fix a factor and need images of it (BetaVAE, FactorVAE scores) look them up here.
    """

    names: tuple[str, ...]
    values: tuple[tuple[float, ...], ...]
    train: Tensor
    test: Tensor

    def __post_init__(self):
        if not self.names or len(self.names) != len(self.values) or not all(self.values):
            raise DataError("factors need a name and a non-empty grid of values for each factor")
        for split in ("train", "test"):
            codes = getattr(self, split)
            if codes.dtype != torch.int64 or codes.dim() != 2 or codes.shape[1] != len(self.names):
                raise DataError(f"factor codes of the {split} split must be an int64 tensor [N, {len(self.names)}]")
            if len(codes) and ((codes < 0).any() or (codes >= torch.tensor(self.sizes)).any()):
                raise DataError(f"factor codes of the {split} split fall outside the factors' grids {self.sizes}")

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(len(v) for v in self.values)

    def split(self, name: str) -> Tensor:
        if name not in ("train", "test"):
            raise DataError(f"unknown split '{name}': use train or test")
        return getattr(self, name)

    @property
    def complete(self) -> bool:
        """Whether the train split shows every combination of factor values."""
        keys = self._index[0]
        distinct = 1 + int((keys[1:] != keys[:-1]).sum()) if len(keys) else 0
        return distinct == int(torch.tensor(self.sizes).prod())

    def rows(self, codes: Tensor) -> Tensor:
        """Rows of the train split showing each combination in `codes` [n, F]; an absent one is an error."""
        keys, order = self._index
        wanted = self._keys(codes)
        at = torch.searchsorted(keys, wanted).clamp_(max=len(keys) - 1)
        missing = keys[at] != wanted
        if missing.any():
            raise DataError(f"factor codes {codes[missing][0].tolist()} are not in the train split")
        return order[at]

    def _keys(self, codes: Tensor) -> Tensor:
        """Each combination's index in the grid in row-major order (the last factor varies fastest)."""
        strides = torch.tensor(self.sizes[::-1]).cumprod(0).flip(0)[1:].tolist() + [1]
        return codes @ torch.tensor(strides)

    @cached_property
    def _index(self) -> tuple[Tensor, Tensor]:
        return torch.sort(self._keys(self.train), stable=True)


@dataclass
class ImageData:
    """Train and test images as uint8 tensors [N, C, H, W] (0..255), already padded.

    `factors`, when the dataset has them, gives the ground-truth factor codes of each image.
    """

    name: str
    train: Tensor
    test: Tensor
    factors: Factors | None = None

    def __post_init__(self):
        for split in ("train", "test"):
            t = getattr(self, split)
            if t.dtype != torch.uint8 or t.dim() != 4:
                raise DataError(f"dataset {self.name}: {split} must be a uint8 tensor [N, C, H, W]")
            if self.factors is not None and len(self.factors.split(split)) != len(t):
                raise DataError(f"dataset {self.name}: {split} has {len(t)} images but "
                                f"{len(self.factors.split(split))} rows of factor codes")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.shape[1:])  # type: ignore[return-value]

    def split(self, name: str) -> Tensor:
        if name not in ("train", "test"):
            raise DataError(f"unknown split '{name}': use train or test")
        return getattr(self, name)

    def to(self, device: torch.device) -> ImageData:
        return dataclasses.replace(self, train=self.train.to(device), test=self.test.to(device))


def as_float(images: Tensor) -> Tensor:
    """uint8 [0, 255] -> float32 [0, 1]."""
    return images.to(torch.float32).div_(255.0)


def shuffled_batches(images: Tensor, batch_size: int, generator: torch.Generator, skip: int = 0,
                     part: tuple[int, int] = (0, 1)) -> Iterator[Tensor]:
    """Float batches in a fresh random order, the incomplete last batch dropped.

    `skip` leaves out the first batches of that order (resuming mid-epoch: same order, same place).
    `part` = (rank, size) yields only the rank-th of `size` equal slices of every batch: processes
    that share the generator's state train on disjoint slices of the same global batches.
    """
    n = images.shape[0]
    if batch_size > n:
        raise DataError(f"batch size {batch_size} is larger than the dataset ({n} images)")
    rank, size = part
    if batch_size % size:
        raise DataError(f"batch size {batch_size} does not split into {size} equal parts")
    order = torch.randperm(n, generator=generator).to(images.device)
    share = batch_size // size
    for start in range(skip * batch_size + rank * share, n - batch_size + 1 + rank * share, batch_size):
        yield as_float(images[order[start:start + share]])


def ordered_batches(images: Tensor, batch_size: int) -> Iterator[Tensor]:
    """Float batches in order, the last one possibly smaller (for evaluation)."""
    for start in range(0, images.shape[0], batch_size):
        yield as_float(images[start:start + batch_size])


def data_dir(option: str | Path | None) -> Path | None:
    """The data directory: the command-line option, else $VAEZOO_DATA, else None."""
    chosen = option or os.environ.get(DATA_ENV)
    return Path(chosen).expanduser() if chosen else None
