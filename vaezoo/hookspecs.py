"""The pluggy hooks a vaezoo plugin implements.

Every hook receives a `register` callback. Registration only *names* implementations
("module:attribute" strings), so listing plugins never imports torch.

    register(name, target, description="")          # parts, objectives, datasets, metrics
    register(VariantSpec(...))                       # variants
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("vaezoo")

#: The part kinds a VAE is made of, in the order they are built.
PART_KINDS = ("encoder", "decoder", "likelihood", "prior", "divergence", "objective")


@hookspec
def register_encoders(register):
    """Encoders: x -> q(z|x), a distribution object (see vaezoo.model.parts.Encoder)."""


@hookspec
def register_decoders(register):
    """Decoders: z -> parameters of p(x|z) (see vaezoo.model.parts.Decoder)."""


@hookspec
def register_likelihoods(register):
    """Likelihoods: log p(x|z) from decoder output, and its mean (see vaezoo.model.parts.Likelihood)."""


@hookspec
def register_priors(register):
    """Priors p(z): log_prob and sample (see vaezoo.model.parts.Prior)."""


@hookspec
def register_divergences(register):
    """Divergences between q(z|x) and the prior (see vaezoo.model.parts.Divergence)."""


@hookspec
def register_objectives(register):
    """Objectives: combine the terms into the loss the optimiser minimises (see vaezoo.model.parts.Objective)."""


@hookspec
def register_datasets(register):
    """Datasets: a loader returning vaezoo.data.ImageData."""


@hookspec
def register_metrics(register):
    """Metrics: score a representation against a dataset's ground-truth factors (see vaezoo.evaluation.metrics)."""


@hookspec
def register_variants(register):
    """Variants: a vaezoo.variant.VariantSpec naming registered parts and typed hyperparameters."""
