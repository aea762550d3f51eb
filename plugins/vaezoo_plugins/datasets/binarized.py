"""Binarised MNIST: dynamically binarised (a fresh Bernoulli draw of every training image in every
epoch, the test set binarised once with a fixed seed), or the fixed binarisation of Larochelle &
Murray (2011) with its own 50,000 / 10,000 / 10,000 split.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vaezoo.data import (
    ImageData,
    cache_dir,
    data_dir,
    ordered_batches,
    shuffled_batches,
)
from vaezoo.errors import DataError
from vaezoo_plugins.datasets.idx import load_fashion_mnist, load_mnist

#: Seeds the fixed binarisations (the test set, ordered reads of the training set).
FIXED_SEED = 0
ROW_MIXER = 0x9E3779B1  # spreads the rows of an indexed draw over seeds
LAROCHELLE_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
LAROCHELLE_FILES = {"train": "binarized_mnist_train.amat", "test": "binarized_mnist_test.amat"}
LAROCHELLE_SIZES = {"train": 50_000, "test": 10_000}


def binarize(x: Tensor, generator: torch.Generator) -> Tensor:
    """Float [0, 1] grey values -> float {0, 1}: each value 1 with probability its grey level."""
    return (torch.rand(x.shape, generator=generator, device=x.device) < x).to(x.dtype)


def _generator(device: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


class DynamicBinarization:
    """An image source (see vaezoo.data) of grey uint8 images drawn as binary images batch by batch.

    Batch b of an epoch is binarised with a generator seeded from one number the data-order generator
    draws at the epoch's start plus b: resuming mid-epoch draws the same pixels, and every process
    under torchrun binarises its slice of a global batch as a single process would.
    """

    hands_labels = True  # a conditional model's labels ride along with their images

    def __init__(self, images: Tensor):
        self.images = images

    shape = property(lambda self: self.images.shape)
    dtype = property(lambda self: self.images.dtype)
    device = property(lambda self: self.images.device)

    def __len__(self) -> int:
        return len(self.images)

    def to(self, device: torch.device) -> DynamicBinarization:
        return DynamicBinarization(self.images.to(device))

    def __getitem__(self, index: int | slice | Tensor) -> Tensor | DynamicBinarization:
        """A slice is a view; an integer or an index tensor gives those images binarised as uint8
        0 / 255, with a seed that depends on the rows (a fixed draw for each choice of images)."""
        if isinstance(index, slice):
            return DynamicBinarization(self.images[index])
        rows = torch.as_tensor(index).cpu()
        seed = FIXED_SEED + int((rows.view(-1).long() * ROW_MIXER).sum() % 2**62)
        chosen = self.images[index].float() / 255
        return binarize(chosen, _generator(chosen.device, seed)).mul(255).to(torch.uint8)

    def read(self) -> Tensor:
        """Every image binarised once, as ordered_batches(len(self)) draws them, as uint8 0 / 255."""
        return torch.cat(list(self.ordered_batches(len(self)))).mul(255).to(torch.uint8)

    def shuffled_batches(self, batch_size: int, generator: torch.Generator, skip: int,
                         part: tuple[int, int], labels: Tensor | None = None) -> Iterator[Any]:
        """As vaezoo.data.shuffled_batches, binarised; with `labels`, each item is (images, their labels)."""
        seed = int(torch.randint(2**62, (1,), generator=generator))
        rank, size = part
        share = batch_size // size
        batches = shuffled_batches(self.images, batch_size, generator, skip, part, labels=labels)
        for number, item in enumerate(batches, start=skip):
            x, y = item if labels is not None else (item, None)
            noise = torch.rand((batch_size, *x.shape[1:]), generator=_generator(x.device, seed + number), device=x.device)
            binary = (noise[rank * share:(rank + 1) * share] < x).to(x.dtype)
            yield binary if labels is None else (binary, y)

    def ordered_batches(self, batch_size: int) -> Iterator[Tensor]:
        for number, x in enumerate(ordered_batches(self.images, batch_size)):
            yield binarize(x, _generator(x.device, FIXED_SEED + number))


def dynamically_binarized(name: str, grey: ImageData) -> ImageData:
    """`grey` with its training images binarised anew in every epoch and its test images once, fixed seed."""
    test = torch.cat([binarize(x, _generator(x.device, FIXED_SEED + n)).mul(255).to(torch.uint8)
                      for n, x in enumerate(ordered_batches(grey.test, 1000))])
    return ImageData(name, DynamicBinarization(grey.train), test, grey.train_labels, grey.test_labels, grey.classes)


def load_binarized_mnist(option: str | Path | None = None) -> ImageData:
    """MNIST (its IDX files, as `mnist` finds them), training images binarised anew in every epoch."""
    return dynamically_binarized("binarized-mnist", load_mnist(option))


def load_binarized_fashion_mnist(option: str | Path | None = None) -> ImageData:
    """FashionMNIST binarised the same way: the protocol of the VAE literature's FashionMNIST tables."""
    return dynamically_binarized("binarized-fashion-mnist", load_fashion_mnist(option))


def read_amat(path: Path, count: int) -> Tensor:
    """A Larochelle .amat file: `count` lines of 784 space-separated 0s and 1s -> uint8 [count, 1, 32, 32]
    (0 / 255, padded to 32x32 like MNIST)."""
    raw = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    digits = raw[(raw == ord("0")) | (raw == ord("1"))]
    others = raw[(raw != ord("0")) & (raw != ord("1"))]
    if not np.isin(others, np.frombuffer(b" \t\r\n", dtype=np.uint8)).all() or digits.size != count * 784 \
            or np.count_nonzero(raw == ord("\n")) not in (count, count - 1):
        raise DataError(f"{path} is not a binarised-MNIST .amat file of {count} lines of 784 zeros and ones")
    images = torch.from_numpy((digits - ord("0")).astype(np.uint8) * 255).view(count, 1, 28, 28)
    return torch.nn.functional.pad(images, (2, 2, 2, 2))


def load_binarized_mnist_fixed(option: str | Path | None = None) -> ImageData:
    """The fixed binarisation of Larochelle & Murray (2011): its 50,000 training and 10,000 test images
    (the 10,000 validation images are not used)."""
    chosen = data_dir(option)
    root = chosen if chosen is not None else cache_dir() / "data" / "binarized_mnist"
    missing = [name for name in LAROCHELLE_FILES.values() if not (root / name).is_file()]
    if missing and chosen is None:
        try:
            from torchvision.datasets.utils import download_url

            for name in missing:
                download_url(LAROCHELLE_URL + name, str(root))
        except Exception as exc:
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            raise DataError(f"binarised MNIST (Larochelle) is not in {root} and could not be downloaded ({reason}); "
                            f"download {', '.join(LAROCHELLE_FILES.values())} from {LAROCHELLE_URL} and pass "
                            "--data-dir to their folder") from None
        missing = [name for name in LAROCHELLE_FILES.values() if not (root / name).is_file()]
    if missing:
        raise DataError(f"binarised MNIST (Larochelle): {', '.join(missing)} missing from {root}; download them "
                        f"from {LAROCHELLE_URL} and pass --data-dir to their folder")
    splits = {split: read_amat(root / name, LAROCHELLE_SIZES[split]) for split, name in LAROCHELLE_FILES.items()}
    return ImageData("binarized-mnist-fixed", splits["train"], splits["test"])
