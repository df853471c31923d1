"""Baselines with the same networks and the same test-time interface: GPPVAE (Casale et al. 2018) and Deep SVIGP
(Hensman et al. 2013 with a decoder)."""

from .deep_svigp import DeepSVIGP, DeepSVIGPObjective, DeepSVIGPTerms, SVGPPosterior, SVIGPLatentGP
from .gppvae import GPPVAE, GPPVAEObjective, LowRankGPPosterior, fit_gppvae
from .low_rank_gp import LowRankViewObjectGP

__all__ = [
    "DeepSVIGP",
    "DeepSVIGPObjective",
    "DeepSVIGPTerms",
    "GPPVAE",
    "GPPVAEObjective",
    "LowRankGPPosterior",
    "LowRankViewObjectGP",
    "SVGPPosterior",
    "SVIGPLatentGP",
    "fit_gppvae",
]
