"""Post-hoc samplers: EM against scikit-learn and a hand computation, the flows' densities against
quadrature and their own samples, the fit-save-load round trip, and every bad file's one line."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from vaezoo_plugins.datasets.synthetic import load_synthetic
from vaezoo_plugins.samplers.gmm import GaussianMixtureSampler, e_step, m_step

import vaezoo
from vaezoo.errors import UsageError
from vaezoo.model.samplers import build_sampler, check_sampler, flat_codes
from vaezoo.registry import get_registry
from vaezoo.storage import checkpoint
from vaezoo.storage.loading import open_artifact
from vaezoo.storage.samplers import load_sampler, sampler_file

from .conftest import SMALL_RUN
from .quadrature import grid, integral

FAST_FLOW = ("-o", "epochs=2", "-o", "flow_hidden=16", "-o", "flow_steps=2")


def sampler(name: str, code_dim: int, **hp):
    return build_sampler(get_registry(), name, hp, (1, 32, 32), code_dim)


def clusters(n: int = 600, seed: int = 0) -> torch.Tensor:
    """Three well separated 2-D clusters of different shapes and sizes."""
    g = torch.Generator().manual_seed(seed)
    parts = [torch.randn(n // 2, 2, generator=g, dtype=torch.float64) @ torch.tensor([[1.0, 0.0], [0.6, 0.5]], dtype=torch.float64),
             torch.randn(n // 3, 2, generator=g, dtype=torch.float64) * 0.4 + torch.tensor([6.0, 0.0], dtype=torch.float64),
             torch.randn(n - n // 2 - n // 3, 2, generator=g, dtype=torch.float64) * 0.7 + torch.tensor([0.0, 7.0], dtype=torch.float64)]
    return torch.cat(parts)


def test_em_steps_match_a_hand_computation():
    x = torch.tensor([[0.0], [1.0], [3.0], [4.0]], dtype=torch.float64)
    resp = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.1, 0.9]], dtype=torch.float64)
    weights, means, covariances = m_step(x, resp, reg=0.0)
    # by hand: N_1 = 2.1, N_2 = 1.9; mu_1 = (0 + 0.8 + 0.9 + 0.4) / 2.1 = 1.0, mu_2 = (0.2 + 2.1 + 3.6) / 1.9
    mu2 = 5.9 / 1.9
    var1 = (0.9 * 1 + 0.8 * 0 + 0.3 * 4 + 0.1 * 9) / 2.1
    var2 = (0.1 * mu2**2 + 0.2 * (1 - mu2) ** 2 + 0.7 * (3 - mu2) ** 2 + 0.9 * (4 - mu2) ** 2) / 1.9
    torch.testing.assert_close(weights, torch.tensor([2.1 / 4, 1.9 / 4], dtype=torch.float64))
    torch.testing.assert_close(means[:, 0], torch.tensor([1.0, mu2], dtype=torch.float64))
    torch.testing.assert_close(covariances[:, 0, 0], torch.tensor([var1, var2], dtype=torch.float64))
    log_resp, mean_ll = e_step(x, weights, means, covariances)

    def normal(v, m, s2):
        return math.exp(-0.5 * (v - m) ** 2 / s2) / math.sqrt(2 * math.pi * s2)

    joint = [[w * normal(v, m, s2) for w, m, s2 in zip((2.1 / 4, 1.9 / 4), (1.0, mu2), (var1, var2))] for v in (0, 1, 3, 4)]
    expected = torch.tensor([[j / sum(row) for j in row] for row in joint], dtype=torch.float64)
    torch.testing.assert_close(log_resp.exp(), expected)
    assert float(mean_ll) == pytest.approx(sum(math.log(sum(row)) for row in joint) / 4)


def test_gmm_fit_matches_scikit_learn():
    mixture = pytest.importorskip("sklearn.mixture")
    x = clusters()
    torch.manual_seed(0)
    mine = sampler("gmm", 2, components=3, tolerance=1e-8, iterations=500)
    mine.fit(x)
    theirs = mixture.GaussianMixture(3, covariance_type="full", tol=1e-8, max_iter=500, random_state=0).fit(x.numpy())
    order_mine, order_theirs = mine.means[:, 0].argsort(), torch.from_numpy(theirs.means_[:, 0]).argsort()
    torch.testing.assert_close(mine.weights[order_mine], torch.from_numpy(theirs.weights_)[order_theirs], atol=1e-6, rtol=0)
    torch.testing.assert_close(mine.means[order_mine], torch.from_numpy(theirs.means_)[order_theirs], atol=1e-6, rtol=0)
    covariances = mine.scale_tril @ mine.scale_tril.transpose(-1, -2)
    torch.testing.assert_close(covariances[order_mine], torch.from_numpy(theirs.covariances_)[order_theirs],
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(mine.log_prob(x), torch.from_numpy(theirs.score_samples(x.numpy())), atol=1e-6, rtol=0)


def test_gmm_samples_have_the_mixtures_moments():
    torch.manual_seed(0)
    gmm = sampler("gmm", 2, components=3)
    gmm.fit(clusters())
    mean = (gmm.weights[:, None] * gmm.means).sum(0)
    covariances = gmm.scale_tril @ gmm.scale_tril.transpose(-1, -2)
    second = (gmm.weights[:, None, None] * (covariances + gmm.means[:, :, None] * gmm.means[:, None, :])).sum(0)
    z = gmm.sample(200_000)
    torch.testing.assert_close(z.mean(0), mean, atol=0.03, rtol=0)
    torch.testing.assert_close(z.T @ z / z.shape[0], second, atol=0.15, rtol=0.01)


SCALE = 0.15  # of the random MADE weights: a clearly non-Gaussian flow whose mass stays on the grid


def random_flow(name: str, dims: int):
    """An unfitted flow with generic weights and a non-trivial standardisation."""
    torch.manual_seed(dims)
    flow = sampler(name, dims, flow_hidden=16, flow_steps=3).double()
    with torch.no_grad():
        for p in flow.mades.parameters():
            p.normal_(0, SCALE)
        flow.loc.copy_(torch.linspace(-0.5, 0.5, dims))
        flow.scale.copy_(torch.linspace(0.7, 1.3, dims))
    return flow


@pytest.mark.parametrize("name", ["maf", "iaf"])
@pytest.mark.parametrize("dims", [1, 2])
def test_flow_densities_integrate_to_one_and_match_their_samples(name, dims):
    flow = random_flow(name, dims)
    points, volume = grid(dims, -10, 10, 401)  # spacing 0.05
    with torch.no_grad():
        density = flow.log_prob(points).exp()
    assert integral(density, volume) == pytest.approx(1.0, abs=2e-3)
    # the probability of each of a few boxes: by quadrature, and as the fraction of samples inside
    torch.manual_seed(5)
    z = flow.sample(40_000)
    edges = torch.tensor([-10.0, -0.975, 0.025, 1.025, 10.0], dtype=torch.float64)  # midway between grid points
    inside_points = torch.bucketize(points, edges[1:-1])
    inside_samples = torch.bucketize(z, edges[1:-1])
    for box in range(4):
        by_quadrature = integral(density * (inside_points == box).all(-1), volume)
        fraction = float((inside_samples == box).all(-1).double().mean())
        se = math.sqrt(by_quadrature * (1 - by_quadrature) / z.shape[0])
        assert abs(fraction - by_quadrature) < 4 * se + 2e-3, (box, fraction, by_quadrature)


@pytest.mark.slow
def test_flows_fit_a_curved_density_better_than_a_gaussian():
    """Codes on a noisy parabola: both flows beat the best single Gaussian's held-out log-likelihood."""
    g = torch.Generator().manual_seed(0)
    t = torch.randn(3000, generator=g)
    codes = torch.stack([t, t**2 + 0.1 * torch.randn(3000, generator=g)], 1)
    train, test = codes[:2000], codes[2000:]
    torch.manual_seed(0)
    gaussian = sampler("gmm", 2, components=1)
    gaussian.fit(train)
    baseline = float(gaussian.log_prob(test).mean())
    for name in ("maf", "iaf"):
        torch.manual_seed(0)
        flow = sampler(name, 2, epochs=30, flow_hidden=32, flow_steps=3, batch_size=100)
        flow.fit(train)
        with torch.no_grad():
            assert float(flow.log_prob(test).mean()) > baseline + 0.5, name


@pytest.fixture
def run(small_run, tmp_path) -> Path:
    return Path(shutil.copytree(small_run, tmp_path / "run"))


@pytest.mark.parametrize("name,options", [("gmm", ("-o", "components=3")), ("maf", FAST_FLOW), ("iaf", FAST_FLOW)])
def test_fit_save_load_round_trip_gives_the_same_samples(run, cli, name, options):
    result = cli("fit-sampler", str(run), "--sampler", name, *options, "--seed", "4", "--device", "cpu")
    assert result.code == 0, result.err
    assert f"fitted {name} to 1,024 training codes" in result.out
    artifact = open_artifact(run)
    loaded, meta = load_sampler(artifact, name, get_registry())
    assert json.loads(meta["fit"])["seed"] == 4 and meta["variant"] == "conv-fashion"
    # the same fit in memory: same codes, same seed
    model = artifact.vae()
    codes = flat_codes(model, load_synthetic().train, 500)
    hp = dict(option.split("=") for option in options[1::2])
    torch.manual_seed(4)
    fitted = build_sampler(get_registry(), name, {k: float(v) if "." in v else int(v) for k, v in hp.items()},
                           (1, 32, 32), codes.shape[1])
    fitted.fit(codes)
    for key, value in fitted.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)
    torch.manual_seed(9)
    first = loaded.images(model, 8)
    torch.manual_seed(9)
    assert torch.equal(fitted.images(model, 8), first)
    pictures = [run / f"{name}-{i}.png" for i in range(2)] + [run / "prior.png"]
    for path, sampler_name in zip(pictures, (name, name, "prior")):
        assert cli("sample", str(run), "--sampler", sampler_name, "--seed", "1", "--out", str(path), "--device", "cpu").code == 0
    assert pictures[0].read_bytes() == pictures[1].read_bytes() != pictures[2].read_bytes()


def test_the_default_sampler_is_the_models_prior(run, cli):
    for args, path in ((("--sampler", "prior"), run / "a.png"), ((), run / "b.png")):
        assert cli("sample", str(run), *args, "--out", str(path), "--device", "cpu").code == 0
    assert (run / "a.png").read_bytes() == (run / "b.png").read_bytes()


@pytest.fixture
def fitted_run(run, cli) -> Path:
    assert cli("fit-sampler", str(run), "--sampler", "gmm", "-o", "components=2", "--device", "cpu").code == 0
    return run


def test_draw_gives_the_fitted_samplers_images_as_a_tensor(fitted_run):
    """vaezoo.draw is the same seeded draw as the picture: the loaded sampler's images, in [0, 1]."""
    artifact = open_artifact(fitted_run)
    loaded, _ = load_sampler(artifact, "gmm", get_registry())
    torch.manual_seed(5)
    with torch.no_grad():
        expected = loaded.images(artifact.vae(), 12)
    drawn = vaezoo.draw(fitted_run, 12, sampler="gmm", seed=5, device="cpu")
    assert torch.equal(drawn, expected) and drawn.shape == (12, 1, 32, 32)
    assert 0 <= float(drawn.min()) and float(drawn.max()) <= 1
    assert not torch.equal(vaezoo.draw(fitted_run, 12, seed=5, device="cpu"), drawn)  # the prior's differ
    with pytest.raises(UsageError, match="at least 1"):
        vaezoo.draw(fitted_run, 0)


def _rewrite(path: Path, change) -> None:
    """Rewrite a sampler file through vaezoo's writer with `change(tensors, meta)` applied (valid hash)."""
    tensors, raw = checkpoint.read(path)
    raw.pop(checkpoint.FORMAT_KEY)
    change(tensors, raw)
    raw[checkpoint.HASH_KEY] = checkpoint.content_hash(tensors)
    checkpoint.write(path, tensors, raw)


BAD_FILES = {
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[:40]), "not a readable safetensors"),
    "altered": (lambda p: p.write_bytes(p.read_bytes()[:-8] + b"\x00" * 8), "corrupt"),
    "not vaezoo's": (lambda p: save_file({"a": torch.zeros(1)}, str(p)), "not one written by vaezoo"),
    "other model": (lambda p: _rewrite(p, lambda t, m: m.update(model_hash="sha256:00")), "fitted to another model"),
    "bad hparams": (lambda p: _rewrite(p, lambda t, m: m.update(hparams=json.dumps({"components": -1}))),
                    "do not fit the installed sampler"),
    "wrong size": (lambda p: _rewrite(p, lambda t, m: m.update(code_dim="3")), "codes of 3 values"),
    "wrong shapes": (lambda p: _rewrite(p, lambda t, m: t.update(means=torch.zeros(5, 5, dtype=torch.float64))),
                     "does not match"),
    "non-finite": (lambda p: _rewrite(p, lambda t, m: t["means"].fill_(float("nan"))), "non-finite"),
    "missing metadata": (lambda p: _rewrite(p, lambda t, m: m.pop("model_hash")), "lacks model_hash"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_sampler_file_is_one_error_line_and_changes_nothing(fitted_run, refused, case):
    spoil, words = BAD_FILES[case]
    spoil(fitted_run / "sampler-gmm.safetensors")
    refused("sample", str(fitted_run), "--sampler", "gmm", "--out", str(fitted_run / "new.png"), "--device", "cpu",
            words=(words,), untouched=fitted_run)


def test_an_unfitted_sampler_and_misuse_are_one_line(run, fitted_run, refused):
    refused("sample", str(run), "--sampler", "maf", "--device", "cpu", "--out", str(run / "x.png"),
            words=("has not been fitted", "vaezoo fit-sampler"), untouched=run)
    refused("fit-sampler", str(run), "--sampler", "gmm", "--device", "cpu", words=("already exists",), untouched=run)
    refused("fit-sampler", str(run), "--sampler", "prior", words=("nothing to fit",), untouched=run)
    refused("fit-sampler", str(run), "--sampler", "gmm", "-o", "components=0", words=("components",), untouched=run)
    refused("fit-sampler", str(run), "--sampler", "gmx", words=("unknown sampler", "gmm"), untouched=run)
    refused("sample", str(run), "--sampler", "gmm", "--traverse", words=("--sampler",), untouched=run)


def test_a_model_without_a_flat_code_is_refused_with_one_line(build_variant):
    model, _ = build_variant("conv-fashion")
    model.capabilities = frozenset({"density", "prior-samples"})
    with pytest.raises(UsageError, match="sampler 'gmm' needs flat-code"):
        check_sampler("gmm", GaussianMixtureSampler, model)


def test_overwrite_refits_and_the_file_sits_beside_an_export(small_run, tmp_path, cli):
    exported = vaezoo.export(small_run, tmp_path / "m.safetensors")
    r = vaezoo.fit_sampler(exported, "gmm", hparams={"components": 2}, device="cpu")
    assert r["saved_to"] == str(tmp_path / "m.sampler-gmm.safetensors")
    assert sampler_file(open_artifact(exported), "gmm") == tmp_path / "m.sampler-gmm.safetensors"
    again = vaezoo.fit_sampler(exported, "gmm", hparams={"components": 3}, device="cpu", overwrite=True)
    assert again["hparams"]["components"] == 3 and math.isfinite(again["test_log_prob"])


def test_retraining_over_a_run_deletes_its_fitted_samplers(fitted_run, cli):
    (fitted_run / "notes.txt").write_text("mine")
    result = cli("train", *SMALL_RUN, "--epochs", "1", "--max-steps", "1", "--out", str(fitted_run), "--overwrite")
    assert result.code == 0, result.err
    assert not (fitted_run / "sampler-gmm.safetensors").exists() and (fitted_run / "notes.txt").exists()
