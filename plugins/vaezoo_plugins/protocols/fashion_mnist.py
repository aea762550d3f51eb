"""FashionMNIST for the whole zoo: grey levels as Bernoulli probabilities (the reference model's
protocol) and dynamically binarised images (the literature's), 2 seeds, a budget a 2-core CPU can
afford for all 96 cells in under two hours (1 epoch, -log p(x) with K = 10); variants whose default
costs many decoder passes per image are cut to 8 samples. Second stages train on their first stage's
run of the same dataset and seed.

The published numbers used their own architectures and budgets: context for the table, not targets.
"""

from vaezoo.bench.protocol import Ordering, Protocol, Published

EXEMPLAR = ("Norouzi, Fleet & Norouzi 2020, Exemplar VAE (NeurIPS), Table 2: dynamically binarised FashionMNIST, "
            "their own architecture and training budget, K = 5000")

PROTOCOL = Protocol(
    name="fashion-mnist",
    datasets={"grey": "fashion-mnist", "binarized": "binarized-fashion-mnist"},
    epochs=1,
    seeds=(0, 1),
    importance_samples=10,
    overrides={"ciwae": {"k": 8}, "miwae": {"m": 2, "k": 4}, "piwae": {"m": 2, "k": 4}},
    parents={"two-stage-vae": "conv-fashion", "vq-vae-prior": "vq-vae"},
    region=(2, 30, 2, 30),
    quality_dataset="grey",
    published=(
        Published("conv-fashion", "binarized", 228.70, EXEMPLAR),
        Published("vamp-vae", "binarized", 227.35, EXEMPLAR),
    ),
    orderings=(
        Ordering("iwae", "conv-fashion", "Burda et al. 2015: the IWAE bound trains models with better -log p(x) "
                 "than the VAE's"),
        Ordering("vamp-vae", "conv-fashion", "Tomczak & Welling 2018: the VampPrior beats the standard normal prior"),
        Ordering("iaf-vae", "conv-fashion", "Kingma et al. 2016: an IAF posterior beats a diagonal Gaussian one"),
        Ordering("nvae", "conv-fashion", "Vahdat & Kautz 2020: a deep hierarchy beats a flat latent"),
    ),
)
