"""Numbers the literature reports for a protocol, with where they come from and how they differ.

Only numbers whose source and protocol are stated; they used their own architectures and budgets,
so they are context for our table, not targets it must hit.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Published:
    variant: str  # our variant that corresponds
    dataset: str  # protocol dataset label
    nll: float  # -log p(x), nats, on the original 784 pixels
    source: str


EXEMPLAR = ("Norouzi, Fleet & Norouzi 2020, Exemplar VAE (NeurIPS), Table 2: dynamically binarised FashionMNIST, "
            "their own architecture and training budget, K = 5000")

PUBLISHED = (
    Published("conv-fashion", "binarized", 228.70, EXEMPLAR),
    Published("vamp-vae", "binarized", 227.35, EXEMPLAR),
)

#: Headline claims of the papers, as orderings of test -log p(x): (better, worse, who says so).
ORDERINGS = (
    ("iwae", "conv-fashion", "Burda et al. 2015: the IWAE bound trains models with better -log p(x) than the VAE's"),
    ("vamp-vae", "conv-fashion", "Tomczak & Welling 2018: the VampPrior beats the standard normal prior"),
    ("iaf-vae", "conv-fashion", "Kingma et al. 2016: an IAF posterior beats a diagonal Gaussian one"),
    ("nvae", "conv-fashion", "Vahdat & Kautz 2020: a deep hierarchy beats a flat latent"),
)
