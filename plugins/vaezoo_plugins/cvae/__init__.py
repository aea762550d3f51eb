"""CVAE: encoder and decoder conditioned on the image's label (Sohn, Lee & Yan 2015)."""

from vaezoo import hookimpl
from vaezoo.hparams import Param
from vaezoo.variant import VariantSpec
from vaezoo_plugins.standard.presets import (
    BASE_ENCODER,
    CONV_PARTS,
    CONV_TRAINING,
    beta_elbo_params,
)

_HERE = "vaezoo_plugins.cvae.structure"


@hookimpl
def register_structures(register):
    register("conditional-latent", f"{_HERE}:ConditionalLatent",
             "the single-latent pass with the label one-hot beside the encoder's features and the decoder's code")


@hookimpl
def register_encoders(register):
    register("conditional-conv", f"{_HERE}:ConditionalEncoder",
             "a registered encoder's trunk whose features and the label feed the Gaussian heads",
             params=(BASE_ENCODER,))


@hookimpl
def register_variants(register):
    register(VariantSpec(
        name="cvae",
        description="Conditional VAE: q(z|x, y) and p(x|z, y); sample a chosen class with vaezoo sample --label",
        parts={**CONV_PARTS, "encoder": "conditional-conv"},
        structure="conditional-latent",
        objective="beta-elbo",
        params=(*CONV_TRAINING,
                Param("classes", "int", 10, "number of label classes (the dataset's labels run 0..classes-1)", low=2),
                *beta_elbo_params()),
        paper="Sohn, Lee & Yan 2015, Learning Structured Output Representation using Deep Conditional Generative "
              "Models, NeurIPS",
    ))
