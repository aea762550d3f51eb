"""IWAE: k = 1 is the ELBO, the bound grows with k, and the gradient uses detached normalised weights."""

from __future__ import annotations

import math

import pytest
import torch

from vaezoo.data import as_float
from vaezoo.model.bounds import log_mean_exp
from vaezoo.model.distributions import DiagonalGaussian


@pytest.fixture
def batch(synthetic):
    return as_float(synthetic.train[:8])


def log_weights(model, x, k, q):
    """[k, B] log p(x|z) + log p(z) - log q(z|x) for k samples of q, written out from the parts."""
    z = q.rsample((k,))
    return model.likelihood.log_prob(x, model.decoder(z)) + (model.prior().log_prob(z) - q.log_prob(z))


def test_k1_equals_the_elbo_with_the_same_noise(build_variant, batch):
    model, objective = build_variant("iwae", k=1, latent_dim=4)
    torch.manual_seed(0)
    loss = objective(model, batch, 0)["loss"]
    torch.manual_seed(0)
    q = model.encoder(batch)
    z = q.rsample()
    elbo = model.likelihood.log_prob(batch, model.decoder(z)) + model.prior().log_prob(z) - q.log_prob(z)
    assert loss.item() == pytest.approx(-elbo.mean().item(), rel=1e-6)


@torch.no_grad()
def test_k1_averages_to_the_analytic_elbo(build_variant, batch):
    """The mean of many one-sample bounds is recon + the closed-form KL (within 4 standard errors)."""
    model, _ = build_variant("iwae", latent_dim=4)
    x = batch[:1]
    q = model.encoder(x)
    torch.manual_seed(1)
    log_w = log_weights(model, x, 1000, q)
    recon = -model.likelihood.log_prob(x, model.decoder(q.rsample((1000,))))
    kl = 0.5 * (q.logvar.exp() + q.mu**2 - 1 - q.logvar).sum()  # KL(q || N(0, I)) by hand
    analytic = -(recon.mean() + kl)
    error = (log_w.var() / 1000 + recon.var() / 1000).sqrt()
    assert abs(float(log_w.mean() - analytic)) < 4 * float(error)


@torch.no_grad()
def test_bound_does_not_decrease_with_k(build_variant, batch):
    model, _ = build_variant("iwae", latent_dim=4)
    x = batch[:4]
    q = model.encoder(x)
    q = DiagonalGaussian(q.mu + 1.0, q.logvar - 1.0)  # a poor proposal: the weights vary a lot
    torch.manual_seed(2)
    log_w = log_weights(model, x, 1200, q)  # [1200, B], split into independent groups of k
    bounds = {k: log_mean_exp(log_w.reshape(1200 // k, k, -1), dim=1).mean(0) for k in (1, 4, 40)}
    assert torch.all(bounds[1] < bounds[4]) and torch.all(bounds[4] < bounds[40])
    assert torch.all(bounds[40] - bounds[1] > 1.0)  # a real gap, not noise


def test_gradient_is_the_estimator_with_detached_normalised_weights(build_variant, batch):
    model, objective = build_variant("iwae", k=5, latent_dim=4)
    params = list(model.parameters())
    torch.manual_seed(3)
    grads = torch.autograd.grad(objective(model, batch, 0)["loss"], params)

    def surrogate(detach: bool):
        torch.manual_seed(3)
        log_w = log_weights(model, batch, 5, model.encoder(batch))
        weights = torch.softmax(log_w, 0)
        return -((weights.detach() if detach else weights) * log_w).sum(0).mean()

    explicit = torch.autograd.grad(surrogate(True), params)
    undetached = torch.autograd.grad(surrogate(False), params)
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(grads, explicit))
    assert not all(torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(grads, undetached))


@torch.no_grad()
def test_logged_terms_are_k_sample_estimates_of_recon_and_kl(build_variant, batch):
    """recon and kl as logged are unbiased for -E log p(x|z) and the closed-form KL, and add up to neg_elbo."""
    model, objective = build_variant("iwae", k=4000, latent_dim=4)
    x = batch[:1]
    torch.manual_seed(4)
    terms = objective(model, x, 0)
    q = model.encoder(x)
    kl = float(0.5 * (q.logvar.exp() + q.mu**2 - 1 - q.logvar).sum())
    z = q.rsample((4000,))
    log_ratio = model.prior().log_prob(z) - q.log_prob(z)
    assert abs(float(terms["kl"]) - kl) < 4 * float(log_ratio.std()) / 4000**0.5
    recon = -model.likelihood.log_prob(x, model.decoder(z))
    assert abs(float(terms["recon"]) - float(recon.mean())) < 4 * float(recon.std()) / 4000**0.5 * 2**0.5
    assert float(terms["neg_elbo"]) == pytest.approx(float(terms["recon"] + terms["kl"]), rel=1e-6)
    assert float(terms["loss"]) < float(terms["neg_elbo"])  # the k-sample bound is tighter than the ELBO


def test_k1_with_the_reference_penalty_is_conv_fashions_objective(build_variant, batch):
    """iwae -o k=1 -o lambda=0.01 is conv-fashion's loss with a one-sample KL, to rounding, on the same noise."""
    model, objective = build_variant("iwae", k=1, **{"lambda": 0.01})
    reference, reference_objective = build_variant("conv-fashion", parts={"divergence": "monte-carlo-kl"})
    reference.load_state_dict(model.state_dict())
    assert objective.l2_weight == reference_objective.l2_weight == 0.01
    torch.manual_seed(6)
    ours = objective(model, batch, 0)["loss"]
    torch.manual_seed(6)
    theirs = reference_objective(reference, batch, 0)["loss"]
    assert float(ours.detach()) == pytest.approx(float(theirs.detach()), rel=1e-6)
    _, paper = build_variant("iwae")
    assert paper.l2_weight == 0.0  # Burda et al. use no penalty


def _loss(build_variant, batch, name, seed=7, **hparams):
    torch.manual_seed(0)  # the same weights for every variant built here
    model, objective = build_variant(name, latent_dim=4, **hparams)
    torch.manual_seed(seed)
    return model, objective, objective(model, batch, 0)["loss"]


def test_miwae_and_ciwae_reduce_to_iwae_and_the_elbo_at_their_limits(build_variant, batch):
    """MIWAE(m=1) = IWAE_k; MIWAE(k=1) = CIWAE(beta=1) = the mean one-sample ELBO; CIWAE(beta=0) = IWAE_k,
    each on the same noise, against log weights written out from the parts."""
    model, _, miwae_m1 = _loss(build_variant, batch, "miwae", m=1, k=6)
    torch.manual_seed(7)
    log_w = log_weights(model, batch, 6, model.encoder(batch))
    iwae = -log_mean_exp(log_w).mean()
    elbo = -log_w.mean()
    assert float(miwae_m1) == pytest.approx(float(iwae), rel=1e-6)
    assert float(_loss(build_variant, batch, "miwae", m=6, k=1)[2]) == pytest.approx(float(elbo), rel=1e-6)
    assert float(_loss(build_variant, batch, "ciwae", k=6, ciwae_beta=1.0)[2]) == pytest.approx(float(elbo), rel=1e-6)
    assert float(_loss(build_variant, batch, "ciwae", k=6, ciwae_beta=0.0)[2]) == pytest.approx(float(iwae), rel=1e-6)
    half = _loss(build_variant, batch, "ciwae", k=6, ciwae_beta=0.25)[2]
    assert float(half) == pytest.approx(0.25 * float(elbo) + 0.75 * float(iwae), rel=1e-6)


def test_bounds_are_ordered_for_any_weights(build_variant):
    """For the same m * k log weights: ELBO <= MIWAE_{m,k} <= IWAE_{mk} (Jensen), strictly when weights vary."""
    _, miwae = build_variant("miwae", m=4, k=5)
    log_w = torch.randn(20, 3) * 3
    elbo, mid, iwae = log_w.mean(0), miwae.bound(log_w), log_mean_exp(log_w)
    assert torch.all(elbo < mid) and torch.all(mid < iwae)


def test_piwae_gives_the_decoder_iwae_gradients_and_the_encoder_miwae_gradients(build_variant, batch):
    model, objective, loss = _loss(build_variant, batch, "piwae", m=3, k=4)
    encoder = list(model.encoder.parameters())
    generative = [p for name, p in model.named_parameters() if not name.startswith("encoder.")]
    got_encoder = torch.autograd.grad(loss, encoder, retain_graph=True)
    got_generative = torch.autograd.grad(loss, generative)
    torch.manual_seed(7)
    log_w = log_weights(model, batch, 12, model.encoder(batch))
    iwae = -log_mean_exp(log_w).mean()
    miwae = -log_mean_exp(log_w.view(3, 4, -1), dim=1).mean()
    want_encoder = torch.autograd.grad(miwae, encoder, retain_graph=True)
    want_generative = torch.autograd.grad(iwae, generative, allow_unused=True, retain_graph=True)
    assert float(loss.detach()) == pytest.approx(float(iwae.detach()), rel=1e-6)  # logged: the IWAE loss
    for got, want in zip(got_encoder, want_encoder):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    for got, want in zip(got_generative, want_generative):
        torch.testing.assert_close(got, torch.zeros_like(got) if want is None else want, rtol=1e-4, atol=1e-6)
    assert not all(torch.allclose(a, b, rtol=1e-4, atol=1e-6)
                   for a, b in zip(got_encoder, torch.autograd.grad(iwae, encoder)))  # the swap did something


def test_piwae_needs_a_separate_inference_network(build_variant):
    from vaezoo.errors import UsageError
    from vaezoo.model import build_objective
    from vaezoo.registry import get_registry

    model, _ = build_variant("piwae")
    model.capabilities = model.capabilities - {"inference-network"}
    with pytest.raises(UsageError, match="inference-network"):
        build_objective(model, get_registry())


def test_logged_terms_are_the_k_sample_elbo_and_the_closed_form_kl(build_variant, batch):
    """What IWAE logs, computed by hand from the same noise: neg_elbo is minus the average of the k log-weights,
    kl the Monte Carlo mean of log q - log p (any structure has it), close to the closed-form KL(q || N(0, I)),
    recon the rest; on average recon is -E_q[log p(x|z)]."""
    k = 400
    model, objective = build_variant("iwae", k=k, latent_dim=4)
    x = batch[:2]
    torch.manual_seed(4)
    terms = objective(model, x, 0)
    torch.manual_seed(4)
    q = model.encoder(x)
    mu, std = q.mean.double(), (q.stddev if hasattr(q, "stddev") else q.std).double()
    z = (mu + std * torch.randn((k, *mu.shape)).double())  # the k samples log_weights draws
    logits = model.decoder(z.float()).double()
    log_px_z = (x.double() * logits - torch.nn.functional.softplus(logits)).flatten(2).sum(-1)  # Bernoulli
    log_pz = (-0.5 * (z**2 + math.log(2 * math.pi))).sum(-1)
    log_qz = (-0.5 * (((z - mu) / std) ** 2 + 2 * std.log() + math.log(2 * math.pi))).sum(-1)
    log_w = log_px_z + log_pz - log_qz  # [k, B]
    closed_form = (0.5 * (std**2 + mu**2 - 1 - 2 * std.log())).sum(-1).mean()
    log_ratio = log_qz - log_pz
    assert terms["neg_elbo"].item() == pytest.approx(-log_w.mean().item(), rel=1e-5)
    assert terms["kl"].item() == pytest.approx(log_ratio.mean().item(), rel=1e-5)
    kl_se = (log_ratio.var(0).mean() / k) ** 0.5
    assert abs(terms["kl"].item() - closed_form.item()) < 4 * kl_se.item()
    assert terms["loss"].item() == pytest.approx(-(torch.logsumexp(log_w, 0) - math.log(k)).mean().item(), rel=1e-5)
    recon = -log_px_z.mean()  # the Monte Carlo reconstruction term
    se = (log_w.var(0).mean() / k) ** 0.5  # noise of the k-sample average the logged recon comes from
    assert abs(terms["recon"].item() - recon.item()) < 4 * se.item() + 1e-3
