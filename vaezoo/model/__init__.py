"""The model layer: the part interfaces, distributions, the VAE composed of parts, and bounds.

Plugins import the interfaces from here: ``from vaezoo.model import BuildContext, Objective, Terms``.
"""

from vaezoo.model.distributions import DiagonalGaussian
from vaezoo.model.parts import BuildContext, Objective, Prior, Terms
from vaezoo.model.vae import VAE, Pass, build_model, build_objective

__all__ = ["VAE", "BuildContext", "DiagonalGaussian", "Objective", "Pass", "Prior", "Terms", "build_model",
           "build_objective"]
