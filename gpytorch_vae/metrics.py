"""Evaluation metrics."""

from __future__ import annotations

import torch
from torch import Tensor


def affine_aligned_rmse(predicted: Tensor, true: Tensor) -> float:
    r"""RMSE after the least-squares affine map :math:`[\hat{\mathbf z}, 1]\mathbf W \approx \mathbf z` (latent spaces
    are identified only up to such maps). Both inputs are ``(..., L)``; one map is fitted over all points (Pearce
    2020's path metric; :math:`\mathbf W` is :math:`(L+1)\times L`)."""
    pred = predicted.reshape(-1, predicted.size(-1)).double()
    target = true.reshape(-1, true.size(-1)).double()
    design = torch.cat([pred, torch.ones_like(pred[:, :1])], dim=-1)
    weights = torch.linalg.lstsq(design, target).solution
    return (design @ weights - target).square().mean().sqrt().item()
