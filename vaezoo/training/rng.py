"""Every random-number generator a run touches (torch, CUDA, numpy, Python), seeded, saved and restored.

States are stored as tensors plus JSON, never pickled. The built-in parts draw only from torch;
numpy's and Python's global generators are kept too because plugins may use them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaezoo.errors import UsageError, WeightsError

TORCH, CUDA = "rng/torch", "rng/cuda"
#: Seeds are 64-bit: what torch.manual_seed accepts (negative ones count from 2**64).
SEED_RANGE = (-(2**63), 2**64 - 1)
_MT_WORDS = 624  # Mersenne Twister state: 624 32-bit words and a position 0..624 (Python's and numpy's)


def check_seed(seed: Any, what: str = "--seed") -> int:
    """A seed that fits in 64 bits; anything else is one UsageError line."""
    low, high = SEED_RANGE
    if type(seed) is not int or not low <= seed <= high:
        raise UsageError(f"{what} {seed!r} is not a whole number from -2**63 to 2**64 - 1 (64 bits)")
    return seed


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
    """Put back what `capture` saved (checked first); the CUDA state only when resuming on a CUDA device again."""
    check(tensors, meta, device, source)
    torch.set_rng_state(tensors[TORCH])
    if device.type == "cuda" and CUDA in tensors:
        torch.cuda.set_rng_state(tensors[CUDA], device)
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = dict(meta["numpy"])
    numpy_state["state"] = {**numpy_state["state"], "key": np.asarray(numpy_state["state"]["key"], dtype=np.uint32)}
    np.random.set_state(numpy_state)


def check(tensors: Mapping[str, torch.Tensor], meta: Any, device: torch.device, source: Path) -> None:
    """Refuse saved states that are not what `capture` writes, before any is set.

    Setting a malformed state is not always an error: numpy's Mersenne Twister crashes the
    interpreter on a position past its 624 words, and Python's accepts words of any size.
    """
    check_generator_state(tensors.get(TORCH), source, TORCH)
    if device.type == "cuda" and CUDA in tensors:
        expected = torch.cuda.get_rng_state(device)
        actual = tensors[CUDA]
        if actual.dtype != torch.uint8 or actual.shape != expected.shape:
            raise WeightsError(f"{source}: tensor {CUDA} is not a CUDA generator state")
    if not isinstance(meta, Mapping) or _python_problem(meta.get("python")) or _numpy_problem(meta.get("numpy")):
        raise WeightsError(f"{source}: its 'rng' entry does not hold Python's and numpy's generator states "
                           "as vaezoo writes them (damaged or edited)")


def check_generator_state(state: Any, source: Path, name: str) -> None:
    """A torch CPU generator state (the global one, or the data order's): tried on a throwaway generator."""
    problem = "is missing"
    if isinstance(state, torch.Tensor):
        problem = "is not a torch generator state"
        if state.dtype == torch.uint8 and state.shape == torch.get_rng_state().shape:
            try:
                torch.Generator().set_state(state)
                return
            except RuntimeError:
                pass
    raise WeightsError(f"{source}: tensor {name} {problem} (damaged or edited)")


def _words(values: Any, count: int) -> bool:
    return isinstance(values, list) and len(values) == count and all(
        type(v) is int and 0 <= v < 2**32 for v in values)


def _float_or_none(value: Any) -> bool:
    return value is None or (type(value) is float and math.isfinite(value))


def _python_problem(state: Any) -> bool:
    """[3, 624 words + position, gauss] as random.getstate() gives it."""
    if not (isinstance(state, list) and len(state) == 3 and state[0] == 3 and type(state[0]) is int):
        return True
    internal = state[1]
    return not (_words(internal[:-1] if isinstance(internal, list) else None, _MT_WORDS)
                and len(internal) == _MT_WORDS + 1 and type(internal[-1]) is int and 0 <= internal[-1] <= _MT_WORDS
                and _float_or_none(state[2]))


def _numpy_problem(state: Any) -> bool:
    """numpy's legacy-global MT19937 state as np.random.get_state(legacy=False) gives it."""
    if not (isinstance(state, Mapping) and state.get("bit_generator") == "MT19937"
            and isinstance(state.get("state"), Mapping)):
        return True
    inner, has_gauss = state["state"], state.get("has_gauss")
    return not (_words(inner.get("key"), _MT_WORDS) and type(inner.get("pos")) is int and 0 <= inner["pos"] <= _MT_WORDS
                and type(has_gauss) is int and has_gauss in (0, 1) and type(state.get("gauss")) is float
                and math.isfinite(state["gauss"]))


@contextmanager
def preserved() -> Iterator[None]:
    """Leave torch's CPU generator, numpy's and Python's global generators as they were (CUDA's is not touched)."""
    python, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            random.setstate(python)
            np.random.set_state(numpy_state)
