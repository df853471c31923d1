"""GPyTorch variational strategies for GP-VAEs and the posterior objects they return."""

from .amortized_hybrid_posterior import AmortizedHybridPosterior
from .amortized_hybrid_variational_strategy import AmortizedHybridVariationalStrategy
from .amortized_variational_distribution import AmortizedVariationalDistribution
from .factorized_posterior import GroupedGPPosterior, global_posterior
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
    "GroupedGPPosterior",
    "LatentBatch",
    "STANDARD_NORMAL",
    "StandardNormalNoise",
    "StatisticsReducer",
    "WhitenedLatentStatistics",
    "WhitenedPriorTerms",
    "global_posterior",
    "validate_latent_data",
    "whitened_kl_divergence",
    "whitened_prior",
    "whitened_titsias_posterior",
]
