"""Weights and training state as safetensors plus JSON metadata: nothing is ever unpickled."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as save_tensors_to_bytes
from torch import nn

from vaezoo import footprint
from vaezoo.errors import WeightsError
from vaezoo.storage.files import atomic_write_bytes

FORMAT_KEY = "vaezoo_format"
FORMAT = "1"
HASH_KEY = "content_hash"


def _state_tensors(module: nn.Module, prefix: str = "") -> dict[str, torch.Tensor]:
    return {f"{prefix}{k}": v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}


def optimizer_tensors(optimizer: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer's state_dict into tensors and a JSON-able remainder."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}{index}/{key}"] = value.detach().cpu().contiguous().clone()
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def restore_optimizer(optimizer: torch.optim.Optimizer, prefix: str, tensors: Mapping[str, torch.Tensor],
                      meta: Mapping[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith(prefix):
            index, key = name[len(prefix):].split("/", 1)
            state.setdefault(int(index), {})[key] = value
    for index, values in meta["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})
    _match_parameter_layouts(optimizer)


def _match_parameter_layouts(optimizer: torch.optim.Optimizer) -> None:
    """Give each restored state tensor its parameter's strides (a channels_last parameter, say).

    load_state_dict keeps the file's contiguous layout, but fused and foreach optimizer kernels walk
    a parameter and its state in memory order: with different strides a fused Adam step silently
    pairs the wrong elements.
    """
    for group in optimizer.param_groups:
        for param in group["params"]:
            values = optimizer.state.get(param, {})
            for key, value in values.items():
                if isinstance(value, torch.Tensor) and value.shape == param.shape and value.stride() != param.stride():
                    values[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)


def content_hash(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and bytes: detects corruption a readable file can still carry."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{list(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return f"sha256:{digest.hexdigest()}"


def encode_metadata(metadata: Mapping[str, Any]) -> dict[str, str]:
    """Safetensors metadata is str -> str: strings stay as they are, anything else becomes JSON."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}


def encode(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, Any]) -> bytes:
    """The bytes of a vaezoo safetensors file: tensors and JSON-encoded metadata values."""
    return save_tensors_to_bytes(dict(tensors), metadata={FORMAT_KEY: FORMAT, **encode_metadata(metadata)})


def write(path: Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, Any]) -> None:
    """Write tensors with JSON-encoded metadata values, atomically."""
    atomic_write_bytes(Path(path), encode(tensors, metadata))


def read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and raw metadata of a vaezoo safetensors file; anything else is a WeightsError."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    footprint.check_fits(f"reading {path}", path.stat().st_size, torch.device("cpu"))  # its tensors fill the file
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise WeightsError(f"{path} is not a readable safetensors file ({str(exc).splitlines()[0]})") from None
    if metadata.get(FORMAT_KEY) != FORMAT:
        raise WeightsError(f"{path} is a safetensors file but not one written by vaezoo (no {FORMAT_KEY} metadata)")
    if HASH_KEY in metadata and content_hash(tensors) != metadata[HASH_KEY]:
        raise WeightsError(f"{path} is corrupt: its tensors do not match the {HASH_KEY} recorded when it was written")
    return tensors, metadata


def check_module_state(module: nn.Module, tensors: Mapping[str, torch.Tensor], prefix: str, source: Path) -> None:
    """The `prefix`-ed tensors are exactly `module`'s state: same names, shapes and dtypes."""
    own = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    expected = module.state_dict()
    missing = sorted(set(expected) - set(own))
    unexpected = sorted(set(own) - set(expected))
    wrong = sorted(k for k in set(expected) & set(own) if expected[k].shape != own[k].shape)
    wrong_type = sorted(k for k in set(expected) & set(own) if expected[k].dtype != own[k].dtype)
    if missing or unexpected or wrong or wrong_type:
        detail = "; ".join(f"{label}: {', '.join(keys[:3])}{'...' if len(keys) > 3 else ''}"
                           for label, keys in (("missing", missing), ("unexpected", unexpected),
                                               ("wrong shape", wrong), ("wrong dtype", wrong_type)) if keys)
        raise WeightsError(f"{source} does not match the model it claims to be ({detail})")


def load_module_state(module: nn.Module, tensors: Mapping[str, torch.Tensor], prefix: str, source: Path) -> None:
    """Load `prefix`-ed tensors into `module`, naming missing or mismatched keys clearly."""
    check_module_state(module, tensors, prefix, source)
    module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})


def model_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    return _state_tensors(model)


def checkpoint_tensors(model: nn.Module, objective: nn.Module,
                       optimizers: Mapping[str, torch.optim.Optimizer]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Everything needed to continue training: model, objective and optimizer states."""
    tensors = {**_state_tensors(model, "model/"), **_state_tensors(objective, "objective/")}
    meta: dict[str, Any] = {}
    for name, optimizer in optimizers.items():
        opt_tensors, opt_meta = optimizer_tensors(optimizer, f"optimizer.{name}/")
        tensors.update(opt_tensors)
        meta[name] = opt_meta
    return tensors, {"optimizers": meta}
