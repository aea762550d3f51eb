"""The JS-G-alpha VAE: the skew geometric Jensen-Shannon divergence in place of the KL."""

from vaezoo import hookimpl
from vaezoo.hparams import Param
from vaezoo.variant import VariantSpec
from vaezoo_plugins.standard.presets import CONV_PARTS, CONV_TRAINING, beta_elbo_params


@hookimpl
def register_divergences(register):
    register("gjs", "vaezoo_plugins.gjs_vae.divergence:GeometricJS",
             "skew geometric Jensen-Shannon JS-G-alpha (or its dual) between diagonal Gaussians, closed form")


@hookimpl
def register_variants(register):
    register(VariantSpec(
        name="gjs-vae",
        description="JS-G-alpha VAE: the skew geometric Jensen-Shannon divergence as the regulariser",
        parts={**CONV_PARTS, "divergence": "gjs"},
        objective="beta-elbo",
        params=(
            *CONV_TRAINING,
            Param("alpha", "float", 0.5, "skew: 0 gives KL(q || p), 1 gives KL(p || q) (reversed when dual)",
                  low=0.0, high=1.0),
            Param("dual", "bool", False, "use the dual divergence, KLs from the geometric mean"),
            *beta_elbo_params(),
        ),
        paper="Deasy, Simidjievski & Lio 2020, Constraining VAE Regularisation with the Geometric Jensen-Shannon "
              "Divergence, arXiv 2006.10599",
    ))
