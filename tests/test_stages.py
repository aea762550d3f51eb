"""Second stages (a model trained on a finished run), swapped parts with their own hyperparameters,
plugin provenance in weights, and `vaezoo plugins --check`, through the CLI and the Python API."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors import safe_open
from torch import nn

import vaezoo
from vaezoo import hookimpl
from vaezoo.hparams import Param, training_params
from vaezoo.model import LatentGroup, Pass, Structure
from vaezoo.model.distributions import DiagonalGaussian
from vaezoo.registry import get_registry
from vaezoo.variant import VariantSpec

from .test_resume import assert_same_results, results


class CodeGaussian(Structure):
    """A second stage: a learnt diagonal Gaussian over the frozen parent's codes; samples decode
    through the parent. Its only latent group is the code, its "KL" -log p(code) (q is a point)."""

    capabilities = frozenset({"single-group", "prior-samples", "elbo"})

    def __init__(self, ctx):
        super().__init__()
        self.parent = ctx.parent
        dims = ctx.parent.hp["latent_dim"]
        self.mu = nn.Parameter(torch.zeros(dims))
        self.logvar = nn.Parameter(torch.zeros(dims))

    def forward(self, x):
        codes = self.parent.representation(x)
        nll = -DiagonalGaussian(self.mu, self.logvar).log_prob(codes)
        return Pass([LatentGroup(codes, nll)], codes, torch.zeros_like(nll))

    def reconstruct(self, x):
        return self.parent.reconstruct(x)

    @torch.no_grad()
    def sample(self, n):
        return self.parent.decode_representation(DiagonalGaussian(self.mu, self.logvar).sample((n,)))


class FixedNoiseLikelihood(nn.Module):
    """A likelihood with a hyperparameter of its own (`pixel_noise`), for swapping in with --part."""

    def __init__(self, ctx):
        super().__init__()
        self.logvar = 2 * torch.log(torch.tensor(ctx.hp["pixel_noise"]))

    def log_prob(self, x, out):
        return DiagonalGaussian(torch.sigmoid(out).flatten(-3), self.logvar).log_prob(x.flatten(-3))

    def mean(self, out):
        return torch.sigmoid(out)


class StagePlugin:
    @hookimpl
    def register_structures(self, register):
        register("t-code-gaussian", "tests.test_stages:CodeGaussian", "a Gaussian over a parent's codes")

    @hookimpl
    def register_likelihoods(self, register):
        register("t-noisy", "tests.test_stages:FixedNoiseLikelihood", "Gaussian pixels, fixed noise",
                 params=(Param("pixel_noise", "float", 0.1, "standard deviation of pixel noise", low=0.0,
                               low_exclusive=True),))

    @hookimpl
    def register_variants(self, register):
        register(VariantSpec(
            "t-stage", "a second stage for tests", parts={}, structure="t-code-gaussian", objective="beta-elbo",
            params=(*training_params(lr=0.05, batch_size=256, epochs=2, latent_dim=10),
                    Param("beta", "float", 1.0), Param("lambda", "float", 0.0)),
            dataset="synthetic", parent_needs=("flat-code",)))


@pytest.fixture
def stage_plugin():
    registry = get_registry()
    registry.add_plugin(StagePlugin(), "t-stages")
    yield registry
    for kind, name in registry.plugins.pop("t-stages").registered:
        registry._entries[kind].pop(name)
    registry.manager.unregister(name="t-stages")


STAGE = ("t-stage", "--dataset", "synthetic", "--device", "cpu")


def test_second_stage_trains_on_a_frozen_parent_and_loads_as_one_model(stage_plugin, small_run, tmp_path, cli):
    result = cli("train", *STAGE, "--parent", str(small_run), "--out", str(tmp_path / "stage"))
    assert result.code == 0, result.err
    run = tmp_path / "stage"
    config = json.loads((run / "config.json").read_text())
    parent_weights = results(small_run)[0]
    assert config["parent"]["variant"] == "conv-fashion" and config["parent"]["content_hash"].startswith("sha256:")
    model = vaezoo.load(run)
    state = model.state_dict()
    assert all(torch.equal(state[f"parent.{k}"], v) for k, v in parent_weights.items())  # frozen: unchanged
    codes = model.parent.representation(torch.as_tensor(_synthetic_train()))
    assert torch.allclose(model.mu, codes.mean(0), atol=0.3)  # it learnt the codes' distribution
    assert model.sample(5).shape == (5, 1, 32, 32)
    assert (run / "parent.safetensors").is_file() and (run / "samples.png").is_file()


def _synthetic_train():
    from vaezoo_plugins.datasets.synthetic import load_synthetic

    from vaezoo.data import as_float

    return as_float(load_synthetic().train)


def test_second_stage_resumes_bit_for_bit(stage_plugin, small_run, tmp_path, cli):
    reference, cut = tmp_path / "reference", tmp_path / "cut"
    assert cli("train", *STAGE, "--parent", str(small_run), "--out", str(reference)).code == 0
    assert cli("train", *STAGE, "--parent", str(small_run), "--out", str(cut), "--epochs", "1").code == 0
    assert cli("train", "--resume", str(cut), "--epochs", "2", "--device", "cpu").code == 0
    assert_same_results(cut, reference)


def test_second_stage_refusals(stage_plugin, small_run, tmp_path, refused, cli):
    refused("train", *STAGE, "--out", str(tmp_path / "a"), words=("second stage", "--parent"))
    refused("train", "conv-fashion", "--dataset", "synthetic", "--parent", str(small_run), "--out",
            str(tmp_path / "b"), words=("--parent applies only to second-stage",))
    stage, tampered = tmp_path / "stage", tmp_path / "tampered"
    assert cli("train", *STAGE, "--parent", str(small_run), "--out", str(stage), "--epochs", "1").code == 0
    shutil.copytree(stage, tampered)
    shutil.copy(small_run / "checkpoints" / "epoch-0001.safetensors", tampered / "parent.safetensors")
    refused("train", "--resume", str(tampered), "--epochs", "2", "--device", "cpu",
            words=("parent.safetensors",), untouched=tampered)


def test_a_swapped_part_brings_its_hyperparameters_and_is_recorded(stage_plugin, tmp_path, cli):
    info = cli("info", "conv-fashion", "--part", "likelihood=t-noisy", "--json")
    params = {p["name"]: p for p in json.loads(info.out)["params"]}
    assert params["pixel_noise"]["default"] == 0.1 and json.loads(info.out)["parts"]["likelihood"] == "t-noisy"
    run = tmp_path / "noisy"
    result = cli("train", "conv-fashion", "--dataset", "synthetic", "--max-steps", "2", "--batch-size", "64",
                 "--part", "likelihood=t-noisy", "-o", "pixel_noise=0.2", "--out", str(run), "--device", "cpu")
    assert result.code == 0, result.err
    config = json.loads((run / "config.json").read_text())
    assert config["parts"] == {"likelihood": "t-noisy"} and config["hparams"]["pixel_noise"] == 0.2
    with safe_open(str(run / "model.safetensors"), "pt") as f:
        assert json.loads(f.metadata()["parts"]) == {"likelihood": "t-noisy"}
    model = vaezoo.load(run)
    assert isinstance(model.likelihood, FixedNoiseLikelihood) and model.hp["pixel_noise"] == 0.2


def test_part_swap_refusals(refused, tmp_path):
    refused("train", "conv-fashion", "--part", "likelihood=nope", "--out", str(tmp_path / "a"),
            words=("unknown likelihood 'nope'",), code=2)
    refused("train", "conv-fashion", "--part", "flux=conv", "--out", str(tmp_path / "b"),
            words=("'flux' is not a part kind",), code=2)
    refused("train", "conv-fashion", "--part", "likelihood", "--out", str(tmp_path / "c"),
            words=("kind=name",), code=2)


def test_weights_name_their_plugin_and_a_version_change_is_told_as_such(small_run, tmp_path, cli):
    with safe_open(str(small_run / "model.safetensors"), "pt") as f:
        meta = f.metadata()
    assert meta["plugin"] == "conv-fashion" and meta["plugin_distribution"] == "vaezoo"
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(small_run / "model.safetensors"))
    tensors["decoder.dense.0.weight"] = tensors["decoder.dense.0.weight"][:, :5].contiguous()
    save_file(tensors, str(tmp_path / "old.safetensors"), metadata={**meta, "plugin_version": "0.0.1"})
    result = cli("evaluate", str(tmp_path / "old.safetensors"), "--device", "cpu")
    assert result.code != 0 and "written by vaezoo 0.0.1" in result.err and "layout differs" in result.err


class TypoPlugin:
    @hookimpl
    def register_likelihood(self, register):  # sic: the hook is register_likelihoods
        register("never", "nowhere:Nothing")


class BrokenVariantPlugin:
    @hookimpl
    def register_variants(self, register):
        register(VariantSpec("t-broken", "parts that do not fit", parts={"encoder": "conv", "decoder": "conv",
                             "likelihood": "bernoulli", "prior": "standard-normal", "divergence": "gaussian-kl"},
                             objective="tc-decomposed-elbo", params=training_params(lr=1e-3, batch_size=8, epochs=1,
                                                                                   latent_dim=2),
                             dataset="synthetic"))


def test_plugins_check_flags_typos_and_variants_that_do_not_build(cli):
    registry = get_registry()
    clean = cli("plugins", "--check")
    assert clean.code == 0, clean.err
    registry.add_plugin(TypoPlugin(), "t-typo")
    registry.add_plugin(BrokenVariantPlugin(), "t-broken")
    try:
        result = cli("plugins", "--check")
    finally:
        for name in ("t-typo", "t-broken"):
            for kind, entry in registry.plugins.pop(name).registered:
                registry._entries[kind].pop(entry)
            registry.manager.unregister(name=name)
    assert result.code == 1
    assert "register_likelihood matches no hook" in result.err and "did you mean register_likelihoods" in result.err
    assert "variant 't-broken'" in result.err and "KeyError" in result.err and "Traceback" in result.err


def test_unknown_variant_names_plugins_that_failed(cli):
    registry = get_registry()
    registry.plugins["t-failed"] = type(registry.plugins["standard"])("t-failed", "vaezoo-thing", "1.0", False,
                                                                      error="ImportError: needs libfoo")
    try:
        result = cli("info", "thing-vae")
    finally:
        registry.plugins.pop("t-failed")
    assert result.code == 2 and "'t-failed' (ImportError: needs libfoo)" in result.err
