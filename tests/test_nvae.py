"""NVAE: residual posteriors, group KLs, spectral regularisation, SE cells, KL warm-up and balancing,
importance sampling, and a small run through train, evaluate, export, load, sample and resume."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Independent, Normal, kl_divergence
from vaezoo_plugins.nvae import structure
from vaezoo_plugins.nvae.cells import EncoderCell, GenerativeCell, squeeze_excitation
from vaezoo_plugins.nvae.objective import BALANCE_FLOOR, kl_balancing, kl_warmup
from vaezoo_plugins.nvae.residual import Residual
from vaezoo_plugins.nvae.spectral import Conv2d, batchnorm_penalty, spectral_penalty

import vaezoo
from vaezoo.data import as_float
from vaezoo.model import LatentGroup, Pass, Structure
from vaezoo.model.bounds import importance_log_likelihood, log_mean_exp
from vaezoo.model.distributions import DiagonalGaussian
from vaezoo.registry import get_registry

from .conftest import REAL_DATA, train_into
from .test_export import OUTPUTS, outputs_fresh_and_here
from .test_resume import (
    assert_same_results,
    killed_at_first_checkpoint_then_resumed,
)

#: A small hierarchy: two scales of two groups, few channels (fast enough for unit tests).
SMALL = {"channels": 4, "groups_per_scale": 2, "latent_channels": 2, "expand": 2}
SMALL_OPTIONS = tuple(arg for name, value in SMALL.items() for arg in ("-o", f"{name}={value}"))
SMALL_NVAE_RUN = ("nvae", "--dataset", "synthetic", "--batch-size", "256", "--epochs", "2", "--device", "cpu",
                  *SMALL_OPTIONS, "-o", "kl_warmup_steps=3")


def soft_clamp(x):
    return 5 * torch.tanh(x / 5)


@pytest.fixture
def small_model(build_variant):
    model, objective = build_variant("nvae", **SMALL)
    return model, objective


@pytest.fixture
def evaluated(small_model, synthetic):
    """The small model in eval mode and three test images."""
    return small_model[0].eval(), as_float(synthetic.test[:3])


# -- the residual parameterisation and the group KLs ---------------------------------------------------

def test_residual_posterior_is_the_prior_moved_and_its_kl_is_the_closed_form():
    torch.manual_seed(0)
    mu_p, log_sigma_p = torch.randn(5, 7), 0.5 * torch.randn(5, 7)
    delta_mu, delta_log_sigma = 2 * torch.randn(5, 7), torch.randn(5, 7)
    prior = DiagonalGaussian(mu_p, 2 * log_sigma_p)
    residual = Residual(prior, delta_mu, delta_log_sigma)
    q = residual.posterior()
    mean, scale = mu_p + soft_clamp(delta_mu), log_sigma_p.exp() * soft_clamp(delta_log_sigma).exp()
    torch.testing.assert_close(q.mean, mean)
    torch.testing.assert_close(q.stddev, scale)
    generic = kl_divergence(Independent(Normal(mean, scale), 1), Independent(Normal(mu_p, log_sigma_p.exp()), 1))
    torch.testing.assert_close(residual.kl(), generic)


@torch.no_grad()
def test_group_kls_sum_to_a_monte_carlo_estimate_of_the_full_kl(small_model, synthetic):
    """sum_l KL(q(z_l|x, z_<l) || p(z_l|z_<l)) at joint samples averages to E[log q(z|x) - log p(z)]."""
    model, _ = small_model
    model.eval()
    n = 400
    x = as_float(synthetic.test[:1]).expand(n, -1, -1, -1)
    torch.manual_seed(0)
    out = model(x)
    assert len(out.groups) == 4
    joint = sum(g.posterior.log_prob(g.sample) - g.prior.log_prob(g.sample) for g in out.groups)
    difference = out.kl - joint  # paired: the same joint samples
    assert float(out.kl.mean()) > 10  # the posteriors really differ from the priors
    assert abs(float(difference.mean())) < 4 * float(difference.std()) / math.sqrt(n)


# -- spectral regularisation -----------------------------------------------------------------------

@pytest.mark.parametrize("groups", [1, 6])
def test_power_iteration_finds_the_spectral_norm_and_its_gradient(groups):
    torch.manual_seed(1)
    conv = Conv2d(6, 12, 3, groups=groups)
    reference = conv.weight.detach().clone().requires_grad_()
    exact = torch.linalg.matrix_norm(reference.reshape(12, -1), ord=2)
    exact.backward()
    sigma = conv.spectral_norm(steps=50)
    sigma.backward()
    assert sigma.item() == pytest.approx(exact.item(), rel=1e-4)
    torch.testing.assert_close(conv.weight.grad, reference.grad, rtol=1e-3, atol=1e-4)
    assert {"sr_u", "sr_v"} <= set(conv.state_dict())


def test_penalties_sum_over_every_convolution_and_batchnorm(small_model):
    model, _ = small_model
    convs = [m for m in model.modules() if isinstance(m, Conv2d)]
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(convs) > 30 and len(bns) > 20
    with torch.no_grad():
        bns[3].weight[1] = -4.0
        expected = sum(float(torch.linalg.matrix_norm(c.weight.reshape(c.out_channels, -1), ord=2)) for c in convs)
        for _ in range(10):  # the power iteration converges over the steps
            penalty = spectral_penalty(model.modules())
        assert float(penalty) == pytest.approx(expected, rel=1e-3)
        assert float(batchnorm_penalty(model.modules())) == pytest.approx(len(bns) - 1 + 4.0)


def test_training_pass_adds_the_weighted_penalties_and_evaluation_does_not(build_variant):
    model, _ = build_variant("nvae", spectral_weight=0.5, **SMALL)
    x = torch.rand(4, 1, 32, 32)
    u = {k: v.clone() for k, v in model.state_dict().items() if k.endswith("sr_u")}
    out = model(x)
    assert out.losses["bn_scale"].item() == pytest.approx(0.5 * batchnorm_penalty(model.modules()).item())
    assert out.losses["spectral"].item() > 0
    moved = {k: v for k, v in model.state_dict().items() if k.endswith("sr_u")}
    assert any(not torch.equal(u[k], moved[k]) for k in u)  # the power iteration advanced, in buffers
    model.eval()
    assert model(x).losses == {}
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in moved.items())


# -- cells ----------------------------------------------------------------------------------------

def _randomise(module):
    """Random weights and BatchNorm statistics, so a hand computation checks every parameter."""
    torch.manual_seed(3)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn_like(m.running_mean))
                m.running_var.copy_(torch.rand_like(m.running_var) + 0.5)
    return module.eval()


def _bn(x, bn):
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return (x - bn.running_mean[:, None, None]) * scale[:, None, None] + bn.bias[:, None, None]


def _se(x, se):
    """Squeeze-and-excitation by hand: channel means, a ReLU layer, a sigmoid layer, channel scaling."""
    w1, b1 = se.fc1.weight.flatten(1), se.fc1.bias
    w2, b2 = se.fc2.weight.flatten(1), se.fc2.bias
    gate = torch.sigmoid(torch.relu(x.mean((2, 3)) @ w1.T + b1) @ w2.T + b2)
    return x * gate[:, :, None, None]


def test_squeeze_excitation_by_hand():
    se = _randomise(squeeze_excitation(80))
    assert se.fc1.out_channels == 5 and squeeze_excitation(32).fc1.out_channels == 4  # max(C / 16, 4)
    x = torch.randn(3, 80, 5, 5)
    torch.testing.assert_close(se(x), _se(x, se))


def test_encoder_cell_by_hand():
    cell = _randomise(EncoderCell(6))
    bn1, _, conv1, bn2, _, conv2, se = cell.branch
    x = torch.randn(2, 6, 8, 8)
    h = F.conv2d(F.silu(_bn(x, bn1)), conv1.weight, conv1.bias, padding=1)
    h = F.conv2d(F.silu(_bn(h, bn2)), conv2.weight, conv2.bias, padding=1)
    torch.testing.assert_close(cell(x), x + 0.1 * _se(h, se))


def test_generative_cell_by_hand():
    cell = _randomise(GenerativeCell(4, expand=3))
    bn0, expand, bn1, _, depthwise, bn2, _, project, bn3, se = cell.branch
    assert depthwise.groups == depthwise.in_channels == 12 and depthwise.kernel_size == (5, 5)
    x = torch.randn(2, 4, 8, 8)
    h = F.conv2d(_bn(x, bn0), expand.weight)
    h = F.conv2d(F.silu(_bn(h, bn1)), depthwise.weight, padding=2, groups=12)
    h = _bn(F.conv2d(F.silu(_bn(h, bn2)), project.weight), bn3)
    torch.testing.assert_close(cell(x), x + 0.1 * _se(h, se))


@pytest.mark.parametrize("training", [False, True])
def test_up_cell_is_nvaes_order_of_operations(training):
    """NVlabs/NVAE upsamples first (nearest in the branch, bilinear before the skip's 1x1 conv); the cell
    does it later, where it is cheaper: the same output, with running or with batch statistics."""
    cell = _randomise(GenerativeCell(4, expand=2, resample=1)).train(training)
    bn0, expand, bn1, _, _, depthwise, bn2, _, project, bn3, se = cell.branch

    def norm(h, bn):
        if not training:
            return _bn(h, bn)
        mean, var = h.mean((0, 2, 3)), h.var((0, 2, 3), correction=0)
        return (h - mean[:, None, None]) / torch.sqrt(var[:, None, None] + bn.eps) * bn.weight[:, None, None] + bn.bias[:, None, None]

    x = torch.randn(3, 4, 6, 6)
    up = F.interpolate(x, scale_factor=2, mode="nearest")
    h = F.conv2d(norm(up, bn0), expand.weight)
    h = F.conv2d(F.silu(norm(h, bn1)), depthwise.weight, padding=2, groups=8)
    h = norm(F.conv2d(F.silu(norm(h, bn2)), project.weight), bn3)
    skip = cell.skip.conv
    skip = F.conv2d(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True), skip.weight, skip.bias)
    torch.testing.assert_close(cell(x), skip + 0.1 * _se(h, se), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cell, shape", [(lambda: EncoderCell(6, -1), (2, 12, 4, 4)),
                                         (lambda: GenerativeCell(6, 2, 1), (2, 3, 16, 16))])
def test_resampling_cells_change_resolution_and_channels(cell, shape):
    assert cell()(torch.randn(2, 6, 8, 8)).shape == shape


# -- KL warm-up and balancing ----------------------------------------------------------------------

def test_warmup_schedule():
    assert [kl_warmup(step, 100, 1e-4) for step in (0, 1, 50, 100, 250)] == [1e-4, 0.01, 0.5, 1.0, 1.0]
    assert kl_warmup(0, 100, 0.2) == 0.2 and kl_warmup(0, 0, 1e-4) == 1.0


def test_balancing_coefficients_on_a_hand_case():
    kl = torch.tensor([[1.0, 4.0, 0.0], [3.0, -8.0, 0.0]])  # a Monte Carlo KL may be negative: |KL| counts
    sizes = torch.tensor([2.0, 4.0, 1.0])
    per_variable = torch.tensor([2.01 / 2, 6.01 / 4, 0.01 / 1])  # (mean |KL| + 0.01) / size
    gamma = kl_balancing(kl, sizes)
    torch.testing.assert_close(gamma, 3 * per_variable / per_variable.sum())
    assert float(gamma.mean()) == pytest.approx(1.0)
    assert BALANCE_FLOOR == 0.01
    equal = kl_balancing(torch.tensor([[200.0, 400.0]]), torch.tensor([1.0, 2.0]))  # same KL per variable
    torch.testing.assert_close(equal, torch.ones(2), rtol=1e-4, atol=0)


def _pass_with_group_kls(kl: torch.Tensor, sizes: list[int]) -> Pass:
    groups = [LatentGroup(torch.zeros(kl.shape[0], size), kl[:, g]) for g, size in enumerate(sizes)]
    return Pass(groups, torch.zeros(1), torch.full((kl.shape[0],), 100.0))


@pytest.mark.parametrize("step", [0, 500, 3000, 5000])
def test_objective_weights_the_group_kls_and_logs_the_true_ones(small_model, step):
    model, objective = small_model  # kl_warmup_steps 3000 by default
    objective.l2_weight = 0.0
    kl = torch.tensor([[1.0, 5.0, 2.0], [3.0, 7.0, 0.5]], requires_grad=True)
    sizes = [4, 16, 16]
    terms = objective.terms(model, _pass_with_group_kls(kl, sizes), step)
    beta = max(min(step / 3000, 1.0), 1e-4)
    gamma = kl_balancing(kl.detach(), torch.tensor(sizes, dtype=torch.float32)) if beta < 1 else torch.ones(3)
    value = {key: terms[key].item() for key in ("loss", "kl", "neg_elbo", "kl_coeff")}
    assert value["loss"] == pytest.approx(100 + beta * float((kl.detach() * gamma).sum(1).mean()), rel=1e-6)
    assert value["kl"] == pytest.approx(float(kl.detach().sum(1).mean()))
    assert value["neg_elbo"] == pytest.approx(100 + value["kl"])
    assert value["kl_coeff"] == pytest.approx(beta)
    terms["loss"].backward()  # the coefficients are constants in the gradient
    torch.testing.assert_close(kl.grad, (beta * gamma / 2).expand(2, 3))


# -- importance sampling, pictures ----------------------------------------------------------------------

@torch.no_grad()
def test_importance_draw_equals_the_generic_path(evaluated):
    model, x = evaluated
    torch.manual_seed(4)
    fast = model.importance_draw(x)(5)
    torch.manual_seed(4)
    generic = Structure.importance_draw(model, x)(5)
    for a, b in zip(fast, generic):
        assert a.shape == (5, 3)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-3)


@torch.no_grad()
def test_importance_draws_in_several_passes_agree_with_the_generic_path(evaluated, monkeypatch):
    """Passes of at most PASS_IMAGES images: the same log-weight distribution, in the right shape."""
    model, x = evaluated
    monkeypatch.setattr(structure, "PASS_IMAGES", 6)  # 2 samples per pass
    torch.manual_seed(8)
    chunked = sum(model.importance_draw(x)(150))
    generic = sum(Structure.importance_draw(model, x)(150))
    assert chunked.shape == generic.shape == (150, 3)
    error = ((chunked.var(0) + generic.var(0)) / 150).sqrt()
    assert torch.all((chunked.mean(0) - generic.mean(0)).abs() < 4 * error)


@torch.no_grad()
def test_importance_sampled_bound_rises_with_k(evaluated):
    """384 draws per image, split into independent sets of k: the k-sample bound grows with k."""
    model, x = evaluated
    torch.manual_seed(5)
    log_w = sum(model.importance_draw(x)(384))  # [384, B]
    bounds = {k: log_mean_exp(log_w.reshape(384 // k, k, -1), dim=1).mean(0) for k in (1, 8, 64)}
    assert torch.all(bounds[1] < bounds[8]) and torch.all(bounds[8] < bounds[64])
    assert torch.all(bounds[64] - bounds[1] > 1.0)
    torch.manual_seed(5)
    assert torch.allclose(importance_log_likelihood(model, x, 384), log_mean_exp(log_w))  # evaluation's estimate


@torch.no_grad()
def test_codes_samples_and_reconstructions(small_model, synthetic):
    model, _ = small_model
    model.eval()
    x = as_float(synthetic.test[:5])
    code = model.representation(x)
    assert code.shape == (5, 2 * 4 * 4)  # the top group: 2 channels at 4x4
    torch.testing.assert_close(code, model(x).groups[0].posterior.mean)
    images = model.decode_representation(code)
    assert images.shape == x.shape and images.min() >= 0 and images.max() <= 1
    assert model.reconstruct(x).shape == x.shape
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(6)
    first = model.sample(3)
    torch.manual_seed(6)
    assert torch.equal(model.sample(3), first) and first.shape == (3, 1, 32, 32)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # BN readjusted on a copy


def test_inference_parameters_are_those_of_the_posteriors_only(small_model):
    """The encoder's parameters move every posterior; given the codes, the priors and the decoder
    output do not depend on them."""
    model, _ = small_model
    inference = list(model.inference_parameters())
    assert {id(p) for p in inference}.isdisjoint(id(p) for p in model.decoder.parameters())
    assert len(inference) + len(list(model.decoder.parameters())) == len(list(model.parameters()))
    out = model(torch.rand(4, 1, 32, 32))
    codes = [g.sample.detach() for g in out.groups]
    priors = []

    def given(group, state, prior):
        priors.append(prior.log_prob(codes[group]).sum())
        return codes[group]

    generative = model.decoder(4, given).sum() + sum(priors)
    posterior = sum(g.posterior.log_prob(z).sum() for g, z in zip(out.groups, codes))
    assert all(g is None for g in torch.autograd.grad(generative, inference, allow_unused=True))
    assert all(g is not None for g in torch.autograd.grad(posterior, inference, allow_unused=True))


def test_variant_is_registered_torch_free_with_its_parts():
    code = ("import sys\nfrom vaezoo.registry import get_registry\nr = get_registry()\n"
            "spec = r.variant('nvae')\nassert spec.structure == 'nvae-hierarchy' and spec.objective == 'nvae-elbo'\n"
            "assert 'torch' not in sys.modules")
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0
    assert "nvae-hierarchy" in get_registry().names("structure")


# -- a small run: train, evaluate, export, load, sample, resume -----------------------------------------

@pytest.fixture(scope="module")
def nvae_run(tmp_path_factory) -> Path:
    """Two epochs of 4 steps of a small hierarchy on the synthetic set."""
    return train_into(tmp_path_factory.mktemp("nvae") / "run", *SMALL_NVAE_RUN)


@pytest.mark.slow
def test_run_evaluates_exports_and_loads_in_a_fresh_process(nvae_run, tmp_path, cli):
    records = [json.loads(line) for line in (nvae_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [4, 8]
    assert len(records[-1]["test"]["kl_per_group"]) == 4 and math.isfinite(records[-1]["test"]["neg_elbo"])
    assert {"spectral", "bn_scale", "kl_coeff"} <= set(records[-1]["train"])
    assert all((nvae_run / name).is_file() for name in ("samples.png", "reconstructions.png", "traversals.png"))

    run = shutil.copytree(nvae_run, tmp_path / "run")
    result = cli("evaluate", str(run), "-k", "4", "--batch-size", "128")
    assert result.code == 0, result.err
    measures = json.loads((run / "eval.json").read_text())
    assert measures["nll"] <= measures["neg_elbo"] + 1.0 and measures["importance_samples"] == 4
    assert measures["active_units"] <= 32 and "not_applicable" not in measures

    fresh, here = outputs_fresh_and_here(OUTPUTS, vaezoo.export(run, tmp_path / "nvae.safetensors"), run, tmp_path)
    assert sorted(fresh) == ["kl", "mean", "recon", "samples", "z"]  # z: the top group's sample
    for key, value in fresh.items():
        assert torch.equal(value, here[key]), key

    decoder = vaezoo.load(vaezoo.export(run, tmp_path / "decoder.safetensors", part="decoder"))
    assert any(k.endswith("sr_u") for k in decoder.state_dict())  # the spectral state travels with the weights
    for mode in ("prior", "reconstruct", "traverse"):
        assert vaezoo.sample(run, tmp_path / "pictures" / f"{mode}.png", mode=mode, n=4).is_file()


@pytest.mark.slow
def test_sigkill_then_resume_matches_an_uninterrupted_run(nvae_run, tmp_path, cli):
    run = tmp_path / "run"
    killed_at_first_checkpoint_then_resumed(cli, run, *SMALL_NVAE_RUN)
    assert_same_results(run, nvae_run)


@pytest.mark.slow
@pytest.mark.skipif(not REAL_DATA.is_dir(), reason="FashionMNIST not at /usr/share/datasets/fashion-mnist")
def test_two_hundred_steps_on_fashion_mnist_are_finite(cli, tmp_path):
    result = cli("train", "nvae", "--data-dir", str(REAL_DATA), "--device", "cpu", "--max-steps", "200",
                 "--out", str(tmp_path / "run"))
    assert result.code == 0, result.err
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    train, test = record["train"], record["test"]
    assert all(math.isfinite(train[key]) for key in ("loss", "recon", "kl", "spectral", "bn_scale"))
    assert 150 < test["neg_elbo"] < 700 and test["kl"] > 1.0  # learning, and the latent groups are used
