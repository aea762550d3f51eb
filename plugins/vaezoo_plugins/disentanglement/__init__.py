"""Disentanglement metrics, one module per metric as in disentanglement_lib (Locatello et al. 2019).

Each follows disentanglement_lib's definition and the settings of its unsupervised study; every
choice is written down in docs/disentanglement.md. The metrics that train a classifier need
scikit-learn (`pip install 'vaezoo[metrics]'`).
"""

from vaezoo import hookimpl

_HERE = "vaezoo_plugins.disentanglement"


@hookimpl
def register_metrics(register):
    register("beta-vae-score", f"{_HERE}.beta_vae:METRIC",
             "Higgins et al. 2017: accuracy of a linear classifier naming the fixed factor from |z1 - z2|")
    register("factor-vae-score", f"{_HERE}.factor_vae:METRIC",
             "Kim & Mnih 2018: majority-vote accuracy naming the fixed factor from the least-varying latent")
    register("mig", f"{_HERE}.mig:METRIC",
             "Chen et al. 2018: mutual information gap between the two most informative latents, per factor")
    register("sap", f"{_HERE}.sap:METRIC",
             "Kumar et al. 2018: gap in one-latent classification accuracy between the two best latents")
    register("dci", f"{_HERE}.dci:METRIC",
             "Eastwood & Williams 2018: disentanglement, completeness, informativeness from boosted trees")
    register("modularity-explicitness", f"{_HERE}.modularity_explicitness:METRIC",
             "Ridgeway & Mozer 2018: one factor per latent (mutual information), and linear decodability (ROC AUC)")
