"""RAE: a deterministic autoencoder with a code penalty and a decoder regulariser; samples come ex post."""

from vaezoo import hookimpl
from vaezoo.hparams import Param, training_params
from vaezoo.variant import VariantSpec
from vaezoo_plugins.standard.presets import CONV_PARTS

RAE_PARTS = {"encoder": "point", "decoder": CONV_PARTS["decoder"], "likelihood": CONV_PARTS["likelihood"]}


@hookimpl
def register_objectives(register):
    register("rae", "vaezoo_plugins.rae.objective:RegularisedAutoencoder",
             "reconstruction + beta ||z||^2 / 2 + lambda * (decoder L2 or gradient penalty)")


@hookimpl
def register_variants(register):
    register(VariantSpec(
        name="rae",
        description="Regularised autoencoder: deterministic codes, a decoder regulariser, an ex-post density",
        parts=RAE_PARTS, structure="autoencoder", objective="rae",
        params=(
            *training_params(lr=1e-3, batch_size=100, epochs=10, latent_dim=10),
            Param("regulariser", "str", "gp", "decoder regulariser: gp (gradient penalty) or l2 (weight norm)",
                  choices=("gp", "l2")),
            Param("embedding_weight", "float", 1e-4, "beta, weight of ||z||^2 / 2", low=0.0),
            Param("decoder_weight", "float", 1e-7, "lambda, weight of the decoder regulariser", low=0.0),
        ),
        paper="Ghosh, Sajjadi, Vergari, Black & Schoelkopf 2020, From Variational to Deterministic Autoencoders, "
              "ICLR (arXiv 1903.12436); weights as in pythae",
    ))
