"""Post-hoc samplers: a distribution over a trained model's flat codes, fitted after training.

A VAE's prior is often a poor fit to the codes its encoder actually uses (the "holes" in the
aggregate posterior), and a deterministic autoencoder has no prior at all; pythae's answer, kept
here, is to fit a density to the training set's codes `model.representation(x)` once training is
done and decode samples of it. A sampler is a registered part (hook `register_samplers`), built like
the others from a `BuildContext` whose `latent_dim` is the code's size and whose `hp` holds the
sampler's own hyperparameters; `vaezoo fit-sampler` fits and saves it, `vaezoo sample --sampler`
draws from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from vaezoo.data import ordered_batches
from vaezoo.hparams import HParams, Schema
from vaezoo.model.building import check_needs
from vaezoo.model.parts import BuildContext
from vaezoo.model.structure import Structure
from vaezoo.registry import Registry


class Sampler(nn.Module):
    """Base for samplers: `fit(codes)`, then `sample(n)` codes and `log_prob(codes)`.

    Its state (buffers and parameters) is what is saved; `fits = False` marks a sampler that learns
    nothing and draws from the model itself (the model's own prior).
    """

    fits: bool = True
    needs: frozenset[str] = frozenset({"flat-code"})

    def fit(self, codes: Tensor) -> None:  # pragma: no cover - interface
        """Fit to training codes [N, D] (under the caller's random seed)."""
        raise NotImplementedError

    def sample(self, n: int) -> Tensor:  # pragma: no cover - interface
        """n codes [n, D]."""
        raise NotImplementedError

    def log_prob(self, codes: Tensor) -> Tensor:  # pragma: no cover - interface
        """log density of codes [N, D] -> [N]."""
        raise NotImplementedError

    @torch.no_grad()
    def images(self, model: Structure, n: int) -> Tensor:
        """n images: sampled codes decoded by the model."""
        codes = self.sample(n).to(next(model.parameters()).dtype)
        return model.decode_representation(codes)


def sampler_schema(registry: Registry, name: str) -> Schema:
    """The hyperparameters the sampler `name` declares (its Params at registration)."""
    return Schema(registry.get("sampler", name).params)


def build_sampler(registry: Registry, name: str, hp: HParams | Mapping[str, Any], input_shape: tuple[int, int, int],
                  code_dim: int | None = None) -> Sampler:
    """A fresh, unfitted sampler `name` for codes of `code_dim` values (its ctx.latent_dim; None for
    one that does not fit), `hp` resolved against its schema."""
    values = sampler_schema(registry, name).resolve(hp).to_dict()
    if code_dim is not None:
        values["latent_dim"] = code_dim
    return registry.load("sampler", name)(BuildContext(HParams(values), input_shape, registry=registry))


def check_sampler(name: str, sampler_class: type, model: Structure) -> None:
    """Refuse, with one line, a sampler the model cannot serve (most need a flat code)."""
    check_needs(f"sampler '{name}'", sampler_class, model)


@torch.no_grad()
def code_size(model: Structure) -> int:
    """D of the model's flat code, from one blank image."""
    return int(model.representation(torch.zeros(1, *model.input_shape, device=next(model.parameters()).device)).shape[-1])


@torch.no_grad()
def flat_codes(model: Structure, images: Tensor, batch_size: int) -> Tensor:
    """[N, D] the model's codes of uint8 `images` (on the model's device), in batches."""
    return torch.cat([model.representation(x) for x in ordered_batches(images, batch_size)])
