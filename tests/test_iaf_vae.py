"""iaf-vae: MADE's masks, the IAF step's log-determinant, inverse and cache, log q(z|x) by change of
variables, the Monte Carlo KL against closed forms and quadrature, and the run's whole life."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from torch.autograd.functional import jacobian
from torch.distributions import TransformedDistribution
from vaezoo_plugins.standard.flows import AffineAutoregressive
from vaezoo_plugins.standard.made import MADE, step_order

from vaezoo.errors import UsageError
from vaezoo.model import DiagonalGaussian
from vaezoo.testing import build_variant

from .conftest import REAL_DATA, train_into
from .quadrature import grid, integral
from .test_export import OUTPUTS
from .test_resume import (
    assert_same_results,
    killed_after_last_metrics,
    killed_at_first_checkpoint_then_resumed,
)

SMALL = {"latent_dim": 4, "iaf_hidden": 16, "iaf_steps": 3}
RUN_ARGS = ("iaf-vae", "--dataset", "synthetic", "--batch-size", "512", "--epochs", "2", "--device", "cpu",
            "-o", "iaf_hidden=32")


def random_made(features: int, context: int = 3, order=None, seed: int = 0, scale: float = 0.5) -> MADE:
    """A MADE with generic weights N(0, scale^2), in float64."""
    torch.manual_seed(seed)
    made = MADE(features, (16, 16), outputs=2, context=context, order=order).double()
    with torch.no_grad():
        for p in made.parameters():
            p.normal_(0, scale)
    return made


def small_model(**overrides):
    model, _ = build_variant("iaf-vae", **{**SMALL, **overrides})
    return model.double().eval()


def flow_map(q: TransformedDistribution):
    """z0 -> z_T through fresh, cache-free copies of q's steps: independent of q's own bookkeeping."""
    def f(z0):
        for step in q.transforms:
            z0 = AffineAutoregressive(step.made, step.context, gated=step.gated, cache_size=0)(z0)
        return z0
    return f


@pytest.mark.parametrize("order", [[0, 1, 2, 3, 4], [4, 3, 2, 1, 0], [2, 0, 4, 1, 3]])
def test_made_outputs_read_only_the_variables_before_them(order):
    made = random_made(5, order=order)
    x, c = torch.randn(5, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    d_out = jacobian(lambda v: made(v, c), x)  # [outputs, i, k]: d out_i / d x_k
    rank = torch.tensor(order)
    before = rank[None, :] < rank[:, None]  # [i, k]: k comes before i
    assert torch.all(d_out[:, ~before] == 0)
    assert torch.all(d_out[:, before].abs() > 1e-8)  # and every allowed connection is used
    assert torch.all(jacobian(lambda h: made(x, h), c).abs().sum(-1) > 0)  # the context reaches every output


def test_step_orders_reverse_every_other_step():
    assert step_order(3, 0, True).tolist() == [0, 1, 2] and step_order(3, 1, True).tolist() == [2, 1, 0]
    assert step_order(3, 1, False).tolist() == [0, 1, 2]


@pytest.mark.parametrize("gated", [True, False])
def test_step_log_det_is_that_of_the_autograd_jacobian(gated):
    made = random_made(4, order=[3, 1, 0, 2])
    step = AffineAutoregressive(made, torch.randn(3, dtype=torch.float64), gated=gated, cache_size=0)
    x = torch.randn(4, dtype=torch.float64)
    _, log_det = torch.linalg.slogdet(jacobian(step, x))
    torch.testing.assert_close(step.log_abs_det_jacobian(x, step(x)), log_det)


@pytest.mark.parametrize("gated", [True, False])
def test_inverse_undoes_the_step_with_sample_dimensions(gated):
    torch.manual_seed(0)
    made = MADE(4, (16, 16), outputs=2, context=3).double()  # as initialised for training
    step = AffineAutoregressive(made, torch.randn(6, 3, dtype=torch.float64), gated=gated, cache_size=0)
    x = torch.randn(5, 6, 4, dtype=torch.float64)  # [S, B, D] against a context [B, C]
    torch.testing.assert_close(step._inverse(step._call(x)), x)
    y = torch.randn(5, 6, 4, dtype=torch.float64)
    torch.testing.assert_close(step._call(step._inverse(y)), y)


def test_log_q_by_change_of_variables_matches_an_autograd_computation():
    model = small_model()
    x = torch.rand(1, 1, 32, 32, dtype=torch.float64)
    q = model.encoder(x)
    torch.manual_seed(3)
    z = q.rsample()
    torch.manual_seed(3)
    z0 = q.base_dist.rsample()  # the same noise, drawn again
    f = flow_map(q)
    torch.testing.assert_close(z, f(z0))
    _, log_det = torch.linalg.slogdet(jacobian(lambda v: f(v[None])[0], z0[0]))  # the whole stack
    expected = q.base_dist.log_prob(z0) - log_det
    torch.testing.assert_close(q.log_prob(z), expected)  # through the cache
    torch.testing.assert_close(q.log_prob(z.clone()), expected)  # through the inverse


def test_log_prob_of_a_fresh_sample_never_inverts(monkeypatch):
    model = small_model()
    x = torch.rand(3, 1, 32, 32, dtype=torch.float64)

    def refuse(self, y):
        raise AssertionError("inverted a sample the flow had just drawn")

    monkeypatch.setattr(AffineAutoregressive, "_inverse", refuse)
    q = model.encoder(x)
    z = q.rsample((5,))
    assert q.log_prob(z).shape == (5, 3)
    log_px_z, log_ratio = model.importance_draw(x)(7)  # the structure's fast path
    assert log_px_z.shape == log_ratio.shape == (7, 3) and torch.isfinite(log_ratio).all()
    assert torch.isfinite(model(x).kl).all()  # the training pass's Monte Carlo KL


@pytest.mark.parametrize("gate_bias", [30.0, 0.5], ids=["identity", "affine"])
def test_monte_carlo_kl_is_unbiased_for_steps_with_a_closed_form(gate_bias):
    """Steps whose MADE ignores z are elementwise affine maps, so q stays Gaussian: z_T = a z_0 + c.
    With the gates saturated (sigma = 1) the flow is the identity and the KL is the base Gaussian's."""
    model = small_model()
    torch.manual_seed(1)
    a, c = torch.ones(4, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
    with torch.no_grad():
        for made in model.encoder.steps:
            made.out.weight.zero_()
            made.out.bias.copy_(torch.cat([torch.randn(4), gate_bias + 0.3 * torch.randn(4)]))
            m, s = made.out.bias[:4], made.out.bias[4:]
            sigma = torch.sigmoid(s)
            a, c = sigma * a, sigma * c + (1 - sigma) * m
    x = torch.rand(2, 1, 32, 32, dtype=torch.float64)
    q, p = model.encoder(x), model.prior()
    base = q.base_dist
    closed = DiagonalGaussian(a * base.mu + c, base.logvar + 2 * torch.log(a)).kl_per_dim(p).sum(-1)
    z = q.rsample((20_000,))
    estimates = model.divergence(q, z, p)  # the variant's own divergence, monte-carlo-kl
    se = estimates.std(0) / math.sqrt(z.shape[0])
    assert torch.all((estimates.mean(0) - closed).abs() < 4 * se + 1e-9)
    if gate_bias > 10:
        torch.testing.assert_close(closed, base.kl_per_dim(p).sum(-1))


def test_monte_carlo_kl_of_a_nonlinear_flow_matches_quadrature():
    """A 2-D flow of three steps with generic MADEs: its density integrates to one on a grid, and the
    Monte Carlo KL to N(0, I) matches the same KL by quadrature."""
    steps = [AffineAutoregressive(random_made(2, order=step_order(2, t, True), seed=t, scale=0.3),
                                  torch.randn(3, dtype=torch.float64)) for t in range(3)]
    base = DiagonalGaussian(torch.tensor([0.4, -0.3], dtype=torch.float64), torch.tensor([-0.4, 0.3], dtype=torch.float64))
    q = TransformedDistribution(base, steps, validate_args=False)
    p = DiagonalGaussian(torch.zeros(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64))
    points, volume = grid(2, -4, 4, 401)
    with torch.no_grad():
        log_q = q.log_prob(points)
    assert integral(log_q.exp(), volume) == pytest.approx(1.0, abs=2e-3)
    by_quadrature = integral(log_q.exp() * (log_q - p.log_prob(points)), volume)
    torch.manual_seed(2)
    with torch.no_grad():
        z = q.rsample((40_000,))
        estimates = q.log_prob(z) - p.log_prob(z)
    se = float(estimates.std()) / math.sqrt(z.shape[0])
    assert abs(float(estimates.mean()) - by_quadrature) < 4 * se


def test_representation_is_the_base_mean_through_the_flow():
    model = small_model()
    x = torch.rand(3, 1, 32, 32, dtype=torch.float64)
    q = model.encoder(x)
    torch.testing.assert_close(model.representation(x), flow_map(q)(q.base_dist.mu))


def test_the_encoder_is_refused_as_its_own_base():
    with pytest.raises(UsageError, match="is an IAF encoder itself"):
        build_variant("iaf-vae", iaf_base="iaf")


def test_the_flow_capabilities_and_parameters():
    model = small_model(iaf_ordering="fixed")
    assert {"density", "flat-code", "prior-samples"} <= model.capabilities
    assert "gaussian-posterior" not in model.capabilities  # so gaussian-kl is refused with one line
    assert len(model.encoder.steps) == 3 and all(torch.equal(m.hidden[0].mask, model.encoder.steps[0].hidden[0].mask)
                                                  for m in model.encoder.steps)
    with pytest.raises(UsageError, match="gaussian-posterior"):
        build_variant("iaf-vae", parts={"divergence": "gaussian-kl"}, **SMALL)


def test_registration_does_not_import_torch():
    code = ("import sys\nimport vaezoo_plugins.iaf_vae\n"
            "from vaezoo.registry import get_registry\n"
            "assert 'iaf-vae' in get_registry().names('variant')\n"
            "assert 'torch' not in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def iaf_run(tmp_path_factory) -> Path:
    return train_into(tmp_path_factory.mktemp("iaf") / "run", *RUN_ARGS)


def test_a_run_evaluates_with_its_density_and_samples(iaf_run, tmp_path, cli):
    run = Path(shutil.copytree(iaf_run, tmp_path / "run"))  # a post-hoc sampler is written into it
    result = cli("evaluate", str(iaf_run), "-k", "20", "--out", str(tmp_path / "eval.json"), "--device", "cpu")
    assert result.code == 0, result.err
    measures = json.loads((tmp_path / "eval.json").read_text())
    assert measures["kl_estimated"] is True and "nll" not in measures.get("not_applicable", {})
    assert math.isfinite(measures["nll"]) and measures["nll"] <= measures["neg_elbo"] + 1.0
    assert measures["active_units"] >= 0 and len(measures["posterior_mean_variance"]) == 10
    assert cli("fit-sampler", str(run), "--sampler", "gmm", "-o", "components=3", "--device", "cpu").code == 0
    for args in ((), ("--traverse",), ("--sampler", "gmm")):
        out = tmp_path / f"pic{len(args)}{args[-1] if args else ''}.png"
        done = cli("sample", str(run), *args, "--out", str(out), "--device", "cpu")
        assert done.code == 0 and out.stat().st_size > 0, done.err


def test_a_run_resumes_after_a_kill_between_metrics_and_checkpoint(iaf_run, tmp_path, cli):
    run = killed_after_last_metrics(iaf_run, tmp_path / "run")
    result = cli("train", "--resume", str(run), "--device", "cpu")
    assert result.code == 0, result.err
    assert_same_results(run, iaf_run)


@pytest.mark.slow
def test_an_export_loads_in_a_fresh_process_with_equal_outputs(iaf_run, tmp_path, cli):
    exported = tmp_path / "iaf.safetensors"
    assert cli("export", str(iaf_run), "--out", str(exported)).code == 0
    for source, name in ((exported, "fresh"), (iaf_run, "run")):
        done = subprocess.run([sys.executable, "-c", OUTPUTS, str(source), str(tmp_path / f"{name}.safetensors")],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    with safe_open(tmp_path / "fresh.safetensors", "pt") as a, safe_open(tmp_path / "run.safetensors", "pt") as b:
        for key in a.keys():
            assert torch.equal(a.get_tensor(key), b.get_tensor(key)), key


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(iaf_run, tmp_path, cli):
    run = tmp_path / "run"
    killed_at_first_checkpoint_then_resumed(cli, run, *RUN_ARGS)
    assert_same_results(run, iaf_run)


@pytest.mark.slow
@pytest.mark.skipif(not (REAL_DATA / "train-images-idx3-ubyte.gz").exists(), reason="FashionMNIST not installed")
def test_two_hundred_steps_on_fashion_mnist_are_finite(cli, tmp_path):
    result = cli("train", "iaf-vae", "--data-dir", str(REAL_DATA), "--device", "cpu", "--max-steps", "200",
                 "--out", str(tmp_path / "run"))
    assert result.code == 0, result.err
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert all(math.isfinite(record[split][key]) for split in ("train", "test") for key in ("neg_elbo", "kl"))
    assert record["test"]["neg_elbo"] < 600 and record["test"]["kl"] > 0  # learning, and the posterior is used
