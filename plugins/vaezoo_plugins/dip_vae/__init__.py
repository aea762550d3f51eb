"""DIP-VAE-I and -II: the ELBO plus a covariance-matching regulariser on the aggregate posterior."""

from vaezoo import hookimpl
from vaezoo.hparams import Param
from vaezoo.variant import VariantSpec
from vaezoo_plugins.standard.presets import CONV_PARTS, CONV_TRAINING, beta_elbo_params

PAPER = ("Kumar, Sattigeri & Balakrishnan 2018, Variational Inference of Disentangled Latent Concepts from "
         "Unlabeled Observations, ICLR (arXiv 1711.00848)")


@hookimpl
def register_objectives(register):
    register("dip-elbo", "vaezoo_plugins.dip_vae.objective:DIPELBO",
             "ELBO + lambda_od * sum of off-diagonal Cov^2 + lambda_d * sum (diagonal Cov - 1)^2 of the "
             "aggregate posterior (i: Cov of the means; ii: plus the mean of the posterior covariances)")


def _params(dip_type: str, lambda_d: float) -> tuple[Param, ...]:
    return (
        *CONV_TRAINING,
        Param("dip_type", "str", dip_type, "i: covariance of the posterior means; ii: plus their expected "
              "covariance", choices=("i", "ii")),
        Param("lambda_od", "float", 10.0, "weight of the squared off-diagonal covariances", low=0.0),
        Param("lambda_d", "float", lambda_d, "weight of the squared distance of the variances from 1", low=0.0),
        *beta_elbo_params(beta=None),
    )


@hookimpl
def register_variants(register):
    register(VariantSpec(
        name="dip-vae-i",
        description="DIP-VAE-I: the covariance of the posterior means is pulled towards the identity",
        parts=CONV_PARTS, objective="dip-elbo", params=_params("i", lambda_d=100.0), paper=PAPER,
    ))
    register(VariantSpec(
        name="dip-vae-ii",
        description="DIP-VAE-II: the covariance of the aggregate posterior is pulled towards the identity",
        parts=CONV_PARTS, objective="dip-elbo", params=_params("ii", lambda_d=10.0), paper=PAPER,
    ))
