"""The reference plugin: the convolutional FashionMNIST VAE with a beta-weighted KL.

Only the recipe is here; its parts are the standard ones (vaezoo_plugins.standard).
"""

from vaezoo import hookimpl
from vaezoo.variant import VariantSpec
from vaezoo_plugins.standard.presets import CONV_PARTS, CONV_TRAINING, beta_elbo_params


@hookimpl
def register_variants(register):
    register(VariantSpec(
        name="conv-fashion",
        description="Convolutional FashionMNIST VAE with a beta-weighted KL (the reference model)",
        parts=CONV_PARTS,
        objective="beta-elbo",
        params=(*CONV_TRAINING, *beta_elbo_params()),
        dataset="fashion-mnist",
        paper="Kingma & Welling 2014, arXiv 1312.6114; beta: Higgins et al. 2017",
    ))
