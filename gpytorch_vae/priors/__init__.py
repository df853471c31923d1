"""Latent priors of a GP-VAE and the posterior objects they return."""

from ..variational.latent_data import check_latent_data, check_num_data  # what a prior's condition calls
from .base import (
    LatentPosterior,
    LatentPrior,
    PosteriorSite,
    flat_latent_site,
    marginal_distribution,
)
from .exact import ExactLatentPosterior, ExactLatentPrior
from .factorized import (
    ExactGroupGP,
    FactorizedLatentPosterior,
    FactorizedLatentPrior,
    SparseGroupGP,
)
from .factorized_posterior import GroupedGPPosterior, global_posterior
from .independent import IndependentLatentPosterior, IndependentLatentPrior
from .sparse import SparseLatentPosterior, SparseLatentPrior

__all__ = [
    "ExactGroupGP",
    "ExactLatentPosterior",
    "ExactLatentPrior",
    "FactorizedLatentPosterior",
    "FactorizedLatentPrior",
    "GroupedGPPosterior",
    "IndependentLatentPosterior",
    "IndependentLatentPrior",
    "LatentPosterior",
    "LatentPrior",
    "PosteriorSite",
    "SparseGroupGP",
    "SparseLatentPosterior",
    "SparseLatentPrior",
    "check_latent_data",
    "check_num_data",
    "flat_latent_site",
    "global_posterior",
    "marginal_distribution",
]
