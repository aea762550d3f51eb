"""InfoVAE: the ELBO plus a maximum mean discrepancy between the aggregate posterior and the prior."""

from vaezoo import hookimpl
from vaezoo.hparams import Param
from vaezoo.variant import VariantSpec
from vaezoo_plugins.standard.presets import CONV_PARTS, CONV_TRAINING, beta_elbo_params


@hookimpl
def register_objectives(register):
    register("mmd-elbo", "vaezoo_plugins.info_vae.mmd:MMDELBO",
             "reconstruction + (1 - alpha) KL + (alpha + lambda - 1) MMD(q(z), p(z)), RBF or IMQ kernel")


@hookimpl
def register_variants(register):
    register(VariantSpec(
        name="info-vae",
        description="InfoVAE: matches the aggregate posterior to the prior with an MMD term",
        parts=CONV_PARTS,
        objective="mmd-elbo",
        params=(
            *CONV_TRAINING,
            Param("alpha", "float", 0.0, "InfoVAE alpha: the KL weight is 1 - alpha", high=1.0),
            Param("info_lambda", "float", 1000.0, "InfoVAE lambda: the MMD weight is alpha + lambda - 1",
                  low=0.0, low_exclusive=True),
            Param("kernel", "str", "rbf", "MMD kernel, scale 2 * latent_dim", choices=("rbf", "imq")),
            *beta_elbo_params(beta=None),
        ),
        paper="Zhao, Song & Ermon 2017, InfoVAE: Information Maximizing Variational Autoencoders, arXiv 1706.02262",
    ))
