"""Building a variant's model and objective from the registry, and refusing combinations that cannot work."""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from vaezoo.errors import UsageError
from vaezoo.hparams import HParams
from vaezoo.model.parts import BuildContext, Objective
from vaezoo.model.structure import CAPABILITIES, Structure
from vaezoo.registry import Registry
from vaezoo.variant import Recipe, VariantSpec


def build_model(spec: VariantSpec, hp: HParams | Mapping, input_shape: tuple[int, int, int], registry: Registry, *,
                parts: Mapping[str, str] | None = None, parent: Structure | None = None,
                dataset: str | None = None) -> Structure:
    """The variant's model for inputs of `input_shape`: its structure, which builds the other parts.

    `parts` swaps registered parts by kind (as `--part` does); `hp` is resolved against the
    recipe's schema, so a swapped-in part's own hyperparameters get their defaults. `parent` is the
    finished earlier stage a second-stage variant builds on; it is frozen (the structure keeps it
    as `self.parent`, a submodule, so the model's weights file holds both stages). `dataset` (default
    the variant's) adds its parameters to the schema.
    """
    recipe = Recipe.of(spec, registry, parts, dataset)
    hp = recipe.schema.resolve(hp)
    _check_interfaces(recipe, registry)
    _check_parent(spec, parent)
    if parent is not None:
        parent.requires_grad_(False).eval()
    ctx = BuildContext(hp, tuple(input_shape), parts=recipe.parts, registry=registry, parent=parent)
    model = ctx.part("structure")
    if not isinstance(model, Structure):
        raise UsageError(f"structure '{recipe.parts['structure']}' built a {type(model).__name__}, "
                         "not a vaezoo.model.Structure")
    model.input_shape = ctx.input_shape
    model.likelihood_support = getattr(ctx.built.get("likelihood"), "support", None)
    model.recipe = recipe
    model.hp = hp
    for kind, part in ctx.built.items():
        check_needs(f"{kind} '{recipe.parts[kind]}'", type(part), model)
    return model


def build_objective(model: Structure, registry: Registry, dataset_size: int | None = None,
                    total_steps: int | None = None) -> Objective:
    """The objective of `model`'s recipe; it sees the model's parts, the training-set size and the
    run's planned optimiser steps (for schedules)."""
    recipe = model.recipe
    factory = registry.load("objective", recipe.parts["objective"])
    check_needs(f"objective '{recipe.parts['objective']}'", factory, model)
    ctx = BuildContext(model.hp, model.input_shape, dict(model.named_children()), dataset_size=dataset_size,
                       total_steps=total_steps, parts=recipe.parts, registry=registry)
    ctx.built["model"] = model
    return factory(ctx)


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """What the optimiser steps: everything but a frozen parent stage."""
    return [p for p in model.parameters() if p.requires_grad]


def penalised_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The trainable parameters an L2 penalty applies to: all but those a part names in its
    `no_weight_decay` attribute (parameter names relative to that part, e.g. a VampPrior's
    pseudo-inputs, which are data rather than weights)."""
    exempt = {id(getattr(module, name)) for module in model.modules() for name in getattr(module, "no_weight_decay", ())}
    return [p for p in trainable_parameters(model) if id(p) not in exempt]


def check_needs(what: str, part: object, model: Structure) -> None:
    """Refuse, with one line, a part (or sampler) whose `needs` the model's capabilities lack."""
    missing = sorted(set(getattr(part, "needs", ())) - set(model.capabilities))
    if missing:
        structure = model.recipe.parts["structure"]
        reasons = "; ".join(f"{name}: {CAPABILITIES.get(name, 'a capability no part declares')}" for name in missing)
        raise UsageError(f"the {what} needs {', '.join(missing)}, which structure '{structure}' built with these "
                         f"parts does not provide ({reasons})")


def _check_interfaces(recipe: Recipe, registry: Registry) -> None:
    """Refuse, with one line, a swapped-in part whose declared `interface` differs from the variant's own part's
    (an encoder giving q(z|x) where the structure reads a grid of features): it would fail deep in the first
    batch. A part that declares none is trusted."""
    defaults = recipe.spec.default_parts()
    for kind, name in recipe.swaps().items():
        wanted = getattr(registry.load(kind, defaults[kind]), "interface", None)
        given = getattr(registry.load(kind, name), "interface", None)
        if wanted is not None and given is not None and wanted != given:
            base = f"base_{kind}"
            hint = (f"; to build {kind} '{defaults[kind]}' on {kind} '{name}', use -o {base}={name}"
                    if base in recipe.schema else "")
            raise UsageError(f"--part {kind}={name}: {kind} '{name}' is {given}, but variant {recipe.spec.name}'s "
                             f"{kind} '{defaults[kind]}' is {wanted}{hint}")


def _check_parent(spec: VariantSpec, parent: Structure | None) -> None:
    if spec.parent_needs and parent is None:
        raise UsageError(f"{spec.name} is a second stage: name the finished run it builds on with --parent RUN")
    if parent is None:
        return
    if not spec.parent_needs:
        raise UsageError(f"{spec.name} trains on its own; --parent applies only to second-stage variants")
    missing = sorted(set(spec.parent_needs) - set(parent.capabilities))
    if missing:
        raise UsageError(f"{spec.name} needs a parent model with {', '.join(missing)}; "
                         f"the given run's structure '{parent.recipe.parts['structure']}' has none")
