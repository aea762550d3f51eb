"""The structure-independent core: distributions, the pass record, capabilities, importance sampling
through any structure, part swaps with their own hyperparameters, and evaluation's true ELBO terms."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn
from torch.distributions import (
    Categorical,
    Independent,
    MixtureSameFamily,
    Normal,
    TransformedDistribution,
    kl_divergence,
)
from torch.distributions.transforms import AffineTransform, ExpTransform

from vaezoo.data import as_float
from vaezoo.errors import NotApplicable, UsageError
from vaezoo.evaluation.measures import evaluate
from vaezoo.hparams import HParams
from vaezoo.model import (
    BuildContext,
    LatentGroup,
    Pass,
    Structure,
    build_model,
    build_objective,
)
from vaezoo.model.bounds import importance_log_likelihood
from vaezoo.model.distributions import (
    DiagonalGaussian,
    as_diagonal_gaussian,
    central_value,
    kl_or_estimate,
)
from vaezoo.registry import get_registry
from vaezoo.testing import build_variant


def test_diagonal_gaussian_is_a_torch_distribution_that_agrees_with_torch():
    torch.manual_seed(0)
    mu, logvar = torch.randn(5, 3), torch.randn(5, 3)
    q = DiagonalGaussian(mu, logvar)
    reference = Independent(Normal(mu, (0.5 * logvar).exp()), 1)
    z = torch.randn(7, 5, 3)
    assert q.batch_shape == (5,) and q.event_shape == (3,)
    torch.testing.assert_close(q.log_prob(z), reference.log_prob(z))
    torch.testing.assert_close(q.entropy(), reference.entropy())
    torch.testing.assert_close(q.variance, reference.variance)
    p = DiagonalGaussian(torch.randn(3), torch.randn(3))  # broadcasts like a prior
    p_reference = Independent(Normal(p.mu, p.std), 1)
    torch.testing.assert_close(kl_divergence(q, p), kl_divergence(reference, p_reference))
    torch.testing.assert_close(kl_divergence(q, p_reference), kl_divergence(reference, p_reference))
    torch.testing.assert_close(kl_divergence(reference, p), kl_divergence(reference, p_reference))
    assert as_diagonal_gaussian(reference).logvar.allclose(logvar, atol=1e-6)


def test_kl_is_closed_form_where_known_and_an_unbiased_estimate_elsewhere():
    q = DiagonalGaussian(torch.tensor([[0.3, -0.2]]), torch.tensor([[-0.5, 0.2]]))
    closed, exact = kl_or_estimate(q, DiagonalGaussian(torch.zeros(2), torch.zeros(2)), None)
    assert exact and closed.shape == (1,)
    components = DiagonalGaussian(torch.tensor([[-1.0, 0.0], [1.0, 0.5]]), torch.tensor([[0.0, 0.0], [-0.3, 0.1]]))
    mixture = MixtureSameFamily(Categorical(logits=torch.zeros(2)), components)
    torch.manual_seed(1)
    z = q.rsample((40_000,))
    estimates, exact = kl_or_estimate(q, mixture, z)
    assert not exact
    # the reference: the same expectation by quadrature on a 2-D grid
    grid = torch.linspace(-8, 8, 801)
    zz = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 1, 2)
    log_q, log_p = q.log_prob(zz)[:, 0], mixture.log_prob(zz[:, 0])
    by_quadrature = float((log_q.exp() * (log_q - log_p)).sum() * (grid[1] - grid[0]) ** 2)
    se = float(estimates.std()) / math.sqrt(estimates.numel())
    assert abs(float(estimates.mean()) - by_quadrature) < 4 * se


def test_central_value_carries_the_base_mean_through_a_flow():
    base = DiagonalGaussian(torch.tensor([[0.5, -1.0]]), torch.zeros(1, 2))
    flow = TransformedDistribution(base, [AffineTransform(2.0, 3.0), ExpTransform()])
    assert torch.allclose(central_value(flow), torch.exp(2.0 + 3.0 * base.mu))
    assert torch.equal(central_value(base), base.mu)


class LinearGaussianHierarchy(Structure):
    """z2 ~ N(0, 1), z1 | z2 ~ N(a z2, s1^2), x | z1 ~ N(b z1, s0^2) on one 'pixel' (a Gaussian
    likelihood written here), with posteriors q(z2|x) and q(z1|x, z2) that are deliberately not exact.
    It does not override importance_draw: the core's default path through forward is under test."""

    capabilities = frozenset({"density"})
    a, s1, b, s0 = 0.8, 0.6, 1.5, 0.5

    def __init__(self):
        super().__init__()
        self.input_shape = (1, 1, 1)

    def forward(self, x: torch.Tensor) -> Pass:
        x1 = x.flatten(1)
        q2 = DiagonalGaussian(0.4 * x1, torch.full_like(x1, math.log(0.7)))
        z2 = q2.rsample()
        p2 = DiagonalGaussian(torch.zeros_like(z2), torch.zeros_like(z2))
        q1 = DiagonalGaussian(0.3 * x1 + 0.2 * z2, torch.full_like(x1, math.log(0.3)))
        z1 = q1.rsample()
        p1 = DiagonalGaussian(self.a * z2, torch.full_like(z2, 2 * math.log(self.s1)))
        likelihood = DiagonalGaussian(self.b * z1, torch.full_like(z1, 2 * math.log(self.s0)))
        groups = [LatentGroup(z, kl_or_estimate(q, p, z)[0], q, p, name=name)
                  for name, q, z, p in (("top", q2, z2, p2), ("bottom", q1, z1, p1))]
        return Pass(groups, likelihood.mean, -likelihood.log_prob(x1))

    def log_px(self, x: np.ndarray) -> np.ndarray:
        """Exact: x ~ N(0, b^2 (a^2 + s1^2) + s0^2)."""
        var = self.b**2 * (self.a**2 + self.s1**2) + self.s0**2
        return -0.5 * (np.log(2 * np.pi * var) + x**2 / var)


@torch.no_grad()
def test_importance_sampling_through_any_structure_converges_to_a_hierarchys_log_px():
    model = LinearGaussianHierarchy()
    x = torch.tensor([-2.0, -0.5, 0.0, 1.0, 2.5]).view(5, 1, 1, 1)
    exact = model.log_px(x.flatten().numpy())
    torch.manual_seed(0)
    gaps = {}
    for k, repeats in ((1, 200), (10, 100), (3000, 8)):
        estimates = torch.stack([importance_log_likelihood(model, x, k) for _ in range(repeats)]).double().numpy()
        gaps[k] = (exact - estimates.mean(0), estimates.std(0) / repeats**0.5)
    assert np.all(gaps[1][0] > gaps[10][0])  # the bound tightens with k...
    assert np.all(gaps[10][0] > -4 * gaps[10][1])  # ...from below...
    assert np.all(np.abs(gaps[3000][0]) < 4 * gaps[3000][1] + 2e-3)  # ...to the exact log p(x)


@torch.no_grad()
def test_hierarchy_group_kls_sum_to_a_monte_carlo_kl_of_the_joint():
    """sum_g E KL(q(z_g|.) || p(z_g|.)) equals E[log q(z1, z2|x) - log p(z1, z2)] over joint samples."""
    model = LinearGaussianHierarchy()
    x = torch.full((40_000, 1, 1, 1), 1.3)
    torch.manual_seed(2)
    out = model(x)
    joint = sum(g.posterior.log_prob(g.sample) - g.prior.log_prob(g.sample) for g in out.groups)
    se = float(joint.std()) / math.sqrt(joint.numel())
    assert abs(float(out.kl.mean()) - float(joint.mean())) < 4 * se


@torch.no_grad()
def test_default_importance_draw_matches_the_single_latent_fast_path():
    model, _ = build_variant("conv-fashion", latent_dim=3)
    x = torch.rand(4, 1, 32, 32)
    torch.manual_seed(5)
    fast = sum(model.importance_draw(x)(6))
    torch.manual_seed(5)
    general = sum(Structure.importance_draw(model, x)(6))
    torch.testing.assert_close(general, fast, rtol=1e-5, atol=1e-3)


def test_evaluation_reports_the_true_kl_for_a_divergence_that_is_not_the_kl():
    """gjs-vae trains on JS-G, but its ELBO terms are recon + the closed-form KL; JS-G is reported apart."""
    model, _ = build_variant("gjs-vae", latent_dim=3)
    with torch.no_grad():
        model.encoder.mu.bias.fill_(2.0)  # push q away from the prior: JS-G and KL then differ a lot
    images = (torch.rand(50, 1, 32, 32) * 255).to(torch.uint8)
    torch.manual_seed(0)
    result = evaluate(model.eval(), images, k=2, batch_size=20)
    q = model.encoder(as_float(images))
    kl = float(0.5 * (q.logvar.exp() + q.mu**2 - 1 - q.logvar).sum(1).mean())
    assert result["kl"] == pytest.approx(kl, rel=1e-4)
    assert not result["kl_estimated"]
    assert abs(result["divergence"] - result["kl"]) > 1.0
    assert result["neg_elbo"] == pytest.approx(result["recon"] + kl, rel=1e-4)


def test_vamp_kl_is_reported_as_an_estimate(build_variant):
    model, _ = build_variant("vamp-vae", latent_dim=2, pseudo_inputs=3)
    result = evaluate(model.eval(), (torch.rand(8, 1, 32, 32) * 255).to(torch.uint8), k=2, batch_size=8)
    assert result["kl_estimated"] and "divergence" not in result


class _FlowEncoder(nn.Module):
    """A posterior that is not a DiagonalGaussian: exp of a Gaussian (a one-step flow)."""

    def __init__(self, ctx: BuildContext):
        super().__init__()
        self.net = nn.Linear(1024, 2 * ctx.latent_dim)

    def forward(self, x):
        mu, logvar = self.net(x.flatten(1)).chunk(2, -1)
        return TransformedDistribution(DiagonalGaussian(mu, logvar), [ExpTransform(cache_size=1)])


class _FlowPlugin:
    from vaezoo import hookimpl

    @hookimpl
    def register_encoders(self, register):
        register("t-flow", "tests.test_structure:_FlowEncoder")


@pytest.fixture
def with_flow_encoder():
    registry = get_registry()
    registry.add_plugin(_FlowPlugin(), "t-flow-plugin")
    yield registry
    registry._entries["encoder"].pop("t-flow")
    registry.plugins.pop("t-flow-plugin")
    registry.manager.unregister(name="t-flow-plugin")


def test_a_part_that_needs_a_capability_the_model_lacks_is_refused(with_flow_encoder):
    with pytest.raises(UsageError, match="gaussian-kl.*needs gaussian-posterior"):
        build_variant("conv-fashion", parts={"encoder": "t-flow"})
    with pytest.raises(UsageError, match="tc-decomposed-elbo.*gaussian-posterior"):
        build_variant("beta-tcvae", parts={"encoder": "t-flow", "divergence": "monte-carlo-kl"})


def test_a_flow_posterior_trains_with_the_monte_carlo_kl_and_has_a_density(with_flow_encoder):
    model, objective = build_variant("conv-fashion", parts={"encoder": "t-flow", "divergence": "monte-carlo-kl"})
    x = torch.rand(6, 1, 32, 32)
    terms = objective(model, x, 0)
    terms["loss"].backward()
    assert model.encoder.net.weight.grad.abs().sum() > 0
    assert "density" in model.capabilities and "gaussian-posterior" not in model.capabilities
    assert importance_log_likelihood(model, x, 3).shape == (6,)
    assert model.representation(x).shape == (6, 10)


def test_objective_needing_a_density_is_refused_on_a_structure_without_one():
    model, _ = build_variant("conv-fashion")
    model.capabilities = frozenset({"single-group"})  # as a structure without a density declares
    model.recipe = replace(model.recipe, parts={**model.recipe.parts, "objective": "iwae-bound"})
    with pytest.raises(UsageError, match="iwae-bound.*needs density"):
        build_objective(model, get_registry())


def test_what_a_structure_lacks_is_not_applicable():
    model = LinearGaussianHierarchy()
    for ask in (lambda: model.sample(2), lambda: model.representation(torch.zeros(1, 1, 1, 1)),
                lambda: model.decode_representation(torch.zeros(1, 1))):
        with pytest.raises(NotApplicable):
            ask()
    with pytest.raises(NotApplicable, match="2 latent groups"):
        model(torch.zeros(1, 1, 1, 1)).z


def test_build_context_shares_one_instance_per_part_kind():
    registry = get_registry()
    ctx = BuildContext(HParams({"latent_dim": 2}), (1, 32, 32), parts={"prior": "standard-normal"}, registry=registry)
    assert ctx.part("prior") is ctx.part("prior")
    assert ctx.build("prior", "standard-normal") is not ctx.part("prior")
    with pytest.raises(UsageError, match="names no encoder"):
        ctx.part("encoder")


def test_model_records_its_recipe_and_resolved_hyperparameters():
    registry = get_registry()
    spec = registry.variant("vamp-vae")
    model = build_model(spec, {"pseudo_inputs": 3}, (1, 32, 32), registry)
    assert model.hp["pseudo_inputs"] == 3 and model.hp["lr"] == 1e-4
    assert model.recipe.parts == {**spec.parts, "structure": "single-latent", "objective": "beta-elbo"}
    assert model.recipe.swaps() == {}
