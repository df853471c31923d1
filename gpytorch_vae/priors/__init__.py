"""Latent priors of a GP-VAE (Pyro model/guide fragments) and the posterior objects they return."""

from .base import LatentPosterior, LatentPrior, marginal_distribution, pyro_site, rsample_site
from .exact import ExactLatentPosterior, ExactLatentPrior
from .factorized import (
    ExactGroupGP,
    FactorizedLatentPosterior,
    FactorizedLatentPrior,
    SparseGroupGP,
)
from .independent import IndependentLatentPosterior, IndependentLatentPrior
from .sparse import SparseLatentPosterior, SparseLatentPrior

__all__ = [
    "ExactGroupGP",
    "ExactLatentPosterior",
    "ExactLatentPrior",
    "FactorizedLatentPosterior",
    "FactorizedLatentPrior",
    "IndependentLatentPosterior",
    "IndependentLatentPrior",
    "LatentPosterior",
    "LatentPrior",
    "SparseGroupGP",
    "SparseLatentPosterior",
    "SparseLatentPrior",
    "marginal_distribution",
    "pyro_site",
    "rsample_site",
]
