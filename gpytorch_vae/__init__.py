"""gpytorch-vae: Gaussian-process variational autoencoders on GPyTorch and Pyro.

Layers (``docs/architecture.md``): :mod:`~gpytorch_vae.variational` (strategies and posterior maths),
:mod:`~gpytorch_vae.gps` (latent GP models), :mod:`~gpytorch_vae.kernels`, :mod:`~gpytorch_vae.priors` (latent
priors), :mod:`~gpytorch_vae.models` (the GP-VAE), :mod:`~gpytorch_vae.objectives` (GECO), :mod:`~gpytorch_vae.nn`
(networks), :mod:`~gpytorch_vae.baselines`, :mod:`~gpytorch_vae.data`, :mod:`~gpytorch_vae.training`. What a
training script needs is exported here: the models, the latent priors and GPs, the likelihoods, the objectives and
:func:`fit`, and
:class:`GPVAEImputer` (:mod:`~gpytorch_vae.imputer`), which imputes time series from NumPy arrays with NaN.
"""

from . import baselines, gps, kernels, likelihoods, models, nn, objectives, priors, settings, training, variational
from .baselines import GPPVAE, DeepSVIGP
from .gps import ExactLatentGP, SparseLatentGP
from .imputer import GPVAEImputer
from .kernels import DeltaKernel
from .likelihoods import BernoulliLikelihood, DistributionLikelihood, GaussianLikelihood, ObservationLikelihood
from .models import GPVAE
from .objectives import ELBO, GECO, GECOObjective, PyroELBO, ScaledLossOptimizer
from .priors import (
    ExactLatentPrior,
    FactorizedLatentPrior,
    IndependentLatentPrior,
    LatentPosterior,
    LatentPrior,
    SparseLatentPrior,
)
from .training import fit
from .variational import AmortizedHybridPosterior, AmortizedHybridVariationalStrategy

__version__ = "0.3.0"
__all__ = [
    "AmortizedHybridPosterior",
    "AmortizedHybridVariationalStrategy",
    "BernoulliLikelihood",
    "DeepSVIGP",
    "DeltaKernel",
    "DistributionLikelihood",
    "ELBO",
    "ExactLatentGP",
    "ExactLatentPrior",
    "FactorizedLatentPrior",
    "GECO",
    "GECOObjective",
    "GPPVAE",
    "GPVAE",
    "GPVAEImputer",
    "GaussianLikelihood",
    "IndependentLatentPrior",
    "LatentPosterior",
    "LatentPrior",
    "ObservationLikelihood",
    "PyroELBO",
    "ScaledLossOptimizer",
    "SparseLatentGP",
    "SparseLatentPrior",
    "baselines",
    "fit",
    "gps",
    "kernels",
    "likelihoods",
    "models",
    "nn",
    "objectives",
    "priors",
    "settings",
    "training",
    "variational",
]
