"""Training objectives: the ELBO, GECO (with the loss scaling that keeps its updates exact at float32), and the
contract :func:`gpytorch_vae.training.fit` relies on."""

from .base import Objective, ObjectiveTerms, num_data_of
from .elbo import ELBO, FROM_DATA, ELBOTerms, PyroELBO
from .geco import GECO, GECOObjective, GECOTerms
from .loss_scaling import ScaledLossOptimizer

__all__ = [
    "ELBO",
    "ELBOTerms",
    "FROM_DATA",
    "GECO",
    "GECOObjective",
    "GECOTerms",
    "Objective",
    "ObjectiveTerms",
    "PyroELBO",
    "ScaledLossOptimizer",
    "num_data_of",
]
