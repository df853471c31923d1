"""Every latent prior passes the shared contract (gpytorch_vae.test.LatentPriorTestCase)."""

import math

import gpytorch
import torch

from gpytorch_vae.gps import ExactLatentGP, SparseLatentGP
from gpytorch_vae.kernels import fixed_periodic_kernel
from gpytorch_vae.priors import ExactLatentPrior, FactorizedLatentPrior, IndependentLatentPrior, SparseLatentPrior
from gpytorch_vae.test import LatentPriorTestCase
from reference import latent_data, make_kernel

DT = torch.float64


class TestSparseLatentPrior(LatentPriorTestCase):
    def create_prior(self):
        gp = SparseLatentGP(torch.linspace(0, 6, 5, dtype=DT).unsqueeze(-1), make_kernel(), jitter_val=1e-10)
        return SparseLatentPrior(gp.to(DT))

    def create_data(self):
        x, mean, var = latent_data(10, seed=11)
        return x, mean, var, torch.linspace(-1, 7, 4, dtype=DT).unsqueeze(-1)

    def num_data(self, mean):
        return 4 * mean.size(-1)  # a minibatch: the KL is scaled by b/N


class TestSparseLatentPriorIndependentDatasets(LatentPriorTestCase):
    """B = 3 data sets (videos) of one GP each, x (B, 1, b, D)."""

    def create_prior(self):
        kernel = gpytorch.kernels.RBFKernel().to(DT)
        gp = SparseLatentGP(torch.linspace(0, 6, 4, dtype=DT).unsqueeze(-1), kernel, jitter_val=1e-10)
        return SparseLatentPrior(gp.to(DT))

    def create_data(self):
        x, mean, var = latent_data(8, seed=12, batch=(3,))
        return x.unsqueeze(-3), mean, var, torch.linspace(0, 6, 5, dtype=DT).reshape(1, 1, 5, 1).expand(3, 1, 5, 1)

    def split(self, x, mean, var):
        return [(x[..., :4, :], mean[..., :4], var[..., :4]), (x[..., 4:, :], mean[..., 4:], var[..., 4:])]


class TestExactLatentPrior(LatentPriorTestCase):
    def create_prior(self):
        return ExactLatentPrior(ExactLatentGP(make_kernel()).to(DT))

    def create_data(self):
        x, mean, var = latent_data(9, seed=13)
        return x, mean, var, torch.linspace(-1, 7, 4, dtype=DT).unsqueeze(-1)


class TestIndependentLatentPrior(LatentPriorTestCase):
    def create_prior(self):
        return IndependentLatentPrior(group_column=0)

    def create_data(self):
        g = torch.Generator().manual_seed(14)
        ids = torch.tensor([0.0, 1.0, 0.0, 2.0, 1.0, 0.0, 2.0, 2.0], dtype=DT)
        x = torch.stack([ids, torch.rand(8, generator=g, dtype=DT)], dim=-1)
        mean, var = torch.randn(2, 8, generator=g, dtype=DT), torch.rand(2, 8, generator=g, dtype=DT) + 0.2
        return x, mean, var, torch.tensor([[2.0, 0.5], [5.0, 0.1]], dtype=DT)

    def test_predict_gives_marginals_at_new_inputs(self):
        """At the conditioning inputs the prediction is the group average, not the per-point mean: check that."""
        _, posterior, (x, mean, var, x_new) = self._posterior()
        q = posterior.predict(x_new)
        group = x[:, 0] == 2.0
        torch.testing.assert_close(q.mean[:, 0], mean[:, group].mean(-1))
        torch.testing.assert_close(q.variance[:, 0], var[:, group].sum(-1) / group.sum() ** 2)
        torch.testing.assert_close(q.mean[:, 1], torch.zeros(2, dtype=DT))  # unseen group: the prior
        torch.testing.assert_close(q.variance[:, 1], torch.ones(2, dtype=DT))


class _Grouped:
    GRID = torch.linspace(0, 2 * math.pi, 17, dtype=DT)[:-1]

    def create_data(self):
        g = torch.Generator().manual_seed(15)
        ids = torch.tensor([3.0, 1.0, 3.0, 3.0, 7.0, 1.0, 7.0, 1.0], dtype=DT)
        x = torch.stack([ids, self.GRID[torch.randperm(16, generator=g)[:8]]], dim=-1)
        mean, var = torch.randn(4, 8, generator=g, dtype=DT), torch.rand(4, 8, generator=g, dtype=DT) + 0.2
        return x, mean, var, torch.tensor([[3.0, 0.3], [7.0, 2.0], [5.0, 1.0]], dtype=DT)

    def split(self, x, mean, var):
        """Whole groups per batch."""
        first = x[:, 0] != 7.0
        return [(x[first], mean[:, first], var[:, first]), (x[~first], mean[:, ~first], var[:, ~first])]


class TestFactorizedLatentPrior(_Grouped, LatentPriorTestCase):
    def create_prior(self):
        return FactorizedLatentPrior(fixed_periodic_kernel(dtype=DT), 2, 2, jitter=1e-12)


class TestFactorizedLatentPriorSparseLocal(_Grouped, LatentPriorTestCase):
    atol = 1e-7

    def create_prior(self):
        kernel = fixed_periodic_kernel(dtype=DT)
        gp = SparseLatentGP(self.GRID[::2, None].clone(), kernel, learn_inducing_locations=False, jitter_val=1e-9)
        return FactorizedLatentPrior(kernel, 2, 2, jitter=1e-12, local_gp=gp.to(DT))
