"""Streaming: a file read batch by batch gives the in-memory path's batches exactly, and a dataset larger
than the memory limit trains with the process's memory below it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
import torch

from vaezoo.data import ImageData, as_float, ordered_batches, shuffled_batches
from vaezoo.errors import DataError
from vaezoo.streaming import FileImages, open_array, parse_bytes


def npy(tmp_path, array: np.ndarray, name: str = "a.npy"):
    """Save `array` and return (path, offset of its values)."""
    path = tmp_path / name
    np.save(path, array)
    return path, np.load(path, mmap_mode="r").offset


@pytest.fixture
def stored(tmp_path):
    array = np.random.default_rng(0).integers(0, 256, (53, 3, 4, 5), dtype=np.uint8)
    path, offset = npy(tmp_path, array)
    return torch.from_numpy(array), FileImages(path, offset, torch.uint8, array.shape)


def same(a, b) -> bool:
    return len(a) == len(b) and all(x.dtype == y.dtype and torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("batch_size, skip, part", [(8, 0, (0, 1)), (8, 3, (0, 1)), (10, 1, (1, 2)), (53, 0, (0, 1))])
def test_streamed_batches_are_the_in_memory_batches(stored, batch_size, skip, part):
    tensor, streamed = stored
    memory_order, streamed_order = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    expected = list(shuffled_batches(tensor, batch_size, memory_order, skip, part))
    assert same(list(shuffled_batches(streamed, batch_size, streamed_order, skip, part)), expected)
    assert torch.equal(memory_order.get_state(), streamed_order.get_state())  # the next epoch's order too
    assert same(list(ordered_batches(streamed, 10)), list(ordered_batches(tensor, 10)))


def test_views_index_and_select_like_a_tensor(stored):
    tensor, streamed = stored
    assert streamed.shape == tensor.shape and streamed.dtype == torch.uint8 and len(streamed) == 53
    assert torch.equal(streamed[5], tensor[5]) and torch.equal(streamed[-1], tensor[-1])
    view = streamed[2:40:3]
    assert isinstance(view, FileImages) and torch.equal(view.read(), tensor[2:40:3])
    rows = torch.tensor([4, 0, 9])
    assert torch.equal(view.select(rows).read(), tensor[2:40:3][rows])
    assert torch.equal(view[1], tensor[5])
    assert torch.equal(streamed[torch.tensor([7, 2, 7])], tensor[[7, 2, 7]])  # what an independent batch asks
    assert torch.equal(as_float(view[:4]), as_float(tensor[2:40:3][:4]))  # as pictures take the first images
    assert same(list(ordered_batches(view.to("cpu"), 4)), list(ordered_batches(tensor[2:40:3], 4)))
    data = ImageData("x", streamed[:40], streamed[40:])
    assert data.input_shape == (3, 4, 5) and data.dtype == torch.uint8
    assert isinstance(data.to(torch.device("cpu")).train, FileImages)


def test_channels_last_and_float_files(tmp_path):
    images = np.random.default_rng(1).normal(size=(12, 6, 5, 3)).astype(np.float32)  # N, H, W, C
    path, offset = npy(tmp_path, images)
    streamed = FileImages(path, offset, torch.float32, images.shape, channels_last=True)
    expected = torch.from_numpy(images).permute(0, 3, 1, 2)
    assert streamed.shape == (12, 3, 6, 5)
    assert same(list(ordered_batches(streamed, 5)), list(ordered_batches(expected.contiguous(), 5)))
    batch = next(iter(shuffled_batches(streamed, 4, torch.Generator().manual_seed(0))))
    assert batch.is_contiguous() and batch.dtype == torch.float32


def test_a_changed_file_is_one_error(tmp_path):
    array = np.zeros((10, 1, 2, 2), dtype=np.uint8)
    path, offset = npy(tmp_path, array)
    images = FileImages(path, offset, torch.uint8, array.shape)
    with open(path, "r+b") as file:
        file.truncate(offset + 5 * 4)
    assert torch.equal(images[:5].read(), torch.zeros(5, 1, 2, 2, dtype=torch.uint8))
    with pytest.raises(DataError, match="shorter than when it was opened"):
        list(ordered_batches(images, 4))


def test_closing_early_stops_the_worker_threads(stored):
    _, streamed = stored
    batches = shuffled_batches(streamed, 2, torch.Generator().manual_seed(0))
    next(iter(batches))
    batches.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("vaezoo-data")]


def test_open_array_reads_what_fits_and_streams_the_rest(tmp_path, monkeypatch):
    array = np.arange(2 * 3 * 4 * 4, dtype=np.uint8).reshape(2, 3, 4, 4)
    path, offset = npy(tmp_path, array)
    monkeypatch.setenv("VAEZOO_DATA_MEMORY", "1M")
    assert isinstance(open_array(path, offset, torch.uint8, array.shape), torch.Tensor)
    monkeypatch.setenv("VAEZOO_DATA_MEMORY", "64")
    streamed = open_array(path, offset, torch.uint8, array.shape)
    assert isinstance(streamed, FileImages) and torch.equal(streamed.read(), torch.from_numpy(array))


def test_parse_bytes():
    assert parse_bytes("512M") == 512 * 2**20 and parse_bytes("1.5g") == int(1.5 * 2**30)
    assert parse_bytes("4GiB") == 4 * 2**30 and parse_bytes("1024") == 1024
    with pytest.raises(DataError, match="not a size"):
        parse_bytes("lots")


LIMIT = 192 * 2**20  # memory the training may add to the process, set by this test
DATASET = 256 * 2**20  # larger than the limit: reading it into memory would break it alone

MEASURE = textwrap.dedent("""
    import json, sys
    import vaezoo.api, vaezoo.training.loop, vaezoo.evaluation.pictures, vaezoo_plugins.standard.mlp
    import vaezoo_plugins.datasets.tensor_file

    def status(key):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))

    baseline = status("VmRSS")
    vaezoo.api.train("conv-fashion", dataset="tensor-file", data_dir=sys.argv[1], out=sys.argv[2], device="cpu",
                     parts={"encoder": "mlp", "decoder": "mlp"},
                     hparams={"mlp_width": 8, "mlp_layers": 1, "batch_size": 500, "epochs": 1, "lambda": 0.0})
    print(json.dumps({"baseline": baseline, "peak": status("VmHWM")}))
""")


@pytest.mark.slow
def test_a_dataset_larger_than_the_memory_limit_trains_below_it(tmp_path):
    """One epoch over 256 MiB of images (VAEZOO_DATA_MEMORY=16M, so it streams): the process's peak
    resident memory (VmHWM) grows by less than 192 MiB over what it held after importing vaezoo.
    Measured: about 115 MiB, as much as training on a 6 MiB dataset in memory adds (~105 MiB: the
    model, the optimiser, batches, the pictures); reading the file into memory would add 256 MiB."""
    folder = tmp_path / "data"
    folder.mkdir()
    count = DATASET // (3 * 32 * 32) + 1
    train = np.lib.format.open_memmap(folder / "train.npy", mode="w+", dtype=np.uint8, shape=(count, 3, 32, 32))
    row = (np.arange(3 * 32 * 32) % 251).astype(np.uint8).reshape(3, 32, 32)
    for start in range(0, count, 8192):
        stop = min(count, start + 8192)
        train[start:stop] = row[None] + (np.arange(start, stop) % 256).astype(np.uint8)[:, None, None, None]
    train.flush()
    del train
    np.save(folder / "test.npy", np.zeros((1000, 3, 32, 32), dtype=np.uint8))
    env = {"VAEZOO_DATA_MEMORY": "16M", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "COLUMNS": "200"}
    done = subprocess.run([sys.executable, "-c", MEASURE, str(folder), str(tmp_path / "run")], capture_output=True,
                          text=True, timeout=300, env={**os.environ, **env}, check=False)
    assert done.returncode == 0, done.stderr
    memory = json.loads(done.stdout.splitlines()[-1])
    metrics = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert metrics["step"] == count // 500  # a whole epoch: every image was read
    assert memory["peak"] - memory["baseline"] < LIMIT, memory
