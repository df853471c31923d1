"""gpytorch-vae: Gaussian-process variational autoencoders on GPyTorch and Pyro."""

from . import models, variational
from .models import (
    GECO,
    GPVAE,
    ExactLatentGP,
    ExactLatentPrior,
    IndependentLatentPrior,
    SparseLatentGP,
    SparseLatentPrior,
)
from .variational import AmortizedHybridVariationalStrategy

__version__ = "0.1.0"
__all__ = [
    "AmortizedHybridVariationalStrategy",
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
