"""S-VAE: a von Mises-Fisher posterior on the hypersphere with a uniform prior (Davidson et al. 2018)."""

from vaezoo import hookimpl
from vaezoo.hparams import Param, training_params
from vaezoo.variant import VariantSpec
from vaezoo_plugins.standard.presets import BASE_ENCODER, CONV_PARTS, beta_elbo_params

_HERE = "vaezoo_plugins.s_vae.parts"


@hookimpl
def register_encoders(register):
    register("vmf", f"{_HERE}:VMFEncoder", "a registered encoder's trunk with von Mises-Fisher heads (S-VAE)",
             params=(BASE_ENCODER,))


@hookimpl
def register_priors(register):
    register("hyperspherical-uniform", f"{_HERE}:HypersphericalUniformPrior", "uniform on the unit sphere S^(D-1)")


@hookimpl
def register_variants(register):
    register(VariantSpec(
        name="s-vae",
        description="Hyperspherical VAE: a von Mises-Fisher posterior and a uniform prior on the sphere",
        parts={**CONV_PARTS, "encoder": "vmf", "prior": "hyperspherical-uniform", "divergence": "analytic-kl"},
        objective="beta-elbo",
        params=(*training_params(lr=1e-4, batch_size=64, epochs=10, latent_dim=None),
                Param("latent_dim", "int", 10, "dimension m of the space whose unit sphere S^(m-1) holds z", low=3),
                *beta_elbo_params()),
        paper="Davidson, Falorsi, De Cao, Kipf & Tomczak 2018, Hyperspherical Variational Auto-Encoders, UAI "
              "(arXiv 1804.00891)",
    ))
