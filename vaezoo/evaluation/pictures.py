"""Pictures of a model: reconstructions, prior samples, latent traversals and loss curves (PNG).

Each picture asks the structure only for what it needs; one a structure cannot give (no flat code
to traverse, no prior to sample) is left out with a note rather than drawn wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor
from torchvision.utils import save_image

from vaezoo.data import as_float
from vaezoo.errors import NotApplicable
from vaezoo.model.structure import Structure

TRAVERSAL_RANGE = 3.0  # standard deviations of the prior either side of the posterior mean
TRAVERSAL_STEPS = 11


@torch.no_grad()
def reconstructions(model: Structure, images: Tensor, path: Path, n: int = 32, per_row: int = 8) -> None:
    """Rows of test images, each followed by a row of their reconstructions."""
    x = as_float(images[:n])
    recon = model.reconstruct(x)
    rows = [t for i in range(0, x.shape[0], per_row) for t in (x[i:i + per_row], recon[i:i + per_row])]
    save_image(torch.cat(rows), path, nrow=per_row, pad_value=1.0)


@torch.no_grad()
def samples(model: Structure, path: Path, n: int = 64) -> None:
    save_image(model.sample(n), path, nrow=int(n**0.5) or 1, pad_value=1.0)


@torch.no_grad()
def traversals(model: Structure, image: Tensor, path: Path) -> None:
    """One row per latent dimension: that dimension swept around the posterior mean of `image`."""
    z = model.representation(as_float(image[None]))[0]
    values = torch.linspace(-TRAVERSAL_RANGE, TRAVERSAL_RANGE, TRAVERSAL_STEPS, device=z.device)
    dims = z.shape[0]
    grid = z.repeat(dims, TRAVERSAL_STEPS, 1)  # [D, steps, D]
    index = torch.arange(dims, device=z.device)
    grid[index, :, index] = z[index, None] + values
    save_image(model.decode_representation(grid.reshape(-1, dims)), path, nrow=TRAVERSAL_STEPS, pad_value=1.0)


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
    image.save(path)


def write_pictures(model: Structure, test_images: Tensor, records: Sequence[dict[str, Any]], folder: Path) -> list[str]:
    """reconstructions.png, samples.png, traversals.png and loss.png in `folder`, those that apply;
    returns a note for each picture left out."""
    model.eval()
    notes = []
    drawings = {"reconstructions.png": lambda path: reconstructions(model, test_images, path),
                "samples.png": lambda path: samples(model, path),
                "traversals.png": lambda path: traversals(model, test_images[0], path),
                "loss.png": lambda path: loss_curves(records, path)}
    for name, draw in drawings.items():
        try:
            draw(folder / name)
        except NotApplicable as exc:
            notes.append(f"{name} not drawn: {exc}")
    return notes
