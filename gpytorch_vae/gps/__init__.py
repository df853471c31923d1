"""Latent GP models: the GPs a latent prior holds."""

from .exact_latent_gp import ExactGPPosterior, ExactLatentGP
from .sparse_latent_gp import SparseLatentGP

__all__ = ["ExactGPPosterior", "ExactLatentGP", "SparseLatentGP"]
