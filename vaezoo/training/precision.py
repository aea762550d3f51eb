"""Mixed precision (`--precision 32|bf16|16`): the networks in a lower precision, the objective in float32.

Autocast covers the forward of the model's networks (its encoder and decoder): their matrix
products and convolutions run in bfloat16 or float16, and what they return is cast back to float32
at their boundary. Sampling, densities, divergences and every reduction of the objective therefore
run in float32, whatever a plugin's objective does (a sum of 1,024 pixel terms of ~0.3 nats each in
bfloat16 would be off by up to a nat). Parameters, gradients and optimizer states stay float32.
float16 also scales the loss with a gradient scaler (its state is checkpointed, so resume is exact).
See docs/precision.md.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from vaezoo.errors import UnknownNameError, UsageError, WeightsError

#: --precision value -> the autocast dtype (None: float32 throughout)
DTYPES: dict[str, torch.dtype | None] = {"32": None, "bf16": torch.bfloat16, "16": torch.float16}
#: The model's children that autocast covers: the networks. Everything else runs in float32.
NETWORKS = ("encoder", "decoder")
_SCALER_KEYS = {"scale": float, "growth_factor": float, "backoff_factor": float, "growth_interval": int,
                "_growth_tracker": int}


def check_precision(name: str, device: torch.device) -> str:
    """`name` if this device can train in it; otherwise one line saying what to use instead."""
    if name not in DTYPES:
        raise UnknownNameError("precision", name, DTYPES)
    if name == "32":
        return name
    if device.type == "cpu" and name == "16":
        raise UsageError("--precision 16 needs a CUDA device: float16 matrix products on CPUs are slow or "
                         "emulated; use --precision bf16 on the CPU")
    if device.type == "cuda" and name == "bf16" and not torch.cuda.is_bf16_supported():
        raise UsageError(f"--precision bf16: {torch.cuda.get_device_name(device)} has no bfloat16 support; "
                         "use --precision 16")
    if device.type not in ("cpu", "cuda"):
        raise UsageError(f"--precision {name} is supported on cpu and cuda devices, not {device.type}")
    return name


def emulation_note(name: str, device: torch.device) -> str | None:
    """A warning when bf16 will run, but emulated: CPUs without AVX512-BF16 or AMX (measured 8x slower)."""
    if name != "bf16" or device.type != "cpu":
        return None
    try:
        native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch without the probe: say nothing
        return None
    return None if native else ("this CPU has no native bfloat16 (AVX512-BF16 or AMX): --precision bf16 is emulated "
                                "and several times slower than --precision 32 here")


def to_float32(value: Any, depth: int = 0) -> Any:
    """`value` with every low-precision floating tensor in it cast to float32.

    Handles tensors, tuples, lists, dicts and distribution-like objects (torch.distributions,
    vaezoo's DiagonalGaussian), which are shallow-copied with their tensor attributes cast.
    """
    if isinstance(value, Tensor):
        return value.float() if value.is_floating_point() and value.dtype in (torch.bfloat16, torch.float16) else value
    if depth > 4 or isinstance(value, (nn.Module, str, bytes, int, float, bool, type(None))):
        return value
    if isinstance(value, (tuple, list)):
        cast = [to_float32(item, depth + 1) for item in value]
        return type(value)(cast) if not hasattr(value, "_fields") else type(value)(*cast)
    if isinstance(value, Mapping):
        return type(value)({key: to_float32(item, depth + 1) for key, item in value.items()})
    if hasattr(value, "__dict__"):
        twin = copy.copy(value)
        for key, item in vars(value).items():
            if not callable(item):
                setattr(twin, key, to_float32(item, depth + 1))
        return twin
    return value


def _valid_scaler_field(value: Any, kind: type) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
        return False
    return math.isfinite(value) and value > 0 if kind is float else value >= 0


class Precision:
    """One run's precision: autocast around the networks, and for float16 the gradient scaler."""

    def __init__(self, name: str, device: torch.device):
        self.name = name
        self.dtype = DTYPES[name]
        self.device_type = device.type
        self.scaler = torch.amp.GradScaler(device.type) if name == "16" else None

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        """While inside, the model's networks run under autocast and return float32."""
        if self.dtype is None:
            yield
            return
        networks = [module for name in NETWORKS if isinstance(module := getattr(model, name, None), nn.Module)]
        if not networks:
            raise UsageError(f"--precision {self.name}: this model has no {' or '.join(NETWORKS)} network for "
                             "autocast to cover; train it with --precision 32")
        for network in networks:
            network.forward = self._autocast(network.forward)  # an instance attribute: state_dict unchanged
        try:
            yield
        finally:
            for network in networks:
                del network.forward

    def _autocast(self, forward: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(forward)
        def run(*args: Any, **kwargs: Any) -> Any:
            with torch.autocast(self.device_type, self.dtype):
                out = forward(*args, **kwargs)
            return to_float32(out)
        return run

    def scaled(self, terms: Mapping[str, Tensor]) -> Mapping[str, Tensor]:
        """The terms whose gradients the loop takes, multiplied by the gradient scale (float16 only)."""
        if self.scaler is None:
            return terms
        return {key: self.scaler.scale(value) for key, value in terms.items() if key in ("loss", "aux_loss")}

    def step(self, optimizers: Mapping[str, torch.optim.Optimizer]) -> None:
        """Every optimizer steps; with the scaler, a step whose gradients overflowed is skipped and the scale shrinks."""
        if self.scaler is None:
            for optimizer in optimizers.values():
                optimizer.step()
            return
        for optimizer in optimizers.values():
            self.scaler.step(optimizer)
        self.scaler.update()

    def state(self) -> dict[str, float | int] | None:
        """What a checkpoint keeps: the gradient scaler's state (None without one)."""
        return None if self.scaler is None else dict(self.scaler.state_dict())

    def load(self, state: Any, source: str) -> None:
        """Restore `state` from a checkpoint (untrusted: every field checked)."""
        if self.scaler is None:
            return
        if state is None:  # a checkpoint written before the first scaled step: start from the initial scale
            return
        if not isinstance(state, dict) or set(state) != set(_SCALER_KEYS) or not all(
                _valid_scaler_field(state[key], kind) for key, kind in _SCALER_KEYS.items()):
            raise WeightsError(f"{source}: the gradient scaler's state is missing or damaged")
        self.scaler.load_state_dict(state)
