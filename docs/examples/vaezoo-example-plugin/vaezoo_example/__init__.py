"""Registration only: names the new parts and the variant. No torch import here, so
`vaezoo list` stays fast."""

from vaezoo import hookimpl
from vaezoo.hparams import Param, training_params
from vaezoo.variant import VariantSpec


@hookimpl
def register_encoders(register):
    register("example-mlp", "vaezoo_example.parts:MLPEncoder", "two dense layers, Gaussian heads")


@hookimpl
def register_decoders(register):
    register("example-mlp", "vaezoo_example.parts:MLPDecoder", "two dense layers to per-pixel logits")


@hookimpl
def register_variants(register):
    register(VariantSpec(
        name="mlp-fashion",
        description="A fully connected VAE: new encoder and decoder, the built-in everything else",
        parts={"encoder": "example-mlp", "decoder": "example-mlp", "likelihood": "bernoulli",
               "prior": "standard-normal", "divergence": "gaussian-kl"},
        objective="beta-elbo",
        params=(*training_params(lr=1e-3, batch_size=64, epochs=10, latent_dim=10),
                Param("beta", "float", 1.0, "weight of the KL term", low=0.0),
                Param("lambda", "float", 0.0, "weight of the L2 penalty", low=0.0),
                Param("hidden", "int", 400, "width of the hidden layers", low=1)),
        dataset="fashion-mnist",
        paper="Kingma & Welling 2014, arXiv 1312.6114",
    ))
