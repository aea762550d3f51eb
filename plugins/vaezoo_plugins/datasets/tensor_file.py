"""Your own arrays as a dataset: a .npy or .safetensors file of vectors or images (--data-dir FILE).

- a .npy file: the data; `test_fraction` of its rows (a fixed random choice) are held out;
- a .safetensors file: tensors `train` (or its only tensor), and optionally `test`,
  `train_labels`, `test_labels`;
- a folder: train.npy, and optionally test.npy, train_labels.npy, test_labels.npy.

uint8 arrays are 8-bit data (scaled to [0, 1]); float32 ones real values used as they are.
"""

from __future__ import annotations

from pathlib import Path

from vaezoo.data import ImageData, data_dir
from vaezoo.errors import DataError
from vaezoo_plugins.datasets.arrays import (
    StoredArray,
    image_split,
    label_array,
    npy_array,
    safetensors_arrays,
    split_rows,
)

NAMES = ("train", "test", "train_labels", "test_labels")
FORMATS = "a .npy or .safetensors file, or a folder holding train.npy (and optionally test.npy, train_labels.npy, test_labels.npy)"


def _arrays(path: Path) -> dict[str, StoredArray]:
    if path.is_dir():
        return {name: npy_array(path / f"{name}.npy") for name in NAMES if (path / f"{name}.npy").is_file()}
    if path.suffix == ".npy":
        return {"train": npy_array(path)}
    if path.suffix == ".safetensors":
        arrays = safetensors_arrays(path)
        if "train" not in arrays and len(arrays) == 1:
            arrays = {"train": next(iter(arrays.values()))}
        return arrays
    raise DataError(f"tensor-file: {path} is not {FORMATS}")


def load_tensor_file(option: str | Path | None = None, test_fraction: float = 0.1) -> ImageData:
    path = data_dir(option)
    if path is None:
        raise DataError(f"tensor-file needs --data-dir naming {FORMATS}")
    if not path.exists():
        raise DataError(f"tensor-file: {path} does not exist")
    arrays = _arrays(path)
    if "train" not in arrays:
        found = ", ".join(arrays) or "nothing readable"
        raise DataError(f"tensor-file: {path} holds no 'train' array (found {found}); expected {FORMATS}")
    train = image_split(arrays["train"], f"{path} train")
    train_labels = label_array(arrays["train_labels"], len(train), f"{path} train_labels") \
        if "train_labels" in arrays else None
    if "test" not in arrays:
        train, test, train_labels, test_labels = split_rows(train, train_labels, test_fraction)
    else:
        test = image_split(arrays["test"], f"{path} test")
        test_labels = label_array(arrays["test_labels"], len(test), f"{path} test_labels") \
            if "test_labels" in arrays else None
    return ImageData("tensor-file", train, test, train_labels, test_labels)
