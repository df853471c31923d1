"""gpytorch-vae: Gaussian-process variational autoencoders on GPyTorch and Pyro.

Layers (``docs/architecture.md``): :mod:`~gpytorch_vae.variational` (strategies and posterior maths),
:mod:`~gpytorch_vae.gps` (latent GP models), :mod:`~gpytorch_vae.kernels`, :mod:`~gpytorch_vae.priors` (latent
priors), :mod:`~gpytorch_vae.models` (the GP-VAE), :mod:`~gpytorch_vae.objectives` (GECO), :mod:`~gpytorch_vae.nn`
(networks), :mod:`~gpytorch_vae.baselines`, :mod:`~gpytorch_vae.data`, :mod:`~gpytorch_vae.training`.
"""

from . import baselines, gps, kernels, models, nn, objectives, priors, settings, training, variational
from .baselines import GPPVAE, DeepSVIGP
from .gps import ExactLatentGP, SparseLatentGP
from .kernels import DeltaKernel
from .models import GPVAE
from .objectives import GECO, ScaledLossOptimizer
from .priors import (
    ExactLatentPrior,
    FactorizedLatentPrior,
    IndependentLatentPrior,
    LatentPosterior,
    LatentPrior,
    SparseLatentPrior,
)
from .variational import AmortizedHybridPosterior, AmortizedHybridVariationalStrategy

__version__ = "0.3.0"
__all__ = [
    "AmortizedHybridPosterior",
    "AmortizedHybridVariationalStrategy",
    "DeepSVIGP",
    "DeltaKernel",
    "ExactLatentGP",
    "ExactLatentPrior",
    "FactorizedLatentPrior",
    "GECO",
    "GPPVAE",
    "GPVAE",
    "IndependentLatentPrior",
    "LatentPosterior",
    "LatentPrior",
    "ScaledLossOptimizer",
    "SparseLatentGP",
    "SparseLatentPrior",
    "baselines",
    "gps",
    "kernels",
    "models",
    "nn",
    "objectives",
    "priors",
    "settings",
    "training",
    "variational",
]
