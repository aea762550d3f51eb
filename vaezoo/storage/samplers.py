"""A fitted sampler on disk: one safetensors file beside the model (its state, with JSON metadata
naming the sampler, its hyperparameters, the code size and the hash of the model it was fitted to).

Read like every file a user hands vaezoo: nothing is unpickled, and a file that is missing,
unreadable, altered, non-finite or fitted to another model is one clear error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from vaezoo import __version__
from vaezoo.errors import UsageError, WeightsError
from vaezoo.model.samplers import Sampler, build_sampler, code_size
from vaezoo.registry import Registry
from vaezoo.storage import checkpoint
from vaezoo.storage.loading import Artifact
from vaezoo.storage.runs import SAMPLER_FILE

REQUIRED = ("sampler", "hparams", "code_dim", "model_hash")


def sampler_file(artifact: Artifact, name: str) -> Path:
    """Where the fitted sampler `name` of this model lives: sampler-NAME.safetensors beside it."""
    return artifact.beside(SAMPLER_FILE.format(name))


def model_hash(artifact: Artifact) -> str:
    return checkpoint.content_hash(checkpoint.model_tensors(artifact.module))


def save_sampler(path: Path, name: str, sampler: Sampler, hp: dict[str, Any], code_dim: int, artifact: Artifact,
                 fit: dict[str, Any]) -> None:
    """Write the fitted sampler's state with what validates and rebuilds it (atomic)."""
    tensors = checkpoint.model_tensors(sampler)
    checkpoint.write(path, tensors, {
        "sampler": name, "hparams": hp, "code_dim": code_dim, "model_hash": model_hash(artifact),
        "variant": artifact.spec.name, "fit": fit, "vaezoo_version": __version__,
        checkpoint.HASH_KEY: checkpoint.content_hash(tensors),
    })


def load_sampler(artifact: Artifact, name: str, registry: Registry) -> tuple[Sampler, dict[str, Any]]:
    """The fitted sampler `name` of this model and its metadata; anything wrong is a WeightsError."""
    path = sampler_file(artifact, name)
    if not path.exists():
        raise WeightsError(f"sampler '{name}' has not been fitted for {artifact.path} (no {path}); "
                           f"fit it with `vaezoo fit-sampler {artifact.path} --sampler {name}`")
    tensors, raw = checkpoint.read(path)
    meta = _decode(raw, path)
    if meta["sampler"] != name:
        raise WeightsError(f"{path} holds sampler '{meta['sampler']}', not '{name}'")
    if meta["model_hash"] != model_hash(artifact):
        raise WeightsError(f"{path} was fitted to another model than {artifact.path} (its weights changed since); "
                           f"fit it again with `vaezoo fit-sampler {artifact.path} --sampler {name} --overwrite`")
    if meta["code_dim"] != code_size(artifact.vae()):
        raise WeightsError(f"{path} samples codes of {meta['code_dim']} values; the model's have {code_size(artifact.vae())}")
    try:
        sampler = build_sampler(registry, name, meta["hparams"], artifact.input_shape, meta["code_dim"])
    except UsageError as exc:
        raise WeightsError(f"{path}: its hyperparameters do not fit the installed sampler '{name}' ({exc})") from None
    checkpoint.load_module_state(sampler, tensors, "", path)
    if not all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point()):
        raise WeightsError(f"{path} holds non-finite values; fit the sampler again")
    device = next(artifact.module.parameters()).device
    return sampler.to(device).eval(), meta


def _decode(raw: dict[str, str], path: Path) -> dict[str, Any]:
    missing = [key for key in REQUIRED if key not in raw]
    if missing:
        raise WeightsError(f"{path} is not a fitted vaezoo sampler (its metadata lacks {', '.join(missing)})")
    try:
        meta = {**raw, "hparams": json.loads(raw["hparams"]), "code_dim": json.loads(raw["code_dim"])}
    except ValueError:
        raise WeightsError(f"{path}: metadata 'hparams' or 'code_dim' is not valid JSON") from None
    if not isinstance(meta["hparams"], dict) or not (type(meta["code_dim"]) is int and meta["code_dim"] > 0):
        raise WeightsError(f"{path}: metadata 'hparams' must be an object and 'code_dim' a positive integer")
    return meta
