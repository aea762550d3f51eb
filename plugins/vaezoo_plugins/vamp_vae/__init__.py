"""The VampPrior VAE: a learnt mixture prior, measured with the standard Monte Carlo KL."""

from vaezoo import hookimpl
from vaezoo.hparams import Param
from vaezoo.variant import VariantSpec
from vaezoo_plugins.standard.presets import CONV_PARTS, CONV_TRAINING, beta_elbo_params


@hookimpl
def register_priors(register):
    register("vamp", "vaezoo_plugins.vamp_vae.prior:VampPrior",
             "mixture of the encoder's posteriors at K learnt pseudo-inputs")


@hookimpl
def register_variants(register):
    register(VariantSpec(
        name="vamp-vae",
        description="VampPrior VAE: the prior is a mixture of posteriors of learnt pseudo-inputs",
        parts={**CONV_PARTS, "prior": "vamp", "divergence": "monte-carlo-kl"},
        objective="beta-elbo",
        params=(
            *CONV_TRAINING,
            Param("pseudo_inputs", "int", 500, "number K of pseudo-inputs (mixture components)", low=1),
            *beta_elbo_params(),
        ),
        paper="Tomczak & Welling 2018, VAE with a VampPrior, AISTATS (arXiv 1705.07120)",
    ))
