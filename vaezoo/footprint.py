"""Estimating the memory a model or a request needs, and refusing what cannot fit, before allocating it.

Sizes often come from files a user was handed (a latent size of 2**40 in a weights file's
metadata, a million pseudo-inputs) or from options (`sample --n 1000000000`). Building such a
model or drawing such a batch would end in an allocation traceback or in the kernel killing
the process. Instead, the model is first built on PyTorch's `meta` device, which records shapes
without allocating, and one batch is run through it there, counting the most memory its tensors
hold at once. What it needs is compared with the memory available now: for the CPU, MemAvailable from
/proc/meminfo (capped by a cgroup v2 limit), else the free (or, failing that, total) physical
pages from os.sysconf; for CUDA, the device's free memory. Where the platform reports nothing,
only what no machine could hold (FALLBACK_BYTES) is refused.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from vaezoo.errors import TooLargeError, VaezooError
from vaezoo.hparams import HParams
from vaezoo.registry import Registry
from vaezoo.variant import VariantSpec

#: Assumed available when the platform reports no figure: 1 TiB.
FALLBACK_BYTES = 2**40
#: Training keeps, per parameter, its value, its gradient and Adam's two moments.
TRAINING_COPIES = 4
#: The backward pass needs about as much again as the forward pass kept.
BACKWARD_FACTOR = 2
META = torch.device("meta")
_MEMINFO = Path("/proc/meminfo")
_CGROUP = Path("/sys/fs/cgroup")


def host_available_bytes() -> int | None:
    """Memory this process can still take on the host, or None where the platform does not say."""
    figure = _meminfo_available()
    if figure is None:
        for pages in ("SC_AVPHYS_PAGES", "SC_PHYS_PAGES"):
            try:
                figure = os.sysconf(pages) * os.sysconf("SC_PAGE_SIZE")
                break
            except (AttributeError, ValueError, OSError):
                continue
    limit = _cgroup_room()
    if limit is not None:
        figure = limit if figure is None else min(figure, limit)
    return figure


def _meminfo_available() -> int | None:
    try:
        for line in _MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_room() -> int | None:
    """A container's memory limit (cgroup v2) less what it uses, if one is set."""
    try:
        limit = (_CGROUP / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int((_CGROUP / "memory.current").read_text()))
    except (OSError, ValueError):
        return None


def available_bytes(device: torch.device) -> int | None:
    if device.type == "cuda":
        try:
            return torch.cuda.mem_get_info(device)[0]
        except RuntimeError:
            return None
    if device.type == "cpu":
        return host_available_bytes()
    return None


def human(size: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if size < 1024 or unit == "PiB":
            return f"{size:,.0f} {unit}" if unit == "bytes" else f"{size:,.1f} {unit}"
        size /= 1024
    raise AssertionError  # pragma: no cover


def check_fits(what: str, needed: int, device: torch.device) -> None:
    """Refuse `what` (one line) when `needed` bytes exceed the memory available on `device`."""
    available = available_bytes(torch.device(device))
    limit = FALLBACK_BYTES if available is None else available
    if needed > limit:
        where = f"{human(available)} is available on {device}" if available is not None else \
            f"vaezoo refuses anything over {human(FALLBACK_BYTES)} where the platform reports no figure"
        raise TooLargeError(f"{what} would need about {human(needed)} of memory, but {where}; nothing was allocated")


class _Peak(TorchDispatchMode):
    """The most bytes held at once by the tensors the operations run under it create: each new tensor is
    counted until it is freed (views and in-place results share their input's memory and are not new;
    tensors autograd saves for the backward pass stay alive, so they count)."""

    def __init__(self) -> None:
        super().__init__()
        self.live = self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if not any(r.alias_info is not None for r in func._schema.returns):
            for tensor in tree_leaves(out):
                if isinstance(tensor, torch.Tensor):
                    size = tensor.numel() * tensor.element_size()
                    self.live += size
                    self.peak = max(self.peak, self.live)
                    weakref.finalize(tensor, self._free, size)
        return out

    def _free(self, size: int) -> None:
        self.live -= size


def peak_bytes(run: Callable[[], Any]) -> int:
    """The most memory the tensors `run` creates hold at once (the allocator's overhead aside)."""
    with _Peak() as count:
        run()
    return count.peak


def scaled_bytes(run: Callable[[int], Any], n: int) -> int:
    """The peak of `run(n)`, measured on 1 and 2 items: the fixed part (weights converted once, say) plus n
    times the part each item adds."""
    one, two = peak_bytes(lambda: run(1)), peak_bytes(lambda: run(2))
    return one + (n - 1) * max(two - one, 0)


def state_bytes(module: nn.Module) -> int:
    """Bytes of a module's parameters and buffers."""
    return sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))


def on_meta(build: Callable[[], nn.Module]) -> nn.Module | None:
    """`build()` on the meta device, its random draws kept from the caller's generator; None if a part cannot be
    built there (it is then built for real without an estimate). A VaezooError (a bad option) is raised as is."""
    try:
        with torch.random.fork_rng(devices=[]), torch.device(META):
            return build()
    except VaezooError:
        raise
    except Exception:
        return None


def forward_bytes(run: Callable[[], Any]) -> int:
    """Bytes one pass creates on the meta device; 0 when a part cannot run there (a data-dependent branch)."""
    try:
        with torch.random.fork_rng(devices=[]):
            return peak_bytes(run)
    except VaezooError:
        raise
    except Exception:
        return 0


def check_build(what: str, spec: VariantSpec, hp: HParams, input_shape: tuple[int, int, int], registry: Registry,
                device: torch.device, *, batch: int = 1, dataset_size: int | None = None,
                parts: Mapping[str, str] | None = None, parent: nn.Module | None = None,
                dataset: str | None = None) -> None:
    """Refuse building `spec` when its model (for training, with gradients, Adam's moments, the objective's
    own modules and one batch's forward and backward) cannot fit on `device`.

    The model is built on the CPU and then moved, so the CPU must hold its parameters too. `parts`,
    `parent` and `dataset` are what build_model takes; a conditional model is measured on labels 0.
    """
    from vaezoo.model.building import build_model, build_objective

    model = on_meta(lambda: build_model(spec, hp, input_shape, registry, parts=parts, parent=parent, dataset=dataset))
    if model is None:
        return
    training = dataset_size is not None
    # the run's length only shapes schedules, not memory: one step stands for it
    objective = on_meta(lambda: build_objective(model, registry, dataset_size=dataset_size, total_steps=1)) \
        if training else None
    x = torch.empty(batch, *input_shape, device=META)
    labels = torch.zeros(batch, dtype=torch.long, device=META)
    if objective is not None:
        tensors = {id(t): t for t in (*model.parameters(), *model.buffers(), *objective.parameters(),
                                      *objective.buffers())}
        parameters = sum(t.numel() * t.element_size() for t in tensors.values())
        with model.conditioned_on(labels):
            needed = TRAINING_COPIES * parameters + BACKWARD_FACTOR * forward_bytes(lambda: objective(model, x, 0))
    else:
        parameters = state_bytes(model)
        with model.conditioned_on(labels):
            needed = parameters + forward_bytes(lambda: model(x))
    check_fits(what, needed, device)
    if device.type != "cpu":
        check_fits(what, parameters, torch.device("cpu"))
