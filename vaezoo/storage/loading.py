"""Rebuilding a model from a run folder or an exported file, using only the weights' metadata.

A folder (a run, or a Hugging-Face-style export) is read through its model.safetensors; the
metadata in that file names the variant, its hyperparameters and the input shape, and the
registry builds the parts. A training checkpoint reads as the model at its epoch. Nothing is
unpickled.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vaezoo import __version__, footprint
from vaezoo.errors import UsageError, VaezooError, WeightsError, shown
from vaezoo.hparams import HParams
from vaezoo.model.building import build_model
from vaezoo.model.structure import Structure
from vaezoo.registry import (
    BUILTIN_DISTRIBUTION,
    PLUGINS_ENV,
    Registry,
    describe_failure,
    get_registry,
)
from vaezoo.storage import checkpoint
from vaezoo.storage.files import parse_json
from vaezoo.storage.runs import CHECKPOINTS, CONFIG, MODEL
from vaezoo.training.loop import weights_metadata
from vaezoo.variant import Recipe, VariantSpec

#: What a weights file may hold: the whole model, or the encoder or decoder alone.
PARTS = ("model", "encoder", "decoder")
JSON_FIELDS = ("hparams", "input_shape")
OPTIONAL_JSON_FIELDS = ("parts", "parent")
REQUIRED = ("variant", "dataset", *JSON_FIELDS)
DESCRIBING = (*REQUIRED, "vaezoo_version", "torch_version")
PROVENANCE = ("plugin", "plugin_distribution", "plugin_version")
CHECKPOINT_MODEL = "model/"  # prefix of the model's tensors in a training checkpoint
MAX_STAGES = 8  # parent stages nested in one file, at most


@dataclass
class Artifact:
    """A rebuilt model (or part) and what its file says about it."""

    path: Path  # what the user named: a folder or a file
    weights: Path  # the safetensors file read
    metadata: dict[str, Any]  # decoded: hparams a dict, input_shape a list
    spec: VariantSpec
    hp: HParams
    module: nn.Module  # the model (a Structure), or the encoder / decoder of a part file
    origin: str | None = None  # hf://OWNER/NAME when read from the Hub (path is then its cache folder)

    @property
    def part(self) -> str:
        return self.metadata["part"]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.metadata["input_shape"])  # type: ignore[return-value]

    def vae(self) -> Structure:
        """The whole model; a file holding one part is a clear error."""
        if self.part != "model":
            raise UsageError(f"{self.weights} holds only the {self.part}; this needs a whole model "
                             "(export it without --part)")
        return self.module  # type: ignore[return-value]

    def describe(self) -> dict[str, Any]:
        """What rebuilds this model elsewhere, with the hash of its weights: a second stage records
        it for its parent, and a resumed second stage checks its parent against it."""
        meta = {key: self.metadata[key] for key in (*DESCRIBING, *OPTIONAL_JSON_FIELDS, *PROVENANCE)
                if key in self.metadata}
        return {**meta, checkpoint.HASH_KEY: checkpoint.content_hash(checkpoint.model_tensors(self.module))}

    @property
    def stem(self) -> str:
        """What default file names start with: the run, file or Hub model name."""
        return self.origin.rsplit("/", 1)[-1].split("@")[0] if self.origin else self.path.resolve().stem

    def beside(self, name: str) -> Path:
        """Where results about this model go: inside its folder, or next to its file (x.NAME); for a
        Hub model, NAME.x in the current folder (never inside the download cache)."""
        if self.origin:
            return Path(f"{self.stem}.{name}")
        return self.path / name if self.path.is_dir() else self.path.with_name(f"{self.path.stem}.{name}")


def weights_path(path: Path) -> Path:
    """The safetensors file behind a run folder, an exported folder or a file."""
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"{path} does not exist")
    if not path.is_dir():
        return path
    if (path / MODEL).is_file():
        return path / MODEL
    if (path / CONFIG).is_file() and (path / CHECKPOINTS).is_dir():
        raise WeightsError(f"{path} is a run without {MODEL}: training has not finished "
                           f"(pass one of its checkpoints in {path / CHECKPOINTS} instead)")
    raise WeightsError(f"{path} is a folder but neither a run nor an exported model (no {MODEL})")


def checkpoint_model(raw: dict[str, str], tensors: dict[str, torch.Tensor],
                     source: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """The model inside a training checkpoint: its tensors, and the metadata its run config implies."""
    try:
        meta = weights_metadata(parse_json(raw["config"]))
    except (ValueError, KeyError, TypeError):
        raise WeightsError(f"{source} is a training checkpoint without a readable run config") from None
    model = {k[len(CHECKPOINT_MODEL):]: v for k, v in tensors.items() if k.startswith(CHECKPOINT_MODEL)}
    return checkpoint.encode_metadata(meta), model


def decode_metadata(raw: dict[str, str], source: Path) -> dict[str, Any]:
    """Decode and check the metadata a model file carries; anything missing or malformed is a WeightsError."""
    meta: dict[str, Any] = dict(raw)
    for key in (*JSON_FIELDS, *OPTIONAL_JSON_FIELDS):
        if key in raw:
            try:
                meta[key] = parse_json(raw[key])
            except ValueError:
                raise WeightsError(f"{source}: metadata '{key}' is not valid JSON") from None
    return check_metadata(meta, source)


def check_metadata(meta: dict[str, Any], source: Path) -> dict[str, Any]:
    """Check decoded metadata: a weights file's, or that of a parent stage nested in it."""
    missing = [key for key in REQUIRED if key not in meta]
    if missing:
        raise WeightsError(f"{source} was written by vaezoo but its metadata lacks {', '.join(missing)}")
    shape = meta["input_shape"]
    parts = meta.get("parts", {})
    if not isinstance(parts, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in parts.items()):
        raise WeightsError(f"{source}: metadata 'parts' must map part kinds to names")
    if "parent" in meta and not isinstance(meta["parent"], dict):
        raise WeightsError(f"{source}: metadata 'parent' must be the parent model's metadata")
    if not isinstance(meta["hparams"], dict) or not (
            isinstance(shape, list) and len(shape) == 3 and all(isinstance(d, int) and d > 0 for d in shape)):
        raise WeightsError(f"{source}: metadata 'hparams' must be an object and 'input_shape' three positive integers")
    meta.setdefault("part", "model")
    if meta["part"] not in PARTS:
        raise WeightsError(f"{source}: metadata 'part' is {shown(meta['part'])}, expected one of {', '.join(PARTS)}")
    return meta


def installed_variant(registry: Registry, meta: dict[str, Any], source: Path) -> VariantSpec:
    """The variant the file names; when it is not installed, say what the file says provides it.

    The file's words are quoted, never turned into a command to run: a file can name any package.
    """
    name = meta["variant"]
    if name in registry.names("variant"):
        return registry.variant(name)
    plugin, distribution, version = (meta.get(key) for key in ("plugin", "plugin_distribution", "plugin_version"))
    info = registry.plugins.get(plugin) if isinstance(plugin, str) else None
    if info is not None and info.error:
        raise WeightsError(f"{source} needs variant {shown(name)} from plugin {shown(plugin)}, which is installed "
                           f"but failed to load: {info.error}")
    if distribution == BUILTIN_DISTRIBUTION:
        raise WeightsError(f"{source} needs variant {shown(name)}, which its file says is built into vaezoo "
                           f"{shown(version) if version else '(version not recorded)'}, but this vaezoo {__version__} "
                           "has no such variant (`vaezoo list` shows those it has)")
    said = f"; the file says plugin {shown(plugin)}" if plugin is not None else ""
    if distribution is not None:
        said += f" from the distribution {shown(distribution)}{' ' + shown(version) if version else ''}"
    selected = f" (third-party plugins are limited by {PLUGINS_ENV})" if os.environ.get(PLUGINS_ENV) is not None else ""
    raise WeightsError(f"{source} needs variant {shown(name)}, which no installed plugin provides{said}; "
                       f"`vaezoo plugins` lists the plugins installed{selected}")


def model_from_metadata(meta: dict[str, Any], registry: Registry, source: Path, device: torch.device,
                        stages: int = 0) -> tuple[VariantSpec, Structure]:
    """Build (untrained) the model that `meta` describes, its parent stage first when it has one,
    after checking that it fits in `device`'s memory. The metadata is untrusted: a model it
    describes that cannot be built is the file's fault, told in one line."""
    spec = installed_variant(registry, meta, source)
    parent = None
    if "parent" in meta:
        if stages >= MAX_STAGES:
            raise WeightsError(f"{source}: more than {MAX_STAGES} nested parent stages")
        _, parent = model_from_metadata(check_metadata(dict(meta["parent"]), source), registry, source, device,
                                        stages + 1)
    shape, parts, dataset = tuple(meta["input_shape"]), meta.get("parts"), meta["dataset"]
    try:
        hp = Recipe.of(spec, registry, parts, dataset).schema.resolve(meta["hparams"])
    except UsageError as exc:
        raise WeightsError(f"{source}: its parts or hyperparameters do not fit the installed variant "
                           f"'{spec.name}' ({exc})") from None
    footprint.check_build(f"the model {source} describes", spec, hp, shape, registry, device, parts=parts,
                          parent=parent, dataset=dataset)
    try:
        with torch.random.fork_rng(devices=[]):  # building initialises weights; leave the caller's RNG alone
            model = build_model(spec, hp, shape, registry, parts=parts, parent=parent, dataset=dataset)
    except UsageError as exc:
        raise WeightsError(f"{source}: its parts or hyperparameters do not fit the installed variant "
                           f"'{spec.name}' ({exc})") from None
    except (VaezooError, MemoryError):
        raise
    except Exception as exc:
        raise WeightsError(f"{source}: the model its metadata describes cannot be built "
                           f"({describe_failure(exc)})") from exc
    return spec, model


def load_weights(module: nn.Module, tensors: dict[str, torch.Tensor], meta: dict[str, Any], registry: Registry,
                 source: Path) -> None:
    """Load `tensors` into `module`; a mismatch between plugin versions is told as such."""
    try:
        checkpoint.load_module_state(module, tensors, "", source)
    except WeightsError as exc:
        written = meta.get("plugin_version")
        installed = registry.provenance("variant", meta["variant"]).get("plugin_version")
        if written and installed and written != installed:
            raise WeightsError(f"{exc}: it was written by {meta.get('plugin_distribution', meta.get('plugin'))} "
                               f"{written} and {installed} is installed, whose model layout differs") from None
        raise


def open_artifact(path: Path, *, device: torch.device | str = "cpu", registry: Registry | None = None) -> Artifact:
    """Read a weights file (or a folder holding one), rebuild its model from the registry, load the weights."""
    registry = registry or get_registry()
    source = weights_path(Path(path))
    tensors, raw = checkpoint.read(source)
    if "variant" not in raw and "optimizers" in raw:
        raw, tensors = checkpoint_model(raw, tensors, source)
    meta = decode_metadata(raw, source)
    spec, model = model_from_metadata(meta, registry, source, torch.device(device))
    module = model if meta["part"] == "model" else getattr(model, meta["part"])
    load_weights(module, tensors, meta, registry, source)
    module.to(device).eval()
    return Artifact(Path(path), source, meta, spec, model.hp, module)
