"""Datasets as whole tensors in memory: no per-item Python work while training."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from vaezoo.errors import DataError

DATA_ENV = "VAEZOO_DATA"
INDEPENDENT_STREAM = 1  # tells independent_batch's seeds apart from any other use of (seed, step)


@dataclass
class ImageData:
    """Train and test images as uint8 tensors [N, C, H, W] (0..255), already padded."""

    name: str
    train: Tensor
    test: Tensor

    def __post_init__(self):
        for split in ("train", "test"):
            t = getattr(self, split)
            if t.dtype != torch.uint8 or t.dim() != 4:
                raise DataError(f"dataset {self.name}: {split} must be a uint8 tensor [N, C, H, W]")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.shape[1:])  # type: ignore[return-value]

    def split(self, name: str) -> Tensor:
        if name not in ("train", "test"):
            raise DataError(f"unknown split '{name}': use train or test")
        return getattr(self, name)

    def to(self, device: torch.device) -> ImageData:
        return ImageData(self.name, self.train.to(device), self.test.to(device))


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


def independent_batch(images: Tensor, batch_size: int, seed: int, step: int, part: tuple[int, int] = (0, 1)) -> Tensor:
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


def ordered_batches(images: Tensor, batch_size: int) -> Iterator[Tensor]:
    """Float batches in order, the last one possibly smaller (for evaluation)."""
    for start in range(0, images.shape[0], batch_size):
        yield as_float(images[start:start + batch_size])


def data_dir(option: str | Path | None) -> Path | None:
    """The data directory: the command-line option, else $VAEZOO_DATA, else None."""
    chosen = option or os.environ.get(DATA_ENV)
    return Path(chosen).expanduser() if chosen else None
