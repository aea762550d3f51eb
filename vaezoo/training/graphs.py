"""The whole training step as one CUDA graph, replayed for every batch, where that gives the same step.

At batch 64 a GPU step of conv-fashion is bound by launching some hundreds of small kernels from
Python, not by the GPU's work (docs/performance.md). A CUDA graph records the step once (forward,
backward and the fused optimizer kernel) and replays it with a single launch. The replay runs the
same kernels on the same memory and draws the same random numbers (the generator's seed and offset
are read at each replay and advanced as the eager step advances them), so the numbers are the eager
step's. Chosen over torch.compile(mode="reduce-overhead"): no compile time (tens of seconds, more than
an epoch here), no Triton or C compiler on the machine, the eager kernels and hence the eager numbers,
and a decision that is explicit and testable without a GPU.

A graph freezes everything Python decides while it is recorded: the step number, Python-side state,
tensor shapes, and it cannot contain a host sync. So the loop captures only where all of this is
known to hold (`refusal` says why not, and then the step stays eager, silently):
- a CUDA device, one process, float32 (autocast's weight cache and the float16 gradient scaler's
  host checks are not graph-safe), no --skip-nonfinite (it reads every loss on the host), one
  optimizer with a fused step (no objective that trains its own modules with another);
- an objective and a structure whose classes declare `graph_safe = True` themselves (a subclass
  inherits no declaration: overriding a method may read the step), a model not conditioned on
  labels (they are handed over as Python state per batch) and no module of the model that declares
  `graph_safe = False`;
- a warm-up step that makes no synchronising CUDA call (checked with torch's sync debug mode);
- a capture that succeeds; and each later batch with the captured batch's shape, dtype and device
  (another batch runs eagerly).
`VAEZOO_CUDA_GRAPHS=0` turns capturing off.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from vaezoo.model.parts import Terms

#: Eager steps before the capture, on a side stream (lazy state, cuBLAS and cuDNN handles, allocator).
WARM_UP_STEPS = 3
SWITCH = "VAEZOO_CUDA_GRAPHS"


def declares_graph_safe(obj: object) -> bool:
    """Whether the object's own class (not a base class) sets graph_safe = True."""
    return vars(type(obj)).get("graph_safe", False) is True


def refusal(*, device: torch.device, model: nn.Module, objective: nn.Module,
            optimizers: Mapping[str, torch.optim.Optimizer], precision: str, processes: int,
            skip_nonfinite: bool) -> str | None:
    """Why this run's training step must not be captured in a CUDA graph, or None when it may be."""
    if os.environ.get(SWITCH, "1").strip().lower() in ("0", "false", "off", "no"):
        return f"{SWITCH} turns it off"
    if device.type != "cuda":
        return f"the device is {device.type}, not CUDA"
    if processes > 1:
        return "several processes train together (DDP's hooks and collectives)"
    if precision != "32":
        return f"--precision {precision} (autocast's weight cache, the float16 gradient scaler's host checks)"
    if skip_nonfinite:
        return "--skip-nonfinite reads every step's loss on the host"
    if list(optimizers) != ["model"]:
        return "the objective trains its own modules with another optimizer"
    if not all(group.get("fused") for optimizer in optimizers.values() for group in optimizer.param_groups):
        return "the optimizer step is not one fused kernel"
    for name, part in (("objective", objective), ("structure", model)):
        if not declares_graph_safe(part):
            return f"the {name} {type(part).__name__} does not declare graph_safe"
    if "conditional" in getattr(model, "capabilities", ()):
        return "the model reads each batch's labels from Python state (conditioned_on)"
    unsafe = sorted({type(m).__name__ for m in model.modules() if getattr(m, "graph_safe", None) is False})
    if unsafe:
        return f"{', '.join(unsafe)} declares graph_safe = False"
    return None


def _synchronising(step: Callable[[], Terms]) -> tuple[Terms, bool]:
    """Run `step`, and say whether it made a CUDA call that waits for the device (sync debug mode)."""
    previous = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            terms = step()
        finally:
            torch.cuda.set_sync_debug_mode(previous)
    return terms, any("synchroniz" in str(w.message) for w in caught)


@contextmanager
def _side_stream(device: torch.device) -> Iterator[None]:
    """Run what is inside on a fresh stream that starts after, and is waited for by, the current one."""
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        yield
    torch.cuda.current_stream(device).wait_stream(side)


class CapturedStep:
    """A recorded step: its input buffer, the graph and the terms the graph writes."""

    def __init__(self, update: Callable[[Tensor, int], Terms], x: Tensor, step: int,
                 optimizers: Mapping[str, torch.optim.Optimizer]):
        self.x = x.clone()
        self.graph = torch.cuda.CUDAGraph()
        groups = [group for optimizer in optimizers.values() for group in optimizer.param_groups]
        capturable = [group.get("capturable", False) for group in groups]
        for group in groups:  # the fused kernel ignores it; Adam's check asks for it while capturing
            group["capturable"] = True
        try:
            with torch.cuda.graph(self.graph):
                self.terms = update(self.x, step)
        finally:
            for group, flag in zip(groups, capturable):  # checkpoints keep the eager setting
                group["capturable"] = flag

    def fits(self, x: Tensor) -> bool:
        return x.shape == self.x.shape and x.dtype == self.x.dtype and x.device == self.x.device

    def __call__(self, x: Tensor) -> Terms:
        self.x.copy_(x)
        self.graph.replay()
        return self.terms


class StepGraph:
    """The loop's training update (forward, backward, optimizer steps): eager, or replayed from a graph.

    `update(x, step)` is the eager update. Unless `refused` says why not, the first WARM_UP_STEPS
    updates run eagerly on a side stream (the last one watched for host syncs), the next one is
    captured and replayed, and every later batch that fits the captured one is replayed.
    `note` is set once the choice is final: what a person may want to read about it.
    """

    def __init__(self, update: Callable[[Tensor, int], Terms], optimizers: Mapping[str, torch.optim.Optimizer],
                 refused: str | None):
        self.update, self.optimizers = update, optimizers
        self.refused = refused
        self.captured: CapturedStep | None = None
        self.warmed = 0
        self.note: str | None = None

    def __call__(self, x: Tensor, step: int) -> Terms:
        if self.captured is not None:
            return self.captured(x) if self.captured.fits(x) else self.update(x, step)
        if self.refused is not None:
            return self.update(x, step)
        if self.warmed < WARM_UP_STEPS:
            self.warmed += 1
            return self._warm_up(x, step, watch_syncs=self.warmed == WARM_UP_STEPS)
        try:
            self.captured = CapturedStep(self.update, x, step, self.optimizers)
        except Exception as exc:  # an operation a graph cannot hold: this step and every later one run eagerly
            self._refuse(f"the capture failed ({type(exc).__name__}: {exc})")
            return self.update(x, step)
        self.note = "CUDA graph: the training step is captured and replayed"
        return self.captured(x)

    def _warm_up(self, x: Tensor, step: int, watch_syncs: bool) -> Terms:
        """An eager update on a side stream, as torch's whole-network capture recipe warms up."""
        with _side_stream(x.device):
            terms, syncs = _synchronising(lambda: self.update(x, step)) if watch_syncs else (self.update(x, step), False)
        if syncs:
            self._refuse("the step waits for the device (a host sync)")
        return terms

    def _refuse(self, reason: str) -> None:
        self.refused = reason
        self.note = f"CUDA graph: not used, {reason}; the step runs eagerly"
