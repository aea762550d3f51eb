"""The model layer: distributions, the part interfaces, structures and their pass record, building.

Plugins import the interfaces from here: ``from vaezoo.model import BuildContext, Objective, Structure``.
"""

from vaezoo.model.building import build_model, build_objective
from vaezoo.model.distributions import DiagonalGaussian
from vaezoo.model.parts import BuildContext, Objective, PartRef, Terms
from vaezoo.model.structure import (
           CAPABILITIES,
           LatentGroup,
           Pass,
           Structure,
           latent_group,
)

__all__ = ["CAPABILITIES", "BuildContext", "DiagonalGaussian", "LatentGroup", "Objective", "PartRef", "Pass",
           "Structure", "Terms", "build_model", "build_objective", "latent_group"]
