"""Shipping a model: one safetensors file whose metadata is enough to rebuild it, or a
Hugging-Face-style folder (config.json + model.safetensors) holding the same; `--format hf` adds
the model card (README.md) the Hub shows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vaezoo import __version__
from vaezoo.errors import UsageError
from vaezoo.registry import Registry
from vaezoo.storage import checkpoint
from vaezoo.storage.files import atomic_write_files, encode_json, refuse_overwrite
from vaezoo.storage.loading import OPTIONAL_JSON_FIELDS, PARTS, Artifact
from vaezoo.storage.runs import CONFIG, EVAL, MODEL, RunDir, refuse_run_files

FORMATS = ("safetensors", "hf")
SUFFIX = ".safetensors"
CARD = "README.md"


def export_metadata(artifact: Artifact, part: str, registry: Registry) -> dict[str, Any]:
    """The metadata of an exported file; names the plugin so a machine without it can say what to install."""
    meta = {
        "variant": artifact.spec.name, "hparams": artifact.hp.to_dict(), "dataset": artifact.metadata["dataset"],
        "input_shape": list(artifact.input_shape), "part": part, **registry.provenance("variant", artifact.spec.name),
        "vaezoo_version": __version__, "torch_version": torch.__version__,
    }
    meta.update({key: artifact.metadata[key] for key in OPTIONAL_JSON_FIELDS if key in artifact.metadata})
    return meta


def default_destination(artifact: Artifact, part: str) -> Path:
    """VARIANT-RUNNAME[-PART].safetensors in the current folder."""
    stem = artifact.stem
    name = stem if artifact.spec.name in stem else f"{artifact.spec.name}-{stem}"
    return Path(f"{name}{'' if part == 'model' else '-' + part}{SUFFIX}")


def export(artifact: Artifact, registry: Registry, out: Path | None = None, *, part: str = "model",
           fmt: str = "safetensors", overwrite: bool = False, load_as: str | None = None) -> Path:
    """Write `part` of `artifact` to `out`: a .safetensors file, else a folder in Hugging Face layout;
    `fmt` "hf" always a folder, with the model card (which shows `vaezoo.load(load_as)`)."""
    if fmt not in FORMATS:
        raise UsageError(f"--format '{fmt}' is not supported; use {', '.join(FORMATS)}")
    if part not in PARTS:
        raise UsageError(f"--part '{part}' is not one of {', '.join(PARTS)}")
    if artifact.part not in ("model", part):
        raise UsageError(f"{artifact.weights} holds only the {artifact.part}; it cannot give the {part}")
    if out is None:
        out = default_destination(artifact, part)
        out = out.with_suffix("") if fmt == "hf" else out
    elif fmt == "hf" and Path(out).suffix == SUFFIX:
        raise UsageError(f"--format hf writes a folder; --out {out} names a file")
    out = Path(out)
    folder = out.suffix != SUFFIX
    if folder and (out.is_symlink() or (out.exists() and not out.is_dir())):
        raise UsageError(f"--out {out} exists and is not a folder")
    if folder and RunDir(out).is_run():
        raise UsageError(f"--out {out} holds a training run, whose {CONFIG} an export would replace; "
                         "export into a new folder")
    targets = [out / MODEL, out / CONFIG] + ([out / CARD] if fmt == "hf" else []) if folder else [out]
    for target in targets:
        refuse_run_files(target)
        refuse_overwrite(target, overwrite)
    module = artifact.module if part == artifact.part else getattr(artifact.module, part)
    tensors = checkpoint.model_tensors(module)
    meta = {**export_metadata(artifact, part, registry), checkpoint.HASH_KEY: checkpoint.content_hash(tensors)}
    files = {targets[0]: checkpoint.encode(tensors, meta)}
    if fmt == "hf":  # before anything is written: a missing extra or a bad eval.json leaves no half folder
        from vaezoo.storage.model_card import model_card, read_eval

        card = model_card(artifact, meta["plugin"], read_eval(artifact.beside(EVAL), artifact), load_as or str(out))
        files[out / CARD] = card.encode()
    if folder:  # all files or none: a failed export leaves nothing that would refuse the retry
        config = {"model_type": "vaezoo", checkpoint.FORMAT_KEY: checkpoint.FORMAT, **meta}
        files[out / CONFIG] = encode_json(config, out / CONFIG)
    atomic_write_files(files)
    return out if fmt == "hf" else targets[0]
