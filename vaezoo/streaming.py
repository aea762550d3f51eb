"""Arrays larger than memory: a file read batch by batch, each batch gathered by a worker thread.

A dataset whose bytes fit in the data memory limit (`memory_limit()`) is read into a tensor;
one that does not stays on disk as `FileImages`. Both give the same batches in the same order
(the shuffle is the same `randperm` over the same rows, each batch the same rows' bytes), so
whether a dataset streamed never changes a run's numbers. A streamed batch is read with one
positioned read (pread) per image, issued from C (`map(os.pread, ...)`, no Python bytecode per
image), or one per batch when its rows are consecutive, by worker threads a few batches ahead of
the training step. Only the batches in flight are in memory, however large the file. (A memory
map would gather with one C-level index instead, but the kernel maps whole page-cache folios into
the process around every fault: on Linux 6.18 about 450 KB per random 3 KB image, so the process
would hold most of a file it reads at random.)
"""

from __future__ import annotations

import math
import os
import re
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import repeat
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from torch import Tensor

from vaezoo.data import as_float, batch_starts
from vaezoo.errors import DataError

MEMORY_ENV = "VAEZOO_DATA_MEMORY"
WORKERS = 4  # reads in flight: on a cold file they wait on the disk, several hide that
AHEAD = 8  # batches read ahead of the one the training step takes
T, R = TypeVar("T"), TypeVar("R")
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_bytes(text: str) -> int:
    """'512M', '2G', '1.5g', '1048576' -> bytes."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)i?b?\s*", text.lower())
    if not match:
        raise DataError(f"{MEMORY_ENV}='{text}' is not a size (e.g. 512M, 4G)")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def memory_limit() -> int:
    """The bytes a dataset may take in memory: $VAEZOO_DATA_MEMORY, else half the memory available now."""
    if os.environ.get(MEMORY_ENV):
        return parse_bytes(os.environ[MEMORY_ENV])
    try:
        with open("/proc/meminfo") as info:
            fields = dict(line.split(":", 1) for line in info)
        return int(fields["MemAvailable"].split()[0]) * 1024 // 2
    except (OSError, KeyError, ValueError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4


if hasattr(os, "pread"):
    _pread = os.pread
else:  # pragma: no cover - platforms without positioned reads: seek and read under a lock
    _seek_lock = threading.Lock()

    def _pread(fd: int, size: int, offset: int) -> bytes:
        with _seek_lock:
            os.lseek(fd, offset, os.SEEK_SET)
            return os.read(fd, size)


class _File:
    """An open array file shared by every view of it: rows of `row_shape` values from `offset`."""

    def __init__(self, path: Path, offset: int, dtype: torch.dtype, file_shape: tuple[int, ...], channels_last: bool):
        self.path, self.offset, self.dtype = path, offset, dtype
        self.count, self.row_shape, self.channels_last = file_shape[0], tuple(file_shape[1:]), channels_last
        self.row_bytes = math.prod(self.row_shape) * torch.empty((), dtype=dtype).element_size()
        self.fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))

    def __del__(self):
        if getattr(self, "fd", None) is not None:
            os.close(self.fd)

    def read(self, rows: Tensor) -> Tensor:
        """The rows (int64 indices), in that order, as a tensor [len(rows), C, H, W]."""
        count = rows.shape[0]
        if count and int(rows[-1]) - int(rows[0]) == count - 1 and torch.equal(rows, torch.arange(int(rows[0]), int(rows[0]) + count)):
            data = _pread(self.fd, count * self.row_bytes, self.offset + int(rows[0]) * self.row_bytes)
        else:
            offsets = (rows * self.row_bytes + self.offset).tolist()
            data = b"".join(map(_pread, repeat(self.fd, count), repeat(self.row_bytes, count), offsets))
        if len(data) != count * self.row_bytes:
            raise DataError(f"{self.path} is shorter than when it was opened: was it changed while training?")
        batch = torch.frombuffer(bytearray(data), dtype=self.dtype).view(count, *self.row_shape) if count \
            else torch.empty((0, *self.row_shape), dtype=self.dtype)
        return batch.permute(0, 3, 1, 2).contiguous() if self.channels_last else batch


class FileImages:
    """An image source (see vaezoo.data) over a uint8 or float32 array [N, C, H, W] in a file.

    `channels_last`: the file holds [N, H, W, C]. A view (`select`, slicing) reads some rows in an
    order; an integer index reads one image as a tensor.
    """

    def __init__(self, path: str | Path, offset: int, dtype: torch.dtype, file_shape: tuple[int, ...], *,
                 channels_last: bool = False):
        self.path = Path(path)
        self._file = _File(self.path, offset, dtype, tuple(file_shape), channels_last)
        row = self._file.row_shape
        self._image_shape = (row[2], row[0], row[1]) if channels_last else row
        self._rows: Tensor | None = None
        self.device = torch.device("cpu")

    def _view(self, rows: Tensor | None = None, device: torch.device | str | None = None) -> FileImages:
        view = object.__new__(FileImages)
        view.__dict__.update(self.__dict__)
        if rows is not None:
            view._rows = rows
        if device is not None:
            view.device = torch.device(device)
        return view

    # -- what a tensor split offers -----------------------------------------------------------
    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), *self._image_shape))

    @property
    def dtype(self) -> torch.dtype:
        return self._file.dtype

    def __len__(self) -> int:
        return self._file.count if self._rows is None else self._rows.shape[0]

    def rows(self) -> Tensor:
        """The file's rows this view reads, in order."""
        return torch.arange(self._file.count) if self._rows is None else self._rows

    def select(self, rows: Tensor) -> FileImages:
        """The view of these rows (int64 indices into this view)."""
        return self._view(rows=self.rows()[rows])

    def to(self, device: torch.device | str) -> FileImages:
        """The same rows, their batches sent to `device` (the file stays where it is)."""
        return self._view(device=device)

    def __getitem__(self, index: int | slice | Tensor) -> Tensor | FileImages:
        """A slice is a view; an integer is one image, an index tensor those images (as tensors)."""
        if isinstance(index, slice):
            return self._view(rows=self.rows()[index])
        if isinstance(index, Tensor) and index.dim() == 1:
            return self._send(self._file.read(self.rows()[index.cpu()]))
        return self._send(self._file.read(self.rows()[index].view(1)))[0]

    def read(self) -> Tensor:
        """Every row of this view as one tensor (for views that fit in memory)."""
        return self._send(self._file.read(self.rows()))

    # -- batches ------------------------------------------------------------------------------
    def shuffled_batches(self, batch_size: int, generator: torch.Generator, skip: int,
                         part: tuple[int, int]) -> Iterator[Tensor]:
        """The in-memory path's batches: the same randperm, the same rows."""
        n, (rank, size) = len(self), part
        share = batch_size // size
        order = torch.randperm(n, generator=generator)
        rows = order if self._rows is None else self._rows[order]
        return self._batches(rows[start:start + share] for start in batch_starts(n, batch_size, skip, rank, share))

    def ordered_batches(self, batch_size: int) -> Iterator[Tensor]:
        rows = self.rows()
        return self._batches(rows[start:start + batch_size] for start in range(0, len(self), batch_size))

    def _batches(self, row_batches: Iterable[Tensor]) -> Iterator[Tensor]:
        for batch in prefetched(lambda rows: self._send(self._file.read(rows)), row_batches):
            yield as_float(batch)

    def _send(self, batch: Tensor) -> Tensor:
        if self.device.type != "cuda":
            return batch.to(self.device)
        return batch.pin_memory().to(self.device, non_blocking=True)


def prefetched(fetch: Callable[[T], R], items: Iterable[T], ahead: int = AHEAD, workers: int = WORKERS) -> Iterator[R]:
    """fetch(item) for each item, in order, computed by `workers` threads up to `ahead` items early.

    Reads (and PIL's decoding) release the GIL, so the reads of several batches overlap each
    other and the training step. Closing the iterator early cancels
    what is not yet started.
    """
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vaezoo-data")
    pending: deque[Future] = deque()
    items = iter(items)
    try:
        for item in items:
            pending.append(pool.submit(fetch, item))
            if len(pending) > ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def open_array(path: str | Path, offset: int, dtype: torch.dtype, file_shape: tuple[int, ...], *,
               channels_last: bool = False) -> Tensor | FileImages:
    """The [N, C, H, W] array stored at `offset` in `path`: read into memory when it fits the data
    memory limit, else streamed from the file (`FileImages`). The caller has checked that the file holds it."""
    nbytes = math.prod(file_shape) * torch.empty((), dtype=dtype).element_size()
    if nbytes > memory_limit():
        return FileImages(path, offset, dtype, file_shape, channels_last=channels_last)
    numpy_dtype = {torch.uint8: np.uint8, torch.float32: np.float32}[dtype]
    array = np.fromfile(path, dtype=numpy_dtype, count=math.prod(file_shape), offset=offset)
    tensor = torch.from_numpy(array).view(file_shape)
    return tensor.permute(0, 3, 1, 2).contiguous() if channels_last else tensor


def select_rows(images: Tensor | FileImages, rows: Tensor) -> Tensor | FileImages:
    """Rows of a split: a copy of a tensor's, a view of a file's."""
    return images[rows] if isinstance(images, Tensor) else images.select(rows)
