"""Encoders with heads of their own (a point code, a vMF, a label beside the features, JointVAE's three
heads) build on the trunk of another registered encoder, named by the `base_encoder` hyperparameter."""

from __future__ import annotations

from torch import nn

from vaezoo.errors import UsageError
from vaezoo.model.parts import BuildContext
from vaezoo.registry import get_registry


def base_trunk(ctx: BuildContext) -> tuple[nn.Module, int]:
    """(trunk, its feature width) of the encoder `base_encoder`; its own heads are not kept.

    The base must expose `trunk` (x -> [B, F]) and `features` (F), as the conv and mlp encoders do.
    """
    name = str(ctx.hp["base_encoder"])
    if getattr((ctx.registry or get_registry()).load("encoder", name), "wraps_base_encoder", False):
        raise UsageError(f"base_encoder '{name}' builds on a base encoder itself; name one with its own trunk "
                         "(e.g. conv or mlp)")
    base = ctx.build("encoder", name)
    trunk, features = getattr(base, "trunk", None), getattr(base, "features", None)
    if not isinstance(trunk, nn.Module) or not isinstance(features, int):
        raise UsageError(f"encoder '{name}' cannot be a base_encoder: it needs a `trunk` module and its "
                         "feature width `features`")
    return trunk, features
