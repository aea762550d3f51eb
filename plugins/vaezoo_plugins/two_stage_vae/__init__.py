"""The two-stage VAE (Dai & Wipf 2019): a second VAE on a finished run's codes, with a learnt output variance."""

from vaezoo import hookimpl
from vaezoo.hparams import Param, training_params
from vaezoo.variant import VariantSpec


@hookimpl
def register_structures(register):
    register("two-stage", "vaezoo_plugins.two_stage_vae.structure:TwoStage",
             "a second VAE over a frozen first stage's codes, N(mean(u), gamma I) with gamma learnt")


@hookimpl
def register_variants(register):
    register(VariantSpec(
        name="two-stage-vae",
        description="Two-stage VAE: a second VAE learns the distribution of a finished VAE's codes",
        parts={}, structure="two-stage", objective="beta-elbo",
        params=(
            *training_params(lr=1e-4, batch_size=64, epochs=10, latent_dim=None),
            Param("width", "int", 1024, "units in each hidden layer of the second stage's MLPs", low=1),
            Param("layers", "int", 3, "hidden layers of the second stage's encoder and decoder", low=1),
            Param("beta", "float", 1.0, "weight of the KL term (1 = the ELBO)", low=0.0),
            Param("lambda", "float", 0.0, "weight of the sum of squared parameters", low=0.0),
        ),
        parent_needs=("single-group", "density", "flat-code"),
        paper="Dai & Wipf 2019, Diagnosing and Enhancing VAE Models, ICLR (arXiv 1903.05789)",
    ))
