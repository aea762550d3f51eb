"""The standard parts every variant can build on: the single-latent structure, the 32x32 conv encoder and decoder, the Bernoulli
likelihood, the standard normal prior, the analytic and Monte Carlo KL, and the beta-ELBO objective.

Registered by name like any plugin's parts; their classes and the recipe presets
(`vaezoo_plugins.standard.presets`) are a public import path for plugins that extend them.
"""

from vaezoo import hookimpl
from vaezoo.hparams import Param
from vaezoo_plugins.standard.presets import CONV_PARTS

_HERE = "vaezoo_plugins.standard"


@hookimpl
def register_structures(register):
    register("single-latent", f"{_HERE}.structures:SingleLatent",
             "encoder -> q(z|x) -> one reparameterised z -> decoder and likelihood (the default)")
    register("autoencoder", f"{_HERE}.deterministic:Autoencoder",
             "encoder -> a deterministic code z -> decoder and likelihood (no KL, no ELBO)")


@hookimpl
def register_encoders(register):
    register("conv32", f"{_HERE}.networks:ConvEncoder32",
             "3 stride-2 convs + 2 dense layers, Gaussian heads for mu and log-variance (32x32 input)")
    register("point", f"{_HERE}.deterministic:PointEncoder", "a registered encoder's trunk and one linear head: "
             "a deterministic code", params=(Param("base_encoder", "str", CONV_PARTS["encoder"],
                                                  "the registered encoder whose trunk is used"),))


@hookimpl
def register_decoders(register):
    register("conv32", f"{_HERE}.networks:ConvDecoder32",
             "3 dense layers + 3 stride-2 transposed convs to per-pixel logits (32x32 output)")


@hookimpl
def register_likelihoods(register):
    register("bernoulli", f"{_HERE}.likelihoods:BernoulliLikelihood",
             "Bernoulli pixels from logits: log p(x|z) = -sum BCE-with-logits")


@hookimpl
def register_priors(register):
    register("standard-normal", f"{_HERE}.priors:StandardNormalPrior", "N(0, I)")


@hookimpl
def register_divergences(register):
    register("gaussian-kl", f"{_HERE}.divergences:AnalyticGaussianKL",
             "closed-form KL(q || p) between diagonal Gaussians, per latent dimension")
    register("analytic-kl", f"{_HERE}.divergences:AnalyticKL",
             "closed-form KL(q || p) from torch's KL registry, for any pair of families it knows")
    register("monte-carlo-kl", f"{_HERE}.divergences:MonteCarloKL",
             "one-sample estimate log q(z|x) - log p(z) of KL(q || p), for any prior")


@hookimpl
def register_objectives(register):
    register("beta-elbo", f"{_HERE}.objectives:BetaELBO",
             "reconstruction + beta * divergence + lambda * sum of squared parameters")
