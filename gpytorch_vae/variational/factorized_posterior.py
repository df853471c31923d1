"""Deprecated location: the FGP-VAE's grouped posteriors moved to :mod:`gpytorch_vae.priors.factorized_posterior`
(they are not variational strategies). Importing this module warns once and gives the same objects."""

import warnings

from ..priors.factorized_posterior import GroupedGPPosterior, global_posterior, masked_block_covariance, select_groups

warnings.warn(
    "gpytorch_vae.variational.factorized_posterior moved to gpytorch_vae.priors.factorized_posterior",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["GroupedGPPosterior", "global_posterior", "masked_block_covariance", "select_groups"]
