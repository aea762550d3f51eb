"""WAE-MMD: a deterministic autoencoder whose aggregate code distribution is matched to the prior by MMD."""

from vaezoo import hookimpl
from vaezoo.hparams import Param, training_params
from vaezoo.variant import VariantSpec
from vaezoo_plugins.standard.presets import CONV_PARTS

#: A deterministic autoencoder on the reference model's networks.
POINT_PARTS = {"encoder": "point", "decoder": CONV_PARTS["decoder"], "likelihood": CONV_PARTS["likelihood"],
               "prior": CONV_PARTS["prior"]}


@hookimpl
def register_objectives(register):
    register("wae-mmd", "vaezoo_plugins.wae.objective:WassersteinMMD",
             "reconstruction + lambda * MMD between the codes and the prior (IMQ kernel, C = 2 d)")


@hookimpl
def register_variants(register):
    register(VariantSpec(
        name="wae-mmd",
        description="Wasserstein autoencoder: deterministic codes matched to the prior by an MMD penalty",
        parts=POINT_PARTS, structure="autoencoder", objective="wae-mmd",
        params=(
            *training_params(lr=1e-3, batch_size=100, epochs=10, latent_dim=8),
            Param("mmd_weight", "float", 10.0, "the paper's lambda, weight of the MMD", low=0.0),
            Param("lambda", "float", 0.0, "weight of the sum of squared parameters (the paper uses none)", low=0.0),
        ),
        paper="Tolstikhin, Bousquet, Gelly & Schoelkopf 2018, Wasserstein Auto-Encoders, ICLR (arXiv 1711.01558); "
              "defaults of its MNIST run",
    ))
