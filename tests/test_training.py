"""Training on synthetic data: the run folder, determinism, option handling."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

import vaezoo
from vaezoo import __version__

from .conftest import independent_elbo


def train(cli, out, *extra):
    result = cli("train", "conv-fashion", "--dataset", "synthetic", "--device", "cpu", "--out", str(out), *extra)
    assert result.code == 0, result.err
    return result


def strip_timing(records):
    return [{k: v for k, v in r.items() if k not in ("images_per_s", "seconds")} for r in records]


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    """Two short epochs (16 steps each at batch 64) on synthetic data."""
    from vaezoo.cli import main

    out = tmp_path_factory.mktemp("runs") / "a"
    try:
        main(["train", "conv-fashion", "--dataset", "synthetic", "--device", "cpu", "--epochs", "2",
              "--beta", "2", "-o", "latent_dim=4", "--seed", "7", "--out", str(out)])
    except SystemExit as exc:
        assert not exc.code
    return out


def test_run_folder_contents(short_run):
    names = {p.name for p in short_run.iterdir()}
    assert {"config.json", "metrics.jsonl", "metrics.csv", "model.safetensors", "checkpoints",
            "reconstructions.png", "samples.png", "traversals.png", "loss.png"} <= names
    assert sorted(p.name for p in (short_run / "checkpoints").iterdir()) == [
        "epoch-0001.safetensors", "epoch-0002.safetensors"]
    assert not list(short_run.rglob("*.tmp"))


def test_config_records_everything_needed_to_rebuild(short_run):
    config = json.loads((short_run / "config.json").read_text())
    assert config["variant"] == "conv-fashion" and config["dataset"] == "synthetic"
    assert config["hparams"] == {"lr": 1e-4, "batch_size": 64, "epochs": 2, "latent_dim": 4,
                                 "beta": 2.0, "lambda": 0.01}
    assert config["seed"] == 7 and config["input_shape"] == [1, 32, 32]
    assert config["vaezoo_version"] == __version__ and config["torch_version"]


def test_metrics_per_epoch(short_run, synthetic):
    records = [json.loads(line) for line in (short_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2] and [r["step"] for r in records] == [16, 32]
    for r in records:
        assert set(r["train"]) >= {"loss", "neg_elbo", "recon", "kl", "kl_per_dim"}
        assert set(r["test"]) >= {"neg_elbo", "recon", "kl"}
        assert len(r["train"]["kl_per_dim"]) == 4
        assert r["train"]["loss"] > r["train"]["recon"] + 2 * r["train"]["kl"]  # plus the L2 penalty
        assert r["images_per_s"] > 0
    # the last epoch's test terms are the final model's: computed apart, by closed form and Monte Carlo
    recon, kl, se = independent_elbo(vaezoo.load(short_run), synthetic.test)
    test = records[-1]["test"]
    assert test["kl"] == pytest.approx(kl, rel=1e-4) and sum(test["kl_per_dim"]) == pytest.approx(kl, rel=1e-4)
    assert abs(test["recon"] - recon) < 4 * se and abs(test["neg_elbo"] - recon - kl) < 4 * se
    assert records[1]["train"]["loss"] < records[0]["train"]["loss"]
    header = (short_run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"epoch", "train_loss", "test_neg_elbo", "train_kl_per_dim_3"} <= set(header)


def test_weights_and_checkpoints_are_safetensors_with_metadata(short_run):
    with safe_open(str(short_run / "model.safetensors"), "pt") as f:
        meta = f.metadata()
        assert "encoder.mu.weight" in f.keys() and f.get_tensor("encoder.mu.weight").shape == (4, 256)
    assert meta["variant"] == "conv-fashion" and json.loads(meta["hparams"])["beta"] == 2.0
    with safe_open(str(short_run / "checkpoints" / "epoch-0002.safetensors"), "pt") as f:
        keys = set(f.keys())
        assert json.loads(f.metadata()["step"]) == 32
    assert "model/encoder.mu.weight" in keys and "rng/torch" in keys
    assert any(k.startswith("optimizer.model/") and k.endswith("exp_avg") for k in keys)


def test_pictures(short_run):
    with Image.open(short_run / "traversals.png") as img:
        # 4 latent rows x 11 steps of 32x32 tiles with 2-pixel padding
        assert img.size == (2 + 11 * 34, 2 + 4 * 34)
    with Image.open(short_run / "reconstructions.png") as img:
        assert img.size == (2 + 8 * 34, 2 + 8 * 34)  # 4 rows of originals + 4 of reconstructions
    with Image.open(short_run / "samples.png") as img:
        assert img.size == (2 + 8 * 34, 2 + 8 * 34)
    with Image.open(short_run / "loss.png") as img:
        assert img.size == (640, 400) and len(img.getcolors(10_000)) > 3


def test_same_seed_same_metrics_and_weights_bit_for_bit(cli, tmp_path):
    for name in ("a", "b"):
        train(cli, tmp_path / name, "--max-steps", "12", "--seed", "3")
    a = strip_timing([json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()])
    b = strip_timing([json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()])
    assert a == b
    weights = {name: load_file(tmp_path / name / "model.safetensors") for name in ("a", "b")}
    assert all(torch.equal(weights["a"][k], weights["b"][k]) for k in weights["a"])
    train(cli, tmp_path / "c", "--max-steps", "12", "--seed", "4")
    other = load_file(tmp_path / "c" / "model.safetensors")
    assert not torch.equal(other["encoder.mu.weight"], weights["a"]["encoder.mu.weight"])


def test_max_steps_stops_mid_epoch(cli, tmp_path):
    train(cli, tmp_path / "r", "--max-steps", "5")
    records = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["step"]) for r in records] == [(1, 5)]


@pytest.mark.parametrize("args, message", [
    (["--beta", "-1"], "option beta: -1.0 is outside the valid range [0, inf)"),
    (["--epochs", "0"], "option epochs: 0 is outside the valid range"),
    (["--lr", "abc"], "option lr: 'abc' is not a valid float"),
    (["-o", "lamda=0.1"], "unknown option 'lamda'. Did you mean: lambda?"),
    (["--batch-size", "5000"], "batch size 5000 is larger than the training set (1024 images)"),
    (["--dataset", "fashion-mnst"], "unknown dataset 'fashion-mnst'. Did you mean: fashion-mnist"),
    (["--dataset", ""], "unknown dataset ''"),
])
def test_bad_options_are_one_line_errors_and_write_nothing(cli, tmp_path, args, message):
    out = tmp_path / "run"
    result = cli("train", "conv-fashion", "--dataset", "synthetic", "--out", str(out), *args)
    assert result.code == 2
    assert message in result.err and result.err.strip().count("\n") == 0
    assert not out.exists()


def test_beta_option_needs_a_variant_with_beta(cli, fresh_registry):
    from vaezoo import hookimpl
    from vaezoo.hparams import training_params
    from vaezoo.variant import VariantSpec

    class NoBeta:
        @hookimpl
        def register_variants(self, register):
            register(VariantSpec("plain", "no beta", {"encoder": "conv", "decoder": "conv",
                                                      "likelihood": "bernoulli", "prior": "standard-normal",
                                                      "divergence": "gaussian-kl"}, "beta-elbo",
                                 training_params(lr=1e-4, batch_size=8, epochs=1, latent_dim=2)))

    fresh_registry.add_plugin(NoBeta(), "nobeta")
    result = cli("train", "plain", "--beta", "2")
    assert result.code == 2 and "variant plain has no hyperparameter 'beta'" in result.err


def test_unavailable_cuda_is_a_clear_error(cli, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    result = cli("train", "conv-fashion", "--dataset", "synthetic", "--device", "cuda", "--out", str(tmp_path / "r"))
    assert result.code == 2 and "no CUDA device is available" in result.err
    assert not (tmp_path / "r").exists()


def test_existing_run_is_not_overwritten(cli, tmp_path):
    out = tmp_path / "run"
    train(cli, out, "--max-steps", "2")
    before = (out / "model.safetensors").read_bytes()
    result = cli("train", "conv-fashion", "--dataset", "synthetic", "--out", str(out), "--max-steps", "3")
    assert result.code == 2 and "--overwrite" in result.err
    assert (out / "model.safetensors").read_bytes() == before


def test_default_run_folder_is_runs_variant_timestamp(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = datetime.now().replace(microsecond=0)
    result = cli("train", "conv-fashion", "--dataset", "synthetic", "--device", "cpu", "--max-steps", "1")
    assert result.code == 0, result.err
    [run] = (tmp_path / "runs" / "conv-fashion").iterdir()
    started = datetime.strptime(run.name, "%Y%m%d-%H%M%S")
    assert before <= started <= datetime.now() and (run / "model.safetensors").is_file()
    assert str(run.relative_to(tmp_path)) in result.out
