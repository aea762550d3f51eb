"""What a disentanglement metric sees: the factor grid and a representation of any factor codes.

As in disentanglement_lib, a metric samples factor codes (uniformly, each factor independently)
and asks for the representation of the images they show. `GroundTruth.represent` is that
function; for a model it encodes the dataset's images (`EncodedGrid`), and tests build it from
the codes directly (the factors themselves, a rotation of them, noise), which is how each metric
is checked against a known answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from vaezoo.errors import UsageError

if TYPE_CHECKING:
    from torch import Tensor

    from vaezoo.data import ImageData
    from vaezoo.model.structure import Structure


@dataclass(frozen=True)
class GroundTruth:
    """Factors `names` with `sizes` values each; `represent(codes [n, F] int64) -> [n, D] float64`."""

    names: tuple[str, ...]
    sizes: tuple[int, ...]
    represent: Callable[[np.ndarray], np.ndarray]

    @property
    def num_factors(self) -> int:
        return len(self.sizes)

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """[n, F] int64 codes, each factor uniform over its values and independent of the others."""
        return rng.integers(0, self.sizes, size=(n, self.num_factors), dtype=np.int64)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """n random factor codes [n, F] and their representations [n, D]."""
        codes = self.sample_factors(n, rng)
        return codes, self.represent(codes)


class EncodedGrid:
    """A model's representation (`model.representation`: the posterior mean, or a deterministic code)
of the training images, by factor codes.

    Each image is encoded once, the first time any metric asks for it, in batches on the model's
    device; the BetaVAE score alone asks for about 1.9 million codes, most of them repeats.
    """

    def __init__(self, model: Structure, data: ImageData, batch_size: int):
        if "flat-code" not in model.capabilities:
            raise UsageError(f"structure '{model.recipe.parts['structure']}' has no flat code for the "
                             f"disentanglement metrics to read (capability flat-code)")
        if data.factors is None:
            raise UsageError(f"dataset {data.name} has no ground-truth factors; disentanglement metrics need "
                             f"one that has (dsprites)")
        if not data.factors.complete:
            raise UsageError(f"the training split of {data.name} lacks some combinations of factor values; "
                             f"the metrics sample every combination")
        self.model, self.images, self.factors, self.batch_size = model, data.train, data.factors, batch_size
        self.table: Tensor | None = None
        self.known: Tensor | None = None

    @property
    def encoded(self) -> int:
        """How many distinct images have been encoded so far."""
        return 0 if self.known is None else int(self.known.sum())

    def ground_truth(self) -> GroundTruth:
        return GroundTruth(self.factors.names, self.factors.sizes, self)

    def __call__(self, codes: np.ndarray) -> np.ndarray:
        import torch

        from vaezoo.data import as_float

        rows = self.factors.rows(torch.from_numpy(np.ascontiguousarray(codes, dtype=np.int64)))
        if self.known is None:
            self.known = torch.zeros(len(self.images), dtype=torch.bool)
        missing = torch.unique(rows[~self.known[rows]])
        device = next(self.model.parameters()).device
        for chunk in missing.split(self.batch_size):
            z = self.model.representation(as_float(self.images[chunk].to(device))).cpu()
            if self.table is None:
                self.table = torch.empty(len(self.images), z.shape[1], dtype=z.dtype)
            self.table[chunk] = z
        self.known[missing] = True
        return self.table[rows].double().numpy()
