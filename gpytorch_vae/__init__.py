"""gpytorch-vae: Gaussian-process variational autoencoders on GPyTorch and Pyro."""

from . import kernels, models, variational
from .kernels import DeltaKernel
from .models import (
    GECO,
    GPPVAE,
    GPVAE,
    DeepSVIGP,
    ExactLatentGP,
    ExactLatentPrior,
    FactorizedLatentPrior,
    IndependentLatentPrior,
    SparseLatentGP,
    SparseLatentPrior,
)
from .variational import AmortizedHybridVariationalStrategy

__version__ = "0.1.0"
__all__ = [
    "AmortizedHybridVariationalStrategy",
    "DeepSVIGP",
    "DeltaKernel",
    "FactorizedLatentPrior",
    "GPPVAE",
    "kernels",
    "ExactLatentGP",
    "ExactLatentPrior",
    "GECO",
    "GPVAE",
    "IndependentLatentPrior",
    "SparseLatentGP",
    "SparseLatentPrior",
    "models",
    "variational",
]
