"""IAF-VAE (Kingma et al. 2016): the conv encoder's Gaussian followed by inverse autoregressive flow
steps, trained with the Monte Carlo KL (the flow's log-determinants enter through log q(z|x))."""

from vaezoo import hookimpl
from vaezoo.hparams import Param
from vaezoo.variant import VariantSpec
from vaezoo_plugins.standard.presets import CONV_PARTS, CONV_TRAINING, beta_elbo_params

IAF_PARAMS = (
    Param("iaf_base", "str", CONV_PARTS["encoder"], "registered encoder whose trunk and Gaussian the flow starts from"),
    Param("iaf_steps", "int", 2, "IAF steps T (the paper's depth; 2 in its smallest MNIST model)", low=1),
    Param("iaf_hidden", "int", 320, "units per hidden layer of each step's MADE (the paper's width)", low=1),
    Param("iaf_layers", "int", 2, "hidden layers of each step's MADE", low=1),
    Param("iaf_ordering", "str", "reverse", "variable ordering of successive steps: reversed every other step, "
          "or the same in all", choices=("reverse", "fixed")),
)


@hookimpl
def register_encoders(register):
    register("iaf", "vaezoo_plugins.iaf_vae.encoder:IAFEncoder",
             "a base encoder's Gaussian through T inverse autoregressive flow steps (MADE, context h)",
             params=IAF_PARAMS)


@hookimpl
def register_variants(register):
    register(VariantSpec(
        name="iaf-vae",
        description="VAE whose posterior is a Gaussian through inverse autoregressive flow steps",
        parts={**CONV_PARTS, "encoder": "iaf", "divergence": "monte-carlo-kl"},
        objective="beta-elbo",
        params=(*CONV_TRAINING, *beta_elbo_params()),
        paper="Kingma et al. 2016, Improving Variational Inference with Inverse Autoregressive Flow, NeurIPS "
              "(arXiv 1606.04934)",
    ))
