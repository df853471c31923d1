"""Latent GP models, latent priors, the Pyro GP-VAE and the baselines."""

from ..objectives import GECO
from .conv_networks import ConvDecoder, ConvEncoder
from .deep_svigp import DeepSVIGP, SVIGPLatentGP
from .exact_latent_gp import ExactLatentGP
from .factorized_latent_prior import FactorizedLatentPrior
from .gp_vae import GPVAE
from .gppvae import GPPVAE, fit_gppvae
from .latent_priors import ExactLatentPrior, IndependentLatentPrior, SparseLatentPrior
from .low_rank_gp import LowRankViewObjectGP
from .networks import MLPDecoder, MLPEncoder
from .sparse_latent_gp import SparseLatentGP

__all__ = [
    "ConvDecoder",
    "ConvEncoder",
    "DeepSVIGP",
    "ExactLatentGP",
    "ExactLatentPrior",
    "FactorizedLatentPrior",
    "GECO",
    "GPPVAE",
    "GPVAE",
    "IndependentLatentPrior",
    "LowRankViewObjectGP",
    "MLPDecoder",
    "MLPEncoder",
    "SVIGPLatentGP",
    "SparseLatentGP",
    "SparseLatentPrior",
    "fit_gppvae",
]
