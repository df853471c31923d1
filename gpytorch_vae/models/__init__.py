"""The GP-VAE model."""

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
