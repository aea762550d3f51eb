"""dSprites: the official factor grid, the procedural drawing, its cache, and the official file's reader."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest
import torch
from vaezoo_plugins.datasets import dsprites
from vaezoo_plugins.datasets.sprites import (
    FACTOR_VALUES,
    SIZE,
    SIZES,
    centre,
    grid_codes,
    inside,
    render,
)

from vaezoo.errors import DataError

from .conftest import snapshot

SMALL = (3, 2, 2, 2, 3)  # the first values of each factor: 72 images, every shape


def test_factor_grid_is_the_official_one():
    """Sizes, values (from the official file's metadata) and order: posY fastest, shape slowest."""
    assert SIZES == (3, 6, 40, 32, 32) and math.prod(SIZES) == 737_280
    assert FACTOR_VALUES[0] == (1.0, 2.0, 3.0)
    np.testing.assert_allclose(FACTOR_VALUES[1], np.linspace(0.5, 1.0, 6), atol=1e-12)
    np.testing.assert_allclose(FACTOR_VALUES[2], np.linspace(0.0, 2 * np.pi, 40), atol=1e-12)
    assert FACTOR_VALUES[2][1] == pytest.approx(0.16110732, abs=1e-8)  # as the official metadata prints it
    for f in (3, 4):
        np.testing.assert_allclose(FACTOR_VALUES[f], np.linspace(0.0, 1.0, 32), atol=1e-12)
    codes = grid_codes()
    assert codes.shape == (737_280, 5) and codes.dtype == torch.int64
    assert codes[1].tolist() == [0, 0, 0, 0, 1] and codes[32].tolist() == [0, 0, 0, 1, 0]
    assert codes[-1].tolist() == [2, 5, 39, 31, 31]
    bases = torch.tensor([245_760, 40_960, 1_024, 32, 1])  # the official notebook's latents_bases
    assert torch.equal(codes @ bases, torch.arange(737_280))


def reference(shape: int, scale: int, orientation: int, x: int, y: int) -> torch.Tensor:
    """One image drawn over the whole canvas, pixel by pixel: no windows, no batching."""
    s, angle = FACTOR_VALUES[1][scale], torch.tensor(FACTOR_VALUES[2][orientation], dtype=torch.float64)
    pixel = torch.arange(SIZE, dtype=torch.float64) + 0.5
    dx = pixel - centre(torch.tensor(FACTOR_VALUES[3][x], dtype=torch.float64))  # along columns
    up = -(pixel - centre(torch.tensor(FACTOR_VALUES[4][y], dtype=torch.float64)))  # rows, upwards
    u = (dx * angle.cos() / s).float()[None, :] + (up * angle.sin() / s).float()[:, None]
    v = (-dx * angle.sin() / s).float()[None, :] + (up * angle.cos() / s).float()[:, None]
    return inside(shape, u, v).to(torch.uint8) * 255


def test_batched_drawing_equals_the_pixel_by_pixel_reference():
    codes = ([0, 1, 2], [0, 3, 5], [0, 5, 21, 38], [0, 13, 31], [0, 7, 31])
    images = render(*codes)
    combos = torch.cartesian_prod(*(torch.tensor(c) for c in codes))
    assert images.shape == (len(combos), 1, SIZE, SIZE) and images.dtype == torch.uint8
    for image, combo in zip(images, combos.tolist()):
        assert torch.equal(image[0], reference(*combo)), combo


def box(image: torch.Tensor) -> tuple[int, int, int, int]:
    rows, cols = torch.nonzero(image[0], as_tuple=True)
    return int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())


def test_geometry_matches_the_official_images():
    """Bounding boxes read off the official dsprites.gif at scale 1, orientation 0, position (0, 0)."""
    square, ellipse, heart = render([0, 1, 2], [5], [0], [0], [0])
    assert box(square) == (6, 25, 6, 25) and int(square.count_nonzero()) == 400
    assert box(ellipse) == (9, 22, 3, 28)  # long axis horizontal
    assert box(heart) == (7, 23, 6, 25)
    assert heart[0, :16].count_nonzero() > heart[0, 16:].count_nonzero()  # lobes up, point down
    small_square = render([0], [0], [0], [0], [0])[0]
    assert box(small_square) == (11, 20, 11, 20)  # half the size at scale 0.5


def test_ellipse_area_and_anticlockwise_rotation():
    ellipse = render([1], [5], [5], [15], [15])[0, 0].double()  # orientation 5 = 0.81 rad
    assert float(ellipse.sum() / 255) == pytest.approx(math.pi * 12.8 * 7.2, rel=0.03)
    rows, cols = torch.nonzero(ellipse, as_tuple=True)
    up, right = -(rows - rows.double().mean()), cols - cols.double().mean()
    assert float((up * right).mean()) > 0  # long axis from lower left to upper right, as displayed


def test_positions_move_the_sprite_by_32_over_31_pixels_and_both_ends_of_orientation_agree():
    images = render([0], [2], [0, 39], range(32), [0, 31])
    for i in range(32):
        for j, y in enumerate((0, 31)):
            rows, cols = torch.nonzero(images[64 + 2 * i + j, 0], as_tuple=True)
            assert float(cols.double().mean()) + 0.5 == pytest.approx(16 + 32 * i / 31, abs=0.5)
            assert float(rows.double().mean()) + 0.5 == pytest.approx(16 + 32 * y / 31, abs=0.5)
    assert torch.equal(images[:64], images[64:])  # orientations 0 and 2 pi


def test_loader_draws_caches_and_reads_back(tmp_path, monkeypatch):
    data = dsprites.load(tmp_path, SMALL)
    assert data.name == "dsprites" and data.train.shape == (72, 1, SIZE, SIZE) and data.input_shape == (1, 64, 64)
    assert torch.equal(data.train, render(*(range(n) for n in SMALL)))
    assert torch.equal(data.factors.train, grid_codes(SMALL)) and data.factors.complete
    assert torch.equal(data.train[data.factors.rows(data.factors.test)], data.test)
    assert data.factors.names == ("shape", "scale", "orientation", "posX", "posY")
    record = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert record["sha256"] == hashlib.sha256(next(tmp_path.glob("*.npy")).read_bytes()).hexdigest()

    def no_drawing(*args):
        raise AssertionError("the cache should have been read")

    monkeypatch.setattr(dsprites, "render", no_drawing)
    again = dsprites.load(tmp_path, SMALL)
    assert torch.equal(again.train, data.train) and torch.equal(again.test, data.test)


def test_test_split_is_a_fixed_random_10000_of_the_training_images(tmp_path):
    sizes = (3, 2, 40, 32, 2)  # 15,360 images
    first, second = dsprites.load(tmp_path, sizes), dsprites.load(tmp_path, sizes)
    test_codes = first.factors.test
    assert len(test_codes) == 10_000 and torch.equal(test_codes, second.factors.test)
    rows = first.factors.rows(test_codes)
    assert len(torch.unique(rows)) == 10_000  # distinct images
    assert torch.equal(first.test, first.train[rows])


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "bad record"])
def test_a_damaged_cache_is_one_error_and_is_left_alone(tmp_path, damage):
    dsprites.load(tmp_path, SMALL)
    data, record = next(tmp_path.glob("*.npy")), next(tmp_path.glob("*.json"))
    if damage == "flip a byte":
        raw = bytearray(data.read_bytes())
        raw[-5] ^= 0xFF
        data.write_bytes(bytes(raw))
    elif damage == "truncate":
        data.write_bytes(data.read_bytes()[:-100])
    else:
        record.write_text("{not json")
    before = snapshot(tmp_path)
    with pytest.raises(DataError, match="delete .* and the images are drawn again"):
        dsprites.load(tmp_path, SMALL)
    assert snapshot(tmp_path) == before


def test_a_missing_data_directory_is_an_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        dsprites.load(tmp_path / "nowhere", SMALL)


UNPICKLED: list[str] = []


def _mark_unpickled() -> dict:
    UNPICKLED.append("metadata was unpickled")
    return {}


class Metadata:
    """Stands for the official file's pickled metadata: unpickling it would call _mark_unpickled."""

    def __reduce__(self):
        return _mark_unpickled, ()


def official_arrays(sizes=SMALL) -> dict[str, np.ndarray]:
    codes = grid_codes(sizes).numpy()
    values = np.stack([np.asarray(v)[codes[:, f]] for f, v in enumerate(FACTOR_VALUES)], axis=1)
    return {
        "imgs": (render(*(range(n) for n in sizes))[:, 0].numpy() // 255).astype(np.uint8),
        "latents_classes": np.concatenate([np.zeros((len(codes), 1), np.int64), codes], axis=1),
        "latents_values": np.concatenate([np.ones((len(codes), 1)), values], axis=1),
        "metadata": np.array([Metadata()], dtype=object),
    }


def write_official(folder, arrays) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / dsprites.OFFICIAL, **arrays)


@pytest.mark.parametrize("subfolder", ["", "dsprites"])
def test_the_official_file_is_read_when_present_and_its_pickle_never_opened(tmp_path, subfolder):
    arrays = official_arrays()
    arrays["imgs"][5] = 1 - arrays["imgs"][5]  # so that we can tell it from the procedural image
    write_official(tmp_path / subfolder if subfolder else tmp_path, arrays)
    UNPICKLED.clear()
    data = dsprites.load(tmp_path, SMALL)
    assert not UNPICKLED
    assert torch.equal(data.train[:, 0], torch.from_numpy(arrays["imgs"]) * 255)
    assert torch.equal(data.factors.train, grid_codes(SMALL))
    assert not list(tmp_path.glob("dsprites-procedural*"))  # nothing drawn or cached


def _shuffled_classes(a):
    a["latents_classes"] = a["latents_classes"][::-1].copy()


def _values_off(a):
    a["latents_values"][3, 2] += 0.01


def _grey(a):
    a["imgs"][0, 0, 0] = 7


@pytest.mark.parametrize("change, message", [
    (lambda a: a.pop("imgs"), "it has no imgs"),
    (lambda a: a.__setitem__("imgs", a["imgs"][:, :32]), "imgs should be uint8 of shape"),
    (lambda a: a.__setitem__("imgs", a["imgs"].astype(np.float32)), "imgs should be uint8"),
    (lambda a: a.__setitem__("latents_classes", a["latents_classes"][:-1]), "latents_classes should be"),
    (_shuffled_classes, "not the dSprites grid in its official order"),
    (_values_off, "latents_values differ"),
    (_grey, "only 0 and 1"),
    (lambda a: a.__setitem__("imgs", np.array([Metadata()], dtype=object)), "cannot read"),
])
def test_a_wrong_official_file_is_one_error(tmp_path, change, message):
    arrays = official_arrays()
    change(arrays)
    write_official(tmp_path, arrays)
    before = snapshot(tmp_path)
    UNPICKLED.clear()
    with pytest.raises(DataError, match=message):
        dsprites.load(tmp_path, SMALL)
    assert not UNPICKLED and snapshot(tmp_path) == before


@pytest.mark.parametrize("content", [b"", b"not a zip file at all", b"PK\x03\x04 truncated"])
def test_an_unreadable_official_file_is_one_error(tmp_path, content):
    (tmp_path / dsprites.OFFICIAL).write_bytes(content)
    with pytest.raises(DataError, match="cannot read"):
        dsprites.load(tmp_path, SMALL)


@pytest.mark.slow
def test_the_whole_procedural_dataset(tmp_path):
    """All 737,280 images, drawn and cached, then read back from the cache (about 3 GB in memory)."""
    data = dsprites.load_dsprites(tmp_path)
    assert data.train.shape == (737_280, 1, 64, 64) and data.test.shape == (10_000, 1, 64, 64)
    assert data.factors.sizes == SIZES and data.factors.complete
    assert torch.equal(data.factors.train, grid_codes())
    drawn = hashlib.sha256(data.train.numpy()).hexdigest()
    assert set(torch.unique(data.train[:1000]).tolist()) == {0, 255}
    del data
    assert hashlib.sha256(dsprites.load_dsprites(tmp_path).train.numpy()).hexdigest() == drawn
