"""Your own data end to end on the command line: a folder of colour PNGs trains, evaluates (bits per
dimension), samples and exports; a likelihood and a dataset option chosen on the command line are
recorded, so evaluate, load and resume rebuild the same model on the same data."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

import vaezoo


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VAEZOO_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def colour_folder(tmp_path):
    """40 colour 64x64 PNGs in two classes: a bright disc on a dark background, red or blue."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    for i in range(40):
        cy, cx, r = rng.integers(20, 44), rng.integers(20, 44), rng.integers(6, 14)
        image = np.full((64, 64, 3), 30, np.uint8)
        image[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = (230, 40, 40) if i % 2 else (40, 40, 230)
        folder = tmp_path / "photos" / ("red" if i % 2 else "blue")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i}.png")
    return tmp_path / "photos"


def test_a_folder_of_colour_pngs_trains_evaluates_samples_and_exports(cli, colour_folder, tmp_path):
    run = tmp_path / "run"
    train = ("train", "conv-fashion", "--dataset", "image-folder", "--data-dir", str(colour_folder),
             "-o", "image_size=32", "--batch-size", "8", "--epochs", "2", "--device", "cpu", "--out", str(run))
    result = cli(*train)
    assert result.code == 0, result.err
    config = json.loads((run / "config.json").read_text())
    assert config["dataset"] == "image-folder" and config["input_shape"] == [3, 32, 32]
    assert config["hparams"]["image_size"] == 32 and config["hparams"]["image_mode"] == "rgb"
    evaluated = cli("evaluate", str(run), "--data-dir", str(colour_folder), "-k", "4", "--device", "cpu")
    assert evaluated.code == 0, evaluated.err
    assert "bits per dimension: -log p(x) as a probability mass" in evaluated.out
    measures = json.loads((run / "eval.json").read_text())
    assert measures["images"] == 4 and measures["neg_elbo_bits_per_dim"] == pytest.approx(
        measures["neg_elbo"] / (3 * 32 * 32 * math.log(2)))
    for mode in ("--reconstruct", "--traverse"):
        out = tmp_path / f"{mode[2:]}.png"
        assert cli("sample", str(run), mode, "--data-dir", str(colour_folder), "--out", str(out)).code == 0
        assert Image.open(out).mode == "RGB"
    exported = tmp_path / "model.safetensors"
    assert cli("export", str(run), "--out", str(exported)).code == 0
    again = vaezoo.evaluate(exported, data_dir=colour_folder, importance_samples=2, device="cpu", save=False)
    assert again["images"] == 4 and vaezoo.load(exported).input_shape == (3, 32, 32)


def test_a_likelihood_and_its_option_from_the_command_line(cli, colour_folder, tmp_path):
    run = tmp_path / "run"
    result = cli("train", "conv-fashion", "--dataset", "image-folder", "--data-dir", str(colour_folder),
                 "-o", "image_size=32", "--part", "likelihood=gaussian", "-o", "gaussian_variance=learnt",
                 "--batch-size", "12", "--max-steps", "3", "--device", "cpu", "--out", str(run))
    assert result.code == 0, result.err
    config = json.loads((run / "config.json").read_text())
    assert config["parts"] == {"likelihood": "gaussian"} and config["hparams"]["gaussian_variance"] == "learnt"
    model = vaezoo.load(run)
    assert model.likelihood.log_std.shape == (3, 32, 32) and model.likelihood_support == "continuous"
    measures = vaezoo.evaluate(run, data_dir=colour_folder, importance_samples=3, device="cpu", save=False)
    offset = math.log2(255)  # a density on the 8-bit grid: the change of variables to whole levels
    assert measures["nll_bits_per_dim"] == pytest.approx(measures["nll"] / (3 * 32 * 32 * math.log(2)) + offset)
    assert "log2(255)" in measures["bits_per_dim_basis"]
    resumed = cli("train", "--resume", str(run), "--epochs", "2", "--data-dir", str(colour_folder), "--device", "cpu")
    assert resumed.code == 0, resumed.err


def test_dataset_options_are_checked_and_shown(cli, refused, colour_folder, tmp_path):
    refused("train", "conv-fashion", "--dataset", "image-folder", "--data-dir", str(colour_folder),
            "-o", "image_mode=sepia", "--out", str(tmp_path / "run"), words=("image_mode", "rgb, grey"))
    refused("train", "conv-fashion", "-o", "image_size=32", "--out", str(tmp_path / "run"), words=("image_size",))
    shown = cli("info", "conv-fashion", "--dataset", "image-folder", "--json")
    params = {p["name"] for p in json.loads(shown.out)["params"]}
    assert {"image_size", "image_mode", "image_fit", "test_fraction"} <= params



def test_a_streamed_folder_trains_bit_for_bit_as_in_memory(cli, colour_folder, tmp_path, monkeypatch):
    """The same folder in memory and streamed from its prepared file (VAEZOO_DATA_MEMORY=1): the
    same weights, and the streamed run draws its pictures and samples from the file."""
    from vaezoo.storage import checkpoint

    weights = {}
    for memory in ("64G", "1"):
        monkeypatch.setenv("VAEZOO_DATA_MEMORY", memory)
        run = tmp_path / f"run-{memory}"
        result = cli("train", "conv-fashion", "--dataset", "image-folder", "--data-dir", str(colour_folder),
                     "-o", "image_size=32", "--batch-size", "8", "--max-steps", "6", "--device", "cpu", "--out", str(run))
        assert result.code == 0, result.err
        assert (run / "reconstructions.png").is_file() and (run / "traversals.png").is_file()
        weights[memory] = checkpoint.read(run / "model.safetensors")[0]
    assert weights["64G"].keys() == weights["1"].keys()
    assert all(torch.equal(weights["64G"][key], weights["1"][key]) for key in weights["1"])
    out = tmp_path / "reconstructed.png"
    assert cli("sample", str(tmp_path / "run-1"), "--reconstruct", "--data-dir", str(colour_folder),
               "--out", str(out)).code == 0
