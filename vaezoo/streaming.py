"""Arrays larger than memory: a file memory-mapped once, each batch gathered from it by a worker thread.

A dataset whose bytes fit in the data memory limit (`memory_limit()`) is read into a tensor;
one that does not stays on disk as `MappedImages`. Both give the same batches in the same order
(the shuffle is the same `randperm` over the same rows, the gather the same index into the same
bytes), so whether a dataset streamed never changes a run's numbers. A streamed batch costs one
C-level gather (page faults into the page cache) in a background thread, a few batches ahead of
the training step; the mapped pages the process holds are dropped (`madvise(MADV_DONTNEED)`)
whenever the gathers could have touched as much as the limit, so the memory a streamed dataset
takes stays below it however large the file is.
"""

from __future__ import annotations

import math
import mmap
import os
import re
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from torch import Tensor

from vaezoo.data import as_float, batch_starts
from vaezoo.errors import DataError

MEMORY_ENV = "VAEZOO_DATA_MEMORY"
WORKERS = 4  # gathers in flight: page faults on a cold file wait on the disk, several hide that
AHEAD = 8  # batches gathered ahead of the one the training step takes
FAULT_AROUND = 64 * 1024  # bytes the kernel may map around each faulting page (fault_around_bytes)
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


class _Mapping:
    """One mapped file shared by every view of it, and the count of what gathers may have touched."""

    def __init__(self, path: Path, offset: int, dtype: torch.dtype, shape: tuple[int, ...], limit: int):
        itemsize = torch.empty((), dtype=dtype).element_size()
        if offset % itemsize:
            raise DataError(f"{path}: its data starts at byte {offset}, not aligned to its {itemsize}-byte values; "
                            "re-save it (numpy.save) to stream it")
        with open(path, "rb") as file:
            self.mm = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_COPY)  # private: never writes the file
        count = math.prod(shape)
        self.tensor = torch.frombuffer(self.mm, dtype=dtype, count=count, offset=offset).view(shape)
        self.limit, self.touched, self.lock = limit, 0, threading.Lock()

    def gathered(self, images: int, image_bytes: int) -> None:
        """Count a gather; drop the mapped pages once they could amount to the limit."""
        with self.lock:
            self.touched += images * (image_bytes + FAULT_AROUND)
            if self.touched >= self.limit and hasattr(self.mm, "madvise"):
                self.mm.madvise(mmap.MADV_DONTNEED)  # unmodified private pages come back from the file
                self.touched = 0


class MappedImages:
    """An image source (see vaezoo.data) over a memory-mapped uint8 or float32 array [N, C, H, W].

    `channels_last`: the file holds [N, H, W, C]. `rows` selects and orders rows (a split of a file);
    slicing gives a view, an integer index one image as a tensor.
    """

    def __init__(self, path: str | Path, offset: int, dtype: torch.dtype, file_shape: tuple[int, ...], *,
                 channels_last: bool = False, limit: int | None = None):
        self.path = Path(path)
        self._map = _Mapping(self.path, offset, dtype, tuple(file_shape), limit or memory_limit())
        self._images = self._map.tensor.permute(0, 3, 1, 2) if channels_last else self._map.tensor
        self._rows: Tensor | None = None
        self.device = torch.device("cpu")

    def _view(self, rows: Tensor | None = None, device: torch.device | None = None) -> MappedImages:
        view = object.__new__(MappedImages)
        view.__dict__.update(self.__dict__)
        if rows is not None:
            view._rows = rows
        if device is not None:
            view.device = torch.device(device)
        return view

    # -- what a tensor split offers -----------------------------------------------------------
    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), *self._images.shape[1:]))

    @property
    def dtype(self) -> torch.dtype:
        return self._images.dtype

    def __len__(self) -> int:
        return self._images.shape[0] if self._rows is None else self._rows.shape[0]

    def rows(self) -> Tensor:
        return torch.arange(self._images.shape[0]) if self._rows is None else self._rows

    def select(self, rows: Tensor) -> MappedImages:
        """The view of these rows (int64 indices into this view)."""
        return self._view(rows=self.rows()[rows])

    def to(self, device: torch.device | str) -> MappedImages:
        """The same rows, their batches sent to `device` (the file stays where it is)."""
        return self._view(device=device)

    def __getitem__(self, index: int | slice) -> Tensor | MappedImages:
        if isinstance(index, slice):
            return self._view(rows=self.rows()[index])
        row = int(self.rows()[index]) if self._rows is not None else index
        return self._send(self._images[row].clone())

    def read(self) -> Tensor:
        """Every row of this view as one tensor (for views that fit in memory)."""
        return self._gather(self.rows())

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

    def _batches(self, index_batches: Iterable[Tensor]) -> Iterator[Tensor]:
        for batch in prefetched(self._gather, index_batches):
            yield as_float(batch)

    def _gather(self, rows: Tensor) -> Tensor:
        batch = torch.index_select(self._images, 0, rows).contiguous()  # releases the GIL, unlike t[rows]
        self._map.gathered(rows.shape[0], batch[0].numel() * batch.element_size() if len(batch) else 0)
        return self._send(batch)

    def _send(self, batch: Tensor) -> Tensor:
        if self.device.type != "cuda":
            return batch.to(self.device)
        return batch.pin_memory().to(self.device, non_blocking=True)


def prefetched(fetch: Callable[[T], R], items: Iterable[T], ahead: int = AHEAD, workers: int = WORKERS) -> Iterator[R]:
    """fetch(item) for each item, in order, computed by `workers` threads up to `ahead` items early.

    torch releases the GIL inside the gather (and PIL while decoding), so the page faults of
    several batches overlap each other and the training step. Closing the iterator early cancels
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
               channels_last: bool = False) -> Tensor | MappedImages:
    """The [N, C, H, W] array stored at `offset` in `path`: read into memory when it fits the data
    memory limit, else mapped (`MappedImages`). The caller has checked that the file holds it."""
    limit = memory_limit()
    nbytes = math.prod(file_shape) * torch.empty((), dtype=dtype).element_size()
    if nbytes > limit:
        return MappedImages(path, offset, dtype, file_shape, channels_last=channels_last, limit=limit)
    numpy_dtype = {torch.uint8: np.uint8, torch.float32: np.float32}[dtype]
    array = np.fromfile(path, dtype=numpy_dtype, count=math.prod(file_shape), offset=offset)
    tensor = torch.from_numpy(array).view(file_shape)
    return tensor.permute(0, 3, 1, 2).contiguous() if channels_last else tensor


def select_rows(images: Tensor | MappedImages, rows: Tensor) -> Tensor | MappedImages:
    """Rows of a split: a copy of a tensor's, a view of a mapped file's."""
    return images[rows] if isinstance(images, Tensor) else images.select(rows)
