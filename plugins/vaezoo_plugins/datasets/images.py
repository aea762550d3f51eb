"""Image files decoded once into a cached uint8 array [N, C, S, S], then read like any array.

Decoding (PIL, in threads, with a progress bar) is the only per-image work and happens once per
folder, size and colour mode: the array goes to $VAEZOO_CACHE/prepared (default
~/.cache/vaezoo/prepared) under a name that fingerprints every file's path, size and modification
time, so a changed folder is prepared again and an unchanged one never. Delete that folder to
reclaim the space.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from torch import Tensor

from vaezoo.data import cache_dir
from vaezoo.errors import DataError
from vaezoo.storage.files import atomic_writer, make_folder
from vaezoo.streaming import FileImages, open_array, prefetched
from vaezoo_plugins.datasets.arrays import npy_array

FORMAT = 1  # of the prepared arrays: bump when decoding changes, so older ones are not reused
EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
DECODE_AHEAD = 64


@dataclass(frozen=True)
class Fit:
    """How a picture becomes S x S: colour mode, then an optional centred square crop of side `crop`
    (CelebA's 148), then `fit`: "crop" (the largest centred square, resized) or "resize" (squashed)."""

    size: int
    mode: str = "rgb"  # or "grey"
    fit: str = "crop"
    crop: int | None = None

    @property
    def channels(self) -> int:
        return 3 if self.mode == "rgb" else 1


def decode(path: Path, fit: Fit) -> np.ndarray:
    """One image file as uint8 [C, S, S]; an unreadable file is one DataError naming it."""
    try:
        with Image.open(path) as image:
            if fit.crop is None:
                image.draft("RGB" if fit.mode == "rgb" else "L", (fit.size, fit.size))  # JPEG: decode at a reduced scale
            image = image.convert("RGB" if fit.mode == "rgb" else "L")
            if fit.crop is not None:
                width, height = image.size
                if min(width, height) < fit.crop:
                    raise ValueError(f"it is {width}x{height}, smaller than the {fit.crop}x{fit.crop} crop")
                left, top = (width - fit.crop) // 2, (height - fit.crop) // 2
                image = image.crop((left, top, left + fit.crop, top + fit.crop))
            size = (fit.size, fit.size)
            image = ImageOps.fit(image, size, Image.Resampling.BILINEAR) if fit.fit == "crop" \
                else image.resize(size, Image.Resampling.BILINEAR)
            array = np.asarray(image, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def image_files(folder: Path) -> list[Path]:
    """Every image file under `folder`, sorted; hidden files and folders are left out."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _fingerprint(files: Sequence[Path], fit: Fit, extra: object) -> str:
    digest = hashlib.sha256(json.dumps([FORMAT, asdict(fit), extra]).encode())
    for path in files:
        stat = path.stat()
        digest.update(f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def prepared(name: str, files: Sequence[Path], fit: Fit, extra: object = None) -> Tensor | FileImages:
    """The images of `files` in that order, uint8 [N, C, S, S]: decoded now if never before, else
    read from the cache (`extra`: anything else that decides the array, in JSON)."""
    path = cache_dir() / "prepared" / f"{name}-{fit.size}-{fit.mode}-{_fingerprint(files, fit, extra)}.npy"
    shape = (len(files), fit.channels, fit.size, fit.size)
    if not path.is_file():
        _write(path, files, fit, shape, name)
    stored = npy_array(path)
    if stored.shape != shape or stored.dtype != np.uint8:
        raise DataError(f"{path} is not the array vaezoo prepared (shape {list(stored.shape)}); delete it to prepare it again")
    return open_array(path, stored.offset, torch.uint8, shape)


def _write(path: Path, files: Sequence[Path], fit: Fit, shape: tuple[int, ...], name: str) -> None:
    """Decode every file into `path`, streamed through vaezoo's write path (renamed into place once complete)."""
    make_folder(path.parent)
    console = Console(stderr=True)
    console.print(f"{name}: decoding {len(files):,} images to {fit.size}x{fit.size} {fit.mode} once, into {path}",
                  highlight=False, soft_wrap=True)
    progress = Progress(TextColumn("preparing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=console, disable=not console.is_terminal)
    with atomic_writer(path) as out, progress:
        task = progress.add_task("decode", total=len(files))
        np.lib.format.write_array_header_1_0(out, {"descr": "|u1", "fortran_order": False, "shape": shape})
        decoded = prefetched(lambda file: decode(file, fit), files, ahead=DECODE_AHEAD, workers=os.cpu_count() or 1)
        for count, array in enumerate(decoded, 1):
            out.write(array.tobytes())
            if count % 256 == 0 or count == len(files):
                progress.update(task, completed=count)
