"""Arrays in .npy and .safetensors files, located without reading them, and turned into splits.

Both formats are a header then the raw values, so a large array is streamed from where it lies
(vaezoo.streaming) and a small one read at once. Headers are checked against the file before any
value is read; nothing is unpickled (.npy object arrays are refused).
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from vaezoo.errors import DataError
from vaezoo.streaming import FileImages, open_array, select_rows

MAX_SAFETENSORS_HEADER = 100 * 2**20
SAFETENSORS_DTYPES = {"U8": np.uint8, "I8": np.int8, "I16": np.int16, "I32": np.int32, "I64": np.int64,
                      "F16": np.float16, "F32": np.float32, "F64": np.float64, "BOOL": np.bool_}
STREAMABLE = {np.dtype(np.uint8): torch.uint8, np.dtype(np.float32): torch.float32}
SPLIT_SEED = 0  # held-out test rows are the same on every machine and for every run seed


@dataclass(frozen=True)
class StoredArray:
    """Where an array's values lie in a file: byte offset, numpy dtype, shape (C order)."""

    path: Path
    offset: int
    dtype: np.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    def read(self) -> np.ndarray:
        return np.fromfile(self.path, dtype=self.dtype, count=math.prod(self.shape), offset=self.offset).reshape(self.shape)


def npy_array(path: Path) -> StoredArray:
    """The array of a .npy file, its header checked against the file's size."""
    try:
        with open(path, "rb") as file:
            version = np.lib.format.read_magic(file)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(file)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(file)
            else:
                raise ValueError(f"unsupported .npy version {version}")
            offset = file.tell()
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path} is not a readable .npy file ({exc})") from None
    if dtype.hasobject or dtype.fields is not None:
        raise DataError(f"{path} holds Python objects or records; vaezoo reads plain numeric arrays only")
    if fortran and len(shape) > 1:
        raise DataError(f"{path} is in Fortran order; save it C-ordered (numpy.ascontiguousarray)")
    return _checked(StoredArray(path, offset, dtype, tuple(shape)), path.stat().st_size)


def safetensors_arrays(path: Path) -> dict[str, StoredArray]:
    """Every tensor of a .safetensors file by name, the header checked against the file's size."""
    size = path.stat().st_size
    with open(path, "rb") as file:
        head = file.read(8)
        length = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        if not 0 < length <= min(size - 8, MAX_SAFETENSORS_HEADER):
            raise DataError(f"{path} is not a safetensors file (bad header length)")
        try:
            header = json.loads(file.read(length))
        except (UnicodeDecodeError, ValueError):
            raise DataError(f"{path} is not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise DataError(f"{path} is not a safetensors file (its header is not an object)")
    arrays = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = np.dtype(SAFETENSORS_DTYPES[info["dtype"]])
            shape = tuple(info["shape"])
            begin, end = info["data_offsets"]
            if not all(type(d) is int and d >= 0 for d in (*shape, begin, end)):
                raise ValueError
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{path}: tensor '{name}' has a malformed entry or a type vaezoo cannot read "
                            f"({', '.join(SAFETENSORS_DTYPES)})") from None
        stored = StoredArray(path, 8 + length + begin, dtype, shape)
        if end - begin != stored.nbytes:
            raise DataError(f"{path}: tensor '{name}' spans {end - begin} bytes, its shape {list(shape)} needs {stored.nbytes}")
        arrays[name] = _checked(stored, size)
    return arrays


def _checked(stored: StoredArray, size: int) -> StoredArray:
    if stored.offset + stored.nbytes > size:
        raise DataError(f"{stored.path} is truncated: its header promises {stored.nbytes} bytes of values "
                        f"from byte {stored.offset}, the file has {size}")
    return stored


def image_split(stored: StoredArray, what: str) -> Tensor | FileImages:
    """An array as a split [N, C, H, W]: vectors [N, D] become [N, 1, 1, D], grey images [N, H, W]
    become [N, 1, H, W], and [N, H, W, C] (C = 1, 3 or 4 last, not second) is read as channels last.

    uint8 stays 8-bit data and float32 real values, streamed when larger than the data memory limit;
    bool becomes uint8 0 / 255 and other numbers float32, in memory only.
    """
    shape = stored.shape
    if len(shape) == 2:
        view, channels_last = (shape[0], 1, 1, shape[1]), False
    elif len(shape) == 3:
        view, channels_last = (shape[0], 1, *shape[1:]), False
    elif len(shape) == 4:
        channels_last = shape[3] in (1, 3, 4) and shape[1] not in (1, 3, 4)
        view = shape
    else:
        raise DataError(f"{what}: expected [N, D] vectors or [N, C, H, W] images, found shape {list(shape)}")
    if min(shape) == 0:
        raise DataError(f"{what}: the array is empty (shape {list(shape)})")
    if stored.dtype in STREAMABLE:
        images = open_array(stored.path, stored.offset, STREAMABLE[stored.dtype], view, channels_last=channels_last)
    else:
        values = torch.from_numpy(stored.read().reshape(view))
        values = values.permute(0, 3, 1, 2) if channels_last else values
        images = values.to(torch.uint8).mul(255) if values.dtype == torch.bool else values.to(torch.float32)
        images = images.contiguous()
    if isinstance(images, Tensor) and images.dtype == torch.float32 and not torch.isfinite(images).all():
        raise DataError(f"{what}: the array holds NaN or infinite values")
    return images


def label_array(stored: StoredArray, count: int, what: str) -> Tensor:
    """Class labels: non-negative integers, one per image."""
    if stored.dtype.kind not in "iu" or stored.shape != (count,):
        raise DataError(f"{what}: labels must be {count} integers, found {stored.dtype} {list(stored.shape)}")
    labels = torch.from_numpy(stored.read().astype(np.int64))
    if count and labels.min() < 0:
        raise DataError(f"{what}: labels must not be negative")
    return labels


def held_out(count: int, fraction: float) -> tuple[Tensor, Tensor]:
    """(train rows, test rows), each in increasing order: a fixed random `fraction` of `count` rows held out."""
    test = max(1, round(count * fraction))
    if count - test < 1:
        raise DataError(f"{count} images are too few to hold out {fraction:g} of them for testing")
    order = torch.randperm(count, generator=torch.Generator().manual_seed(SPLIT_SEED))
    return order[test:].sort().values, order[:test].sort().values


def split_rows(images, labels: Tensor | None, fraction: float) -> tuple:
    """(train, test, train_labels, test_labels) of one array with its labels, `fraction` held out."""
    train_rows, test_rows = held_out(len(images), fraction)
    pick = (lambda t, rows: None if t is None else t[rows])
    return (select_rows(images, train_rows), select_rows(images, test_rows),
            pick(labels, train_rows), pick(labels, test_rows))
