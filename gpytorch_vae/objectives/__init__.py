"""Training objectives: GECO and the loss scaling that keeps its updates exact at float32."""

from .geco import GECO
from .loss_scaling import ScaledLossOptimizer

__all__ = ["GECO", "ScaledLossOptimizer"]
