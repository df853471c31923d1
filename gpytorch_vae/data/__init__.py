"""Data sets and generators."""

from .synthetic import SyntheticGPData, make_synthetic_gp_data

__all__ = ["SyntheticGPData", "make_synthetic_gp_data"]
