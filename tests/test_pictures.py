"""What the pictures show, tile by tile: prior samples, test images above their reconstructions, and latent
traversals, read back from the PNG and compared with the model's own outputs; the loss curves' colours."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import vaezoo
from vaezoo.data import as_float

TILE, PAD = 32, 2


def tiles(path, rows: int, columns: int) -> torch.Tensor:
    """[rows, columns, 32, 32] grey values 0..255 from a grid PNG (2-pixel padding)."""
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape == (PAD + rows * (TILE + PAD), PAD + columns * (TILE + PAD), 3)
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()  # grey
    grid = torch.from_numpy(pixels[..., 0].copy()).int()
    return torch.stack([torch.stack([grid[PAD + r * (TILE + PAD):][:TILE, PAD + c * (TILE + PAD):][:, :TILE]
                                     for c in range(columns)]) for r in range(rows)])


def as_bytes(images: torch.Tensor) -> torch.Tensor:
    """What an image in [0, 1] becomes in the PNG."""
    return (images * 255 + 0.5).clamp(0, 255).int()[..., 0, :, :]


def assert_shows(shown: torch.Tensor, expected: torch.Tensor) -> None:
    assert (shown - expected).abs().max() <= 1  # float rounding of a value at a half step


@pytest.fixture(scope="module")
def model(small_run):
    return vaezoo.load(small_run)


def test_samples_are_the_models_prior_samples(small_run, model, tmp_path):
    vaezoo.sample(small_run, tmp_path / "s.png", n=16, seed=5)
    torch.manual_seed(5)
    expected = as_bytes(model.sample(16)).reshape(4, 4, TILE, TILE)
    assert_shows(tiles(tmp_path / "s.png", 4, 4), expected)


def test_reconstructions_show_test_images_above_their_reconstructions(small_run, model, synthetic, tmp_path):
    vaezoo.sample(small_run, tmp_path / "r.png", mode="reconstruct", n=8)
    shown = tiles(tmp_path / "r.png", 2, 8)
    images = synthetic.test[:8]
    assert torch.equal(shown[0], images[:, 0].int())  # the test images themselves, exactly
    assert_shows(shown[1], as_bytes(model.reconstruct(as_float(images))))
    assert (shown[0] - shown[1]).abs().float().mean() > 1  # and the two rows are not the same picture


def test_traversals_sweep_one_dimension_per_row(small_run, model, synthetic, tmp_path):
    vaezoo.sample(small_run, tmp_path / "t.png", mode="traverse")
    shown = tiles(tmp_path / "t.png", 10, 11)
    code = model.representation(as_float(synthetic.test[:1]))[0]
    for dim in (0, 9):
        for column, offset in ((0, -3.0), (5, 0.0), (10, 3.0)):
            z = code.clone()
            z[dim] += offset
            assert_shows(shown[dim, column], as_bytes(model.decode_representation(z[None]))[0])
    assert_shows(shown[3, 5], shown[7, 5])  # the centre column is the unchanged code in every row


def test_loss_curves_draw_the_three_series(small_run):
    with Image.open(small_run / "loss.png") as image:
        colours = {colour for _, colour in image.convert("RGB").getcolors(100_000)}
    assert {(214, 39, 40), (31, 119, 180), (255, 127, 14)} <= colours  # train loss, train and test -ELBO
