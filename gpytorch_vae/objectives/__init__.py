"""Training objectives: the ELBO, GECO (with the loss scaling that keeps its updates exact at float32), and the
contract :func:`gpytorch_vae.training.fit` relies on."""

from .base import Objective, ObjectiveTerms
from .elbo import ELBO, ELBOTerms, PyroELBO
from .geco import GECO, GECOObjective, GECOTerms
from .loss_scaling import ScaledLossOptimizer

__all__ = [
    "ELBO",
    "ELBOTerms",
    "GECO",
    "GECOObjective",
    "GECOTerms",
    "Objective",
    "ObjectiveTerms",
    "PyroELBO",
    "ScaledLossOptimizer",
]
