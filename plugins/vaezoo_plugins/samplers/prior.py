"""The model's own prior as a sampler: what `vaezoo sample` draws when no other sampler is named."""

from __future__ import annotations

from torch import Tensor

from vaezoo.model.parts import BuildContext
from vaezoo.model.samplers import Sampler
from vaezoo.model.structure import Structure


class ModelPrior(Sampler):
    """Draws through `model.sample(n)`: nothing to fit, and any structure that can sample its prior serves."""

    fits = False
    needs = frozenset()

    def __init__(self, ctx: BuildContext):
        super().__init__()

    def images(self, model: Structure, n: int) -> Tensor:
        return model.sample(n)
