"""GPyTorch variational strategies for GP-VAEs."""

from .amortized_hybrid_variational_strategy import AmortizedHybridVariationalStrategy
from .amortized_variational_distribution import AmortizedVariationalDistribution
from .factorized_posterior import GroupedGPPosterior, global_posterior
from .group_layout import GroupLayout
from .latent_statistics import (
    WhitenedLatentStatistics,
    whitened_kl_divergence,
    whitened_prior,
    whitened_titsias_posterior,
)
from .prior_terms import WhitenedPriorTerms

__all__ = [
    "AmortizedHybridVariationalStrategy",
    "AmortizedVariationalDistribution",
    "GroupLayout",
    "GroupedGPPosterior",
    "WhitenedLatentStatistics",
    "WhitenedPriorTerms",
    "global_posterior",
    "whitened_kl_divergence",
    "whitened_prior",
    "whitened_titsias_posterior",
]
