"""The latent dataset of a GP-VAE minibatch: auxiliary inputs, encoder means and encoder variances."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


def validate_latent_data(x: Tensor, y: Tensor, noise: Tensor) -> None:
    """Shape and value checks shared by every latent GP: ``x`` ``(..., b, D)``, ``y``/``noise`` ``(..., b)``."""
    if y.shape != noise.shape:
        raise ValueError(f"y and noise must have the same shape, got {tuple(y.shape)} and {tuple(noise.shape)}")
    if x.dim() < 2 or x.size(-2) != y.size(-1):
        raise ValueError(
            f"x must have shape (..., b, D) with b = y.shape[-1] = {y.size(-1)} latent points, got {tuple(x.shape)}"
        )
    if not bool((noise > 0).all()):
        raise ValueError("latent noise variances must be strictly positive (clip the encoder variances)")


@dataclass(frozen=True)
class LatentBatch:
    r"""A minibatch :math:`\{\mathbf X_b, \tilde{\mathbf y}_b, \tilde{\boldsymbol\sigma}^2_b\}` of a latent dataset
    of size :math:`N` = ``num_data``."""

    x: Tensor
    y: Tensor
    noise: Tensor
    num_data: int

    @classmethod
    def create(cls, x: Tensor, y: Tensor, noise: Tensor, num_data: int | None, like: Tensor) -> "LatentBatch":
        """Validate, default ``num_data`` to :math:`b`, and cast to the dtype and device of ``like``."""
        validate_latent_data(x, y, noise)
        num_points = y.size(-1)
        num_data = num_points if num_data is None else int(num_data)
        if num_data < num_points:
            raise ValueError(f"num_data ({num_data}) must be at least the batch size ({num_points})")
        return cls(x.to(like), y.to(like), noise.to(like), num_data)

    @property
    def scale(self) -> float:
        """:math:`c = N/b`."""
        return self.num_data / self.y.size(-1)
