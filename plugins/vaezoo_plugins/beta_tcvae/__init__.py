"""beta-TCVAE: the KL split into index-code MI, total correlation and dimension-wise KL."""

from vaezoo import hookimpl
from vaezoo.hparams import Param
from vaezoo.variant import VariantSpec
from vaezoo_plugins.standard.presets import CONV_PARTS, CONV_TRAINING, beta_elbo_params


@hookimpl
def register_objectives(register):
    register("tc-decomposed-elbo", "vaezoo_plugins.beta_tcvae.decomposition:TCDecomposedELBO",
             "reconstruction + alpha * MI + beta * TC + gamma * dimension-wise KL, minibatch estimators (mws, mss)")


@hookimpl
def register_variants(register):
    register(VariantSpec(
        name="beta-tcvae",
        description="beta-TCVAE: penalises the total correlation of the aggregate posterior",
        parts=CONV_PARTS,
        objective="tc-decomposed-elbo",
        params=(
            *CONV_TRAINING,
            Param("alpha", "float", 1.0, "weight of the index-code mutual information", low=0.0),
            Param("beta", "float", 6.0, "weight of the total correlation", low=0.0),
            Param("gamma", "float", 1.0, "weight of the dimension-wise KL", low=0.0),
            Param("estimator", "str", "mss", "minibatch weighted (mws) or stratified (mss) sampling",
                  choices=("mss", "mws")),
            *beta_elbo_params(beta=None),
        ),
        paper="Chen et al. 2018, Isolating Sources of Disentanglement in VAEs, arXiv 1802.04942",
    ))
