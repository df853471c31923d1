"""Deep SVIGP (Hensman et al. 2013 with a neural likelihood): the non-amortized baseline of the SVGP-VAE paper."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import pyro
import pyro.distributions as dist
import torch
from gpytorch.distributions import MultivariateNormal
from gpytorch.kernels import Kernel
from gpytorch.means import ZeroMean
from gpytorch.models import ApproximateGP
from gpytorch.utils.memoize import clear_cache_hook
from gpytorch.variational import CholeskyVariationalDistribution, VariationalStrategy
from pyro.nn import PyroModule
from torch import Tensor

from ..models.gp_vae import register_module
from ..objectives.base import _OMITTED, Objective, ObjectiveTerms
from ..priors.base import marginal_distribution


class SVIGPLatentGP(ApproximateGP):
    r"""``num_channels`` independent SVGPs with free :math:`q(\mathbf u_l) = \mathcal N(\mathbf m_l, \mathbf S_l)`
    (GPyTorch's whitened :class:`~gpytorch.variational.VariationalStrategy` and
    :class:`~gpytorch.variational.CholeskyVariationalDistribution`, :math:`\mathbf m = \mathbf 0`,
    :math:`\mathbf S = \mathbf I` at the start), sharing one kernel and one set of inducing inputs.
    """

    def __init__(self, inducing_points: Tensor, covar_module: Kernel, num_channels: int):
        q_u = CholeskyVariationalDistribution(inducing_points.size(-2), batch_shape=torch.Size([num_channels]))
        super().__init__(VariationalStrategy(self, inducing_points, q_u, learn_inducing_locations=True))
        self.covar_module = covar_module
        self.mean_module = ZeroMean()

    def forward(self, x: Tensor) -> MultivariateNormal:
        return MultivariateNormal(self.mean_module(x), self.covar_module(x))


class SVGPPosterior:
    r"""The learned :math:`q(\mathbf f)` of a :class:`DeepSVIGP`: not amortized, so it needs no context data.

    :meth:`predict` gives the marginals of :math:`q(\mathbf f(\mathbf x_*))`, ``(L, r)``.
    """

    def __init__(self, model: DeepSVIGP):
        self.model = model

    def predict(self, x: Tensor) -> MultivariateNormal:
        gp = self.model.gp
        was_training = gp.training
        gp.eval()
        try:
            q_f = gp(self.model.gp_inputs(x))
            return marginal_distribution(q_f.mean, q_f.variance)
        finally:
            gp.train(was_training)


class DeepSVIGP(PyroModule):
    r"""A decoder on top of an SVGP, no encoder: :math:`f_l \sim \mathcal{GP}` with a free :math:`q(\mathbf u_l)`,
    :math:`\mathbf y_i \sim \mathcal N(g(\mathbf f(\mathbf x_i)), \sigma^2\mathbf I)` with a learned :math:`\sigma^2`.

    Two objectives, named for what they compute:

    * ``"sampled"`` (the textbook SVGP ELBO with a neural likelihood): the Pyro model/guide pair uses GPyTorch's own
      Pyro integration (:meth:`~gpytorch.models.ApproximateGP.pyro_model` / ``pyro_guide``), so with
      :class:`~pyro.infer.TraceMeanField_ELBO` the SVI loss is minus
      :math:`\sum_{i\in b}\mathbb E_{q(\mathbf f_i)}[\log\mathcal N(\mathbf y_i\mid g(\mathbf f_i), \sigma^2\mathbf
      I)] - \frac bN\sum_l\mathrm{KL}(q(\mathbf u_l)\,\|\,p(\mathbf u_l))`, estimated by decoding a sample of
      :math:`q(\mathbf f_i)`.
    * ``"mean"`` (the SVGP-VAE authors' implementation, behind the paper's Table 1 number; :meth:`mean_decoded_elbo`):
      the decoder is applied to the posterior **mean** of :math:`\mathbf f` at each input, the data term is the
      Gaussian log-likelihood of those decoded means, plus, per channel, the Hensman variance terms
      :math:`-\frac1{2\sigma}\sum_i(\tilde k_{ii} + \mathrm{tr}(\mathbf S\boldsymbol\Lambda_i))` as if the
      likelihood were Gaussian on :math:`\mathbf f` (with :math:`1/\sigma`, not :math:`1/\sigma^2`, as the reference
      writes it; :math:`\sigma` is the likelihood's standard deviation), minus :math:`\frac bN\sum_l\mathrm{KL}`. It
      is not a bound on the decoder model's evidence; it is offered to reproduce the reference.

    :param gp: an :class:`SVIGPLatentGP` (or any :class:`~gpytorch.models.ApproximateGP` with batch ``[L]``).
    :param decoder: maps ``f`` ``(b, L)`` to the mean observation ``(b, *obs)``.
    :param input_map: optional module mapping auxiliary data to GP inputs.
    :param noise: initial observation noise variance :math:`\sigma^2` (learned).
    :param objective: ``"sampled"`` or ``"mean"``.
    """

    OBJECTIVES = ("sampled", "mean")

    def __init__(
        self,
        gp: ApproximateGP,
        decoder: torch.nn.Module,
        input_map=None,
        noise: float = 0.1,
        objective: str = "sampled",
    ):
        super().__init__()
        if objective not in self.OBJECTIVES:
            raise ValueError(f"objective must be one of {self.OBJECTIVES}, got {objective!r}")
        if noise <= 0:
            raise ValueError(f"noise must be positive, got {noise}")
        self.gp = gp
        self.decoder = decoder
        self.input_map = input_map
        self.objective = objective
        self.raw_noise = torch.nn.Parameter(torch.tensor(math.log(math.expm1(noise))))

    @property
    def noise(self) -> Tensor:
        return torch.nn.functional.softplus(self.raw_noise)

    def gp_inputs(self, x: Tensor) -> Tensor:
        x = x if self.input_map is None else self.input_map(x)
        return x.to(self.gp.variational_strategy.inducing_points)

    def _beta(self, x: Tensor, num_data: int | None) -> float:
        return 1.0 if num_data is None else x.size(-2) / num_data

    # ------------------------------------------------------------------ "sampled": Pyro model and guide
    def model(self, x: Tensor, y: Tensor, num_data: int | None = None) -> Tensor:
        register_module("deep_svigp", self)
        f_dist = self.gp.pyro_model(self.gp_inputs(x), beta=self._beta(x, num_data), name_prefix="gp")
        # p(f) comes without the channel batch of q(u) (the kernel is shared): expand it (the site is masked anyway)
        num_channels = self.gp.variational_strategy.variational_distribution.batch_shape
        shape = (*num_channels, -1)
        f_dist = dist.Normal(f_dist.mean.expand(shape), f_dist.stddev.expand(shape)).mask(False).to_event(2)
        f = pyro.sample("gp.f", f_dist)
        mean = self.decoder(f.mT).to(y)
        return pyro.sample("y", dist.Normal(mean, self.noise.sqrt().to(y)).to_event(y.dim()), obs=y)

    def guide(self, x: Tensor, y: Tensor, num_data: int | None = None) -> Tensor:
        register_module("deep_svigp", self)
        # GPyTorch's pyro_guide reads the memoised q(u) before the call that clears the memo (in training mode):
        # clear it first, or the u site reuses the previous step's (freed) graph
        clear_cache_hook(self.gp.variational_strategy)
        f_dist = self.gp.pyro_guide(self.gp_inputs(x), beta=self._beta(x, num_data), name_prefix="gp")
        return pyro.sample("gp.f", f_dist.to_event(len(f_dist.batch_shape)))  # one event (L, b)

    def elbo_terms(self, x: Tensor, y: Tensor, num_data: int | None = None) -> dict[str, Tensor]:
        r"""The ``"sampled"`` objective without Pyro's tracing: ``reconstruction`` (:math:`\log p(\mathbf y\mid
        g(\mathbf f))` at one draw of :math:`q(\mathbf f)`), ``kl`` (:math:`\frac bN\sum_l\mathrm{KL}(q(\mathbf
        u_l)\,\|\,p(\mathbf u_l))`), ``elbo`` and ``decoded``: the same estimator as the SVI loss of :meth:`model` /
        :meth:`guide` (an analytic KL and one draw of :math:`q(\mathbf f)`; tested against the SVGP ELBO like it),
        without the draw of :math:`\mathbf u` that GPyTorch's Pyro guide makes and the bound does not use."""
        strategy = self.gp.variational_strategy
        clear_cache_hook(strategy)
        q_f = self.gp(self.gp_inputs(x))  # training mode: marginals of q(f), (L, b)
        f = dist.Normal(q_f.mean, q_f.stddev, validate_args=False).rsample()
        decoded = self.decoder(f.mT).to(y)
        reconstruction = dist.Normal(decoded, self.noise.sqrt().to(y)).log_prob(y).sum()
        kl = self._beta(x, num_data) * strategy.kl_divergence().sum().to(y)
        return {"reconstruction": reconstruction, "kl": kl, "elbo": reconstruction - kl, "decoded": decoded}

    def forward(self, x: Tensor, y: Tensor, num_data: int | None = None) -> dict[str, Tensor]:
        """:meth:`elbo_terms` (so that :class:`~torch.nn.parallel.DistributedDataParallel` can wrap the model)."""
        return self.elbo_terms(x, y, num_data)

    # ------------------------------------------------------------------ "mean": the reference's objective
    def mean_decoded_elbo(self, x: Tensor, y: Tensor, num_data: int | None = None) -> dict[str, Tensor]:
        r"""The reference implementation's objective (class docstring), per batch: ``elbo`` = ``reconstruction``
        (Gaussian log-likelihood of the decoded posterior means) - ``variance_penalty`` (the Hensman trace terms)
        - ``kl`` (:math:`\frac bN\sum_l\mathrm{KL}`); ``decoded`` is the decoded mean."""
        q_f = self.gp(self.gp_inputs(x))  # training mode: marginals of q(f), (L, b)
        decoded = self.decoder(q_f.mean.mT).to(y)
        sd = self.noise.sqrt().to(y)
        reconstruction = dist.Normal(decoded, sd).log_prob(y).sum()
        # q(f_i) variance = k~_ii + tr(S Lambda_i) (whitened: k_ii - |phi_i|^2 + |S^T phi_i|^2); 1 / sd as the reference
        variance_penalty = 0.5 * q_f.variance.sum().to(y) / sd
        kl = self._beta(x, num_data) * self.gp.variational_strategy.kl_divergence().sum().to(y)
        return {
            "reconstruction": reconstruction,
            "variance_penalty": variance_penalty,
            "kl": kl,
            "elbo": reconstruction - variance_penalty - kl,
            "decoded": decoded,
        }

    # ------------------------------------------------------------------ test time
    def condition_on_observations(self, batches: Iterable | None = None) -> SVGPPosterior:
        """The learned posterior (the context ``batches`` are not needed: :math:`q(\\mathbf u)` is not amortized)."""
        return SVGPPosterior(self)

    def decode(self, z: Tensor, x: Tensor | None = None) -> Tensor:
        """Decoded means of latent values ``z`` ``(L, r)``: ``(r, *obs)``, in the decoder's dtype (``x`` is not
        used: the decoder is not conditional)."""
        return self.decoder(z.mT.to(next(self.decoder.parameters()).dtype))


@dataclass
class DeepSVIGPTerms(ObjectiveTerms):
    """The Deep SVIGP objective on one batch: ``elbo`` (per its ``objective``), the ``kl`` part, the batch's
    ``mse`` of the decoded values, and ``value`` (the loss of the whole batch, for the record)."""

    kl: Tensor
    mse: Tensor
    value: Tensor
    decoded: Tensor

    def logged(self) -> dict[str, Tensor]:
        return {"loss": self.value.detach(), "kl": self.kl.detach(), "mse": self.mse.detach()}


class DeepSVIGPObjective(Objective):
    """Minus the Deep SVIGP's objective (:meth:`DeepSVIGP.elbo_terms` for ``"sampled"``,
    :meth:`DeepSVIGP.mean_decoded_elbo` for ``"mean"``) as an objective for :func:`~gpytorch_vae.training.fit`.

    :param model: the :class:`DeepSVIGP`.
    :param num_data: :math:`N`.
    :param ranks: a :class:`gpytorch_vae.distributed.Ranks` in data-parallel training (each rank's KL is already
        scaled by its own :math:`b_r/N`, so the union's objective is the sum of the ranks').
    """

    def __init__(self, model: DeepSVIGP, num_data=_OMITTED, ranks=None):
        super().__init__(model, num_data)
        self.ranks = ranks

    def forward(self, x: Tensor, y: Tensor) -> DeepSVIGPTerms:
        terms = (self.model.elbo_terms if self.model.objective == "sampled" else self.model.mean_decoded_elbo)(
            x, y, self.num_data
        )
        local = -terms["elbo"]
        mse = (terms["decoded"].detach() - y).square().mean()
        if self.ranks is None:
            return DeepSVIGPTerms(local, terms["kl"], mse, local.detach(), terms["decoded"])
        loss = self.ranks.loss(local, local.new_zeros(()))
        value = self.ranks.sum(local)
        return DeepSVIGPTerms(loss, self.ranks.sum(terms["kl"]), self.ranks.sum(mse) / self.ranks.world_size, value,
                              terms["decoded"])  # fmt: skip
