"""The pluggy hooks a vaezoo plugin implements.

Every hook receives a `register` callback. Registration only *names* implementations
("module:attribute" strings), so listing plugins never imports torch.

    register(name, target, description="", params=())  # parts, objectives, datasets, metrics, protocols
    register(VariantSpec(...))                          # variants

`params` is a tuple of vaezoo.hparams.Param: hyperparameters a part reads from ctx.hp, or a
dataset's loader takes as keyword arguments (an image folder's size), added to the schema of every
variant that uses the part or trains on the dataset (the variant's own win).
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("vaezoo")

#: The kinds of part a model is made of; a variant names one of each that its structure builds.
PART_KINDS = ("structure", "encoder", "decoder", "likelihood", "prior", "divergence", "objective")


@hookspec
def register_structures(register):
    """Model structures: own the pass x -> latent groups -> p(x|z) (see vaezoo.model.structure)."""


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
def register_samplers(register):
    """Post-hoc samplers: distributions over a trained model's flat codes, fitted after training
    (see vaezoo.model.samplers.Sampler)."""


@hookspec
def register_datasets(register):
    """Datasets: a loader `load(data_dir, **params) -> vaezoo.data.ImageData` (params: those registered)."""


@hookspec
def register_trackers(register):
    """Experiment trackers (`vaezoo train --track NAME`): a factory () -> vaezoo.training.tracker.Tracker."""


@hookspec
def register_metrics(register):
    """Metrics: score a representation against a dataset's ground-truth factors (see vaezoo.evaluation.metrics)."""


@hookspec
def register_protocols(register):
    """Benchmark protocols (`vaezoo bench NAME`): a vaezoo.bench.protocol.Protocol, the literature's numbers for
    it included."""


@hookspec
def register_variants(register):
    """Variants: a vaezoo.variant.VariantSpec naming registered parts and typed hyperparameters."""
