"""`vaezoo plugins --check`: does every plugin load, every target import, and every variant build and run?

What a plugin author would otherwise find one error at a time: a target that does not import, a
hook function whose name matches no hook (silently ignored by pluggy), parts that do not fit
together, a forward pass or loss that fails. Each problem keeps the plugin's own traceback.
"""

from __future__ import annotations

import difflib
import traceback
from dataclasses import dataclass
from traceback import format_exc

import torch

from vaezoo.errors import VaezooError
from vaezoo.hookspecs import PART_KINDS
from vaezoo.registry import HOOK_KINDS, Registry
from vaezoo.testing import build_variant
from vaezoo.variant import Recipe, VariantSpec

CHECK_BATCH = 4  # images in the forward pass each variant is checked with


@dataclass
class Problem:
    what: str
    message: str
    traceback: str | None = None


def check_plugins(registry: Registry) -> list[Problem]:
    """Every problem found, plugins first, then targets, then variants."""
    problems = []
    for info in registry.plugins.values():
        if info.error:
            problems.append(Problem(f"plugin '{info.name}'", f"failed to load: {info.error}", info.traceback))
        for hook in info.unknown_hooks:
            close = difflib.get_close_matches(hook, HOOK_KINDS, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            problems.append(Problem(f"plugin '{info.name}'", f"function {hook} matches no hook and is ignored{hint}"))
    for kind in (*PART_KINDS, "sampler", "dataset"):
        for entry in registry.entries(kind):
            try:
                entry.load()
            except VaezooError as exc:
                problems.append(Problem(f"{kind} '{entry.name}' ({entry.plugin})", str(exc), _cause(exc)))
    shapes: dict[str, tuple[int, int, int] | Problem] = {}
    for entry in registry.entries("variant"):
        problem = _check_variant(entry.target, registry, shapes)
        if problem is not None:
            problems.append(problem)
    return problems


def _check_variant(spec: VariantSpec, registry: Registry, shapes: dict) -> Problem | None:
    what = f"variant '{spec.name}'"
    try:
        Recipe.of(spec, registry)
    except VaezooError as exc:
        return Problem(what, str(exc))
    if spec.parent_needs:
        return None  # a second stage builds only on a finished run; its parts exist
    shape = _input_shape(spec.dataset, registry, shapes)
    if isinstance(shape, Problem):
        return shape
    try:
        with torch.random.fork_rng(devices=[]):
            model, objective = build_variant(spec.name, input_shape=shape, registry=registry)
            with model.conditioned_on(torch.zeros(CHECK_BATCH, dtype=torch.long)):  # read by conditional ones
                terms = objective(model, torch.rand(CHECK_BATCH, *shape), 0)
        if "loss" not in terms or terms["loss"].dim() != 0:
            return Problem(what, "its objective returned no scalar 'loss' term")
    except Exception as exc:  # a plugin's bug: report it with its traceback, keep checking the others
        return Problem(what, f"{type(exc).__name__}: {exc}", format_exc())
    return None


def _input_shape(dataset: str, registry: Registry, shapes: dict) -> tuple[int, int, int] | Problem:
    """The image shape of a registered dataset (loaded once per check)."""
    if dataset not in shapes:
        try:
            shapes[dataset] = registry.load("dataset", dataset)(None).input_shape
        except VaezooError as exc:
            shapes[dataset] = Problem(f"dataset '{dataset}'", f"cannot be loaded to check the variants on it: {exc}")
    return shapes[dataset]


def _cause(exc: BaseException) -> str | None:
    """The traceback of what a VaezooError was raised from (a plugin's import error), if any."""
    cause = exc.__cause__
    if cause is None:
        return None
    return "".join(traceback.format_exception(type(cause), cause, cause.__traceback__))
