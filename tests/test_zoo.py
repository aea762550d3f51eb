"""The zoo as a whole: every variant is registered torch-free with its paper, trains, and loads back."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from vaezoo.data import ImageData
from vaezoo.evaluation.measures import elbo_terms
from vaezoo.model.vae import build_model
from vaezoo.registry import get_registry
from vaezoo.storage import checkpoint
from vaezoo.storage.runs import MODEL, RunDir
from vaezoo.training.loop import TrainSetup, train

ZOO = {  # variant -> overrides that keep a smoke run small (the paper defaults are checked below)
    "beta-vae": {},
    "beta-vae-capacity": {"gamma": 10.0, "capacity_steps": 10, "capacity_max": 2.0},
    "beta-tcvae": {},
    "factor-vae": {"disc_hidden": 32},
    "gjs-vae": {},
    "iwae": {"k": 3},
    "vamp-vae": {"pseudo_inputs": 20},
    "info-vae": {},
}
PAPER_DEFAULTS = {
    "beta-vae": {"beta": 4.0},
    "beta-vae-capacity": {"gamma": 1000.0, "capacity_max": 25.0, "capacity_steps": 0},  # 0: the whole run
    "beta-tcvae": {"alpha": 1.0, "beta": 6.0, "gamma": 1.0, "estimator": "mss"},
    "factor-vae": {"gamma": 6.0, "disc_lr": 1e-4, "disc_beta1": 0.5, "disc_beta2": 0.9},
    "gjs-vae": {"alpha": 0.5, "dual": False},
    "iwae": {"k": 5},
    "vamp-vae": {"pseudo_inputs": 500},
    "info-vae": {"info_lambda": 1000.0, "alpha": 0.0},
}


@pytest.mark.parametrize("name", sorted(ZOO))
def test_info_shows_paper_and_defaults(cli, name):
    result = cli("info", name, "--json")
    assert result.code == 0, result.err
    info = json.loads(result.out)
    assert "arXiv" in info["paper"] or "ICLR" in info["paper"]
    defaults = {p["name"]: p["default"] for p in info["params"]}
    assert PAPER_DEFAULTS[name].items() <= defaults.items()
    text = cli("info", name)
    assert "paper:" in text.out


def test_registration_modules_do_not_import_torch():
    plugins = ["beta_vae", "beta_tcvae", "factor_vae", "gjs_vae", "iwae", "vamp_vae", "info_vae"]
    code = ("import sys, importlib\n"
            f"for m in {plugins!r}: importlib.import_module('vaezoo_plugins.' + m)\n"
            "from vaezoo.registry import get_registry\n"
            "r = get_registry()\n"
            "assert not r.failures(), r.failures()\n"
            f"assert set({sorted(ZOO)!r}) <= set(r.names('variant'))\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def small_data():
    from vaezoo_plugins.datasets.synthetic import load_synthetic

    full = load_synthetic()
    return ImageData("synthetic", full.train[:192], full.test[:64])


def _load_back(path):
    """Rebuild a model from model.safetensors and the registry alone, as `vaezoo.load` would."""
    tensors, meta = checkpoint.read(path)
    registry = get_registry()
    spec = registry.variant(meta["variant"])
    hp = spec.schema.resolve(json.loads(meta["hparams"]))
    model = build_model(spec, hp, tuple(json.loads(meta["input_shape"])), registry)
    checkpoint.load_module_state(model, tensors, "", path)
    return model.eval()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ZOO))
def test_trains_and_loads_back(name, small_data, tmp_path, one_thread):
    spec = get_registry().variant(name)
    hp = spec.schema.resolve({"lr": 2e-3, "batch_size": 32, "epochs": 2, "latent_dim": 4, **ZOO[name]})
    run = RunDir.create(tmp_path / name)
    records = train(TrainSetup(spec, hp, small_data, torch.device("cpu")), run, get_registry())
    losses = [r["train"]["loss"] for r in records]
    assert all(math.isfinite(v) for v in losses) and math.isfinite(records[-1]["test"]["neg_elbo"])
    assert losses[-1] < losses[0]
    model = _load_back(run.path / MODEL)
    torch.manual_seed(0)
    reloaded = elbo_terms(model, small_data.test)["neg_elbo"]
    assert reloaded == pytest.approx(records[-1]["test"]["neg_elbo"], rel=0.02)
    last = checkpoint.read(run.checkpoints / "epoch-0002.safetensors")[0]
    for key, value in model.state_dict().items():
        assert torch.equal(value, last[f"model/{key}"])
