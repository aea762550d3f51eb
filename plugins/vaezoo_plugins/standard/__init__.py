"""The standard parts every variant can build on: the single-latent structure, the conv encoder and
decoder (any square power-of-two image size: 32x32 is the reference model, 64x64 the Burgess et al.
2018 network) and the MLP ones, the likelihoods (Bernoulli, continuous Bernoulli, Gaussian, 256-way
categorical, discretised logistic mixture), the standard normal prior, the analytic and Monte Carlo
KL, and the beta-ELBO objective.

Registered by name like any plugin's parts; their classes and the recipe presets
(`vaezoo_plugins.standard.presets`) are a public import path for plugins that extend them.
"""

from vaezoo import hookimpl
from vaezoo.hparams import Param
from vaezoo_plugins.standard.presets import BASE_ENCODER

_HERE = "vaezoo_plugins.standard"
MLP_PARAMS = (Param("mlp_width", "int", 400, "units per hidden layer of the mlp encoder and decoder", low=1),
              Param("mlp_layers", "int", 2, "hidden layers of the mlp encoder and decoder", low=0))


@hookimpl
def register_structures(register):
    register("single-latent", f"{_HERE}.structures:SingleLatent",
             "encoder -> q(z|x) -> one reparameterised z -> decoder and likelihood (the default)")
    register("autoencoder", f"{_HERE}.deterministic:Autoencoder",
             "encoder -> a deterministic code z -> decoder and likelihood (no KL, no ELBO)")


@hookimpl
def register_encoders(register):
    register("conv", f"{_HERE}.networks:ConvEncoder",
             "log2(H/4) stride-2 convs of 32 channels + 2 dense layers of 256, Gaussian heads for mu and "
             "log-variance (Burgess et al. 2018; square power-of-two images, H >= 8)")
    register("point", f"{_HERE}.deterministic:PointEncoder", "a registered encoder's trunk and one linear head: "
             "a deterministic code", params=(BASE_ENCODER,))
    register("mlp", f"{_HERE}.mlp:MLPEncoder", "dense layers on the flattened input (vectors, small images), "
             "Gaussian heads for mu and log-variance", params=MLP_PARAMS)


@hookimpl
def register_decoders(register):
    register("conv", f"{_HERE}.networks:ConvDecoder",
             "3 dense layers + log2(H/4) stride-2 transposed convs to per-pixel logits (mirror of the conv encoder)")
    register("mlp", f"{_HERE}.mlp:MLPDecoder", "dense layers to the likelihood's outputs for every value",
             params=MLP_PARAMS)


@hookimpl
def register_likelihoods(register):
    register("bernoulli", f"{_HERE}.likelihoods:BernoulliLikelihood",
             "Bernoulli pixels from logits: log p(x|z) = -sum BCE-with-logits")
    register("continuous-bernoulli", f"{_HERE}.likelihoods:ContinuousBernoulliLikelihood",
             "the Bernoulli with its normaliser: a density on [0, 1] (Loaiza-Ganem & Cunningham 2019)")
    register("gaussian", f"{_HERE}.likelihoods:GaussianLikelihood",
             "N(mu, sigma^2) per value; sigma fixed, learnt per value, or predicted by the decoder", params=(
                 Param("gaussian_variance", "str", "fixed", "fixed (gaussian_std), learnt (one sigma per value, "
                       "shared by all images) or predicted (by the decoder, per image)",
                       choices=("fixed", "learnt", "predicted")),
                 Param("gaussian_std", "float", 0.1, "sigma when fixed; the initial sigma when learnt",
                       low=0.0, low_exclusive=True)))
    register("categorical-256", f"{_HERE}.likelihoods:Categorical256Likelihood",
             "each 8-bit value a 256-way categorical (256 decoder outputs per channel)")
    register("discretized-logistic", f"{_HERE}.logistic_mixture:DiscretizedLogisticMixture",
             "mixture of discretised logistics per pixel, channels coupled (Salimans et al. 2017), for 8-bit images",
             params=(Param("logistic_mixtures", "int", 10, "mixture components per pixel", low=1),))


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
