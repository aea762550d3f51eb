"""Every random-number generator a run touches (torch, CUDA, numpy, Python), seeded, saved and restored.

States are stored as tensors plus JSON, never pickled. The built-in parts draw only from torch;
numpy's and Python's global generators are kept too because plugins may use them.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaezoo.errors import WeightsError

TORCH, CUDA = "rng/torch", "rng/cuda"


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def capture(device: torch.device) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The current states: tensors for torch (and `device`'s CUDA generator), JSON for numpy and Python."""
    tensors = {TORCH: torch.get_rng_state()}
    if device.type == "cuda":
        tensors[CUDA] = torch.cuda.get_rng_state(device)
    version, internal, gauss = random.getstate()
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"] = {"key": numpy_state["state"]["key"].tolist(), "pos": int(numpy_state["state"]["pos"])}
    return tensors, {"python": [version, list(internal), gauss], "numpy": numpy_state}


def restore(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any], device: torch.device, source: Path) -> None:
    """Put back what `capture` saved; the CUDA state only when resuming on a CUDA device again."""
    try:
        torch.set_rng_state(tensors[TORCH])
        if device.type == "cuda" and CUDA in tensors:
            torch.cuda.set_rng_state(tensors[CUDA], device)
        version, internal, gauss = meta["python"]
        random.setstate((version, tuple(internal), gauss))
        numpy_state = dict(meta["numpy"])
        numpy_state["state"] = {**numpy_state["state"], "key": np.asarray(numpy_state["state"]["key"], dtype=np.uint32)}
        np.random.set_state(numpy_state)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise WeightsError(f"{source}: the random-number states are missing or damaged ({exc})") from None
