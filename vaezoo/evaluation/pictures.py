"""Pictures of a model: reconstructions, prior samples, latent traversals and loss curves (PNG).

Each picture asks the structure only for what it needs; one a structure cannot give (no flat code
to traverse, no prior to sample) is left out with a note rather than drawn wrong.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor
from torchvision.utils import make_grid

from vaezoo.data import as_float
from vaezoo.errors import NotApplicable
from vaezoo.model.structure import Structure
from vaezoo.storage.files import atomic_write_bytes
from vaezoo.storage.runs import LOSS, RECONSTRUCTIONS, SAMPLES, TRAVERSALS

TRAVERSAL_RANGE = 3.0  # standard deviations of the prior either side of the posterior mean
TRAVERSAL_STEPS = 11
PADDING = 2  # pixels between the images of a grid


def grid_bytes(input_shape: tuple[int, int, int]) -> int:
    """Memory one image takes in a grid: a padded 3-channel float tile, then its 8-bit copy for the PNG."""
    _, height, width = input_shape
    return 3 * (height + PADDING) * (width + PADDING) * (4 + 1)


@torch.no_grad()
def reconstruction_grid(model: Structure, images: Tensor, n: int = 32, per_row: int = 8,
                        labels: Tensor | None = None) -> Tensor:
    """Rows of test images, each followed by a row of their reconstructions: [3, H, W] in [0, 1]
    (`labels`: the images' labels, for a conditional model)."""
    x = as_float(images[:n])
    with model.conditioned_on(None if labels is None else labels[:n].to(x.device)):
        recon = model.reconstruct(x)
    rows = [t for i in range(0, x.shape[0], per_row) for t in (x[i:i + per_row], recon[i:i + per_row])]
    return make_grid(torch.cat(rows), nrow=per_row, padding=PADDING, pad_value=1.0)


@torch.no_grad()
def sample_grid(model: Structure, n: int = 64, draw: Callable[[int], Tensor] | None = None) -> Tensor:
    """n samples in a square grid: from the model's prior, or from `draw(n)` (a fitted sampler's images)."""
    return make_grid((draw or model.sample)(n), nrow=int(n**0.5) or 1, padding=PADDING, pad_value=1.0)


@torch.no_grad()
def traversals(model: Structure, image: Tensor, path: Path, label: Tensor | None = None) -> None:
    """One row per latent dimension: that dimension swept around the posterior mean of `image` (of class
    `label`, for a conditional model, whose decoded rows keep that class)."""
    with model.conditioned_on(None if label is None else label.reshape(1).to(image.device)):
        z = model.representation(as_float(image[None]))[0]
    values = torch.linspace(-TRAVERSAL_RANGE, TRAVERSAL_RANGE, TRAVERSAL_STEPS, device=z.device)
    dims = z.shape[0]
    grid = z.repeat(dims, TRAVERSAL_STEPS, 1)  # [D, steps, D]
    index = torch.arange(dims, device=z.device)
    grid[index, :, index] = z[index, None] + values
    with model.conditioned_on(None if label is None else label.reshape(1).to(z.device).expand(dims * TRAVERSAL_STEPS)):
        decoded = model.decode_representation(grid.reshape(-1, dims))
    _write_png(_image(make_grid(decoded, nrow=TRAVERSAL_STEPS, padding=PADDING, pad_value=1.0)), path)


def reconstructions(model: Structure, images: Tensor, path: Path | BinaryIO, n: int = 32, per_row: int = 8,
                    labels: Tensor | None = None) -> None:
    """The reconstruction grid as a PNG file (or into an open stream)."""
    _write_png(_image(reconstruction_grid(model, images, n, per_row, labels)), path)


def samples(model: Structure, path: Path | BinaryIO, n: int = 64, draw: Callable[[int], Tensor] | None = None) -> None:
    """The sample grid as a PNG file (or into an open stream)."""
    _write_png(_image(sample_grid(model, n, draw)), path)


def epoch_pictures(model: Structure, test_images: Tensor, seed: int = 0,
                   test_labels: Tensor | None = None) -> dict[str, np.ndarray]:
    """Reconstructions and prior samples as uint8 [H, W, 3] arrays, for experiment trackers at epoch ends.

    The prior samples use their own `seed` (the same noise every epoch, so epochs compare) inside a
    forked random state: drawing them leaves training's random numbers, and so its result, unchanged.
    """
    device = test_images.device
    drawings = {"reconstructions": lambda: reconstruction_grid(model, test_images, labels=test_labels),
                "samples": lambda: sample_grid(model)}
    grids = {}
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for name, draw in drawings.items():
            try:
                grids[name] = draw()
            except NotApplicable:  # a picture the model's structure cannot draw (no prior samples, say)
                continue
    return {name: _uint8(grid) for name, grid in grids.items()}


def _uint8(grid: Tensor) -> np.ndarray:
    """A [3, H, W] grid in [0, 1] as uint8 [H, W, 3], rounded as torchvision's save_image rounds."""
    return grid.mul(255).add(0.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def _image(grid: Tensor) -> Image.Image:
    return Image.fromarray(_uint8(grid))


def _write_png(image: Image.Image, path: Path | BinaryIO) -> None:
    """A PNG into an open stream, or to a file through vaezoo's one write path (atomic, no link
    followed, one error line)."""
    if not isinstance(path, Path):
        image.save(path, format="PNG")
        return
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


def loss_curves(records: Sequence[dict[str, Any]], path: Path, size: tuple[int, int] = (640, 400)) -> None:
    """Train loss, train and test negative ELBO per epoch (those the records hold), drawn with PIL."""
    wanted = {"train loss": ("train", "loss", (214, 39, 40)), "train -ELBO": ("train", "neg_elbo", (31, 119, 180)),
              "test -ELBO": ("test", "neg_elbo", (255, 127, 14))}
    series = {label: ([r[split][key] for r in records], colour) for label, (split, key, colour) in wanted.items()
              if all(key in r.get(split, {}) for r in records)}
    width, height = size
    left, right, top, bottom = 70, 20, 30, 40
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    values = [v for vals, _ in series.values() for v in vals]
    lo, hi = min(values), max(values)
    if hi - lo < 1e-9:
        lo, hi = lo - 1, hi + 1
    epochs = [r["epoch"] for r in records]
    e_lo, e_hi = min(epochs), max(max(epochs), min(epochs) + 1)

    def point(epoch: float, value: float) -> tuple[float, float]:
        x = left + (epoch - e_lo) / (e_hi - e_lo) * (width - left - right)
        y = top + (hi - value) / (hi - lo) * (height - top - bottom)
        return x, y

    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    for i in range(5):
        value = lo + (hi - lo) * i / 4
        _, y = point(e_lo, value)
        draw.line([left - 4, y, left, y], fill="black")
        draw.text((4, y - 6), f"{value:.1f}", fill="black", font=font)
    for epoch in epochs:
        x, _ = point(epoch, lo)
        draw.text((x - 3, height - bottom + 6), str(epoch), fill="black", font=font)
    draw.text((width // 2 - 20, height - 16), "epoch", fill="black", font=font)
    for i, (label, (vals, colour)) in enumerate(series.items()):
        points = [point(e, v) for e, v in zip(epochs, vals)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for x, y in points:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
        draw.text((left + 10 + 130 * i, 10), label, fill=colour, font=font)
    _write_png(image, path)


def write_pictures(model: Structure, test_images: Tensor, records: Sequence[dict[str, Any]], folder: Path,
                   test_labels: Tensor | None = None) -> list[str]:
    """reconstructions.png, samples.png, traversals.png and loss.png in `folder`, those that apply;
    returns a note for each picture left out. `test_labels` condition a conditional model."""
    model.eval()
    notes = []
    first_label = None if test_labels is None else test_labels[0]
    drawings = {RECONSTRUCTIONS: lambda path: reconstructions(model, test_images, path, labels=test_labels),
                SAMPLES: lambda path: samples(model, path),
                TRAVERSALS: lambda path: traversals(model, test_images[0], path, first_label),
                LOSS: lambda path: loss_curves(records, path)}
    for name, draw in drawings.items():
        try:
            draw(folder / name)
        except NotApplicable as exc:
            notes.append(f"{name} not drawn: {exc}")
    return notes
