"""NVAE (Vahdat & Kautz 2020), scaled to 32x32 one-channel images: a deep hierarchy of latent groups
over two or more scales, residual cells with squeeze-and-excitation, residual posteriors, spectral
regularisation, KL warm-up and KL balancing. Registration only (torch-free); the parts live in
`structure`, `towers`, `cells`, `residual`, `spectral` and `objective`.
"""

from dataclasses import replace

from vaezoo import hookimpl
from vaezoo.hparams import Param, training_params
from vaezoo.variant import VariantSpec
from vaezoo_plugins.standard.presets import beta_elbo_params

_HERE = "vaezoo_plugins.nvae"

STRUCTURE_PARAMS = (
    Param("channels", "int", 8, "feature channels at 32x32; they double at every halving of the resolution", low=1),
    Param("scales", "int", 2, "latent scales: 8x8, 4x4 (and 2x2)", low=2, high=3),
    Param("groups_per_scale", "int", 3, "latent groups at each scale", low=1),
    Param("latent_channels", "int", 8, "channels of each latent group (its variables: channels x resolution^2)", low=1),
    Param("expand", "int", 3, "channel expansion inside the decoder's inverted-residual cells", low=1),
    Param("spectral_weight", "float", 1e-2,
          "weight of the spectral penalty (sum of conv spectral norms) and of the BatchNorm-scale penalty", low=0.0),
)

#: NVlabs/NVAE's weight decay 3e-4 (Adamax, L2 like Adam's here): the penalty lambda * sum(theta^2) with lambda = 1.5e-4.
L2_PENALTY = 1.5e-4

OBJECTIVE_PARAMS = (
    Param("kl_warmup_steps", "int", 3000, "steps over which the KL weight rises linearly to 1 (0: no warm-up)", low=0),
    Param("kl_min_coeff", "float", 1e-4, "smallest KL weight during the warm-up", low=0.0, high=1.0),
    Param("kl_balance", "bool", True, "balance the KL across groups while the KL weight is below 1"),
)


@hookimpl
def register_structures(register):
    register("nvae-hierarchy", f"{_HERE}.structure:NVAEHierarchy",
             "bottom-up tower and top-down hierarchy of latent groups over several scales, residual posteriors",
             params=STRUCTURE_PARAMS)


@hookimpl
def register_objectives(register):
    register("nvae-elbo", f"{_HERE}.objective:NVAEObjective",
             "ELBO with a linear KL warm-up and, during it, KL balancing across latent groups",
             params=OBJECTIVE_PARAMS)


@hookimpl
def register_variants(register):
    register(VariantSpec(
        name="nvae",
        description="NVAE: a deep hierarchical VAE with residual cells, residual posteriors and spectral regularisation",
        parts={"likelihood": "bernoulli"},
        structure="nvae-hierarchy",
        objective="nvae-elbo",
        params=(*(p for p in training_params(lr=1e-3, batch_size=64, epochs=10, latent_dim=1) if p.name != "latent_dim"),
                *(replace(p, default=L2_PENALTY) for p in beta_elbo_params(beta=None))),
        paper="Vahdat & Kautz 2020, NVAE: A Deep Hierarchical Variational Autoencoder (NeurIPS), arXiv 2007.03898",
    ))
