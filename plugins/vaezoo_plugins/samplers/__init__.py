"""Post-hoc samplers over a trained model's flat codes: the model's own prior, a Gaussian mixture
fitted by EM (pythae's default for deterministic autoencoders), and small MAF / IAF flows.

Fit one with `vaezoo fit-sampler RUN --sampler NAME [-o key=value]`, draw with `vaezoo sample RUN
--sampler NAME`.
"""

from vaezoo import hookimpl
from vaezoo.hparams import Param

_HERE = "vaezoo_plugins.samplers"

GMM_PARAMS = (
    Param("components", "int", 10, "mixture components K (pythae's default)", low=1),
    Param("iterations", "int", 100, "most EM iterations", low=1),
    Param("tolerance", "float", 1e-3, "stop when the mean log-likelihood gains less than this", low=0.0),
    Param("covariance_reg", "float", 1e-6, "added to every covariance's diagonal (scikit-learn's reg_covar)",
          low=0.0),
)
FLOW_PARAMS = (
    Param("flow_steps", "int", 5, "autoregressive steps, each a MADE (the variable order reversed every other step)",
          low=1),
    Param("flow_hidden", "int", 100, "units in each of a MADE's two hidden layers", low=1),
    Param("epochs", "int", 10, "passes over the training codes", low=1),
    Param("lr", "float", 1e-3, "Adam learning rate", low=0.0, low_exclusive=True),
    Param("batch_size", "int", 256, "codes per step", low=1),
)


@hookimpl
def register_samplers(register):
    register("prior", f"{_HERE}.prior:ModelPrior", "the model's own prior (what `vaezoo sample` draws by default)")
    register("gmm", f"{_HERE}.gmm:GaussianMixtureSampler",
             "Gaussian mixture with full covariances fitted to the codes by EM", params=GMM_PARAMS)
    register("maf", f"{_HERE}.flows:MAFSampler",
             "masked autoregressive flow (Papamakarios et al. 2017): one-pass density, D-pass sampling",
             params=FLOW_PARAMS)
    register("iaf", f"{_HERE}.flows:IAFSampler",
             "inverse autoregressive flow (Kingma et al. 2016): one-pass sampling, D-pass density",
             params=FLOW_PARAMS)
