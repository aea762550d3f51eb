"""Export, load, evaluate and sample through the CLI and the Python API, and every bad file's one-line error."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

import vaezoo
from vaezoo.storage import checkpoint
from vaezoo.storage.runs import MODEL

from .conftest import independent_elbo

#: Run in this process and in a fresh one: seeded outputs of the model at argv[1], saved to argv[2]
#: (any structure: the first group's sample as "z", prior samples where the model has them).
OUTPUTS = """
import sys, torch, vaezoo
from safetensors.torch import save_file
from vaezoo_plugins.datasets.synthetic import load_synthetic
model = vaezoo.load(sys.argv[1])
x = load_synthetic().test[:16].float() / 255
torch.manual_seed(7)
with torch.no_grad():
    p = model(x)
    out = {"z": p.groups[0].sample, "recon": p.recon, "kl": p.kl, "mean": model.reconstruct(x)}
    if "prior-samples" in model.capabilities:
        out["samples"] = model.sample(4)
save_file(out, sys.argv[2])
"""


@pytest.fixture
def run(small_run, tmp_path):
    """A private copy of the trained run, so commands may write into it."""
    return shutil.copytree(small_run, tmp_path / "run")


@pytest.fixture(scope="module")
def exported(small_run, tmp_path_factory):
    return vaezoo.export(small_run, tmp_path_factory.mktemp("export") / "model-export.safetensors")


def outputs_fresh_and_here(script: str, exported, run, tmp_path) -> tuple[dict, dict]:
    """The tensors `script` (argv: model path, output file) saves for `exported` in a fresh
    interpreter and for `run` in this one."""
    fresh = subprocess.run([sys.executable, "-c", script, str(exported), str(tmp_path / "fresh.safetensors")],
                           capture_output=True, text=True, timeout=300)
    assert fresh.returncode == 0, fresh.stderr
    saved = sys.argv
    try:
        sys.argv = ["-", str(run), str(tmp_path / "here.safetensors")]
        exec(script, {})
    finally:
        sys.argv = saved
    return load_file(tmp_path / "fresh.safetensors"), load_file(tmp_path / "here.safetensors")


@pytest.mark.slow
def test_round_trip_in_a_fresh_process(small_run, exported, tmp_path):
    """Train, export, load the file in a fresh interpreter: identical outputs for the same input and seed."""
    fresh, here = outputs_fresh_and_here(OUTPUTS, exported, small_run, tmp_path)
    assert sorted(fresh) == ["kl", "mean", "recon", "samples", "z"]
    for key, value in fresh.items():
        assert torch.equal(value, here[key]), key


def test_export_holds_the_run_weights_and_metadata(small_run, exported):
    tensors, meta = checkpoint.read(exported)
    run_tensors, _ = checkpoint.read(small_run / MODEL)
    assert tensors.keys() == run_tensors.keys()
    assert all(torch.equal(tensors[k], run_tensors[k]) for k in tensors)
    config = json.loads((small_run / "config.json").read_text())
    assert meta["variant"] == "conv-fashion" and meta["dataset"] == "synthetic" and meta["part"] == "model"
    assert json.loads(meta["hparams"]) == config["hparams"] and json.loads(meta["input_shape"]) == [1, 32, 32]
    assert meta["vaezoo_version"] == vaezoo.__version__ and meta["torch_version"] == torch.__version__
    assert (meta["plugin"], meta["plugin_distribution"]) == ("conv-fashion", "vaezoo")
    changed = {**tensors, "encoder.mu.bias": tensors["encoder.mu.bias"] + 1}
    assert meta["content_hash"] == checkpoint.content_hash(tensors) != checkpoint.content_hash(changed)


def test_default_export_names(small_run, exported, tmp_path, monkeypatch):
    """VARIANT-RUN[-PART].safetensors in the current folder; a file already named after its variant keeps its name."""
    monkeypatch.chdir(tmp_path)
    assert vaezoo.export(small_run) == Path("conv-fashion-run.safetensors")
    assert vaezoo.export(small_run, part="decoder") == Path("conv-fashion-run-decoder.safetensors")
    named = shutil.copy(exported, tmp_path / "elsewhere.safetensors")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    assert vaezoo.export(named) == Path("conv-fashion-elsewhere.safetensors")
    kept = shutil.copy(exported, tmp_path / "conv-fashion-best.safetensors")
    assert vaezoo.export(kept, part="encoder") == Path("conv-fashion-best-encoder.safetensors")
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == [
        "conv-fashion-best-encoder.safetensors", "conv-fashion-elsewhere.safetensors"]


def test_hugging_face_folder(small_run, exported, tmp_path):
    written = vaezoo.export(small_run, tmp_path / "hf")
    assert written == tmp_path / "hf" / "model.safetensors"
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    _, meta = checkpoint.read(written)
    assert config["model_type"] == "vaezoo" and config["variant"] == "conv-fashion"
    assert config["hparams"] == json.loads(meta["hparams"]) and config["content_hash"] == meta["content_hash"]
    folder, file = vaezoo.load(tmp_path / "hf"), vaezoo.load(exported)
    assert all(torch.equal(a, b) for a, b in zip(folder.state_dict().values(), file.state_dict().values()))


@pytest.mark.parametrize("part", ["encoder", "decoder"])
def test_one_part_alone(small_run, tmp_path, refused, part):
    path = vaezoo.export(small_run, tmp_path / f"{part}.safetensors", part=part)
    module = vaezoo.load(path)
    whole = vaezoo.load(small_run)
    assert type(module) is type(getattr(whole, part))
    assert all(torch.equal(a, b) for a, b in zip(module.state_dict().values(), getattr(whole, part).state_dict().values()))
    refused("evaluate", str(path), words=(f"holds only the {part}",))


def test_a_training_checkpoint_reads_as_the_model_at_its_epoch(small_run, tmp_path, cli):
    """The two-epoch run's epoch-2 checkpoint holds its final weights."""
    path = shutil.copy(small_run / "checkpoints" / "epoch-0002.safetensors", tmp_path)
    final, at_epoch = vaezoo.load(small_run), vaezoo.load(path)
    assert final.state_dict().keys() == at_epoch.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(final.state_dict().values(), at_epoch.state_dict().values()))
    assert cli("evaluate", str(path), "-k", "1").code == 0
    assert json.loads((tmp_path / "epoch-0002.eval.json").read_text())["variant"] == "conv-fashion"


def test_loading_leaves_the_callers_random_state_alone(small_run):
    """In a fresh interpreter, where the first load also imports what it needs: torch's, numpy's and Python's
    generators draw the same numbers as if nothing had been loaded."""
    code = ("import random, sys, numpy, torch, vaezoo\n"
            "def draws():\n"
            "    return random.random(), float(numpy.random.rand()), float(torch.rand(1))\n"
            "for seed in (0, 1):\n"
            "    random.seed(seed); numpy.random.seed(seed); torch.manual_seed(seed)\n"
            "    expected = draws()\n"
            "    random.seed(seed); numpy.random.seed(seed); torch.manual_seed(seed)\n"
            "    vaezoo.load(sys.argv[1])\n"
            "    assert draws() == expected, (seed, draws(), expected)\n")
    result = subprocess.run([sys.executable, "-c", code, str(small_run)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


def assert_terms_of(measures: dict, model, images, samples: int = 32) -> None:
    """The measured ELBO terms against the independent computation (closed-form KL, Monte Carlo recon)."""
    recon, kl, se = independent_elbo(model, images, samples)
    assert measures["kl"] == pytest.approx(kl, rel=1e-4)
    assert abs(measures["recon"] - recon) < 4 * se, (measures["recon"], recon, se)
    assert abs(measures["neg_elbo"] - (recon + kl)) < 4 * se


def test_evaluate_writes_eval_json_and_never_overwrites_it(run, cli, refused, synthetic):
    result = cli("evaluate", str(run), "-k", "3", "--batch-size", "100")
    assert result.code == 0, result.err
    assert "-log p(x), 3 importance samples" in result.out and "active units" in result.out
    measures = json.loads((run / "eval.json").read_text())
    assert measures["images"] == 256 and measures["importance_samples"] == 3 and measures["split"] == "test"
    assert len(measures["kl_per_dim"]) == len(measures["posterior_mean_variance"]) == 10
    assert_terms_of(measures, vaezoo.load(run), synthetic.test)
    refused("evaluate", str(run), "-k", "3", words=("eval.json already exists", "--overwrite"), untouched=run)
    # the Python API gives the same numbers for the same seed
    again = vaezoo.evaluate(run, importance_samples=3, batch_size=100, save=False)
    assert again["saved_to"] is None
    for key in ("neg_elbo", "recon", "kl", "nll", "mse", "kl_per_dim", "active_units"):
        assert again[key] == measures[key], key


def test_evaluate_split_train_measures_the_training_images(run, synthetic):
    model = vaezoo.load(run)
    train = vaezoo.evaluate(run, split="train", importance_samples=1, save=False)
    test = vaezoo.evaluate(run, split="test", importance_samples=1, save=False)
    assert (train["images"], train["split"], test["images"]) == (1024, "train", 256)
    assert_terms_of(train, model, synthetic.train, samples=4)
    assert train["kl"] != pytest.approx(test["kl"], rel=1e-4)  # the two sets differ, so does their KL


def test_evaluate_seed_decides_the_sampled_measures_only(run):
    first, again, other = (vaezoo.evaluate(run, importance_samples=2, seed=seed, save=False) for seed in (5, 5, 6))
    sampled, exact = ("recon", "nll", "neg_elbo"), ("kl", "mse", "posterior_mean_variance", "active_units")
    assert all(first[key] == again[key] for key in (*sampled, *exact))
    assert all(first[key] != other[key] for key in sampled)
    assert all(first[key] == other[key] for key in exact)


def test_evaluate_an_exported_file_writes_beside_it(exported, tmp_path, cli):
    copy = shutil.copy(exported, tmp_path / "m.safetensors")
    assert cli("evaluate", str(copy), "-k", "1").code == 0
    assert json.loads((tmp_path / "m.eval.json").read_text())["source"] == str(copy)
    assert cli("evaluate", str(copy), "-k", "1", "--out", str(tmp_path / "new" / "e.json")).code == 0
    assert (tmp_path / "new" / "e.json").is_file()


@pytest.mark.parametrize("args, words", [
    (["-k", "0"], ["importance samples must be at least 1"]),
    (["--batch-size", "0"], ["batch size must be at least 1"]),
    (["--split", "valid"], ["unknown split 'valid'"]),
])
def test_evaluate_rejects_bad_options(run, refused, args, words):
    refused("evaluate", str(run), *args, words=words, untouched=run)
    assert not (run / "eval.json").exists()


def test_export_never_overwrites_and_checks_options(small_run, exported, cli, refused):
    refused("export", str(small_run), "--out", str(exported), words=("already exists",), untouched=exported.parent)
    refused("export", str(small_run), "--out", str(exported), "--format", "onnx", words=("--format 'onnx'",))
    refused("export", str(small_run), "--out", str(exported), "--part", "prior", words=("--part 'prior'",))
    assert cli("export", str(small_run), "--out", str(exported), "--overwrite").code == 0


@pytest.mark.parametrize("args, name, size", [
    (["--n", "16"], "samples.png", (4 * 34 + 2, 4 * 34 + 2)),  # 4 x 4 grid of 32 px images, 2 px padding
    (["--reconstruct", "--n", "8"], "reconstructions.png", (8 * 34 + 2, 2 * 34 + 2)),  # images above reconstructions
    (["--traverse"], "traversals.png", (11 * 34 + 2, 10 * 34 + 2)),  # 11 steps for each of 10 latent dims
])
def test_sample_pictures(small_run, tmp_path, cli, refused, monkeypatch, args, name, size):
    monkeypatch.chdir(tmp_path)
    result = cli("sample", str(small_run), *args)
    assert result.code == 0, result.err
    with Image.open(tmp_path / name) as image:
        assert image.size == size
    refused("sample", str(small_run), *args, words=("already exists",), untouched=tmp_path)


def test_prior_samples_follow_the_seed(exported, tmp_path):
    a = vaezoo.sample(exported, tmp_path / "a.png", n=4, seed=5)
    b = vaezoo.sample(exported, tmp_path / "b.png", n=4, seed=5)
    c = vaezoo.sample(exported, tmp_path / "c.png", n=4, seed=6)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()


def test_sample_refuses_two_modes(small_run, refused):
    refused("sample", str(small_run), "--reconstruct", "--traverse", words=("choose one",))


def test_the_public_api_stays_free_of_torch_until_called():
    code = ("import sys, vaezoo\n"
            "assert callable(vaezoo.load) and callable(vaezoo.train) and callable(vaezoo.evaluate)\n"
            "assert vaezoo.registry.get_registry().names('variant')\n"
            "import vaezoo.cli\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


# -- bad files: one clear line and a non-zero exit each ------------------------------------------------

def _rewrite(source, target, **changes):
    """Copy a vaezoo weights file with some metadata replaced (None removes the key)."""
    tensors, meta = checkpoint.read(source)
    meta = {k: v for k, v in {**meta, **changes}.items() if v is not None}
    checkpoint.write(target, tensors, {k: v for k, v in meta.items() if k != checkpoint.FORMAT_KEY})
    return target


def _corrupt(exported, tmp_path):
    data = bytearray(exported.read_bytes())
    data[-100] ^= 0xFF  # a byte of tensor data: still a readable safetensors file
    (tmp_path / "bad.safetensors").write_bytes(bytes(data))
    return tmp_path / "bad.safetensors"


def _truncated(exported, tmp_path):
    (tmp_path / "bad.safetensors").write_bytes(exported.read_bytes()[: exported.stat().st_size // 2])
    return tmp_path / "bad.safetensors"


def _not_safetensors(exported, tmp_path):
    (tmp_path / "bad.safetensors").write_text("these are not the weights you are looking for\n")
    return tmp_path / "bad.safetensors"


def _foreign(exported, tmp_path):
    save_file({"weight": torch.zeros(3)}, tmp_path / "bad.safetensors", metadata={"format": "pt"})
    return tmp_path / "bad.safetensors"


def _incomplete_metadata(exported, tmp_path):
    return _rewrite(exported, tmp_path / "bad.safetensors", hparams=None)


def _bad_json(exported, tmp_path):
    return _rewrite(exported, tmp_path / "bad.safetensors", input_shape="[1, 32")


def _plugin_missing(exported, tmp_path):
    return _rewrite(exported, tmp_path / "bad.safetensors", variant="nouveau-vae", plugin="vaezoo-nouveau",
                    plugin_distribution="vaezoo-nouveau", plugin_version="0.3.0")


def _builtin_missing(exported, tmp_path):
    return _rewrite(exported, tmp_path / "bad.safetensors", variant="retired-vae", plugin="conv-fashion",
                    plugin_distribution="vaezoo", plugin_version="0.0.1")


def _hostile_metadata(exported, tmp_path):
    """Metadata written to make vaezoo print a command installing from another index, with terminal escapes."""
    return _rewrite(exported, tmp_path / "bad.safetensors", variant="evil\x1b[2J[/red]\nnext line",
                    plugin="x", plugin_distribution="x --index-url https://evil.example/simple")


def _variant_unknown(exported, tmp_path):
    return _rewrite(exported, tmp_path / "bad.safetensors", variant="nouveau-vae", plugin=None,
                    plugin_distribution=None, plugin_version=None)


def _wrong_shapes(exported, tmp_path):
    hparams = json.loads(checkpoint.read(exported)[1]["hparams"])
    return _rewrite(exported, tmp_path / "bad.safetensors", hparams={**hparams, "latent_dim": 3})


def _bad_hparams(exported, tmp_path):
    hparams = json.loads(checkpoint.read(exported)[1]["hparams"])
    return _rewrite(exported, tmp_path / "bad.safetensors", hparams={**hparams, "beta": -1.0})


def _missing(exported, tmp_path):
    return tmp_path / "nothing-here.safetensors"


def _not_a_run(exported, tmp_path):
    (tmp_path / "folder").mkdir()
    return tmp_path / "folder"


def _unfinished_run(exported, tmp_path):
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "config.json").write_text("{}")
    return tmp_path / "run"


def _checkpoint(exported, tmp_path):
    checkpoint.write(tmp_path / "epoch-0001.safetensors", {"model/w": torch.zeros(1)}, {"optimizers": {}, "epoch": 1})
    return tmp_path / "epoch-0001.safetensors"


@pytest.mark.parametrize("make, words", [
    (_corrupt, ["is corrupt", "content_hash"]),
    (_truncated, ["not a readable safetensors file"]),
    (_not_safetensors, ["not a readable safetensors file"]),
    (_foreign, ["not one written by vaezoo"]),
    (_incomplete_metadata, ["metadata lacks hparams"]),
    (_bad_json, ["'input_shape' is not valid JSON"]),
    (_plugin_missing, ["needs variant 'nouveau-vae'", "no installed plugin provides", "plugin 'vaezoo-nouveau'",
                       "distribution 'vaezoo-nouveau' '0.3.0'"]),
    (_builtin_missing, ["needs variant 'retired-vae'", "built into vaezoo '0.0.1'", "this vaezoo", "has no such"]),
    (_hostile_metadata, ["needs variant 'evil?[2J[/red]?next line'",
                         "distribution 'x --index-url https://evil.example/simple'"]),
    (_variant_unknown, ["variant 'nouveau-vae'", "no installed plugin provides"]),
    (_wrong_shapes, ["does not match the model", "wrong shape"]),
    (_bad_hparams, ["do not fit the installed variant", "beta"]),
    (_missing, ["does not exist"]),
    (_not_a_run, ["neither a run nor an exported model"]),
    (_unfinished_run, ["training has not finished"]),
    (_checkpoint, ["training checkpoint without a readable run config"]),
], ids=lambda v: v.__name__.strip("_") if callable(v) else None)
def test_bad_file_gives_one_line(exported, tmp_path, refused, make, words):
    path = make(exported, tmp_path)
    for command in ("evaluate", "export", "sample"):
        out = tmp_path / f"{command}-out.png"
        result = refused(command, str(path), "--out", str(out), words=(str(path), *words))
        assert not out.exists()
        assert "pip install" not in result.err and "\x1b" not in result.err  # no command built from the file


@pytest.mark.slow
def test_evaluate_on_real_fashion_mnist(exported, tmp_path, real_data):
    """The whole FashionMNIST test split, found through the dataset named in the file's metadata."""
    path = _rewrite(exported, tmp_path / "fashion.safetensors", dataset="fashion-mnist")
    result = vaezoo.evaluate(path, importance_samples=1, data_dir=real_data, device="cpu")
    assert result["images"] == 10_000 and result["dataset"] == "fashion-mnist"
    assert (tmp_path / "fashion.eval.json").is_file()
    # one importance sample is a one-sample ELBO: close to the analytic-KL ELBO over 10,000 images
    assert result["nll"] == pytest.approx(result["neg_elbo"], rel=0.01)


#: Second stages build only on a finished parent run; their plugins' tests round-trip them (test_vq_vae_stages).
FIRST_STAGES = sorted(name for name in vaezoo.registry.get_registry().names("variant")
                      if not vaezoo.registry.get_registry().variant(name).parent_needs)


@pytest.mark.parametrize("variant", FIRST_STAGES)
def test_every_variant_rebuilds_from_its_metadata_alone(variant, tmp_path):
    """Weights written with a variant's metadata come back as the same model: same tensors, same outputs."""
    from vaezoo.model import build_model
    from vaezoo.training.loop import weights_metadata

    registry = vaezoo.registry.get_registry()
    spec = registry.variant(variant)
    hp = spec.schema.resolve()
    torch.manual_seed(0)
    model = build_model(spec, hp, (1, 32, 32), registry).eval()
    config = {"variant": variant, "hparams": hp.to_dict(), "dataset": "synthetic", "input_shape": [1, 32, 32],
              "vaezoo_version": vaezoo.__version__, "torch_version": torch.__version__}
    checkpoint.write(tmp_path / "w.safetensors", checkpoint.model_tensors(model), weights_metadata(config))
    exported = vaezoo.export(tmp_path / "w.safetensors", tmp_path / "e.safetensors")
    loaded = vaezoo.load(exported)
    assert type(loaded) is type(model) and loaded.state_dict().keys() == model.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    x = torch.rand(4, 1, 32, 32)
    labels = torch.zeros(4, dtype=torch.long)  # read by conditional variants only
    torch.manual_seed(1)
    with model.conditioned_on(labels):
        expected = model(x)
    torch.manual_seed(1)
    with loaded.conditioned_on(labels):
        got = loaded(x)
    assert torch.equal(got.recon, expected.recon)
    assert all((a.kl is None and b.kl is None) or torch.equal(a.kl, b.kl)  # a deterministic code has no KL
               for a, b in zip(got.groups, expected.groups))
