"""The GP-VAE model. (Version 0.1 kept every class here; those names still resolve, with a DeprecationWarning
naming their new home.)"""

import importlib
import warnings

from .gp_vae import (
    GPVAE,
    GPVAEOutput,
    Imputation,
    hyperparameter_log_prior,
    named_hyperparameter_priors,
    register_module,
)
from .inputs import ObservationInputs, PosteriorWithInputs

__all__ = [
    "GPVAE",
    "GPVAEOutput",
    "Imputation",
    "ObservationInputs",
    "PosteriorWithInputs",
    "hyperparameter_log_prior",
    "named_hyperparameter_priors",
    "register_module",
]

_MOVED = {
    "ConvDecoder": "gpytorch_vae.nn",
    "ConvEncoder": "gpytorch_vae.nn",
    "MLPDecoder": "gpytorch_vae.nn",
    "MLPEncoder": "gpytorch_vae.nn",
    "DeepSVIGP": "gpytorch_vae.baselines",
    "SVIGPLatentGP": "gpytorch_vae.baselines",
    "GPPVAE": "gpytorch_vae.baselines",
    "fit_gppvae": "gpytorch_vae.baselines",
    "LowRankViewObjectGP": "gpytorch_vae.baselines",
    "ExactLatentGP": "gpytorch_vae.gps",
    "SparseLatentGP": "gpytorch_vae.gps",
    "ExactLatentPrior": "gpytorch_vae.priors",
    "FactorizedLatentPrior": "gpytorch_vae.priors",
    "IndependentLatentPrior": "gpytorch_vae.priors",
    "SparseLatentPrior": "gpytorch_vae.priors",
    "GECO": "gpytorch_vae.objectives",
}


def __getattr__(name: str):
    if name in _MOVED:
        module = _MOVED[name]
        warnings.warn(f"gpytorch_vae.models.{name} moved to {module}.{name}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module 'gpytorch_vae.models' has no attribute {name!r}")
