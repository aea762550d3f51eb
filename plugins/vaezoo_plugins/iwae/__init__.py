"""IWAE: the importance-weighted bound with k samples per image as the training objective."""

from vaezoo import hookimpl
from vaezoo.hparams import Param
from vaezoo.variant import VariantSpec
from vaezoo_plugins.standard.presets import CONV_PARTS, CONV_TRAINING


@hookimpl
def register_objectives(register):
    register("iwae-bound", "vaezoo_plugins.iwae.objective:ImportanceWeightedBound",
             "minus the importance-weighted bound log (1/k) sum_k p(x, z_k) / q(z_k|x); k = 1 is the ELBO")


@hookimpl
def register_variants(register):
    register(VariantSpec(
        name="iwae",
        description="Importance-weighted autoencoder: a tighter bound from k posterior samples per image",
        parts=CONV_PARTS,
        objective="iwae-bound",
        params=(
            *CONV_TRAINING,
            Param("k", "int", 5, "importance samples per image (1 = the ELBO)", low=1),
            Param("lambda", "float", 0.0, "weight of the sum of squared parameters added to the loss (Burda et al. "
                  "use none; 0.01 with k = 1 is conv-fashion's objective with a one-sample KL)", low=0.0),
        ),
        paper="Burda, Grosse & Salakhutdinov 2015, Importance Weighted Autoencoders, arXiv 1509.00519",
    ))
