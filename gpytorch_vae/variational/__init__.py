"""GPyTorch variational strategies for GP-VAEs and the posterior objects they return."""

import importlib
import warnings

from .amortized_hybrid_posterior import AmortizedHybridPosterior
from .amortized_hybrid_variational_strategy import AmortizedHybridVariationalStrategy
from .amortized_variational_distribution import AmortizedVariationalDistribution
from .group_layout import GroupLayout
from .latent_data import LatentBatch, validate_latent_data
from .latent_statistics import (
    StatisticsReducer,
    WhitenedLatentStatistics,
    whitened_kl_divergence,
    whitened_prior,
    whitened_titsias_posterior,
)
from .noise import STANDARD_NORMAL, StandardNormalNoise
from .prior_terms import WhitenedPriorTerms

__all__ = [
    "AmortizedHybridPosterior",
    "AmortizedHybridVariationalStrategy",
    "AmortizedVariationalDistribution",
    "GroupLayout",
    "LatentBatch",
    "STANDARD_NORMAL",
    "StandardNormalNoise",
    "StatisticsReducer",
    "WhitenedLatentStatistics",
    "WhitenedPriorTerms",
    "validate_latent_data",
    "whitened_kl_divergence",
    "whitened_prior",
    "whitened_titsias_posterior",
]

_MOVED = {"GroupedGPPosterior": "gpytorch_vae.priors", "global_posterior": "gpytorch_vae.priors"}


def __getattr__(name: str):
    if name in _MOVED:  # deprecated aliases: the FGP-VAE's posteriors live with the FGP prior
        module = _MOVED[name]
        warnings.warn(f"gpytorch_vae.variational.{name} moved to {module}.{name}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module 'gpytorch_vae.variational' has no attribute {name!r}")
