"""The latent dataset of a GP-VAE minibatch (auxiliary inputs, encoder means, encoder variances) and its checks: the
one validator of latent data, used at the boundary of every latent prior and of the latent GPs."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
from torch import Tensor

from .. import settings


def _shape(t: Tensor) -> str:
    return str(tuple(t.shape))


def check_num_data(num_data, num_points: int) -> int | None:
    """``num_data`` as an ``int`` (``None`` stays ``None``): a positive integer of at least the batch's
    ``num_points``, else a :class:`ValueError` saying what came."""
    if num_data is None:
        return None
    if isinstance(num_data, bool) or not isinstance(num_data, numbers.Real):
        raise TypeError(f"num_data must be an integer (the size N of the whole data set), got {num_data!r}")
    if not math.isfinite(num_data) or num_data != int(num_data):
        raise ValueError(f"num_data must be a whole number (the size N of the whole data set), got {num_data!r}")
    if int(num_data) < num_points:
        raise ValueError(f"num_data ({int(num_data)}) must be at least the batch size b = {num_points}")
    return int(num_data)


def check_inputs(x: Tensor, input_dim: int | None = None, batch_shape: torch.Size | None = None, name: str = "x",
                 columns: str = "columns (as in training)", check_values: bool = True) -> None:  # fmt: skip
    """Inputs ``(..., n, D)``: a tensor with ``D == input_dim`` (when given) whose batch dims broadcast to
    ``batch_shape`` (when given: the latent batch ``(*batch, L)``, so that data sets batched as ``(B, L, n)`` take
    inputs ``(B, 1, n, D)``), and, with ``check_values``, finite values (under :class:`gpytorch_vae.settings.debug`).
    ``columns``: what the message calls the ``D`` columns expected."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 2:
        raise ValueError(f"{name} must have shape (..., n, D) (points in rows), got {_shape(x)}")
    if input_dim is not None and x.size(-1) != input_dim:
        raise ValueError(f"{name} must have D = {input_dim} {columns}, got {_shape(x)}")
    if batch_shape is not None and not _broadcasts_to(x.shape[:-2], batch_shape):
        hint = f": for data sets batched as {tuple(batch_shape)}, pass {name}.unsqueeze(-3)" if x.dim() > 2 else ""
        raise ValueError(f"{name} {_shape(x)} has batch dims {tuple(x.shape[:-2])}, which do not broadcast to the "
                         f"latent batch (*batch, L) = {tuple(batch_shape)}; expected {name} of shape (*batch, 1, n, D) "
                         f"or (n, D){hint}")  # fmt: skip
    if check_values and settings.debug.on(x) and x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} {_shape(x)} holds NaN or inf values")


def _broadcasts_to(shape: torch.Size, target: torch.Size) -> bool:
    try:
        return torch.broadcast_shapes(shape, target) == target
    except RuntimeError:
        return False


def check_latent_data(x: Tensor, y: Tensor, noise: Tensor, observed: Tensor | None = None,
                      input_dim: int | None = None, names: tuple[str, str, str] = ("x", "mean", "var")) -> None:
    r"""The checks of a latent dataset, each naming the argument, what was expected and what came: inputs ``x``
    ``(..., b, D)`` (:func:`check_inputs`: ``D == input_dim`` when given, batch dims broadcasting to ``y``'s), targets
    ``y`` (e.g. encoder means) and ``noise`` (e.g. their variances) ``(*batch, b)`` of one shape with ``b >= 1``, ``observed`` a boolean mask broadcastable to ``y``.

    Values (finite ``x`` and ``y``; finite, positive ``noise``; only where ``observed`` is true) are checked under
    :class:`gpytorch_vae.settings.debug`, in one host sync. ``names``: what the caller calls ``x``, ``y`` and ``noise`` (a latent GP: ``x``, ``y``,
    ``noise``)."""
    x_name, y_name, noise_name = names
    for name, t in zip(names, (x, y, noise)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if y.dim() < 1 or y.shape != noise.shape:
        raise ValueError(f"{y_name} and {noise_name} must have the same shape (*batch, b), got {_shape(y)} and "
                         f"{_shape(noise)}")  # fmt: skip
    if y.size(-1) == 0:
        raise ValueError(f"the latent batch is empty: {y_name} has shape {_shape(y)} (b = 0 points)")
    if x.dim() >= 2 and x.size(-2) != y.size(-1):
        raise ValueError(f"{x_name} {_shape(x)} has {x.size(-2)} rows but {y_name} {_shape(y)} has b = {y.size(-1)} "
                         f"points: expected {x_name} of shape (..., b, D)")  # fmt: skip
    # the values of x are checked below, with the others
    check_inputs(x, input_dim, y.shape[:-1], x_name, "input columns (those of the inducing points)", False)
    if observed is not None and (observed.dtype != torch.bool or not _broadcasts_to(observed.shape, y.shape)):
        raise ValueError(f"observed must be a boolean mask broadcastable to {y_name} {_shape(y)}, got {observed.dtype} "
                         f"{_shape(observed)}")  # fmt: skip
    if not settings.debug.on(y):
        return
    if observed is not None:
        y, noise = y[observed.expand_as(y)], noise[observed.expand_as(noise)]
    finite_x = torch.isfinite(x).all() if x.is_floating_point() else torch.ones((), dtype=torch.bool)
    finite_y, good_noise = torch.isfinite(y).all(), ((noise > 0) & (noise < math.inf)).all()
    if bool(finite_x & finite_y & good_noise):  # the one host sync; the culprit is named below
        return
    if not bool(finite_x):
        raise ValueError(f"{x_name} {_shape(x)} holds NaN or inf values")
    if not bool(finite_y):
        raise ValueError(f"{y_name} {_shape(y)} holds NaN or inf values (check the encoder's outputs)")
    bad = noise[~((noise > 0) & (noise < math.inf))].flatten()[0].item()
    raise ValueError(f"{noise_name} {_shape(noise)} must be finite and strictly positive, found {bad} (clip the "
                     f"encoder variances)")  # fmt: skip


def check_channels(y: Tensor, gp_batch_shape: torch.Size) -> None:
    """``y``'s batch shape ``(*batch)`` must hold the GP batch shape (e.g. ``[L]`` channels) as its trailing dims."""
    batch = y.shape[:-1]
    if not _broadcasts_to(gp_batch_shape, batch):
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
    num_points: int  #: :math:`b`
    scale: float  #: :math:`c = N/b`

    @classmethod
    def create(
        cls,
        x: Tensor,
        y: Tensor,
        noise: Tensor,
        num_data: int | None = None,
        input_dim: int | None = None,
        observed: Tensor | None = None,
        checked: bool = False,
    ) -> LatentBatch:
        """Check (:func:`check_latent_data`, :func:`check_num_data`; a caller that has run both passes ``checked``:
        only the inputs' ``D == input_dim`` is checked again, as an input map may have changed them) and default
        ``num_data`` to :math:`b`. Points where ``observed`` is false carry no data: their noise becomes infinite
        (zero precision) and their target zero."""
        if not checked:
            check_latent_data(x, y, noise, observed, input_dim, ("x", "y", "noise"))
            num_data = check_num_data(num_data, y.size(-1))
        elif input_dim is not None and x.size(-1) != input_dim:
            check_inputs(x, input_dim, name="the GP inputs", columns="input columns (those of the inducing points)")
        if observed is not None:
            y = torch.where(observed, y, torch.zeros_like(y))
            noise = torch.where(observed, noise, torch.full_like(noise, float("inf")))
        points = y.size(-1)
        num_data = points if num_data is None else num_data
        return cls(x, y, noise, num_data, points, num_data / points)
