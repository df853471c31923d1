"""Test cases for code built on this library (e.g. a new latent prior), in the style of :mod:`gpytorch.test`."""

from .latent_prior_test_case import LatentPriorTestCase

__all__ = ["LatentPriorTestCase"]
