"""VQ-VAE (van den Oord et al. 2017) and its PixelCNN prior stage, as a plugin.

Parts: a residual conv encoder to a grid of code vectors and its decoder (`residual-grid`), the
`vector-quantised` structure owning the codebook, and the `code-pixelcnn` structure of the prior
stage. Registration only (torch-free); the parts live in the modules beside this one.
"""

from vaezoo import hookimpl
from vaezoo.hparams import Param, training_params
from vaezoo.variant import VariantSpec
from vaezoo_plugins.standard.presets import beta_elbo_params

_HERE = "vaezoo_plugins.vq_vae"

#: The encoder's and decoder's widths, shared by both (a variant's schema holds each name once).
NETWORK_PARAMS = (
    Param("hidden_channels", "int", 64, "channels of the conv layers and residual blocks", low=2),
    Param("residual_channels", "int", 32, "hidden channels inside a residual block", low=1),
    Param("residual_layers", "int", 2, "residual blocks in the encoder and in the decoder", low=0),
)

CODEBOOK_PARAMS = (
    Param("codebook_size", "int", 128, "number K of code vectors", low=2),
    Param("commitment", "float", 0.25, "weight beta of the commitment loss ||z_e - sg(e)||^2", low=0.0),
    Param("ema", "bool", False, "move the code vectors by exponential moving averages instead of the codebook loss"),
    Param("ema_decay", "float", 0.99, "decay of the moving averages (with ema)", low=0.0, high=1.0, low_exclusive=True),
    Param("ema_epsilon", "float", 1e-5, "Laplace smoothing of the moving code counts (with ema)", low=0.0,
          low_exclusive=True),
    Param("restart_after", "int", 10, "restart a code no position chose in this many training batches (0: never)",
          low=0),
)


@hookimpl
def register_structures(register):
    register("vector-quantised", f"{_HERE}.structure:VectorQuantised",
             "encoder -> grid of vectors -> nearest of K codes (straight-through) -> decoder; codebook and "
             "commitment losses; KL = positions * log K", params=CODEBOOK_PARAMS)
    register("code-pixelcnn", f"{_HERE}.prior:CodePrior",
             "a gated PixelCNN prior over a finished model's code grids; samples decode through it",
             params=(Param("prior_channels", "int", 32, "channels of the PixelCNN's stacks", low=1),
                     Param("prior_layers", "int", 5, "gated layers (five cover an 8x8 code grid)", low=1)))


@hookimpl
def register_encoders(register):
    register("residual-grid", f"{_HERE}.networks:GridEncoder",
             "2 stride-2 convs, a 3x3 conv and residual blocks to a [latent_dim, H/4, W/4] grid (not a distribution)",
             params=NETWORK_PARAMS)


@hookimpl
def register_decoders(register):
    register("residual-grid", f"{_HERE}.networks:GridDecoder",
             "a 3x3 conv and residual blocks, then 2 stride-2 transposed convs, from a [latent_dim, H/4, W/4] grid",
             params=NETWORK_PARAMS)


@hookimpl
def register_variants(register):
    register(VariantSpec(
        name="vq-vae",
        description="VQ-VAE: a grid of codes from a learnt codebook (train vq-vae-prior on it to sample)",
        parts={"encoder": "residual-grid", "decoder": "residual-grid", "likelihood": "bernoulli"},
        structure="vector-quantised",
        objective="beta-elbo",
        params=(*training_params(lr=3e-4, batch_size=64, epochs=10, latent_dim=16),
                *beta_elbo_params(l2=0.0)),
        paper="van den Oord, Vinyals & Kavukcuoglu 2017, Neural Discrete Representation Learning, "
              "arXiv 1711.00937",
    ))
    register(VariantSpec(
        name="vq-vae-prior",
        description="The prior stage of a VQ-VAE: a gated PixelCNN over its codes (vaezoo train vq-vae-prior "
                    "--parent RUN)",
        parts={},
        structure="code-pixelcnn",
        objective="beta-elbo",
        params=(*training_params(lr=1e-3, batch_size=64, epochs=10, latent_dim=None),
                *beta_elbo_params(l2=0.0)),
        paper="van den Oord et al. 2016, Conditional Image Generation with PixelCNN Decoders, arXiv 1606.05328",
        parent_needs=("discrete-codes",),
    ))
