r"""The ELBO of a GP-VAE batch, in one place: reconstruction, KL part, hyperparameter log priors, loss."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ..models.gp_vae import GPVAE, GPVAEOutput, hyperparameter_log_prior, prior_weight
from .base import _OMITTED, Objective, ObjectiveTerms


@dataclass
class ELBOTerms(ObjectiveTerms):
    r"""The ELBO of one batch. ``loss`` = :math:`-(\text{reconstruction} - \text{kl} + \text{log\_prior})` (times
    ``loss_scale``; on several ranks, the rank's share whose averaged gradients are the union batch's).

    :ivar reconstruction: :math:`\sum_i\log p(\mathbf y_i\mid\mathbf z_i)` at one posterior draw (an unbiased
        estimate of :math:`\sum_i\mathbb E_q[\log p(\mathbf y_i\mid\mathbf z_i)]`), over observed entries.
    :ivar kl: the prior's analytic KL part (e.g. :math:`\frac bN\sum_l\mathrm{KL}(q_S^l(\mathbf u)\,\|\,p^l(\mathbf
        u))`).
    :ivar log_prior: :math:`\frac bN\sum\log p(\theta)` over GPyTorch priors on hyperparameters (0 without any).
    :ivar decoded: the likelihood's mean of the observations at the draw ``z``.
    :ivar z: the draw, ``(*batch, L, b)``.
    :ivar kl_shared: whether ``kl`` is that of a union batch of several ranks.
    :ivar value: the loss of the whole (union) batch, for the record.
    """

    reconstruction: Tensor
    kl: Tensor
    log_prior: Tensor
    decoded: Tensor
    z: Tensor
    kl_shared: bool
    value: Tensor

    def logged(self) -> dict[str, Tensor]:
        return {"loss": self.value.detach(), "reconstruction": self.reconstruction.detach(), "kl": self.kl.detach()}


def model_pass(objective: Objective, x: Tensor, y: Tensor, mask: Tensor | None = None) -> GPVAEOutput:
    """The objective's model's pass over the batch (with the union batch's noise on several ranks)."""
    noise = None if objective.ranks is None else objective.ranks.noise
    return objective.model(x, y, objective.num_data, mask=mask, noise=noise)


def weighted_log_prior(objective: Objective, num_points: int, like: Tensor) -> Tensor | None:
    """The hyperparameters' log prior of the objective's model weighted by :math:`b/N`, in ``like``'s dtype
    (``None`` without priors)."""
    log_prior = hyperparameter_log_prior(objective.model)
    if log_prior is None:
        return None
    if log_prior.dtype != like.dtype:
        log_prior = log_prior.to(like)
    return prior_weight(num_points, objective.num_data) * log_prior


class ELBO(Objective):
    r"""The GP-VAE's evidence lower bound on a minibatch of a data set of :math:`N` points:

    .. math::
        \mathcal L_b = \sum_{i\in b}\mathbb E_q[\log p(\mathbf y_i\mid\mathbf z_i)] - \mathrm{KL}_b
        + \tfrac bN\log p(\boldsymbol\theta),

    with the latent prior's KL part :math:`\mathrm{KL}_b` (:meth:`LatentPosterior.kl_divergence
    <gpytorch_vae.priors.LatentPosterior.kl_divergence>`; :math:`\frac bN\sum_l\mathrm{KL}(q_S^l(\mathbf u)\|
    p^l(\mathbf u))` for the SVGP-VAE, whose expectation is Eq. 10) and the GPyTorch priors registered on
    hyperparameters (kernel, likelihood noise), weighted like the KL of a global variable. The loss is
    :math:`-\mathcal L_b`. Pyro's :class:`~pyro.infer.TraceMeanField_ELBO` on :meth:`GPVAE.model
    <gpytorch_vae.models.GPVAE.model>` / :meth:`~gpytorch_vae.models.GPVAE.guide` computes the same value at the
    same random state (tested).

    :param model: the :class:`~gpytorch_vae.models.GPVAE`.
    :param num_data: :math:`N`; ``None`` when every batch is a whole data set (e.g. a batch of independent videos);
        omitted, :func:`~gpytorch_vae.training.fit` takes the length of the data set it is given, for its run.
    :param loss_scale: multiplies the loss (e.g. ``1 / B`` to average over ``B`` independent data sets per batch).
    :param ranks: a :class:`gpytorch_vae.distributed.Ranks` in data-parallel training (default: one process).
    """

    def __init__(self, model: GPVAE, num_data: int | None = _OMITTED, loss_scale: float = 1.0, ranks=None):
        super().__init__(model, num_data)
        self.loss_scale = float(loss_scale)
        self.ranks = ranks

    def forward(self, x: Tensor, y: Tensor, mask: Tensor | None = None) -> ELBOTerms:
        """The terms of a batch; ``mask`` (optional, True where observed): missing entries add nothing to the
        reconstruction, and observations with nothing observed carry no data into the latent prior."""
        out = model_pass(self, x, y, mask)
        y = out.observations
        likelihood = self.model.likelihood
        reconstruction = likelihood.total_log_prob(out.output, y, out.mask)
        kl = out.posterior.kl_divergence()
        log_prior = weighted_log_prior(self, out.z.size(-1), reconstruction)
        if log_prior is None:
            log_prior = reconstruction.new_zeros(())
        local = -reconstruction
        shared = out.posterior.kl_shared and self.ranks is not None
        if self.ranks is None:
            loss = self.loss_scale * (local + kl.to(local) - log_prior)
            value = loss.detach()
        else:  # every rank: R * its own terms + the shared ones; DDP's average is the union batch's gradient
            local_part, shared_part = (
                (local, kl.to(local) - log_prior) if shared else (local + kl.to(local), -log_prior)
            )
            loss = self.loss_scale * self.ranks.loss(local_part, shared_part)
            value = self.loss_scale * (self.ranks.sum(local_part) + shared_part.detach())
            reconstruction = -self.ranks.sum(local)
            kl = kl.detach() if shared else self.ranks.sum(kl)
        decoded = likelihood.mean(out.output)
        return ELBOTerms(loss, reconstruction, kl, log_prior, decoded, out.z, shared, value)

    def progress(self, logs: dict[str, float]) -> dict[str, str]:
        return {key: f"{logs[key]:.4g}" for key in ("loss", "reconstruction", "kl") if key in logs}


class PyroELBO(Objective):
    r"""The ELBO through Pyro: a Pyro ELBO (default :class:`~pyro.infer.TraceMeanField_ELBO`) of
    :meth:`GPVAE.model <gpytorch_vae.models.GPVAE.model>` and :meth:`~gpytorch_vae.models.GPVAE.guide`, as an
    objective for :func:`~gpytorch_vae.training.fit`. Its loss equals :class:`ELBO`'s at the same random state; use it
    to train with Pyro's estimators (e.g. several particles).

    :param model: the :class:`~gpytorch_vae.models.GPVAE`.
    :param num_data: :math:`N` (as for :class:`ELBO`).
    :param loss_scale: multiplies the loss.
    :param elbo: the Pyro ELBO (default ``TraceMeanField_ELBO()``).
    """

    def __init__(self, model: GPVAE, num_data: int | None = _OMITTED, loss_scale: float = 1.0, ranks=None,
                 elbo=None):  # fmt: skip
        super().__init__(model, num_data)
        if ranks is not None:
            raise ValueError("PyroELBO runs in one process: use ELBO(..., ranks=...) for data-parallel training")
        from pyro.infer import TraceMeanField_ELBO

        self.loss_scale, self.ranks = float(loss_scale), None
        self.pyro_elbo = TraceMeanField_ELBO() if elbo is None else elbo

    def forward(self, x: Tensor, y: Tensor, mask: Tensor | None = None) -> ObjectiveTerms:
        return ObjectiveTerms(self.loss_scale * self.pyro_elbo.differentiable_loss(
            self.model.model, self.model.guide, x, y, self.num_data, mask))  # fmt: skip
