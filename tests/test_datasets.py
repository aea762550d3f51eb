"""The datasets, from small generated files in the formats their sources use: tensor files, image
folders, CIFAR-10's binary batches, CelebA's JPEGs and partition, binarised MNIST (dynamic and
Larochelle's), and MNIST-style labels; every bad input is one DataError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from vaezoo_plugins.datasets import binarized
from vaezoo_plugins.datasets.binarized import (
    DynamicBinarization,
    load_binarized_mnist,
    load_binarized_mnist_fixed,
)
from vaezoo_plugins.datasets.idx import load_fashion_mnist
from vaezoo_plugins.datasets.image_folder import load_image_folder
from vaezoo_plugins.datasets.tensor_file import load_tensor_file
from vaezoo_plugins.datasets.torchvision_sets import (
    CIFAR_RECORD,
    load_celeba,
    load_cifar10,
)

from vaezoo.data import ordered_batches, shuffled_batches
from vaezoo.errors import DataError
from vaezoo.streaming import FileImages

from .conftest import REAL_DATA


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """Prepared arrays go to the test's own folder, never to ~/.cache."""
    monkeypatch.setenv("VAEZOO_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def rows_of(data) -> set[bytes]:
    return {bytes(x.numpy()) for split in (data.train, data.test) for x in (split.read() if isinstance(split, FileImages) else split)}


# -- tensor-file ---------------------------------------------------------------------------------
def test_npy_vectors_are_one_row_images_with_a_fixed_held_out_split(tmp_path):
    vectors = np.random.default_rng(0).normal(size=(200, 7)).astype(np.float32)
    np.save(tmp_path / "v.npy", vectors)
    data = load_tensor_file(tmp_path / "v.npy", test_fraction=0.1)
    assert data.input_shape == (1, 1, 7) and data.dtype == torch.float32
    assert (len(data.train), len(data.test)) == (180, 20)
    assert rows_of(data) == {bytes(v.reshape(1, 1, 7)) for v in vectors}  # every row once
    again = load_tensor_file(tmp_path / "v.npy", test_fraction=0.1)
    assert torch.equal(again.test, data.test)  # the same held-out rows every time


def test_npy_images_channels_last_bool_and_integer_arrays(tmp_path):
    images = np.random.default_rng(1).integers(0, 256, (30, 8, 8, 3), dtype=np.uint8)
    np.save(tmp_path / "train.npy", images)
    np.save(tmp_path / "test.npy", images[:5])
    data = load_tensor_file(tmp_path)
    assert data.input_shape == (3, 8, 8) and data.dtype == torch.uint8
    assert torch.equal(data.train, torch.from_numpy(images).permute(0, 3, 1, 2))
    np.save(tmp_path / "b.npy", np.array([[True, False]] * 10))
    binary = load_tensor_file(tmp_path / "b.npy")
    assert binary.dtype == torch.uint8 and set(binary.train.unique().tolist()) == {0, 255}
    np.save(tmp_path / "i.npy", np.arange(40, dtype=np.int16).reshape(20, 2))
    assert load_tensor_file(tmp_path / "i.npy").dtype == torch.float32


def test_safetensors_splits_and_labels(tmp_path):
    train = torch.randint(0, 256, (12, 1, 4, 4), dtype=torch.uint8)
    test = torch.randint(0, 256, (4, 1, 4, 4), dtype=torch.uint8)
    save_file({"train": train, "test": test, "train_labels": torch.arange(12) % 3,
               "test_labels": torch.tensor([0, 1, 2, 0], dtype=torch.int32)}, tmp_path / "d.safetensors")
    data = load_tensor_file(tmp_path / "d.safetensors")
    assert torch.equal(data.train, train) and torch.equal(data.test, test)
    assert data.train_labels.tolist() == [i % 3 for i in range(12)] and data.test_labels.dtype == torch.int64
    save_file({"x": torch.rand(10, 3)}, tmp_path / "one.safetensors")
    assert load_tensor_file(tmp_path / "one.safetensors").input_shape == (1, 1, 3)


def test_a_large_file_streams_with_the_same_content(tmp_path, monkeypatch):
    images = np.random.default_rng(2).integers(0, 256, (40, 3, 4, 4), dtype=np.uint8)
    np.save(tmp_path / "a.npy", images)
    in_memory = load_tensor_file(tmp_path / "a.npy")
    monkeypatch.setenv("VAEZOO_DATA_MEMORY", "100")
    streamed = load_tensor_file(tmp_path / "a.npy")
    assert isinstance(streamed.train, FileImages)
    assert torch.equal(streamed.train.read(), in_memory.train) and torch.equal(streamed.test.read(), in_memory.test)


def _npy_bytes(array: np.ndarray, path) -> bytes:
    np.save(path, array)
    return path.read_bytes()


@pytest.mark.parametrize("make, message", [
    (lambda p: np.save(p / "x.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True), "Python objects"),
    (lambda p: (p / "x.npy").write_bytes(_npy_bytes(np.zeros((10, 4), np.uint8), p / "x.npy")[:-7]), "truncated"),
    (lambda p: (p / "x.npy").write_bytes(b"\x93NUMPY garbage"), "not a readable .npy"),
    (lambda p: np.save(p / "x.npy", np.array([[np.nan, 1.0]] * 3, dtype=np.float32)), "NaN"),
    (lambda p: np.save(p / "x.npy", np.zeros((2, 2, 2, 2, 2), np.uint8)), "expected \\[N, D\\]"),
    (lambda p: np.save(p / "x.npy", np.zeros((1, 4), np.uint8)), "too few"),
])
def test_bad_npy_files_are_one_error(tmp_path, make, message):
    make(tmp_path)
    with pytest.raises(DataError, match=message):
        load_tensor_file(tmp_path / "x.npy")


def safetensors_bytes(entry: str, values: int) -> bytes:
    header = ('{"t": ' + entry + "}").encode()
    return len(header).to_bytes(8, "little") + header + b"\0" * values


@pytest.mark.parametrize("content, message", [
    (b"\xff" * 8 + b"{}", "bad header length"),
    ((8).to_bytes(8, "little") + b"not json", "not JSON"),
    (safetensors_bytes('{"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}', 8), "spans 8 bytes"),
    (safetensors_bytes('{"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}', 12), "truncated"),
    (safetensors_bytes('{"dtype": "X9", "shape": [4], "data_offsets": [0, 16]}', 16), "malformed"),
    (safetensors_bytes('{"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}', 16), "malformed"),
])
def test_bad_safetensors_files_are_one_error(tmp_path, content, message):
    (tmp_path / "x.safetensors").write_bytes(content)
    with pytest.raises(DataError, match=message):
        load_tensor_file(tmp_path / "x.safetensors")


def test_tensor_file_needs_a_train_array_and_matching_labels(tmp_path):
    with pytest.raises(DataError, match="needs --data-dir"):
        load_tensor_file(None)
    with pytest.raises(DataError, match="does not exist"):
        load_tensor_file(tmp_path / "nowhere.npy")
    save_file({"a": torch.zeros(3), "b": torch.zeros(3)}, tmp_path / "two.safetensors")
    with pytest.raises(DataError, match="no 'train' array"):
        load_tensor_file(tmp_path / "two.safetensors")
    np.save(tmp_path / "train.npy", np.zeros((10, 3), np.uint8))
    np.save(tmp_path / "train_labels.npy", np.zeros(9, np.int64))
    with pytest.raises(DataError, match="labels must be 10 integers"):
        load_tensor_file(tmp_path)


def test_a_bad_file_is_one_line_on_the_command_line(tmp_path, refused):
    (tmp_path / "x.npy").write_bytes(b"nonsense")
    refused("train", "conv-fashion", "--dataset", "tensor-file", "--data-dir", str(tmp_path / "x.npy"),
            "--out", str(tmp_path / "run"), words=("x.npy", "not a readable .npy"))
    assert not (tmp_path / "run").exists()


# -- image-folder ----------------------------------------------------------------------------------
def write_image(path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_class_subfolders_give_labels_and_every_image_is_read(tmp_path):
    colours = {"blue": (0, 0, 255), "red": (255, 0, 0)}
    for name, colour in colours.items():
        for i in range(5):
            write_image(tmp_path / "photos" / name / f"{i}.png", np.full((20, 30, 3), colour, np.uint8))
    write_image(tmp_path / "photos" / ".hidden" / "x.png", np.zeros((4, 4, 3), np.uint8))  # left out
    data = load_image_folder(tmp_path / "photos", image_size=8, test_fraction=0.2)
    assert data.classes == ("blue", "red") and data.input_shape == (3, 8, 8) and data.dtype == torch.uint8
    assert (len(data.train), len(data.test)) == (8, 2)
    for images, labels in ((data.train, data.train_labels), (data.test, data.test_labels)):
        for image, label in zip(images, labels):
            assert image[:, 0, 0].tolist() == list(colours[data.classes[label]])


def test_grey_mode_crop_and_resize(tmp_path):
    picture = np.zeros((10, 30), np.uint8)
    picture[:, 10:20] = 200  # a bright centre square between dark sides
    write_image(tmp_path / "one" / "a.png", picture)
    write_image(tmp_path / "one" / "b.png", picture)
    crop = load_image_folder(tmp_path / "one", image_size=10, image_mode="grey", image_fit="crop", test_fraction=0.5)
    assert crop.input_shape == (1, 10, 10) and crop.train.min() == 200  # the centre square only
    squash = load_image_folder(tmp_path / "one", image_size=10, image_mode="grey", image_fit="resize", test_fraction=0.5)
    assert squash.train[0, 0, 5, 0] == 0 and squash.train[0, 0, 5, 5] == 200  # the whole width, squashed


def test_train_and_test_subfolders_are_the_splits_and_jpeg_works(tmp_path):
    for split, count in (("train", 3), ("test", 2)):
        for i in range(count):
            Image.fromarray(np.full((16, 16, 3), 100, np.uint8)).save(tmp_path / f"{split}{i}.jpg")
            (tmp_path / "d" / split).mkdir(parents=True, exist_ok=True)
            (tmp_path / f"{split}{i}.jpg").rename(tmp_path / "d" / split / f"{i}.JPG")
    data = load_image_folder(tmp_path / "d", image_size=4)
    assert (len(data.train), len(data.test)) == (3, 2) and data.classes is None
    assert abs(int(data.train[0, 0, 0, 0]) - 100) <= 2


def test_prepared_once_and_again_when_the_folder_changes(tmp_path, cache, capsys):
    for i in range(4):
        write_image(tmp_path / "f" / f"{i}.png", np.full((8, 8, 3), 10 * i, np.uint8))
    load_image_folder(tmp_path / "f", image_size=4)
    assert "decoding 4 images" in capsys.readouterr().err
    load_image_folder(tmp_path / "f", image_size=4)
    assert "decoding" not in capsys.readouterr().err  # read from the cache
    write_image(tmp_path / "f" / "4.png", np.zeros((8, 8, 3), np.uint8))
    data = load_image_folder(tmp_path / "f", image_size=4)
    assert "decoding 5 images" in capsys.readouterr().err and len(data.train) + len(data.test) == 5
    assert len(list((cache / "prepared").glob("*.npy"))) == 2 and not list((cache / "prepared").glob("*.partial"))


def test_bad_image_folders_are_one_error(tmp_path, cache):
    with pytest.raises(DataError, match="needs --data-dir"):
        load_image_folder(None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        load_image_folder(tmp_path / "empty")
    write_image(tmp_path / "bad" / "ok.png", np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "bad" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match="cannot read image .*broken.png"):
        load_image_folder(tmp_path / "bad", image_size=4)
    assert not list((cache / "prepared").glob("*"))  # nothing half-written left behind


# -- CIFAR-10 (binary version) -------------------------------------------------------------------
def cifar_folder(root, records: int = 20):
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(3)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        data = rng.integers(0, 256, (records, CIFAR_RECORD), dtype=np.uint8)
        data[:, 0] %= 10
        data.tofile(folder / name)
    (folder / "batches.meta.txt").write_text("airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n")
    return folder


def test_cifar10_binary_batches(tmp_path):
    folder = cifar_folder(tmp_path)
    data = load_cifar10(tmp_path)
    assert data.input_shape == (3, 32, 32) and (len(data.train), len(data.test)) == (100, 20)
    first = np.fromfile(folder / "data_batch_1.bin", dtype=np.uint8).reshape(-1, CIFAR_RECORD)[0]
    assert data.train_labels[0] == first[0] and data.classes[3] == "cat"
    assert torch.equal(data.train[0, 1].flatten(), torch.from_numpy(first[1 + 1024:1 + 2048]))  # green plane


def test_cifar10_missing_or_pickled_files_say_what_to_put_where(tmp_path):
    (tmp_path / "py" / "cifar-10-batches-py").mkdir(parents=True)
    with pytest.raises(DataError, match="does not unpickle.*cifar-10-binary.tar.gz"):
        load_cifar10(tmp_path / "py")
    (tmp_path / "none").mkdir()
    with pytest.raises(DataError, match="test_batch.bin is missing.*--data-dir"):
        load_cifar10(tmp_path / "none")
    folder = cifar_folder(tmp_path / "part")
    (folder / "data_batch_3.bin").unlink()
    with pytest.raises(DataError, match="data_batch_3.bin is missing"):
        load_cifar10(tmp_path / "part")
    (folder / "data_batch_3.bin").write_bytes(b"\0" * 100)
    with pytest.raises(DataError, match="not a CIFAR-10 binary batch"):
        load_cifar10(tmp_path / "part")


# -- CelebA ------------------------------------------------------------------------------------------
def test_celeba_148_centre_crop_at_64(tmp_path):
    folder = tmp_path / "celeba"
    face = np.zeros((218, 178, 3), np.uint8)
    face[35:183, 15:163] = 255  # exactly the 148x148 centre square is white
    lines = []
    for i, part in enumerate([0, 0, 0, 1, 2, 2], 1):
        write_image(folder / "img_align_celeba" / f"{i:06d}.jpg", face)
        lines.append(f"{i:06d}.jpg {part}")
    (folder / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    data = load_celeba(tmp_path)
    assert data.input_shape == (3, 64, 64) and (len(data.train), len(data.test)) == (3, 2)
    assert data.train.float().mean() > 250  # the crop kept the white square, not the black border


def test_celeba_bad_partition_and_missing_images(tmp_path):
    folder = tmp_path / "celeba"
    folder.mkdir()
    (folder / "list_eval_partition.txt").write_text("../../etc/passwd 0\n")
    with pytest.raises(DataError, match="line 1"):
        load_celeba(tmp_path)
    (folder / "list_eval_partition.txt").write_text("000001.jpg 0\n000002.jpg 2\n")
    with pytest.raises(DataError, match="000001.jpg is missing.*img_align_celeba"):
        load_celeba(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(DataError, match="list_eval_partition.txt is missing.*--data-dir"):
        load_celeba(tmp_path / "elsewhere")


# -- binarised MNIST ----------------------------------------------------------------------------
@pytest.fixture
def grey():
    return torch.randint(0, 256, (40, 1, 3, 3), dtype=torch.uint8)


def test_dynamic_binarisation_draws_fresh_pixels_with_the_grey_probability(grey):
    source = DynamicBinarization(grey)
    order = torch.Generator().manual_seed(0)
    epochs = [torch.cat(list(shuffled_batches(source, 8, order))) for _ in range(2)]
    assert all(set(e.unique().tolist()) <= {0.0, 1.0} for e in epochs) and not torch.equal(*epochs)
    copies = DynamicBinarization(grey[:1].expand(400, 1, 3, 3).contiguous())
    order = torch.Generator().manual_seed(1)
    draws = torch.cat([x for _ in range(50) for x in shuffled_batches(copies, 400, order)])  # 20,000 of image 0
    assert torch.allclose(draws.mean(0), grey[0].float() / 255, atol=0.02)


def test_dynamic_binarisation_resumes_and_splits_like_one_process(grey):
    source = DynamicBinarization(grey)
    whole = list(shuffled_batches(source, 8, torch.Generator().manual_seed(1)))
    assert torch.equal(torch.cat(whole[2:]), torch.cat(list(shuffled_batches(source, 8, torch.Generator().manual_seed(1), 2))))
    halves = [list(shuffled_batches(source, 8, torch.Generator().manual_seed(1), part=(rank, 2))) for rank in (0, 1)]
    assert all(torch.equal(w, torch.cat([a, b])) for w, a, b in zip(whole, *halves))
    assert torch.equal(torch.cat(list(ordered_batches(source, 16))), torch.cat(list(ordered_batches(source, 16))))
    assert source[:5].shape == (5, 1, 3, 3) and set(source[3].unique().tolist()) <= {0, 255}
    picked = source[torch.tensor([4, 9])]
    assert picked.shape == (2, 1, 3, 3) and torch.equal(picked, source[torch.tensor([4, 9])])
    assert set(picked.unique().tolist()) <= {0, 255}
    assert torch.equal(source.read(), torch.cat(list(ordered_batches(source, 40))).mul(255).to(torch.uint8))


def test_dynamic_binarisation_hands_labels_to_a_conditional_model(grey):
    """The same binary pixels as without labels, each batch with the labels of its images."""
    source, labels = DynamicBinarization(grey), torch.arange(40)
    plain = list(shuffled_batches(source, 8, torch.Generator().manual_seed(2)))
    labelled = list(shuffled_batches(source, 8, torch.Generator().manual_seed(2), labels=labels))
    assert all(torch.equal(x, xl) for x, (xl, _) in zip(plain, labelled))
    bits = 2 ** torch.arange(9)  # image i shows i in binary with pixels of 0 and 255, which binarise for sure
    coded = DynamicBinarization((labels[:, None] // bits % 2 * 255).to(torch.uint8).view(40, 1, 3, 3))
    for x, y in shuffled_batches(coded, 8, torch.Generator().manual_seed(3), labels=labels):
        assert torch.equal((x.flatten(1) * bits).sum(1).long(), y)
    halves = [list(shuffled_batches(source, 8, torch.Generator().manual_seed(2), part=(rank, 2), labels=labels))
              for rank in (0, 1)]
    assert all(torch.equal(y, torch.cat([a[1], b[1]])) for (_, y), a, b in zip(labelled, *halves))


def write_amat(path, images: np.ndarray) -> None:
    path.write_text("".join(" ".join(map(str, row)) + "\n" for row in images.reshape(len(images), 784)))


def test_larochelle_fixed_split(tmp_path, monkeypatch):
    monkeypatch.setattr(binarized, "LAROCHELLE_SIZES", {"train": 5, "test": 3})
    rng = np.random.default_rng(4)
    train, test = rng.integers(0, 2, (5, 28, 28)), rng.integers(0, 2, (3, 28, 28))
    write_amat(tmp_path / "binarized_mnist_train.amat", train)
    write_amat(tmp_path / "binarized_mnist_test.amat", test)
    data = load_binarized_mnist_fixed(tmp_path)
    assert data.input_shape == (1, 32, 32) and len(data.train) == 5
    assert torch.equal(data.test[:, 0, 2:30, 2:30], torch.from_numpy(test).to(torch.uint8) * 255)
    (tmp_path / "binarized_mnist_test.amat").write_text("0 1 2\n" * 3)
    with pytest.raises(DataError, match="not a binarised-MNIST .amat"):
        load_binarized_mnist_fixed(tmp_path)
    (tmp_path / "binarized_mnist_test.amat").unlink()
    with pytest.raises(DataError, match="binarized_mnist_test.amat missing.*--data-dir"):
        load_binarized_mnist_fixed(tmp_path)


needs_real_data = pytest.mark.skipif(not (REAL_DATA / "train-images-idx3-ubyte.gz").exists(),
                                     reason="FashionMNIST not installed (apt-get install dataset-fashion-mnist)")


@needs_real_data
def test_idx_labels_of_real_files_and_fashion_files_refused_as_mnist():
    """FashionMNIST's files have MNIST's names; their mean pixel tells them apart, so they cannot stand in."""
    data = load_fashion_mnist(REAL_DATA)
    assert data.train_labels.bincount().tolist() == [6000] * 10 and data.classes[9] == "Ankle boot"
    with pytest.raises(DataError, match="is not MNIST: its mean pixel is 72.94, like FashionMNIST's"):
        load_binarized_mnist(REAL_DATA)


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").exists(),
                    reason="FashionMNIST not installed")
def test_binarized_fashion_mnist_is_fashion_mnist_binarised_dynamically():
    from vaezoo_plugins.datasets.binarized import load_binarized_fashion_mnist
    from vaezoo_plugins.datasets.idx import load_fashion_mnist

    grey, data = load_fashion_mnist(), load_binarized_fashion_mnist()
    assert set(data.test.unique().tolist()) == {0, 255} and torch.equal(data.test, load_binarized_fashion_mnist().test)
    assert torch.equal(data.train_labels, grey.train_labels)
    # a pixel is 1 about as often as its grey level says (the test set's mean brightness is kept)
    assert abs(float(data.test.float().mean() - grey.test.float().mean())) < 0.5
    epochs = [next(iter(data.train.shuffled_batches(64, torch.Generator().manual_seed(0), 0, (0, 1))))
              for _ in range(2)]
    assert torch.equal(epochs[0], epochs[1])  # the same draw for the same order (resumable)
    later = next(iter(data.train.shuffled_batches(64, torch.Generator().manual_seed(1), 0, (0, 1))))
    assert not torch.equal(epochs[0], later)
