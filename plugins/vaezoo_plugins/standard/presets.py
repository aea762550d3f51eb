"""Recipes other variants start from: the reference model's parts, training defaults and beta-ELBO
hyperparameters. Torch-free, so plugins can use them while only registering."""

from __future__ import annotations

from vaezoo.hparams import Param, training_params

#: The parts of the reference model (conv-fashion), reused by variants that change only one of them.
CONV_PARTS = {
    "encoder": "conv",
    "decoder": "conv",
    "likelihood": "bernoulli",
    "prior": "standard-normal",
    "divergence": "gaussian-kl",
}

#: The hyperparameter of encoders that put heads of their own on another registered encoder's trunk.
BASE_ENCODER = Param("base_encoder", "str", CONV_PARTS["encoder"], "the registered encoder whose trunk is used")

#: The reference model's training defaults, for variants trained the same way.
CONV_TRAINING = training_params(lr=1e-4, batch_size=64, epochs=10, latent_dim=10)


def beta_elbo_params(*, beta: float | None = 1.0, l2: float = 0.01) -> tuple[Param, ...]:
    """Hyperparameters of the beta-ELBO objective with the L2 penalty (default `l2`), for variants that use it.

    beta=None leaves beta out, for objectives that weight the KL themselves (BetaELBO's kl_weight).
    """
    l2 = Param("lambda", "float", l2, "weight of the sum of squared parameters added to the loss", low=0.0)
    if beta is None:
        return (l2,)
    return (Param("beta", "float", beta, "weight of the KL term (1 = the ELBO)", low=0.0), l2)
