"""dSprites (Matthey et al. 2017): 737,280 binary 64x64 sprites, one per combination of five factors.

The official file (dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz) is read when the data directory
holds it; otherwise the images are drawn procedurally (sprites.py) and cached, bit-packed, in the
data directory or ~/.cache/vaezoo/data. Either way the images come in the official order (shape
slowest, posY fastest) with their factor codes.

dSprites has no test split. The papers train on all of it, and so does vaezoo: the train split is
the whole grid, and the test split is a fixed random 10,000 of those images (seed 2017, in random
order), for the per-epoch ELBO and the pictures. Disentanglement metrics sample the whole grid, as
disentanglement_lib does. Details: docs/disentanglement.md.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from vaezoo.data import Factors, ImageData, data_dir
from vaezoo.errors import DataError
from vaezoo.storage.runs import atomic_write_bytes, atomic_write_json
from vaezoo_plugins.datasets.idx import DEFAULT_CACHE
from vaezoo_plugins.datasets.sprites import (
    FACTOR_NAMES,
    FACTOR_VALUES,
    SIZE,
    SIZES,
    grid_codes,
    render,
)

OFFICIAL = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
#: Bump when the drawing changes, so that an older cache is never read as this one.
GENERATOR_VERSION = 1
CACHE = f"dsprites-procedural-v{GENERATOR_VERSION}"
TEST_IMAGES = 10_000
TEST_SEED = 2017
PIXELS = SIZE * SIZE


def load_dsprites(option: str | Path | None = None) -> ImageData:
    """The official images when the data directory holds them, else the procedural ones (cached)."""
    return load(option)


def load(option: str | Path | None, sizes: tuple[int, ...] = SIZES) -> ImageData:
    """dSprites restricted to the first `sizes[f]` values of each factor (all of them by default)."""
    chosen = data_dir(option)
    if chosen is not None and not chosen.is_dir():
        raise DataError(f"data directory {chosen} does not exist or is not a directory")
    official = _find_official(chosen) if chosen is not None else None
    if official is not None:
        images = read_official(official, sizes)
    else:
        images = cached_procedural(chosen or DEFAULT_CACHE, sizes)
    codes = grid_codes(sizes)
    # In random order, so that the pictures of the first test images show every shape and size.
    test_rows = torch.randperm(len(codes), generator=torch.Generator().manual_seed(TEST_SEED))[:TEST_IMAGES]
    values = tuple(v[:n] for v, n in zip(FACTOR_VALUES, sizes))
    return ImageData("dsprites", images, images[test_rows], factors=Factors(FACTOR_NAMES, values, codes, codes[test_rows]))


def _find_official(folder: Path) -> Path | None:
    for candidate in (folder / OFFICIAL, folder / "dsprites" / OFFICIAL):
        if candidate.is_file():
            return candidate
    return None


def read_official(path: Path, sizes: tuple[int, ...] = SIZES) -> Tensor:
    """The official npz's images [N, 1, 64, 64] as 0/255, after checking every array it has.

    Read with allow_pickle=False; its pickled "metadata" entry is never touched. Checked: the
    images' shape, type and values (0 or 1), and that latents_classes and latents_values are the
    factor grid in the official order (colour constant), so the codes vaezoo attaches are the file's.
    """
    count = int(np.prod(sizes))
    codes = grid_codes(sizes).numpy()
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = {"imgs", "latents_classes", "latents_values"} - set(archive.files)
            if missing:
                raise DataError(f"{path} is not the dSprites file: it has no {', '.join(sorted(missing))}")
            classes = _array(archive, path, "latents_classes", (count, len(sizes) + 1), np.integer)
            if (classes[:, 0] != 0).any() or not np.array_equal(classes[:, 1:], codes):
                raise DataError(f"{path}: latents_classes are not the dSprites grid in its official order")
            values = _array(archive, path, "latents_values", (count, len(sizes) + 1), np.floating)
            expected = np.stack([np.asarray(v)[codes[:, f]] for f, v in enumerate(FACTOR_VALUES)], axis=1)
            if not np.allclose(values[:, 1:], expected, rtol=0.0, atol=1e-6):
                raise DataError(f"{path}: latents_values differ from the dSprites factor values")
            images = _array(archive, path, "imgs", (count, SIZE, SIZE), np.uint8)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"cannot read {path}: {type(exc).__name__}: {exc}") from None
    if images.max(initial=0) > 1:
        raise DataError(f"{path}: imgs must hold only 0 and 1")
    images *= 255
    return torch.from_numpy(images).view(count, 1, SIZE, SIZE)


def _array(archive: np.lib.npyio.NpzFile, path: Path, key: str, shape: tuple[int, ...], kind: type) -> np.ndarray:
    array = archive[key]
    if array.shape != shape or not np.issubdtype(array.dtype, kind):
        raise DataError(f"{path}: {key} should be {kind.__name__} of shape {shape}, "
                        f"found {array.dtype} of shape {array.shape}")
    return array


def cached_procedural(folder: Path, sizes: tuple[int, ...] = SIZES) -> Tensor:
    """The procedural images, read from the cache in `folder`, or drawn and cached there first.

    The cache is the images bit-packed (a .npy of [N, 512] bytes) and a JSON record of its SHA-256,
    both written atomically, the record last; it is checked against the record when read back.
    """
    name = CACHE if sizes == SIZES else f"{CACHE}-{'x'.join(map(str, sizes))}"
    data, record = folder / f"{name}.npy", folder / f"{name}.json"
    if record.is_file():
        return _read_cache(data, record, int(np.prod(sizes)))
    images = render(*(range(n) for n in sizes))
    stream = io.BytesIO()
    np.save(stream, np.packbits(images.numpy().reshape(len(images), PIXELS), axis=1), allow_pickle=False)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(data, stream.getvalue())
    atomic_write_json(record, {"generator_version": GENERATOR_VERSION, "sizes": list(sizes),
                               "sha256": hashlib.sha256(stream.getbuffer()).hexdigest()})
    return images


def _read_cache(data: Path, record_path: Path, count: int) -> Tensor:
    """The cached images, once the file matches its recorded hash and shape; anything else is an error."""
    fix = f"delete {data} and {record_path} and the images are drawn again"
    try:
        record = json.loads(record_path.read_text())
        buffer = data.read_bytes()
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read the dSprites cache ({exc}); {fix}") from None
    if not isinstance(record, dict) or hashlib.sha256(buffer).hexdigest() != record.get("sha256"):
        raise DataError(f"the dSprites cache {data} does not match the checksum in {record_path}; {fix}")
    try:
        packed = np.load(io.BytesIO(buffer), allow_pickle=False)
    except ValueError as exc:
        raise DataError(f"cannot read the dSprites cache {data} ({exc}); {fix}") from None
    if packed.shape != (count, PIXELS // 8) or packed.dtype != np.uint8:
        raise DataError(f"the dSprites cache {data} holds {packed.dtype} {packed.shape}, "
                        f"not uint8 ({count}, {PIXELS // 8}); {fix}")
    # Unpacked by torch into one fresh 3 GB tensor (faster here than np.unpackbits and a multiply).
    bits = torch.from_numpy(packed).reshape(-1, 1) >> torch.arange(7, -1, -1, dtype=torch.uint8)
    return bits.bitwise_and_(1).mul_(255).view(count, 1, SIZE, SIZE)
