r"""FGP-VAE's latent prior (Jazbec, Pearce and Fortuin): a delta kernel over groups makes the prior block-diagonal.

Channels ``0..J-1`` are **local**: an independent GP per group over the other inputs, given by a local component,
:class:`ExactGroupGP` (the paper's exact GP per group) or :class:`SparseGroupGP` (SVGP-VAE's amortized sparse GP
per group, beyond the paper, which names it future work). The remaining channels are **global**: one
:math:`\mathcal N(0, g)` latent per group, shared by its points. Groups of unequal size are padded
(:class:`~gpytorch_vae.variational.GroupLayout`); no :math:`N\times N` matrix is formed.
"""

from __future__ import annotations

from typing import Sequence

import pyro.distributions as dist
import torch
from gpytorch.distributions import MultivariateNormal
from gpytorch.kernels import Kernel
from linear_operator.utils.cholesky import psd_safe_cholesky
from torch import Tensor

from ..variational.group_layout import GroupLayout
from ..variational.latent_data import check_inputs, check_latent_data, check_num_data
from ..variational.noise import StandardNormalNoise
from .base import (
    LatentPosterior,
    LatentPrior,
    marginal_distribution,
    noise_or_default,
)
from .factorized_posterior import (
    GroupedGPPosterior,
    global_posterior,
    masked_block_covariance,
    select_groups,
)
from .sparse import SparseLatentPosterior, SparseLatentPrior


def _tril(covariance: Tensor, jitter: float) -> Tensor:
    eye = torch.eye(covariance.size(-1), dtype=covariance.dtype, device=covariance.device)
    return psd_safe_cholesky(covariance + jitter * eye)


# ---------------------------------------------------------------------- local components
class ExactGroupPosterior:
    """The exact local posterior of every group (:class:`~gpytorch_vae.priors.GroupedGPPosterior` over
    ``(J, P, Q)``), with its prior blocks; site ``z_local``."""

    def __init__(self, component: ExactGroupGP, inputs: Tensor, blocks: Tensor, posterior: GroupedGPPosterior,
                 mask: Tensor):  # fmt: skip
        self.component, self.inputs, self.blocks, self.posterior, self.mask = component, inputs, blocks, posterior, mask
        jitter = component.jitter
        self.q = dist.MultivariateNormal(posterior.mean, scale_tril=_tril(posterior.covariance_matrix, jitter))

    def rsample(self, sample_shape: torch.Size = torch.Size(), noise: StandardNormalNoise | None = None) -> Tensor:
        """A draw ``(*sample_shape, J, P, Q)``; with ``noise`` from the union of several ranks, this rank's groups'
        slice of the union's draw."""
        loc = self.q.loc
        shape = torch.Size(sample_shape) + loc.shape
        eps = noise_or_default(noise)(shape, -2, loc.dtype, loc.device)  # (J, P, Q): the groups' dimension
        return loc + (self.q.scale_tril @ eps.unsqueeze(-1)).squeeze(-1)

    @property
    def mean(self) -> Tensor:
        return self.posterior.mean

    @property
    def log_normaliser(self) -> Tensor:
        return self.posterior.log_normaliser

    def kl_divergence(self) -> Tensor:
        p = dist.MultivariateNormal(torch.zeros_like(self.q.loc), scale_tril=_tril(self.blocks, self.component.jitter))
        return torch.distributions.kl_divergence(self.q, p).sum()

    def predict(self, new_inputs: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
        """Means and variances ``(J, r)`` at local inputs ``(r, d)`` in the groups ``index``."""
        new = new_inputs[:, None, :]  # (r, 1, d)
        kernel = self.component.kernel
        cross = kernel(self.inputs[index], new).to_dense() * self.mask[index][..., None]  # (r, Q, 1)
        mean, variance = select_groups(self.posterior, index).predict(cross, kernel(new, diag=True))
        return mean[..., 0], variance[..., 0]


class ExactGroupGP(torch.nn.Module):
    r"""Local component: an exact GP per group (the FGP-VAE paper), all groups batched in ``(P, Q, Q)`` blocks.

    :param kernel: GPyTorch kernel on the local inputs (e.g. a fixed periodic kernel over the angle).
    :param jitter: added to the diagonals of the prior and posterior blocks before their Cholesky factors.
    """

    def __init__(self, kernel: Kernel, jitter: float = 1e-8):
        super().__init__()
        self.kernel = kernel
        self.jitter = float(jitter)

    def prior_blocks(self, inputs: Tensor, mask: Tensor) -> Tensor:
        """The masked kernel blocks ``(P, Q, Q)`` of padded local inputs ``(P, Q, d)``."""
        return masked_block_covariance(self.kernel(inputs).to_dense(), mask)

    def condition(self, inputs: Tensor, y: Tensor, noise: Tensor, mask: Tensor,
                  observed: Tensor | None = None) -> ExactGroupPosterior:  # fmt: skip
        """Inputs ``(P, Q, d)``, local latent data ``(J, P, Q)`` (padded slots: any finite values); ``mask``: the real
        points (padding), ``observed``: those with data ``(J, P, Q)`` (default: all real points)."""
        blocks = self.prior_blocks(inputs, mask)
        data = mask if observed is None else observed & mask
        return ExactGroupPosterior(self, inputs, blocks, GroupedGPPosterior.fit(blocks, y, noise, data), mask)

    def prior_variance(self, new_inputs: Tensor) -> Tensor:
        return self.kernel(new_inputs, diag=True)


class SparseGroupPosterior:
    """The amortized sparse local posterior of every group (SVGP-VAE's Eq. 9 per group with :math:`b = N_p`);
    sites ``inducing_values`` and ``z``."""

    def __init__(self, posterior: SparseLatentPosterior, inputs: Tensor, mask: Tensor):
        self.posterior, self.inputs, self.mask = posterior, inputs, mask

    def rsample(self, sample_shape: torch.Size = torch.Size(), noise: StandardNormalNoise | None = None) -> Tensor:
        """A draw ``(*sample_shape, J, P, Q)`` (the groups are independent data sets of one process: ``noise`` is not
        sliced)."""
        return self.posterior.rsample(sample_shape).movedim(-3, -2)  # (P, J, Q) -> (J, P, Q)

    @property
    def mean(self) -> Tensor:
        return self.posterior.mean.movedim(0, -2)

    def kl_divergence(self) -> Tensor:
        return self.posterior.kl_divergence()

    def predict(self, new_inputs: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
        """Means and variances ``(J, r)`` at local inputs ``(r, d)`` in the groups ``index``: the new points are
        padded into their groups (``(P, 1, R, d)``), predicted by each group's posterior, and gathered back."""
        layout = GroupLayout.create(index)
        padded = new_inputs.new_zeros(self.mask.size(0), layout.max_size, new_inputs.size(-1))
        padded[layout.group_ids] = layout.pad_points(new_inputs, point_dim=0)
        q_f = self.posterior.posterior.predict(padded.unsqueeze(-3), diag=True)  # (P, J, R)
        rows = index, slice(None), layout.position
        return q_f.mean[rows].mT, q_f.variance[rows].mT


class SparseGroupGP(torch.nn.Module):
    r"""Local component: SVGP-VAE's amortized sparse GP per group (inducing points shared by all groups), through a
    :class:`~gpytorch_vae.priors.SparseLatentPrior` over the ``P`` padded groups as independent data sets; padded
    slots carry infinite noise, i.e. no data.

    :param gp: a :class:`~gpytorch_vae.gps.SparseLatentGP` on the local inputs.
    """

    def __init__(self, gp):
        super().__init__()
        self.prior = SparseLatentPrior(gp)

    @property
    def kernel(self) -> Kernel:
        return self.prior.gp.covar_module

    def condition(self, inputs: Tensor, y: Tensor, noise: Tensor, mask: Tensor,
                  observed: Tensor | None = None) -> SparseGroupPosterior:  # fmt: skip
        gp_inputs = self.prior.gp_inputs(inputs.unsqueeze(-3))  # (P, 1, Q, d): one data set per group
        data = mask.unsqueeze(-3) if observed is None else observed & mask  # (J, P, Q)
        observed = data.expand(y.size(0), -1, -1).movedim(0, -2)  # (P, J, Q)
        posterior = self.prior.strategy.condition(gp_inputs, y.movedim(-2, 0), noise.movedim(-2, 0), observed=observed)
        return SparseGroupPosterior(SparseLatentPosterior(posterior, self.prior.gp_inputs), inputs, mask)

    def prior_variance(self, new_inputs: Tensor) -> Tensor:
        return self.kernel(new_inputs, diag=True)


# ---------------------------------------------------------------------- the prior
class FactorizedLatentPosterior(LatentPosterior):
    r"""The FGP-VAE posterior of a latent dataset of whole groups: the local component's posterior on channels
    ``0..J-1`` (sites of the component) and, per group, the conjugate Gaussian of the global channels (site
    ``z_global``, ``(L - J, P)``).

    :param prior: the :class:`FactorizedLatentPrior` it belongs to.
    :param layout: the groups of the conditioning points.
    :param local: the local component's posterior.
    :param global_terms: the global channels' ``(mean, variance, log Z)``, each ``(L - J, P)``.
    """

    def __init__(self, prior: FactorizedLatentPrior, layout: GroupLayout, local, global_terms,
                 input_dim: int | None = None):  # fmt: skip
        self.prior, self.layout, self.local, self.input_dim = prior, layout, local, input_dim
        self.global_mean, self.global_variance, self.global_log_normaliser = global_terms

    def _assemble(self, local: Tensor, glob: Tensor) -> Tensor:
        return torch.cat([self.layout.unpad_points(local), glob[..., self.layout.group]], dim=-2)

    @property
    def shape(self) -> torch.Size:
        return torch.Size([self.prior.num_local + self.prior.num_global, self.layout.group.numel()])

    def rsample(self, sample_shape: torch.Size = torch.Size(), noise: StandardNormalNoise | None = None) -> Tensor:
        """Local channels from the local component, then global channels; with ``noise`` from the union of several
        ranks (whole groups per rank, in group order across the ranks) each rank's slice of the union's draws (the
        exact local component; the sparse one draws as a single process)."""
        z_local = self.local.rsample(sample_shape, noise)
        mean = self.global_mean
        shape = torch.Size(sample_shape) + mean.shape
        eps = noise_or_default(noise)(shape, -1, mean.dtype, mean.device)
        return self._assemble(z_local, mean + self.global_variance.sqrt() * eps)

    @property
    def mean(self) -> Tensor:
        return self._assemble(self.local.mean, self.global_mean)

    @property
    def log_normaliser(self) -> Tensor:
        r""":math:`\sum_p\log Z_p` over all groups and channels (exact local component only)."""
        return self.local.log_normaliser.sum() + self.global_log_normaliser.sum()

    def kl_divergence(self) -> Tensor:
        r""":math:`\mathrm{KL}(q\,\|\,p)` summed over groups and channels (for the sparse local component the local
        part is :math:`\sum\mathrm{KL}(q_S(\mathbf u)\,\|\,p(\mathbf u))`)."""
        q = dist.Normal(self.global_mean, self.global_variance.sqrt())
        prior_sd = self.prior.global_prior_variance**0.5
        p = dist.Normal(torch.zeros_like(self.global_mean), torch.full_like(self.global_mean, prior_sd))
        return self.local.kl_divergence() + torch.distributions.kl_divergence(q, p).sum()

    def predict(self, x: Tensor) -> MultivariateNormal:
        r"""Per new point ``(r, D)``: its group's GP (local channels) and its group's shared Gaussian (global
        channels). Points of groups absent from the conditioning data get the prior (unseen groups)."""
        check_inputs(x, self.input_dim)
        if x.dim() != 2:
            raise ValueError(f"x must be (r, D) (one data set of grouped points), got {tuple(x.shape)}")
        prior = self.prior
        index, seen = self.layout.locate(x[:, prior.group_column].to(self.layout.group_ids))
        new_inputs = prior.local_inputs(x)
        local_mean, local_var = self.local.predict(new_inputs, index)
        prior_var = prior.local.prior_variance(new_inputs)
        mean = torch.cat([torch.where(seen, local_mean, 0.0), torch.where(seen, self.global_mean[:, index], 0.0)])
        global_var = torch.where(seen, self.global_variance[:, index], prior.global_prior_variance)
        variance = torch.cat([torch.where(seen, local_var, prior_var.expand_as(local_var)), global_var])
        return marginal_distribution(mean, variance)


class FactorizedLatentPrior(LatentPrior):
    r"""The FGP-VAE prior (module docstring). With :class:`~pyro.infer.TraceMeanField_ELBO` the loss is minus
    :math:`\mathbb E_q[\log p(\mathbf Y\mid\mathbf Z)] - \mathrm{KL}(q\,\|\,p)`, which equals the FGP-VAE ELBO
    :math:`\sum_p\mathbb E_q[\sum_q\log p(\mathbf y_q\mid\mathbf z_q) - \log\tilde q(\mathbf z_q\mid\mathbf y_q)] +
    \log Z_p` because :math:`\log q = \log\tilde q + \log p - \log Z`. The ELBO is a sum over groups: minibatches of
    whole groups need no :math:`b/N` scaling (``num_data`` is ignored).

    :param local_kernel: GPyTorch kernel on the local inputs (e.g. a fixed periodic kernel over the angle), for the
        exact local component.
    :param num_local: :math:`J`.
    :param num_global: :math:`L - J`.
    :param group_column: column of ``x`` holding the group id.
    :param local_columns: columns of ``x`` the local kernel sees.
    :param global_prior_variance: :math:`g`.
    :param jitter: added to the diagonals of the prior and posterior blocks before their Cholesky factors.
    :param local_gp: optional :class:`~gpytorch_vae.gps.SparseLatentGP` on the local inputs: the local channels then
        use :class:`SparseGroupGP` (``local_kernel`` is unused; pass ``local_gp.covar_module``).
    """

    def __init__(
        self,
        local_kernel: Kernel,
        num_local: int,
        num_global: int,
        group_column: int = 0,
        local_columns: Sequence[int] = (1,),
        global_prior_variance: float = 1.0,
        jitter: float = 1e-8,
        local_gp=None,
    ):
        super().__init__()
        self.local = ExactGroupGP(local_kernel, jitter) if local_gp is None else SparseGroupGP(local_gp)
        self.num_local = int(num_local)
        self.num_global = int(num_global)
        self.group_column = int(group_column)
        self.local_columns = list(local_columns)
        self.global_prior_variance = float(global_prior_variance)

    def _like(self) -> Tensor | None:
        return next(self.local.parameters(), None)

    def local_inputs(self, x: Tensor) -> Tensor:
        """The local kernel's columns of ``x``, in the GP dtype."""
        inputs = x[:, self.local_columns]
        like = self._like()
        return inputs if like is None else inputs.to(like)

    def layout(self, x: Tensor) -> GroupLayout:
        if x.dim() != 2:
            raise ValueError(f"x must be (N, D) (one dataset of grouped points), got {tuple(x.shape)}")
        return GroupLayout.create(x[:, self.group_column])

    def condition(self, x: Tensor, mean: Tensor, var: Tensor, num_data: int | None = None,
                  observed: Tensor | None = None) -> FactorizedLatentPosterior:  # fmt: skip
        """Points where ``observed`` is false carry no data (zero precision) in their group's local GP and global
        Gaussian."""
        check_latent_data(x, mean, var, observed)
        check_num_data(num_data, mean.size(-1))
        if mean.size(-2) != self.num_local + self.num_global:
            raise ValueError(
                f"expected mean/var with {self.num_local + self.num_global} latent channels ({self.num_local} local "
                f"+ {self.num_global} global), got mean of shape {tuple(mean.shape)}"
            )
        layout = self.layout(x)
        inputs = layout.pad_points(self.local_inputs(x), point_dim=0)  # (P, Q, d)
        pad = lambda t: layout.pad_points(t.to(inputs), fill=1.0)  # noqa: E731  (L, P, Q)
        padded_mean, padded_var = pad(mean), pad(var)
        data = layout.mask
        if observed is not None:
            data = layout.pad_points(observed.expand_as(mean), fill=False) & layout.mask
        J = self.num_local
        local_data = None if observed is None else data[:J]
        local = self.local.condition(inputs, padded_mean[:J], padded_var[:J], layout.mask, local_data)
        glob = global_posterior(padded_mean[J:], padded_var[J:], data if observed is None else data[J:],
                                self.global_prior_variance)  # fmt: skip
        return FactorizedLatentPosterior(self, layout, local, glob, x.size(-1))
