"""The latent dataset of a GP-VAE minibatch (auxiliary inputs, encoder means, encoder variances) and its checks."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..settings import validate_values


def _shape(t: Tensor) -> str:
    return str(tuple(t.shape))


def validate_latent_data(
    x: Tensor,
    y: Tensor,
    noise: Tensor,
    input_dim: int | None = None,
    num_data: int | None = None,
    observed: Tensor | None = None,
) -> None:
    """Checks of a latent dataset at the API boundary, each naming the argument, what was expected and what came.

    ``x`` ``(..., b, D)``, ``y`` and ``noise`` ``(..., b)`` with ``b >= 1``; ``D == input_dim`` when given;
    ``num_data >= b``. Values (finite ``x`` and ``y``; finite, positive ``noise``; only where ``observed``, a boolean
    mask broadcastable to ``y``, when given) are checked as :class:`gpytorch_vae.settings.validate_values` says (CPU
    tensors by default: no device sync).
    """
    for name, t in (("x", x), ("y", y), ("noise", noise)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if y.dim() < 1 or y.shape != noise.shape:
        raise ValueError(f"y and noise must have the same shape (..., b), got y {_shape(y)} and noise {_shape(noise)}")
    num_points = y.size(-1)
    if num_points == 0:
        raise ValueError(f"the latent batch is empty: y has shape {_shape(y)} (b = 0 points)")
    if x.dim() < 2 or x.size(-2) != num_points:
        raise ValueError(
            f"x must have shape (..., b, D) with b = y.shape[-1] = {num_points} latent points, got {_shape(x)}"
        )
    if input_dim is not None and x.size(-1) != input_dim:
        raise ValueError(f"x must have D = {input_dim} input columns (those of the inducing points), got x {_shape(x)}")
    if num_data is not None and num_data < num_points:
        raise ValueError(f"num_data ({num_data}) must be at least the batch size b = {num_points}")
    if observed is not None and (
        observed.dtype != torch.bool or torch.broadcast_shapes(observed.shape, y.shape) != y.shape
    ):
        raise ValueError(f"observed must be a boolean mask broadcastable to y {_shape(y)}, got {observed.dtype} "
                         f"{_shape(observed)}")  # fmt: skip
    if validate_values.applies_to(y):
        if observed is not None:
            y, noise = y[observed.expand_as(y)], noise[observed.expand_as(noise)]
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"x {_shape(x)} holds NaN or inf values")
        if not bool(torch.isfinite(y).all()):
            raise ValueError(f"y {_shape(y)} holds NaN or inf values (check the encoder's outputs)")
        good = (noise > 0) & (noise < float("inf"))
        if not bool(good.all()):
            bad = noise[~good].flatten()[0].item()
            raise ValueError(
                f"noise {_shape(noise)} must be finite and strictly positive, found {bad} (clip the encoder variances)"
            )


def check_channels(y: Tensor, gp_batch_shape: torch.Size) -> None:
    """``y``'s batch shape ``(*batch)`` must hold the GP batch shape (e.g. ``[L]`` channels) as its trailing dims."""
    batch = y.shape[:-1]
    try:
        broadcast = torch.broadcast_shapes(batch, gp_batch_shape)
    except RuntimeError:
        broadcast = None
    if broadcast != batch:
        raise ValueError(
            f"y has batch shape {tuple(batch)} (e.g. (L,) channels), which does not match the GP's batch shape "
            f"{tuple(gp_batch_shape)} (from its kernel and inducing points): expected y of shape "
            f"(..., {', '.join(str(s) for s in gp_batch_shape)}{', ' if len(gp_batch_shape) else ''}b)"
        )


@dataclass(frozen=True)
class LatentBatch:
    r"""A minibatch :math:`\{\mathbf X_b, \tilde{\mathbf y}_b, \tilde{\boldsymbol\sigma}^2_b\}` of a latent dataset
    of size :math:`N` = ``num_data``."""

    x: Tensor
    y: Tensor
    noise: Tensor
    num_data: int

    @classmethod
    def create(
        cls,
        x: Tensor,
        y: Tensor,
        noise: Tensor,
        num_data: int | None = None,
        input_dim: int | None = None,
        observed: Tensor | None = None,
    ) -> LatentBatch:
        """Validate (:func:`validate_latent_data`) and default ``num_data`` to :math:`b`. Points where ``observed``
        is false carry no data: their noise becomes infinite (zero precision) and their target zero."""
        num_data = y.size(-1) if num_data is None and y.dim() else num_data
        validate_latent_data(x, y, noise, input_dim, None if num_data is None else int(num_data), observed)
        if observed is not None:
            y = torch.where(observed, y, torch.zeros_like(y))
            noise = torch.where(observed, noise, torch.full_like(noise, float("inf")))
        return cls(x, y, noise, int(num_data))

    @property
    def num_points(self) -> int:
        """:math:`b`."""
        return self.y.size(-1)

    @property
    def scale(self) -> float:
        """:math:`c = N/b`."""
        return self.num_data / self.num_points
