"""The reference plugin: the convolutional FashionMNIST VAE with a beta-weighted KL.

Its parts (32x32 conv encoder/decoder, standard normal prior, analytic Gaussian KL,
Bernoulli-logits likelihood, beta-ELBO objective) are registered by name so other variants reuse them.
"""

from vaezoo import hookimpl
from vaezoo.hparams import Param, training_params
from vaezoo.variant import VariantSpec

_HERE = "vaezoo_plugins.conv_fashion"

#: The parts of the reference model, reused by variants that change only one of them.
CONV_PARTS = {
    "encoder": "conv32",
    "decoder": "conv32",
    "likelihood": "bernoulli",
    "prior": "standard-normal",
    "divergence": "gaussian-kl",
}

#: The reference model's training defaults, for variants trained the same way.
CONV_TRAINING = training_params(lr=1e-4, batch_size=64, epochs=10, latent_dim=10)


def beta_elbo_params(*, beta: float | None = 1.0) -> tuple[Param, ...]:
    """Hyperparameters of the beta-ELBO objective with the L2 penalty, for variants that use it.

    beta=None leaves beta out, for objectives that weight the KL themselves (BetaELBO's kl_weight).
    """
    l2 = Param("lambda", "float", 0.01, "weight of the sum of squared parameters added to the loss", low=0.0)
    if beta is None:
        return (l2,)
    return (Param("beta", "float", beta, "weight of the KL term (1 = the ELBO)", low=0.0), l2)


@hookimpl
def register_encoders(register):
    register("conv32", f"{_HERE}.networks:ConvEncoder32",
             "3 stride-2 convs + 2 dense layers, Gaussian heads for mu and log-variance (32x32 input)")


@hookimpl
def register_decoders(register):
    register("conv32", f"{_HERE}.networks:ConvDecoder32",
             "3 dense layers + 3 stride-2 transposed convs to per-pixel logits (32x32 output)")


@hookimpl
def register_likelihoods(register):
    register("bernoulli", f"{_HERE}.gaussian:BernoulliLikelihood",
             "Bernoulli pixels from logits: log p(x|z) = -sum BCE-with-logits")


@hookimpl
def register_priors(register):
    register("standard-normal", f"{_HERE}.gaussian:StandardNormalPrior", "N(0, I)")


@hookimpl
def register_divergences(register):
    register("gaussian-kl", f"{_HERE}.gaussian:AnalyticGaussianKL",
             "closed-form KL(q || p) between diagonal Gaussians, per latent dimension")


@hookimpl
def register_objectives(register):
    register("beta-elbo", f"{_HERE}.objective:BetaELBO",
             "reconstruction + beta * divergence + lambda * sum of squared parameters")


@hookimpl
def register_variants(register):
    register(VariantSpec(
        name="conv-fashion",
        description="Convolutional FashionMNIST VAE with a beta-weighted KL (the reference model)",
        parts=CONV_PARTS,
        objective="beta-elbo",
        params=(*CONV_TRAINING, *beta_elbo_params()),
        dataset="fashion-mnist",
        paper="Kingma & Welling 2014, arXiv 1312.6114; beta: Higgins et al. 2017",
    ))
