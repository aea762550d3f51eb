"""FactorVAE: the total correlation estimated by a discriminator with its own optimiser."""

from vaezoo import hookimpl
from vaezoo.hparams import Param
from vaezoo.variant import VariantSpec
from vaezoo_plugins.standard.presets import CONV_PARTS, CONV_TRAINING, beta_elbo_params


@hookimpl
def register_objectives(register):
    register("discriminator-tc-elbo", "vaezoo_plugins.factor_vae.discriminator:DiscriminatorTCELBO",
             "ELBO + gamma * TC, the TC a density-ratio discriminator's estimate (z vs permuted z)")


@hookimpl
def register_variants(register):
    register(VariantSpec(
        name="factor-vae",
        description="FactorVAE: penalises total correlation, estimated by a discriminator on permuted latents",
        parts=CONV_PARTS,
        objective="discriminator-tc-elbo",
        params=(
            *CONV_TRAINING,
            Param("gamma", "float", 6.0, "weight of the total correlation (the paper sweeps 10-40 on dSprites)", low=0.0),
            Param("disc_lr", "float", 1e-4, "discriminator Adam learning rate", low=0.0, low_exclusive=True),
            Param("disc_beta1", "float", 0.5, "discriminator Adam beta1", low=0.0, high=0.999),
            Param("disc_beta2", "float", 0.9, "discriminator Adam beta2", low=0.0, high=0.9999),
            Param("disc_hidden", "int", 1000, "units in each of the discriminator's 5 hidden layers", low=1),
            Param("negatives", "str", "independent", "where the discriminator's permuted codes come from: an "
                  "independent second batch (Algorithm 2 of the paper) or the step's own batch",
                  choices=("independent", "same-batch")),
            *beta_elbo_params(beta=None),
        ),
        paper="Kim & Mnih 2018, Disentangling by Factorising, ICML (arXiv 1802.05983)",
    ))
