"""GECO: constrained optimisation of the KL term under a reconstruction constraint (Rezende & Viola 2018)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .base import _OMITTED, Objective, ObjectiveTerms
from .elbo import model_pass, weighted_log_prior

_LN2 = math.log(2.0)


class GECO(torch.nn.Module):
    r"""Generalized ELBO with Constrained Optimization (Rezende & Viola 2018, Alg. 1), as used by the SVGP-VAE and
    FGP-VAE papers on rotated MNIST.

    Minimise :math:`\mathrm{KL} + \lambda\,\bar C` where :math:`C` is a constraint that should be :math:`\le 0`
    (e.g. :math:`\mathrm{MSE}_i - \kappa^2`, averaged over the batch). With the moving average
    :math:`C_{ma} \leftarrow \alpha C_{ma} + (1-\alpha) C` (initialised with the first value) the objective is

    .. math::
        \mathcal L = \mathrm{KL} + \lambda\,\big(C + \mathrm{sg}(C_{ma} - C)\big),

    whose value uses the smoothed constraint and whose gradient is that of :math:`C`. After each optimiser step,
    :meth:`update` sets :math:`\lambda \leftarrow \lambda\exp(C_{ma})` (:func:`~gpytorch_vae.training.fit` does it
    through its :class:`~gpytorch_vae.training.GECOUpdate` callback). As in the papers' reference code,
    :math:`\lambda` is unbounded by default: when the constraint is never met it grows for the whole run (past
    :math:`10^{30}` on rotated MNIST) and the KL's weight vanishes.

    **Loss scaling.** :math:`\lambda` is kept as :math:`\log\lambda` (float64), so it never overflows. :meth:`loss`
    returns :math:`\mathcal L / s` with the power of two :math:`s = 2^e`, :math:`e = \max(0, \lfloor\log_2\lambda
    \rfloor)` (:attr:`loss_exponent`), so its value and gradients stay of the size of :math:`C` whatever
    :math:`\lambda`. With float32 networks, the unscaled gradients :math:`\lambda\,\partial C/\partial\theta` would
    overflow Adam's second moments (their square passes float32's :math:`3\cdot10^{38}` once :math:`\lambda` passes
    about :math:`10^{19}`) and freeze training. Step the optimiser through
    :class:`~gpytorch_vae.objectives.ScaledLossOptimizer`, which keeps Adam's moments in the same scale, so that
    the updates are those of the unscaled objective (tested against float64 over a run where :math:`\lambda` passes
    :math:`10^{30}`). With ``lambda_max`` finite and small the scale stays 1 and this is plain GECO.

    State is kept in buffers, so it is checkpointed with ``state_dict``.

    :param kappa2: :math:`\kappa^2`, the tolerated reconstruction error (0.020 in the rotated-MNIST protocol); only
        used by :meth:`constraint`.
    :param alpha: moving-average factor (0.99).
    :param lambda_init: initial :math:`\lambda` (1.0).
    :param lambda_min, lambda_max: bounds for :math:`\lambda` (default: none, as in the reference code).
    :param scale_loss: divide the objective by :math:`s` (default); ``False`` returns :math:`\mathcal L` itself,
        in float64.
    """

    def __init__(
        self,
        kappa2: float = 0.02,
        alpha: float = 0.99,
        lambda_init: float = 1.0,
        lambda_min: float = 0.0,
        lambda_max: float = math.inf,
        scale_loss: bool = True,
    ):
        super().__init__()
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"alpha must be in [0, 1), got {alpha}")
        if not 0.0 <= lambda_min <= lambda_init <= lambda_max or lambda_init <= 0.0:
            raise ValueError(
                f"need 0 <= lambda_min <= lambda_init <= lambda_max and lambda_init > 0, got {lambda_min}, "
                f"{lambda_init}, {lambda_max}"
            )
        self.kappa2 = float(kappa2)
        self.alpha = float(alpha)
        self.log_lambda_min = math.log(lambda_min) if lambda_min > 0 else -math.inf
        self.log_lambda_max = math.log(lambda_max)
        self.scale_loss = bool(scale_loss)
        self.register_buffer("log_lagrange_multiplier", torch.tensor(math.log(lambda_init), dtype=torch.float64))
        self.register_buffer("constraint_ma", torch.tensor(0.0, dtype=torch.float64))
        self.register_buffer("initialized", torch.tensor(False))
        self._pending_ma: Tensor | None = None
        self._host: tuple[float, bool] | None = None  # (log lambda, initialized) on the host, when known
        self.last_exponent = 0  #: :attr:`loss_exponent` of the last :meth:`loss`

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._host = None

    def _host_state(self) -> tuple[float, bool]:
        """``(log lambda, initialized)`` as Python values: read from the buffers (a host sync) only when
        :meth:`update` could not keep them (e.g. after a checkpoint was loaded)."""
        if self._host is None:
            self._host = (self.log_lagrange_multiplier.item(), bool(self.initialized))
        return self._host

    @property
    def lagrange_multiplier(self) -> Tensor:
        r""":math:`\lambda` (float64; ``inf`` only past float64's range, which :meth:`loss` never needs)."""
        return self.log_lagrange_multiplier.exp()

    @property
    def loss_exponent(self) -> int:
        r""":math:`e` of the scale :math:`s = 2^e` that divides the current objective (0 without ``scale_loss``)."""
        if not self.scale_loss:
            return 0
        return max(0, math.floor((self._host or self._host_state())[0] / _LN2))

    @staticmethod
    def per_example_error(y: Tensor, decoded: Tensor, observation_dims: int, mask: Tensor | None = None) -> Tensor:
        r""":math:`\mathrm{mean}_{pixels}(\mathbf y_i - \hat{\mathbf y}_i)^2` of each example (over its observed
        entries when a ``mask`` is given; 0 for an example with none)."""
        squared = (y - decoded).square().flatten(start_dim=y.dim() - observation_dims)
        if mask is None:
            return squared.mean(-1)
        seen = mask.flatten(start_dim=y.dim() - observation_dims).to(squared)
        return (squared * seen).sum(-1) / seen.sum(-1).clamp_min(1.0)

    def constraint(self, y: Tensor, decoded: Tensor, observation_dims: int) -> Tensor:
        r"""Batch mean of :math:`C_i = \mathrm{mean}_{pixels}(\mathbf y_i - \hat{\mathbf y}_i)^2 - \kappa^2`."""
        return self.per_example_error(y, decoded, observation_dims).mean() - self.kappa2

    def loss(self, kl: Tensor, constraint: Tensor, value: Tensor | None = None) -> Tensor:
        r""":math:`\mathcal L / s` for one batch, in float64 (the dtype of :math:`\lambda` and the moving average;
        the gradients are those of the constraint's and the KL's own dtypes). The moving average that includes this
        batch is used for the value and committed by :meth:`update` (so a step that is skipped, e.g. for a
        non-finite loss, leaves GECO's state as it was). Multiply the loss by ``2 ** loss_exponent`` for its
        unscaled value. ``value``: the constraint's value for the moving average when it differs from ``constraint``'s
        (distributed training: the union batch's, while each rank differentiates its own part)."""
        # the one cast of GECO's inputs: the constraint and its value together, to the multiplier's float64
        pair = torch.stack([constraint, (constraint if value is None else value).detach()])
        constraint, value = (pair if pair.dtype == torch.float64 else pair.to(torch.float64)).unbind()
        if (self._host or self._host_state())[1]:
            value = self.alpha * self.constraint_ma + (1.0 - self.alpha) * value
        self._pending_ma = value
        smoothed = constraint + (value - constraint).detach()
        exponent = self.last_exponent = self.loss_exponent
        # lambda / s and 1 / s in float64 from log lambda: neither lambda nor lambda * C is ever formed
        weight = (self.log_lagrange_multiplier - exponent * _LN2).exp()
        return (kl if kl.dtype == torch.float64 else kl.to(torch.float64)) * 2.0**-exponent + weight * smoothed

    @torch.no_grad()
    def update(self, moving_average: float | None = None) -> None:
        r"""Commit the moving average of the last :meth:`loss` and set :math:`\lambda \leftarrow \lambda\exp(C_{ma})`
        (within the bounds); call after each optimiser step. ``moving_average``: that moving average as a float, when
        the caller has it on the host (the ``constraint_ma`` that :class:`GECOObjective` logs), so that the next
        step needs no host sync for :math:`\lambda`'s exponent."""
        if self._pending_ma is None:
            raise RuntimeError("GECO.update() needs a preceding GECO.loss(...) of the same step")
        self.constraint_ma.copy_(self._pending_ma)
        self.initialized.fill_(True)
        self._pending_ma = None
        log_lambda = self.log_lagrange_multiplier + self.constraint_ma
        self.log_lagrange_multiplier.copy_(log_lambda.clamp(self.log_lambda_min, self.log_lambda_max))
        if moving_average is None or self._host is None:
            self._host = None
        else:  # the same float64 sum and clamp as above, on the host
            self._host = (min(max(self._host[0] + moving_average, self.log_lambda_min), self.log_lambda_max), True)


@dataclass
class GECOTerms(ObjectiveTerms):
    r"""GECO on one batch. ``loss`` is :math:`(\mathrm{KL} - \frac bN\log p(\boldsymbol\theta) + \lambda\,C) / 2^e`
    (on several ranks, this rank's share).

    :ivar kl: the prior's KL part (of the union batch on several ranks).
    :ivar mse: the batch's mean squared reconstruction error per entry (of the union batch).
    :ivar target: :math:`\kappa^2`, what ``mse`` is constrained to.
    :ivar log10_lambda: :math:`\log_{10}\lambda` used in this step.
    :ivar loss_exponent: :math:`e`, the scale of ``loss``.
    :ivar value: the unscaled objective :math:`\mathrm{KL} + \lambda C_{ma}` of the batch, for the record (it grows
        with :math:`\lambda` by design).
    :ivar decoded: the likelihood's mean of the observations at the draw.
    :ivar constraint_ma: the constraint's moving average :math:`C_{ma}` including this batch (what :meth:`GECO.update`
        commits).
    """

    kl: Tensor
    mse: Tensor
    target: float
    log10_lambda: Tensor
    loss_exponent: int
    value: Tensor
    decoded: Tensor
    constraint_ma: Tensor

    def logged(self) -> dict[str, Tensor]:
        return {"kl": self.kl, "mse": self.mse.detach(), "log10_lambda": self.log10_lambda, "loss": self.value,
                "constraint_ma": self.constraint_ma}  # fmt: skip


class GECOObjective(Objective):
    r"""A GP-VAE trained with GECO (the SVGP-VAE and FGP-VAE papers' rotated-MNIST regime): minimise the prior's KL
    part under the constraint that the batch's mean squared reconstruction error stays below :math:`\kappa^2`,
    :math:`\mathrm{KL} + \lambda\,(\overline{\mathrm{MSE}} - \kappa^2)`. The loss is divided by :math:`2^e`
    (:attr:`GECO.loss_exponent`). :func:`~gpytorch_vae.training.fit` adds GECO's step by default (its
    :class:`~gpytorch_vae.training.GECOUpdate` callback: Adam's moments kept at the scale of the loss with
    :class:`~gpytorch_vae.objectives.ScaledLossOptimizer`, so the updates are those of the unscaled objective at any
    :math:`\lambda`, then :meth:`GECO.update`); in a loop of your own, step a ``ScaledLossOptimizer`` with
    ``terms.loss_exponent`` and call ``geco.update()`` after it. GPyTorch priors on hyperparameters enter with the KL,
    weighted by :math:`b/N`.

    :param model: the :class:`~gpytorch_vae.models.GPVAE`.
    :param num_data: :math:`N` (as for :class:`~gpytorch_vae.objectives.ELBO`).
    :param geco: the :class:`GECO` state (default ``GECO(kappa2)``).
    :param kappa2: :math:`\kappa^2` of the default ``geco``.
    :param ranks: a :class:`gpytorch_vae.distributed.Ranks` in data-parallel training.
    """

    watch = "mse"  # the loss grows with lambda by design; a diverging run shows in the reconstruction error

    def __init__(self, model, num_data=_OMITTED, geco: GECO | None = None, kappa2: float = 0.02, ranks=None):
        super().__init__(model, num_data)
        self.geco = GECO(kappa2=kappa2) if geco is None else geco
        self.ranks = ranks

    def forward(self, x: Tensor, y: Tensor, mask: Tensor | None = None) -> GECOTerms:
        out = model_pass(self, x, y, mask)
        y = out.observations
        decoded = self.model.likelihood.mean(out.output)
        per_example = self.geco.per_example_error(y, decoded, out.observation_dims, out.mask)
        if out.mask is not None:  # examples with nothing observed do not count
            per_example = per_example[out.mask.flatten(out.mask.dim() - out.observation_dims).any(-1)]
        total = per_example.sum()
        count = per_example.new_tensor(per_example.numel())
        if self.ranks is not None:  # the union batch's error sum and size in one collective
            union = self.ranks.sum(torch.stack([total.detach(), count]))
            union_total, count = union[0], union[1]
        else:
            union_total = total.detach()
        # this rank's part of the union's constraint (the whole constraint in one process)
        constraint = total / count - self.geco.kappa2 * per_example.numel() / count
        value = union_total / count - self.geco.kappa2
        kl = out.posterior.kl_divergence()
        shared = out.posterior.kl_shared and self.ranks is not None
        world = 1 if self.ranks is None else self.ranks.world_size
        rank_kl = kl if shared else world * kl
        log_prior = weighted_log_prior(self, out.z.size(-1), kl)
        if log_prior is not None:
            rank_kl = rank_kl - (log_prior if shared or self.ranks is None else world * log_prior)
        loss = self.geco.loss(rank_kl, world * constraint, value=value)  # / 2 ** loss_exponent
        exponent = self.geco.last_exponent
        kl_value = kl.detach() if shared or self.ranks is None else self.ranks.sum(kl)
        unscaled = (kl_value * 2.0**-exponent + (loss - rank_kl * 2.0**-exponent).detach()) * 2.0**exponent
        log10_lambda = self.geco.log_lagrange_multiplier / math.log(10.0)
        return GECOTerms(loss, kl_value, value + self.geco.kappa2, self.geco.kappa2, log10_lambda, exponent, unscaled,
                         decoded, self.geco._pending_ma)  # fmt: skip

    def progress(self, logs: dict[str, float]) -> dict[str, str]:
        """The reconstruction error against its target, the KL, and :math:`\\log_{10}\\lambda` (not the loss, which
        grows with :math:`\\lambda` by design)."""
        shown = {"mse": f"{logs['mse']:.4f} (target {self.geco.kappa2:g})"}
        shown.update(kl=f"{logs['kl']:.4g}", log10_lambda=f"{logs['log10_lambda']:.1f}")
        return shown
