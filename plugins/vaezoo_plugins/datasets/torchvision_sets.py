"""CIFAR-10 and CelebA in the files torchvision and their authors publish, read without torchvision's
per-item dataset classes (and without unpickling: CIFAR-10 is read in its binary version).

With no --data-dir the files are looked for in $VAEZOO_CACHE/data (default ~/.cache/vaezoo/data)
and downloaded there when missing; with --data-dir they must be there, and a missing file is one
line saying what to put where.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vaezoo.data import ImageData, cache_dir, data_dir
from vaezoo.errors import DataError
from vaezoo_plugins.datasets.images import Fit, prepared

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
CIFAR_FOLDER = "cifar-10-batches-bin"
CIFAR_FILES = {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"]}
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR_RECORD = 1 + 3 * 32 * 32  # a label byte, then 1,024 red, green and blue bytes
CIFAR_PER_FILE = 10_000
CELEBA_PARTITION = "list_eval_partition.txt"
CELEBA_IMAGES = "img_align_celeba"
#: CelebA as the VAE papers and their reference code use it: the centred 148x148 square of the
#: aligned 178x218 faces, resized to 64x64 (AntixK/PyTorch-VAE's CenterCrop(148) + Resize(64)).
CELEBA_FIT = Fit(64, "rgb", "crop", crop=148)


def _find(folders: list[Path], name: str) -> Path | None:
    return next((folder for folder in folders if (folder / name).is_file()), None)


def _locate(option: str | Path | None, subfolder: str, marker: str, download, what: str) -> Path:
    """The folder holding `marker`: under --data-dir, or in the cache (downloaded there if missing)."""
    chosen = data_dir(option)
    base = chosen if chosen is not None else cache_dir() / "data"
    folders = [base, base / subfolder]
    found = _find(folders, marker)
    if found is None and chosen is None:
        try:
            download(base)
        except Exception as exc:  # no internet, a moved URL, a checksum mismatch: say what to do instead
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            raise DataError(f"{what} is not in {base} and could not be downloaded ({reason}); {_put(what, base)}") from None
        found = _find(folders, marker)
    if found is None:
        raise DataError(f"{what}: {marker} is missing from {' and '.join(map(str, folders))}; {_put(what, base)}")
    return found


def _put(what: str, base: Path) -> str:
    if what == "CIFAR-10":
        return (f"download {CIFAR_URL}, unpack it and pass --data-dir DIR where DIR/{CIFAR_FOLDER} holds "
                f"{', '.join(CIFAR_FILES['train'] + CIFAR_FILES['test'])}")
    return (f"put {CELEBA_PARTITION} and the folder {CELEBA_IMAGES} (202,599 JPEGs) of CelebA's aligned images "
            f"in DIR/celeba and pass --data-dir DIR (torchvision.datasets.CelebA(DIR, download=True) does that)")


def _download_cifar(root: Path) -> None:
    from torchvision.datasets.utils import download_and_extract_archive

    download_and_extract_archive(CIFAR_URL, str(root), md5=CIFAR_MD5)


def read_cifar_batches(folder: Path, names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Images uint8 [N, 3, 32, 32] and labels int64 [N] from CIFAR-10 binary batch files."""
    images, labels = [], []
    for name in names:
        path = folder / name
        if not path.is_file():
            raise DataError(f"CIFAR-10: {path} is missing beside the other batch files; {_put('CIFAR-10', folder.parent)}")
        size = path.stat().st_size
        if size == 0 or size % CIFAR_RECORD:
            raise DataError(f"{path} is not a CIFAR-10 binary batch ({size} bytes, not a whole number of "
                            f"{CIFAR_RECORD}-byte records; each official file holds {CIFAR_PER_FILE:,})")
        records = torch.from_numpy(np.fromfile(path, dtype=np.uint8).reshape(-1, CIFAR_RECORD))
        if records[:, 0].max() > 9:
            raise DataError(f"{path} is not a CIFAR-10 binary batch (a label above 9)")
        labels.append(records[:, 0].long())
        images.append(records[:, 1:].reshape(-1, 3, 32, 32))
    return torch.cat(images), torch.cat(labels)


def load_cifar10(option: str | Path | None = None) -> ImageData:
    """CIFAR-10: 50,000 / 10,000 colour 32x32 images in 10 classes (Krizhevsky 2009)."""
    chosen = data_dir(option)
    if chosen is not None and (chosen / "cifar-10-batches-py").is_dir() and not (chosen / CIFAR_FOLDER).is_dir():
        raise DataError(f"{chosen / 'cifar-10-batches-py'} holds CIFAR-10's Python pickles, which vaezoo does not "
                        f"unpickle; {_put('CIFAR-10', chosen)}")
    folder = _locate(option, CIFAR_FOLDER, CIFAR_FILES["test"][0], _download_cifar, "CIFAR-10")
    train, train_labels = read_cifar_batches(folder, CIFAR_FILES["train"])
    test, test_labels = read_cifar_batches(folder, CIFAR_FILES["test"])
    meta = folder / "batches.meta.txt"
    classes = tuple(meta.read_text().split()) if meta.is_file() else CIFAR_CLASSES
    return ImageData("cifar10", train, test, train_labels, test_labels, classes if len(classes) == 10 else CIFAR_CLASSES)


def _download_celeba(root: Path) -> None:
    import torchvision.datasets

    torchvision.datasets.CelebA(str(root), split="all", target_type=[], download=True)


def celeba_partition(path: Path) -> dict[int, list[str]]:
    """File names by partition (0 train, 1 validation, 2 test) from list_eval_partition.txt."""
    partition: dict[int, list[str]] = {0: [], 1: [], 2: []}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2") or Path(fields[0]).name != fields[0]:
            raise DataError(f"{path}, line {number}: expected 'IMAGE.jpg 0|1|2', found {line[:60]!r}")
        partition[int(fields[1])].append(fields[0])
    return partition


def load_celeba(option: str | Path | None = None) -> ImageData:
    """CelebA's aligned faces, 148x148 centre crop resized to 64x64: the 162,770 training and 19,962
    test images of its official partition (the validation images are not used)."""
    folder = _locate(option, "celeba", CELEBA_PARTITION, _download_celeba, "CelebA")
    partition = celeba_partition(folder / CELEBA_PARTITION)
    if not partition[0] or not partition[2]:
        raise DataError(f"{folder / CELEBA_PARTITION} names no training or no test images")
    images_folder = folder / CELEBA_IMAGES
    files = [images_folder / name for name in partition[0] + partition[2]]
    missing = next((path for path in files if not path.is_file()), None)
    if missing is not None:
        raise DataError(f"CelebA: {missing} is missing; {_put('CelebA', folder.parent)}")
    images = prepared("celeba", files, CELEBA_FIT)
    count = len(partition[0])
    return ImageData("celeba", images[:count], images[count:])
