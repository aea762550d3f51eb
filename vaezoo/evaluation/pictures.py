"""Pictures of a model: reconstructions, prior samples, latent traversals and loss curves (PNG)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor
from torchvision.utils import save_image

from vaezoo.data import as_float
from vaezoo.model.vae import VAE

TRAVERSAL_RANGE = 3.0  # standard deviations of the prior either side of the posterior mean
TRAVERSAL_STEPS = 11


@torch.no_grad()
def reconstructions(model: VAE, images: Tensor, path: Path | BinaryIO, n: int = 32, per_row: int = 8) -> None:
    """Rows of test images, each followed by a row of their reconstructions (a file or an open stream)."""
    x = as_float(images[:n])
    recon = model.reconstruct(x)
    rows = [t for i in range(0, x.shape[0], per_row) for t in (x[i:i + per_row], recon[i:i + per_row])]
    save_image(torch.cat(rows), path, format="png", nrow=per_row, pad_value=1.0)


@torch.no_grad()
def samples(model: VAE, path: Path, n: int = 64) -> None:
    save_image(model.sample(n), path, nrow=int(n**0.5) or 1, pad_value=1.0)


@torch.no_grad()
def traversals(model: VAE, image: Tensor, path: Path) -> None:
    """One row per latent dimension: that dimension swept around the posterior mean of `image`."""
    z = model.encoder(as_float(image[None])).mean[0]
    values = torch.linspace(-TRAVERSAL_RANGE, TRAVERSAL_RANGE, TRAVERSAL_STEPS, device=z.device)
    dims = z.shape[0]
    grid = z.repeat(dims, TRAVERSAL_STEPS, 1)  # [D, steps, D]
    index = torch.arange(dims, device=z.device)
    grid[index, :, index] = z[index, None] + values
    save_image(model.decode_mean(grid.reshape(-1, dims)), path, nrow=TRAVERSAL_STEPS, pad_value=1.0)


def loss_curves(records: Sequence[dict[str, Any]], path: Path, size: tuple[int, int] = (640, 400)) -> None:
    """Train loss, train and test negative ELBO per epoch, drawn with PIL (no plotting library)."""
    series = {
        "train loss": ([r["train"]["loss"] for r in records], (214, 39, 40)),
        "train -ELBO": ([r["train"]["neg_elbo"] for r in records], (31, 119, 180)),
        "test -ELBO": ([r["test"]["neg_elbo"] for r in records], (255, 127, 14)),
    }
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


def write_pictures(model: VAE, test_images: Tensor, records: Sequence[dict[str, Any]], folder: Path) -> None:
    """reconstructions.png, samples.png, traversals.png and loss.png in `folder`."""
    model.eval()
    reconstructions(model, test_images, folder / "reconstructions.png")
    samples(model, folder / "samples.png")
    traversals(model, test_images[0], folder / "traversals.png")
    loss_curves(records, folder / "loss.png")
