"""A folder of PNG/JPEG images as a dataset (--data-dir DIR), at a chosen size and colour mode.

- Images anywhere under DIR; when every image sits in a first-level subfolder, the subfolder is
  its class (labels, classes sorted by name, as torchvision's ImageFolder).
- DIR/train and DIR/test, when both exist, are the splits; otherwise `test_fraction` of the
  images (a fixed random choice) is held out for testing.
- `image_size` x `image_size`, `image_mode` rgb or grey, `image_fit` crop (the largest centred
  square, resized) or resize (squashed to the square).
Decoded once into a cached array (see images.py); large ones stream from it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vaezoo.data import ImageData, data_dir
from vaezoo.errors import DataError
from vaezoo_plugins.datasets.arrays import held_out
from vaezoo_plugins.datasets.images import EXTENSIONS, Fit, image_files, prepared


def _class_of(path: Path, root: Path) -> str | None:
    parts = path.relative_to(root).parts
    return parts[0] if len(parts) > 1 else None


def load_image_folder(option: str | Path | None = None, image_size: int = 64, image_mode: str = "rgb",
                      image_fit: str = "crop", test_fraction: float = 0.1) -> ImageData:
    root = data_dir(option)
    if root is None or not root.is_dir():
        where = "needs --data-dir naming a folder of images" if root is None else f"{root} is not a folder"
        raise DataError(f"image-folder {where} ({', '.join(EXTENSIONS)}, optionally one subfolder per class)")
    if (root / "train").is_dir() and (root / "test").is_dir():
        splits = {split: (root / split, image_files(root / split)) for split in ("train", "test")}
    else:
        everything = image_files(root)
        if not everything:
            raise DataError(f"image-folder: no images ({', '.join(EXTENSIONS)}) under {root}")
        train_rows, test_rows = held_out(len(everything), test_fraction)
        splits = {"train": (root, [everything[i] for i in train_rows]),
                  "test": (root, [everything[i] for i in test_rows])}
    for folder, files in splits.values():
        if not files:
            raise DataError(f"image-folder: no images ({', '.join(EXTENSIONS)}) under {folder}")
    names = {split: [_class_of(p, folder) for p in files] for split, (folder, files) in splits.items()}
    labelled = all(name is not None for split in names.values() for name in split)
    classes = tuple(sorted({name for split in names.values() for name in split})) if labelled else None
    files = splits["train"][1] + splits["test"][1]
    images = prepared("image-folder", files, Fit(image_size, image_mode, image_fit))
    count = len(splits["train"][1])
    index = {name: i for i, name in enumerate(classes or ())}
    labels = {split: torch.tensor([index[name] for name in names[split]], dtype=torch.int64)
              for split in names} if classes else {}
    return ImageData("image-folder", images[:count], images[count:], labels.get("train"), labels.get("test"), classes)
