"""IWAE and the tighter-bound family of Rainforth et al. 2018 (MIWAE, CIWAE, PIWAE) on top of it."""

from vaezoo import hookimpl
from vaezoo.hparams import Param
from vaezoo.variant import VariantSpec
from vaezoo_plugins.standard.presets import CONV_PARTS, CONV_TRAINING

_HERE = "vaezoo_plugins.iwae.objective"
RAINFORTH = ("Rainforth, Kosiorek, Le, Maddison, Igl, Wood & Teh 2018, Tighter Variational Bounds are Not "
             "Necessarily Better, ICML (arXiv 1802.04537)")


@hookimpl
def register_objectives(register):
    register("iwae-bound", f"{_HERE}:ImportanceWeightedBound",
             "minus the importance-weighted bound log (1/k) sum_k p(x, z_k) / q(z_k|x); k = 1 is the ELBO")
    register("miwae-bound", f"{_HERE}:MultiplyImportanceWeightedBound",
             "minus the mean of m independent k-sample IWAE bounds")
    register("ciwae-bound", f"{_HERE}:CombinationImportanceWeightedBound",
             "minus beta * ELBO - (1 - beta) * IWAE_k on the same k samples")
    register("piwae-bound", f"{_HERE}:PartiallyImportanceWeightedBound",
             "IWAE_{mk} for the generative model, MIWAE_{m,k} for the inference network")


def _iwae_params(k: int) -> tuple[Param, ...]:
    return (
        *CONV_TRAINING,
        Param("k", "int", k, "importance samples per image (per bound for miwae and piwae; 1 = the ELBO)", low=1),
        Param("lambda", "float", 0.0, "weight of the sum of squared parameters added to the loss (Burda et al. "
              "use none; 0.01 with k = 1 is conv-fashion's objective with a one-sample KL)", low=0.0),
    )


def _m() -> Param:
    return Param("m", "int", 8, "independent bounds averaged (m = 1 is IWAE); m * k samples per image", low=1)


@hookimpl
def register_variants(register):
    register(VariantSpec(
        name="iwae",
        description="Importance-weighted autoencoder: a tighter bound from k posterior samples per image",
        parts=CONV_PARTS,
        objective="iwae-bound",
        params=_iwae_params(k=5),
        paper="Burda, Grosse & Salakhutdinov 2015, Importance Weighted Autoencoders, arXiv 1509.00519",
    ))
    register(VariantSpec(
        name="miwae",
        description="Multiply importance-weighted autoencoder: m independent k-sample bounds averaged",
        parts=CONV_PARTS, objective="miwae-bound", params=(*_iwae_params(k=8), _m()), paper=RAINFORTH,
    ))
    register(VariantSpec(
        name="ciwae",
        description="Combination importance-weighted autoencoder: a convex mix of the ELBO and the IWAE bound",
        parts=CONV_PARTS, objective="ciwae-bound", paper=RAINFORTH,
        params=(*_iwae_params(k=64), Param("ciwae_beta", "float", 0.5, "weight of the ELBO (1 = VAE, 0 = IWAE)",
                                           low=0.0, high=1.0)),
    ))
    register(VariantSpec(
        name="piwae",
        description="Partially importance-weighted autoencoder: IWAE for the decoder, MIWAE for the encoder",
        parts=CONV_PARTS, objective="piwae-bound", params=(*_iwae_params(k=8), _m()), paper=RAINFORTH,
    ))
