"""The contract every :class:`~gpytorch_vae.priors.LatentPrior` keeps, as a :mod:`unittest` mixin."""

from __future__ import annotations

import abc

import pyro
import torch
from gpytorch.distributions import MultivariateNormal
from pyro import poutine
from pyro.infer import TraceMeanField_ELBO
from torch import Tensor

from ..likelihoods import GaussianLikelihood
from ..models import GPVAE
from ..objectives import ELBO
from ..priors import LatentPosterior, LatentPrior


class _LinearEncoder(torch.nn.Module):
    def __init__(self, obs_dim: int, latent_dim: int):
        super().__init__()
        self.net = torch.nn.Linear(obs_dim, 2 * latent_dim).double()

    def forward(self, y: Tensor):
        mean, log_var = self.net(y).chunk(2, dim=-1)
        return mean, log_var - 1.0


class LatentPriorTestCase(abc.ABC):
    """Mix into a :class:`unittest.TestCase` (or a pytest class) and implement :meth:`create_prior` and
    :meth:`create_data`; every ``test_*`` method then checks one clause of the contract:

    * :meth:`~gpytorch_vae.priors.LatentPrior.condition` returns a :class:`~gpytorch_vae.priors.LatentPosterior` whose
      ``mean`` and ``rsample()`` have the latent shape and whose ``kl_divergence()`` is a finite scalar :math:`\\ge 0`;
    * ``predict(x_new)`` gives a :class:`~gpytorch.distributions.MultivariateNormal` over the new points with
      positive variances, and at the conditioning inputs its means are the posterior means;
    * the guide's site ``z`` of a :class:`~gpytorch_vae.models.GPVAE` draws exactly what ``rsample()`` draws, the
      model has the same site, and Pyro's :class:`~pyro.infer.TraceMeanField_ELBO` equals the loss of
      :class:`~gpytorch_vae.objectives.ELBO` at the same random state, gradients included (one objective);
    * bad latent data (NaN means, negative variances, mismatched shapes) are refused by ``condition`` and bad
      inputs (NaN, a wrong number of columns) by ``predict``, each with a :class:`ValueError` saying so;
    * :meth:`~gpytorch_vae.priors.LatentPrior.condition_on_batches` over a split of the data equals ``condition``
      on all of it;
    * gradients reach the encoder's means and variances.
    """

    #: tolerance of the comparisons (the data are float64)
    atol = 1e-8

    @abc.abstractmethod
    def create_prior(self) -> LatentPrior:
        """The prior under test (float64)."""

    @abc.abstractmethod
    def create_data(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(x, mean, var, x_new)``: auxiliary inputs ``(*batch, b, D)``, a latent dataset ``(*batch, L, b)`` and new
        inputs ``(*batch, r, D)``, float64. The batch must be splittable in two along the points for
        :meth:`test_condition_on_batches_equals_condition` (override :meth:`split` otherwise)."""

    def split(self, x: Tensor, mean: Tensor, var: Tensor) -> list[tuple[Tensor, Tensor, Tensor]]:
        """Two batches of the data (by default the first and second half of the points)."""
        half = x.size(-2) // 2
        return [(x[..., :half, :], mean[..., :half], var[..., :half]),
                (x[..., half:, :], mean[..., half:], var[..., half:])]  # fmt: skip

    def _posterior(self):
        prior = self.create_prior()
        x, mean, var, x_new = self.create_data()
        return prior, prior.condition(x, mean, var), (x, mean, var, x_new)

    def test_condition_returns_a_posterior_of_the_latent_shape(self):
        _, posterior, (x, mean, var, _) = self._posterior()
        assert isinstance(posterior, LatentPosterior)
        assert posterior.mean.shape == mean.shape, (posterior.mean.shape, mean.shape)
        torch.manual_seed(0)
        assert posterior.rsample().shape == mean.shape
        kl = posterior.kl_divergence()
        assert kl.dim() == 0 and bool(torch.isfinite(kl)) and kl.item() >= -1e-10, kl

    def test_predict_gives_marginals_at_new_inputs(self):
        _, posterior, (x, mean, var, x_new) = self._posterior()
        q = posterior.predict(x_new)
        assert isinstance(q, MultivariateNormal)
        assert q.mean.shape == (*mean.shape[:-1], x_new.size(-2)), (q.mean.shape, mean.shape, x_new.shape)
        assert bool((q.variance > 0).all()) and bool(torch.isfinite(q.mean).all())
        at_data = posterior.predict(x)
        torch.testing.assert_close(at_data.mean, posterior.mean, atol=1e-6, rtol=1e-6)

    def _vae(self, prior: LatentPrior, latent_dim: int, obs_dim: int = 3) -> GPVAE:
        return GPVAE(_LinearEncoder(obs_dim, latent_dim), torch.nn.Linear(latent_dim, obs_dim).double(), prior,
                     latent_dim, likelihood=GaussianLikelihood(), gp_dtype=torch.float64)  # fmt: skip

    def _observations(self, mean: Tensor, obs_dim: int = 3) -> Tensor:
        g = torch.Generator().manual_seed(1)
        return torch.randn(*mean.shape[:-2], mean.size(-1), obs_dim, generator=g, dtype=torch.float64)

    def test_guide_draws_what_rsample_draws_and_the_model_has_the_same_sites(self):
        prior = self.create_prior()
        x, mean, _, _ = self.create_data()
        vae = self._vae(prior, mean.size(-2))
        y = self._observations(mean)
        num_data = self.num_data(mean)
        pyro.set_rng_seed(3)
        guide = poutine.trace(vae.guide).get_trace(x, y, num_data)
        pyro.set_rng_seed(3)
        z = vae.posterior(x, y, num_data).rsample()
        torch.testing.assert_close(guide.nodes["_RETURN"]["value"], z, atol=0, rtol=0)
        model = poutine.trace(poutine.replay(vae.model, trace=guide)).get_trace(x, y, num_data)
        guide_sites = {name: site["value"].shape for name, site in guide.iter_stochastic_nodes()}
        model_sites = {name: site["value"].shape for name, site in model.iter_stochastic_nodes()}
        assert guide_sites == {"z": z.shape} and model_sites["z"] == z.shape, (guide_sites, model_sites)

    def test_svi_loss_equals_the_direct_elbo(self):
        prior = self.create_prior()
        x, mean, _, _ = self.create_data()
        vae = self._vae(prior, mean.size(-2))
        y = self._observations(mean)
        pyro.clear_param_store()
        num_data = self.num_data(mean)
        pyro.set_rng_seed(5)
        svi_loss = TraceMeanField_ELBO().differentiable_loss(vae.model, vae.guide, x, y, num_data)
        pyro.set_rng_seed(5)
        direct = ELBO(vae, num_data)(x, y).loss
        torch.testing.assert_close(svi_loss, direct, atol=1e-7, rtol=1e-9)
        params = [p for p in vae.parameters() if p.requires_grad]
        for a, b in zip(torch.autograd.grad(svi_loss, params, allow_unused=True),
                        torch.autograd.grad(direct, params, allow_unused=True)):  # fmt: skip
            if a is not None or b is not None:
                torch.testing.assert_close(a, b, atol=1e-7, rtol=1e-7)

    def test_bad_latent_data_is_refused(self):
        prior = self.create_prior()
        x, mean, var, x_new = self.create_data()
        bad_mean = mean.clone()
        bad_mean[..., 0, 0] = float("nan")
        bad_var = var.clone()
        bad_var[..., 0, 0] = -1.0
        for args, match in [
            ((x, bad_mean, var), "NaN"),
            ((x, mean, bad_var), "positive"),
            ((x, mean, var[..., :-1]), "same shape"),
            ((x[..., :-1, :], mean, var), "rows"),
        ]:
            try:
                prior.condition(*args)
            except ValueError as error:
                assert match in str(error), (match, str(error))
            else:
                raise AssertionError(f"condition accepted bad latent data ({match})")

    def test_predict_refuses_bad_inputs(self):
        _, posterior, (x, mean, var, x_new) = self._posterior()
        nan_inputs = x_new.clone()
        nan_inputs[..., 0, 0] = float("nan")
        for bad, match in [(nan_inputs, "NaN"), (x_new[..., :0], "columns")]:
            try:
                posterior.predict(bad)
            except ValueError as error:
                assert match in str(error), (match, str(error))
            else:
                raise AssertionError(f"predict accepted bad inputs ({match})")

    def num_data(self, mean: Tensor) -> int | None:
        """``num_data`` for the ELBO check (default: the batch is the whole data set)."""
        return None

    def test_condition_on_batches_equals_condition(self):
        prior, posterior, (x, mean, var, x_new) = self._posterior()
        streamed = prior.condition_on_batches(self.split(x, mean, var))
        one, two = posterior.predict(x_new), streamed.predict(x_new)
        torch.testing.assert_close(two.mean, one.mean, atol=self.atol, rtol=1e-7)
        torch.testing.assert_close(two.variance, one.variance, atol=self.atol, rtol=1e-7)

    def test_gradients_reach_the_latent_data(self):
        prior = self.create_prior()
        x, mean, var, _ = self.create_data()
        mean, var = mean.clone().requires_grad_(True), var.clone().requires_grad_(True)
        posterior = prior.condition(x, mean, var)
        torch.manual_seed(0)
        (posterior.kl_divergence() + posterior.rsample().square().sum()).backward()
        assert mean.grad is not None and mean.grad.abs().sum() > 0
        assert var.grad is not None and var.grad.abs().sum() > 0
