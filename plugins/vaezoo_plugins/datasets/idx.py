"""FashionMNIST / MNIST from the original IDX files, found on disk or downloaded by torchvision.

Files already on disk are read directly with a header check (Debian's dataset-fashion-mnist
recompresses the archives, so torchvision's checksums refuse them while the images are the same).
What the files hold is checked instead: the two datasets have the same shapes, but their mean
training pixel tells them apart (MNIST's digits are mostly black, FashionMNIST's clothes are not).
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import torch
import torch.nn.functional as F

from vaezoo.data import ImageData, cache_dir, data_dir
from vaezoo.errors import DataError

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
SIZES = {"train": 60000, "test": 10000}
DEFAULT_CACHE = cache_dir() / "data"
CLASSES = {"MNIST": tuple("0123456789"),
           "FashionMNIST": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                            "Bag", "Ankle boot")}
SIDE = 28
#: The largest IDX file read: the 60,000 training images and a 3-d header. A compressed file that
#: unpacks to more is refused before it fills the memory.
LARGEST_IDX = 16 + SIZES["train"] * SIDE * SIDE
#: Mean training pixel (0..255) of each dataset; files of one read as the other are refused.
MEAN_PIXEL = {"MNIST": 33.32, "FashionMNIST": 72.94}
MEAN_TOLERANCE = 3.0


def read_idx(path: Path, largest: int = LARGEST_IDX) -> torch.Tensor:
    """Read one IDX file (optionally gzipped) of unsigned bytes, checking header and length."""
    try:
        with (gzip.open(path) if path.suffix == ".gz" else path.open("rb")) as f:
            raw = f.read(largest + 1)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    if len(raw) > largest:
        raise DataError(f"{path} holds more than {largest:,} bytes, more than any IDX file vaezoo reads")
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or not 1 <= raw[3] <= 4:
        raise DataError(f"{path} is not an IDX file of unsigned bytes (bad header)")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise DataError(f"{path} is truncated (header cut short)")
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    expected = 4 + 4 * ndim
    count = 1
    for d in dims:
        count *= d
    if len(raw) != expected + count:
        raise DataError(f"{path} is truncated or corrupt: header says {count} values, file holds {len(raw) - expected}")
    return torch.frombuffer(bytearray(raw[expected:]), dtype=torch.uint8).reshape(dims)


def _find(name: str, folders: list[Path]) -> Path | None:
    for folder in folders:
        for candidate in (folder / f"{name}.gz", folder / name):
            if candidate.is_file():
                return candidate
    return None


def _candidate_folders(base: Path, torchvision_name: str, debian_name: str) -> list[Path]:
    return [base, base / torchvision_name / "raw", base / debian_name]


def _load(label: str, torchvision_name: str, debian_name: str, option: str | Path | None,
          hint: str = "") -> ImageData:
    chosen = data_dir(option)
    if chosen is not None and not chosen.is_dir():
        raise DataError(f"data directory {chosen} does not exist or is not a directory")
    roots = [chosen] if chosen is not None else [DEFAULT_CACHE, Path("/usr/share/datasets")]
    folders = [f for root in roots for f in _candidate_folders(root, torchvision_name, debian_name)]
    if _find(FILES["train"][0], folders) is None:
        _download(label, torchvision_name, chosen or DEFAULT_CACHE, folders, hint)
    splits, labels = {}, {}
    for split, (images_name, labels_name) in FILES.items():
        path = _find(images_name, folders)
        if path is None:
            raise DataError(f"{label}: {images_name}[.gz] is missing beside the other files in {', '.join(map(str, folders))}")
        images = read_idx(path)
        if images.dim() != 3 or images.shape[1:] != (SIDE, SIDE) or images.shape[0] != SIZES[split]:
            raise DataError(f"{path}: expected {SIZES[split]} images of 28x28, found shape {tuple(images.shape)}")
        if split == "train":
            _check_identity(label, images, path)
        splits[split] = F.pad(images.unsqueeze(1), (2, 2, 2, 2))  # pad once to 32x32
        labels[split] = _labels(_find(labels_name, folders), SIZES[split])
    if any(value is None for value in labels.values()):
        labels = {}  # labels are optional: both splits have them or neither does
    return ImageData(debian_name, splits["train"], splits["test"], labels.get("train"), labels.get("test"),
                     CLASSES[torchvision_name] if labels else None)


def _labels(path: Path | None, count: int) -> torch.Tensor | None:
    """The labels of an IDX label file (class indices 0..9), or None when there is none."""
    if path is None:
        return None
    labels = read_idx(path)
    if labels.shape != (count,) or labels.max() > 9:
        raise DataError(f"{path}: expected {count} labels from 0 to 9, found shape {tuple(labels.shape)}")
    return labels.long()


def _check_identity(label: str, images: torch.Tensor, path: Path) -> None:
    """The files are the dataset asked for: their mean pixel is its, not another's."""
    mean = float(images.sum(dtype=torch.int64)) / images.numel()
    if abs(mean - MEAN_PIXEL[label]) <= MEAN_TOLERANCE:
        return
    looks = next((f", like {name}'s ({value:.2f})" for name, value in MEAN_PIXEL.items()
                  if abs(mean - value) <= MEAN_TOLERANCE), "")
    raise DataError(f"{path} is not {label}: its mean pixel is {mean:.2f}{looks}, "
                    f"{label}'s is {MEAN_PIXEL[label]:.2f}; point --data-dir at the {label} files")


def _download(label: str, torchvision_name: str, root: Path, searched: list[Path], hint: str) -> None:
    import torchvision.datasets

    try:
        root.mkdir(parents=True, exist_ok=True)
        getattr(torchvision.datasets, torchvision_name)(str(root), train=True, download=True)
        getattr(torchvision.datasets, torchvision_name)(str(root), train=False, download=True)
    except Exception as exc:
        where = ", ".join(str(f) for f in searched)
        raise DataError(
            f"{label} is not on disk (looked in {where}) and could not be downloaded "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
            f"{hint}Or put the four IDX .gz files "
            f"in a folder and pass --data-dir (or set VAEZOO_DATA)"
        ) from None


def load_fashion_mnist(option: str | Path | None = None) -> ImageData:
    return _load("FashionMNIST", "FashionMNIST", "fashion-mnist", option,
                 "Install Debian's package dataset-fashion-mnist, or connect to the internet. ")


def load_mnist(option: str | Path | None = None) -> ImageData:
    return _load("MNIST", "MNIST", "mnist", option, "Connect to the internet once to download it. ")
