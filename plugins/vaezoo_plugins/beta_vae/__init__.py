"""beta-VAE (a preset of the beta-ELBO) and its capacity-annealed form (a new objective)."""

from vaezoo import hookimpl
from vaezoo.hparams import Param
from vaezoo.variant import VariantSpec
from vaezoo_plugins.standard.presets import CONV_PARTS, CONV_TRAINING, beta_elbo_params


@hookimpl
def register_objectives(register):
    register("capacity-elbo", "vaezoo_plugins.beta_vae.capacity:CapacityELBO",
             "reconstruction + gamma * |KL - C(step)|, C rising linearly to C_max")


@hookimpl
def register_variants(register):
    register(VariantSpec(
        name="beta-vae",
        description="beta-VAE: the ELBO with the KL weighted by beta > 1 for disentangling",
        parts=CONV_PARTS,
        objective="beta-elbo",
        params=(*CONV_TRAINING, *beta_elbo_params(beta=4.0)),
        paper="Higgins et al. 2017, beta-VAE: Learning Basic Visual Concepts with a Constrained Variational Framework (ICLR)",
    ))
    register(VariantSpec(
        name="beta-vae-capacity",
        description="beta-VAE with a controlled capacity: the KL is pulled towards a target C that grows with the steps",
        parts=CONV_PARTS,
        objective="capacity-elbo",
        params=(
            *CONV_TRAINING,
            Param("gamma", "float", 1000.0, "weight of |KL - C|", low=0.0),
            Param("capacity_max", "float", 25.0, "final target KL C_max in nats", low=0.0),
            Param("capacity_steps", "int", 0, "steps over which C rises linearly from 0 to C_max; 0 = the whole "
                  "run (epochs x steps per epoch, or --max-steps), so that C_max is reached", low=0),
            *beta_elbo_params(beta=None),
        ),
        paper="Burgess et al. 2018, Understanding disentangling in beta-VAE, arXiv 1804.03599",
    ))
