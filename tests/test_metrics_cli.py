"""`vaezoo evaluate --metrics`: choosing and configuring metrics, encoding a model's representation of
the factor grid once, eval.json, the table, and one-line refusals."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil

import numpy as np
import pytest
import torch
from vaezoo_plugins.datasets import dsprites

from vaezoo import hookimpl
from vaezoo.errors import UsageError
from vaezoo.evaluation import metrics
from vaezoo.evaluation.ground_truth import EncodedGrid

TINY = (3, 2, 2, 2, 2)  # 48 dSprites images of 64x64: few classes, so few boosted trees in DCI
SMALL_METRICS = ("beta-vae-score.num_train=40", "beta-vae-score.num_eval=40", "beta-vae-score.batch_size=8",
                 "factor-vae-score.num_train=40", "factor-vae-score.num_eval=40",
                 "factor-vae-score.num_variance_estimate=200", "factor-vae-score.batch_size=8",
                 "mig.num_train=300", "sap.num_train=200", "sap.num_test=100", "dci.num_train=60", "dci.num_test=30",
                 "modularity-explicitness.num_train=200", "modularity-explicitness.num_test=100")


def load_tiny(option=None):
    return dsprites.load(option, TINY)


class TinySprites:
    @hookimpl
    def register_datasets(self, register):
        register("tiny-sprites", f"{__name__}:load_tiny", "the first values of each dSprites factor")


class Extra:
    @hookimpl
    def register_metrics(self, register):
        register("not-a-metric", f"{__name__}:load_tiny", "a target that is not a Metric")


@pytest.fixture
def registry(fresh_registry):
    fresh_registry.load_entry_points("none")
    fresh_registry.add_plugin(TinySprites(), "tiny")
    return fresh_registry


@pytest.fixture
def tiny_run(registry, cli, tmp_path_factory):
    data = tmp_path_factory.mktemp("tiny-data")
    run = tmp_path_factory.mktemp("tiny-run") / "run"
    result = cli("train", "beta-tcvae", "--dataset", "tiny-sprites", "--data-dir", str(data), "--batch-size", "16",
                 "--max-steps", "3", "--device", "cpu", "--out", str(run), "-o", "latent_dim=4")
    assert result.code == 0, result.err
    return run, data


def test_plan_expands_all_and_applies_options(registry):
    planned = metrics.plan("disentanglement", ["dci.num_train=123", "mig.num_bins=10"], registry)
    assert [p.name for p in planned] == registry.names("metric") == [
        "beta-vae-score", "dci", "factor-vae-score", "mig", "modularity-explicitness", "sap"]
    settings = {p.name: p.settings for p in planned}
    assert settings["dci"] == {"num_train": 123, "num_test": 5000}
    assert settings["mig"] == {"num_train": 10_000, "num_bins": 10}
    assert settings["factor-vae-score"]["prune_threshold"] == 0.05
    assert [p.name for p in metrics.plan("mig, sap,mig", [], registry)] == ["mig", "sap"]


@pytest.mark.parametrize("selection, options, words", [
    ("mgi", [], "unknown metric 'mgi'. Did you mean: mig"),
    ("", [], "name at least one metric"),
    ("mig", ["dci.num_train=5"], "METRIC.SETTING=VALUE for a chosen metric"),
    ("mig", ["num_bins=5"], "METRIC.SETTING=VALUE"),
    ("mig", ["mig.bins=5"], "unknown option 'bins'"),
    ("mig", ["mig.num_bins=many"], "'many' is not a valid int"),
    ("mig", ["mig.num_bins=0"], "outside the valid range"),
])
def test_plan_refuses_bad_names_and_settings(registry, selection, options, words):
    with pytest.raises(UsageError, match=re.escape(words)):
        metrics.plan(selection, options, registry)


def test_a_missing_scikit_learn_is_one_line_naming_the_extra(registry, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sklearn" else real(name, *a))
    missing = r"metric dci needs the Python package sklearn.*pip install 'vaezoo\[metrics\]'"
    with pytest.raises(UsageError, match=missing):
        metrics.plan("dci", [], registry)
    assert [p.name for p in metrics.plan("mig,factor-vae-score", [], registry)] == ["mig", "factor-vae-score"]


def test_a_registered_target_that_is_no_metric_is_refused(registry):
    registry.add_plugin(Extra(), "extra")
    with pytest.raises(Exception, match="metric 'not-a-metric' from plugin 'extra' is not a"):
        metrics.plan("not-a-metric", [], registry)


def test_the_grid_is_encoded_once_per_image_and_is_the_model_representation(tiny_run, registry):
    import vaezoo

    run, data_dir = tiny_run
    model = vaezoo.load(run)
    data = load_tiny(data_dir)
    grid = EncodedGrid(model, data, batch_size=50)
    codes = np.array([[0, 0, 0, 0, 0], [2, 1, 1, 1, 1], [0, 0, 0, 0, 0], [1, 0, 1, 0, 1]])
    z = grid(codes)
    assert grid.encoded == 3 and z.dtype == np.float64 and z.shape == (4, 4)
    images = data.train[data.factors.rows(torch.from_numpy(codes))].float() / 255
    np.testing.assert_allclose(z, model.representation(images).double().numpy(), rtol=1e-5, atol=1e-6)
    truth = grid.ground_truth()
    assert truth.sizes == TINY and truth.names == data.factors.names
    truth.sample(1000, np.random.default_rng(0))
    assert grid.encoded <= 48


def test_evaluate_writes_every_metric_with_settings_and_seed_and_repeats_itself(tiny_run, cli, registry):
    run, data_dir = tiny_run
    args = ["evaluate", str(run), "--data-dir", str(data_dir), "--device", "cpu", "-k", "2",
            "--metrics", "disentanglement", *[f"--metric-option={o}" for o in SMALL_METRICS]]
    result = cli(*args)
    assert result.code == 0, result.err
    saved = json.loads((run / "eval.json").read_text())
    block = saved["disentanglement"]
    assert block["factors"] == ["shape", "scale", "orientation", "posX", "posY"] and block["factor_sizes"] == list(TINY)
    assert set(block["metrics"]) == set(registry.names("metric"))
    dci = block["metrics"]["dci"]
    assert dci["settings"] == {"num_train": 60, "num_test": 30} and dci["seed"] == 0
    assert set(dci["scores"]) == {"disentanglement", "completeness", "informativeness_train", "informativeness_test"}
    assert all(0.0 <= v <= 1.0 for m in block["metrics"].values() for k, v in m["scores"].items()
               if k != "num_active_dims")
    assert "Disentanglement of the posterior mean" in result.out and "discrete_mig" in result.out
    assert "SAP_score" in result.out and "eval_accuracy" in result.out
    cheap = ("mig", "factor-vae-score", "sap", "modularity-explicitness")
    again = cli("evaluate", str(run), "--data-dir", str(data_dir), "--device", "cpu", "-k", "2", "--overwrite",
                "--metrics", ",".join(cheap), *[f"--metric-option={o}" for o in SMALL_METRICS if o.startswith(cheap)])
    assert again.code == 0, again.err
    repeat = json.loads((run / "eval.json").read_text())["disentanglement"]["metrics"]
    assert {k: m["scores"] for k, m in repeat.items()} == {k: block["metrics"][k]["scores"] for k in repeat}


def test_metrics_on_a_dataset_without_factors_are_refused_before_any_work(small_run, refused, tmp_path):
    run = shutil.copytree(small_run, tmp_path / "run")
    refused("evaluate", str(run), "--device", "cpu", "--metrics", "mig",
            words=("dataset synthetic has no ground-truth factors",), untouched=run)


def test_an_unknown_metric_is_one_error_line(small_run, refused, tmp_path):
    run = shutil.copytree(small_run, tmp_path / "run")
    refused("evaluate", str(run), "--metrics", "mig,dcl", words=("unknown metric 'dcl'", "Did you mean: dci"),
            untouched=run, code=2)
