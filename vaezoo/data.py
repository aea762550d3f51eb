"""Datasets as whole tensors, or as sources that stream them: no per-item Python work while training.

A split (`ImageData.train`, `.test`) is a uint8 tensor [N, C, H, W] (8-bit images, 0..255, scaled
to [0, 1] per batch) or a float32 one (any real values, used as they are); vectors are [N, 1, 1, D].
A split may instead be an *image source*, an object that acts as such a tensor for what the
training loop and evaluation ask of it (`shape`, `dtype`, `device`, `len`, `to(device)`, indexing: a slice
gives a view, an integer or an index tensor images as a tensor; `read()` every row as one tensor)
and yields batches itself: `shuffled_batches(batch_size, generator, skip, part)` and
`ordered_batches(batch_size)`, with the meanings of the functions below. `vaezoo.streaming.FileImages`
(a file larger than memory, read batch by batch) and a dynamically binarised split are two.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vaezoo.errors import DataError

DATA_ENV = "VAEZOO_DATA"
INDEPENDENT_STREAM = 1  # tells independent_batch's seeds apart from any other use of (seed, step)
CACHE_ENV = "VAEZOO_CACHE"
DTYPES = (torch.uint8, torch.float32)


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
    """Train and test splits [N, C, H, W] (uint8 0..255 or float32), already padded; optional labels.

    `train_labels` / `test_labels`: int64 [N] class indices; `classes`: their names, when known.
    `factors`, when the dataset has them, gives the ground-truth factor codes of each image.
    """

    name: str
    train: Any  # Tensor or an image source (see the module docstring)
    test: Any
    train_labels: Tensor | None = None
    test_labels: Tensor | None = None
    classes: tuple[str, ...] | None = None
    factors: Factors | None = None

    def __post_init__(self):
        for split in ("train", "test"):
            t = getattr(self, split)
            if len(t.shape) != 4 or t.dtype not in DTYPES:
                raise DataError(f"dataset {self.name}: {split} must be uint8 or float32 [N, C, H, W]")
            labels = getattr(self, f"{split}_labels")
            if labels is not None and (labels.dtype != torch.int64 or labels.shape != (len(t),)):
                raise DataError(f"dataset {self.name}: {split}_labels must be int64 [{len(t)}], "
                                f"found {labels.dtype} {tuple(labels.shape)}")
            if self.factors is not None and len(self.factors.split(split)) != t.shape[0]:
                raise DataError(f"dataset {self.name}: {split} has {t.shape[0]} images but "
                                f"{len(self.factors.split(split))} rows of factor codes")
        if self.train.shape[1:] != self.test.shape[1:] or self.train.dtype != self.test.dtype:
            raise DataError(f"dataset {self.name}: train and test differ in shape or type "
                            f"({tuple(self.train.shape[1:])} {self.train.dtype}, {tuple(self.test.shape[1:])} {self.test.dtype})")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.shape[1:])  # type: ignore[return-value]

    @property
    def dtype(self) -> torch.dtype:
        """uint8 for 8-bit data, float32 for real values."""
        return self.train.dtype

    def split(self, name: str) -> Any:
        if name not in ("train", "test"):
            raise DataError(f"unknown split '{name}': use train or test")
        return getattr(self, name)

    def to(self, device: torch.device) -> ImageData:
        """Tensors moved to `device`; an image source sends its batches there instead."""
        return replace(self, train=self.train.to(device), test=self.test.to(device))


def as_float(images: Tensor) -> Tensor:
    """uint8 [0, 255] -> float32 [0, 1]; float32 data as it is; an image source's view is read first."""
    if not isinstance(images, Tensor):
        images = images.read()
    if images.dtype != torch.uint8:
        return images.to(torch.float32)
    return images.to(torch.float32).div_(255.0)


def shuffled_batches(images: Any, batch_size: int, generator: torch.Generator, skip: int = 0,
                     part: tuple[int, int] = (0, 1), labels: Tensor | None = None) -> Iterator[Any]:
    """Float batches in a fresh random order, the incomplete last batch dropped.

    `skip` leaves out the first batches of that order (resuming mid-epoch: same order, same place).
    `part` = (rank, size) yields only the rank-th of `size` equal slices of every batch: processes
    that share the generator's state train on disjoint slices of the same global batches.
    An image source draws the same order from `generator` and yields the same batches. With
    `labels` (a conditional model's), each item is (images, their labels).
    """
    n = images.shape[0]
    if batch_size > n:
        raise DataError(f"batch size {batch_size} is larger than the dataset ({n} images)")
    rank, size = part
    if batch_size % size:
        raise DataError(f"batch size {batch_size} does not split into {size} equal parts")
    if not isinstance(images, Tensor):
        if labels is None:
            return images.shuffled_batches(batch_size, generator, skip, part)
        if not getattr(images, "hands_labels", False):
            raise DataError(f"this dataset's {type(images).__name__} images cannot hand labels to a conditional model")
        return images.shuffled_batches(batch_size, generator, skip, part, labels=labels)
    return _shuffled(images, batch_size, generator, skip, rank, batch_size // size, labels)


def batch_starts(n: int, batch_size: int, skip: int, rank: int, share: int) -> range:
    """Where each yielded slice of a shuffled order starts (shared with the image sources)."""
    return range(skip * batch_size + rank * share, n - batch_size + 1 + rank * share, batch_size)


def _shuffled(images: Tensor, batch_size: int, generator: torch.Generator, skip: int, rank: int,
              share: int, labels: Tensor | None = None) -> Iterator[Any]:
    order = torch.randperm(images.shape[0], generator=generator).to(images.device)
    for start in batch_starts(images.shape[0], batch_size, skip, rank, share):
        chosen = order[start:start + share]
        x = as_float(images[chosen])
        yield x if labels is None else (x, labels[chosen.to(labels.device)].to(x.device))


def independent_batch(images: Any, batch_size: int, seed: int, step: int, part: tuple[int, int] = (0, 1)) -> Tensor:
    """A float batch drawn at random, independently of the epoch's order, fixed by (seed, step).

    For objectives that contrast the step's batch with an independent one; being a function of the
    step, it needs no state to resume bit for bit. `part` slices it like `shuffled_batches`.
    """
    stream = np.random.SeedSequence([seed % 2**64, INDEPENDENT_STREAM, step]).generate_state(1, np.uint64)[0]
    generator = torch.Generator().manual_seed(int(stream % 2**63))
    rank, size = part
    share = batch_size // size
    chosen = torch.randperm(images.shape[0], generator=generator)[rank * share:(rank + 1) * share]
    return as_float(images[chosen.to(images.device)])


def ordered_batches(images: Any, batch_size: int) -> Iterator[Tensor]:
    """Float batches in order, the last one possibly smaller (for evaluation)."""
    if not isinstance(images, Tensor):
        return images.ordered_batches(batch_size)
    return (as_float(images[start:start + batch_size]) for start in range(0, images.shape[0], batch_size))


def labelled_batches(images: Any, labels: Tensor | None, batch_size: int) -> Iterator[tuple[Tensor, Tensor | None]]:
    """(images, their labels or None) in order, as `ordered_batches` cuts them."""
    for number, x in enumerate(ordered_batches(images, batch_size)):
        yield x, None if labels is None else labels[number * batch_size:number * batch_size + len(x)].to(x.device)


def data_dir(option: str | Path | None) -> Path | None:
    """The data directory: the command-line option, else $VAEZOO_DATA, else None."""
    chosen = option or os.environ.get(DATA_ENV)
    if not chosen:
        return None
    try:
        return Path(chosen).expanduser()
    except RuntimeError:  # "~user/..." for a user this system does not know
        where = "--data-dir" if option else f"${DATA_ENV}"
        raise DataError(f"{where} {chosen}: its '~' names no home folder on this system") from None


def cache_dir() -> Path:
    """Where downloads and prepared arrays go: $VAEZOO_CACHE, else ~/.cache/vaezoo."""
    return Path(os.environ.get(CACHE_ENV) or "~/.cache/vaezoo").expanduser()
