"""GPyTorch variational strategies for GP-VAEs and the posterior objects they return."""

from .amortized_hybrid_posterior import AmortizedHybridPosterior
from .amortized_hybrid_variational_strategy import AmortizedHybridVariationalStrategy, AmortizedVariationalDistribution
from .group_layout import GroupLayout
from .latent_data import LatentBatch, check_inputs, check_latent_data, check_num_data
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
    "check_inputs",
    "check_latent_data",
    "check_num_data",
    "whitened_kl_divergence",
    "whitened_prior",
    "whitened_titsias_posterior",
]
