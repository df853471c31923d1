"""Latent GP models, latent priors and the Pyro GP-VAE."""

from .exact_latent_gp import ExactLatentGP
from .geco import GECO
from .gp_vae import GPVAE
from .latent_priors import ExactLatentPrior, IndependentLatentPrior, SparseLatentPrior
from .networks import MLPDecoder, MLPEncoder
from .sparse_latent_gp import SparseLatentGP

__all__ = [
    "ExactLatentGP",
    "ExactLatentPrior",
    "GECO",
    "GPVAE",
    "IndependentLatentPrior",
    "MLPDecoder",
    "MLPEncoder",
    "SparseLatentGP",
    "SparseLatentPrior",
]
