"""The standard parts every variant can build on: the conv encoder and decoder (any square power-of-two
image size: 32x32 is the reference model, 64x64 the Burgess et al. 2018 network), the Bernoulli
likelihood, the standard normal prior, the analytic and Monte Carlo KL, and the beta-ELBO objective.

Registered by name like any plugin's parts; their classes and the recipe presets
(`vaezoo_plugins.standard.presets`) are a public import path for plugins that extend them.
"""

from vaezoo import hookimpl

_HERE = "vaezoo_plugins.standard"


@hookimpl
def register_encoders(register):
    register("conv", f"{_HERE}.networks:ConvEncoder",
             "log2(H/4) stride-2 convs of 32 channels + 2 dense layers of 256, Gaussian heads for mu and "
             "log-variance (Burgess et al. 2018; square power-of-two images, H >= 8)")


@hookimpl
def register_decoders(register):
    register("conv", f"{_HERE}.networks:ConvDecoder",
             "3 dense layers + log2(H/4) stride-2 transposed convs to per-pixel logits (mirror of the conv encoder)")


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
    register("monte-carlo-kl", f"{_HERE}.divergences:MonteCarloKL",
             "one-sample estimate log q(z|x) - log p(z) of KL(q || p), for any prior")


@hookimpl
def register_objectives(register):
    register("beta-elbo", f"{_HERE}.objectives:BetaELBO",
             "reconstruction + beta * divergence + lambda * sum of squared parameters")
