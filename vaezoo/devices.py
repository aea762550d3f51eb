"""Choosing the device (auto picks CUDA when present, else the CPU), and waiting for it."""

from __future__ import annotations

import torch

from vaezoo.errors import UsageError


def resolve_device(option: str = "auto") -> torch.device:
    option = (option or "auto").strip().lower()
    if option == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(option)
    except RuntimeError:
        raise UsageError(f"--device '{option}' is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("--device cuda was asked for but no CUDA device is available; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"--device {option}: only {torch.cuda.device_count()} CUDA device(s) present")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise UsageError("--device mps was asked for but MPS is not available")
    elif device.type != "cpu":
        raise UsageError(f"--device '{option}' is not supported; use auto, cpu, cuda or cuda:N")
    return device


def synchronize(device: torch.device) -> None:
    """Wait until `device` has run everything queued on it: GPU work is asynchronous, so a clock read
    before this would miss the work still in flight. Nothing to wait for on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
