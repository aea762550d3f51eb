"""A small generated image set with real structure (a disc and a bar per image), for tests."""

from __future__ import annotations

from pathlib import Path

import torch

from vaezoo.data import ImageData

N_TRAIN, N_TEST, SIZE = 1024, 256, 32


def make_images(n: int, generator: torch.Generator) -> torch.Tensor:
    """n images [n, 1, 32, 32] uint8: a disc of random centre/radius plus a random horizontal bar."""
    coords = torch.arange(SIZE, dtype=torch.float32)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    centre = 8 + 16 * torch.rand(n, 2, generator=generator)
    radius = 3 + 5 * torch.rand(n, 1, 1, generator=generator)
    dist2 = (yy - centre[:, 0, None, None]) ** 2 + (xx - centre[:, 1, None, None]) ** 2
    disc = (dist2 <= radius**2).float()
    row = torch.randint(2, SIZE - 4, (n, 1, 1), generator=generator)
    bar = ((yy >= row) & (yy < row + 2)).float()
    level = 0.5 + 0.5 * torch.rand(n, 1, 1, generator=generator)
    images = torch.clamp(disc * level + 0.6 * bar, 0, 1)
    return (images * 255).round().to(torch.uint8).unsqueeze(1)


def load_synthetic(option: str | Path | None = None) -> ImageData:
    """Deterministic: the same images on every call; `option` (a data directory) is not used."""
    generator = torch.Generator().manual_seed(1234)
    return ImageData("synthetic", make_images(N_TRAIN, generator), make_images(N_TEST, generator))
