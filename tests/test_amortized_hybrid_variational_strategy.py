"""Tests of AmortizedHybridVariationalStrategy against GPyTorch's ExactGP and dense float64 formulas."""

import gpytorch
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from gpytorch_vae.variational import AmortizedHybridVariationalStrategy
from reference import (
    L_CHANNELS,
    batch_titsias_reference,
    dense,
    exact_gp_reference,
    gaussian_kl,
    latent_data,
    log_normal,
    make_kernel,
    make_sparse_gp,
    titsias_reference,
)

ATOL = 1e-7


class TestInducingEqualsData:
    """U = X and b = N: the sparse posterior is the exact GP posterior, the bound is the exact evidence."""

    def setup_method(self):
        self.x, self.y, self.noise = latent_data(12)
        self.gp = make_sparse_gp(self.x.clone())
        self.gp.set_latent_data(self.x, self.y, self.noise)
        self.mean, self.covar, self.lml = exact_gp_reference(self.x, self.y, self.noise, make_kernel())

    def test_q_u_is_exact_posterior(self):
        q_u = self.gp.variational_strategy.variational_distribution
        torch.testing.assert_close(q_u.mean, self.mean, atol=ATOL, rtol=0)
        torch.testing.assert_close(q_u.covariance_matrix, self.covar, atol=ATOL, rtol=0)

    def test_q_f_at_data_is_exact_posterior(self):
        self.gp.eval()
        q_f = self.gp(self.x)
        torch.testing.assert_close(q_f.mean, self.mean, atol=ATOL, rtol=0)
        torch.testing.assert_close(q_f.covariance_matrix, self.covar, atol=1e-6, rtol=0)

    def test_hensman_bound_is_log_marginal_likelihood(self):
        bound = self.gp.variational_strategy.hensman_bound()
        assert bound.shape == torch.Size([L_CHANNELS])
        torch.testing.assert_close(bound, self.lml, atol=1e-6, rtol=0)


class TestFullBatchTitsias:
    """m < N, b = N: q(u) is the Titsias optimum and the bound is Titsias' collapsed bound <= log Z."""

    def setup_method(self):
        self.x, self.y, self.noise = latent_data(30, seed=1)
        self.u = torch.linspace(0, 6, 7, dtype=torch.float64).unsqueeze(-1)
        self.gp = make_sparse_gp(self.u)
        self.gp.set_latent_data(self.x, self.y, self.noise)
        self.mu, self.a, self.bound, _ = titsias_reference(make_kernel(), self.u, self.x, self.y, self.noise)

    def test_q_u_is_titsias_optimum(self):
        q_u = self.gp.variational_strategy.variational_distribution
        torch.testing.assert_close(q_u.mean, self.mu, atol=ATOL, rtol=1e-7)
        torch.testing.assert_close(q_u.covariance_matrix, self.a, atol=ATOL, rtol=1e-7)

    def test_bound_is_collapsed_bound_below_evidence(self):
        bound = self.gp.variational_strategy.hensman_bound()
        torch.testing.assert_close(bound, self.bound, atol=1e-6, rtol=0)
        _, _, lml = exact_gp_reference(self.x, self.y, self.noise, make_kernel())
        assert torch.all(bound < lml)

    def test_kl_matches_dense(self):
        strategy = self.gp.variational_strategy
        q_u, p_u = strategy.variational_distribution, strategy.prior_distribution
        expected = gaussian_kl(q_u.mean, q_u.covariance_matrix, p_u.mean, dense(make_kernel(), self.u))
        torch.testing.assert_close(strategy.kl_divergence(), expected, atol=1e-6, rtol=1e-6)

    def test_predictive_is_eq3(self):
        kernel = make_kernel()
        xr = torch.linspace(-1, 7, 5, dtype=torch.float64).unsqueeze(-1)
        kmm_inv = torch.linalg.inv(dense(kernel, self.u))
        krm = dense(kernel, xr, self.u)
        mean = (krm @ kmm_inv @ self.mu.unsqueeze(-1)).squeeze(-1)
        covar = dense(kernel, xr) - krm @ kmm_inv @ krm.mT + krm @ kmm_inv @ self.a @ kmm_inv @ krm.mT
        self.gp.eval()
        q_f = self.gp(xr)
        torch.testing.assert_close(q_f.mean, mean, atol=ATOL, rtol=1e-6)
        torch.testing.assert_close(q_f.covariance_matrix, covar, atol=1e-6, rtol=1e-6)
        self.gp.train()
        torch.testing.assert_close(self.gp(xr).variance, covar.diagonal(dim1=-1, dim2=-2), atol=1e-6, rtol=1e-6)


class TestMinibatch:
    """b < N: Eq. 9 with the N/b factor; Sigma_b averages to Sigma over a partition."""

    def setup_method(self):
        self.x, self.y, self.noise = latent_data(24, seed=2)
        self.u = torch.linspace(0, 6, 6, dtype=torch.float64).unsqueeze(-1)
        self.gp = make_sparse_gp(self.u)
        self.kernel = make_kernel()

    def test_eq9_with_scaling(self):
        idx = torch.arange(3, 11)
        self.gp.set_latent_data(self.x[idx], self.y[:, idx], self.noise[:, idx], num_data=24)
        _, mu_b, a_b = batch_titsias_reference(self.kernel, self.u, self.x[idx], self.y[:, idx], self.noise[:, idx], 24)
        q_u = self.gp.variational_strategy.variational_distribution
        torch.testing.assert_close(q_u.mean, mu_b, atol=ATOL, rtol=1e-7)
        torch.testing.assert_close(q_u.covariance_matrix, a_b, atol=ATOL, rtol=1e-7)

    def test_minibatch_hensman_bound_is_eq7(self):
        """(N/b) sum_{i in b} {log N(y_i | k_i K^-1 mu_b, s_i^2) - (k~_ii + tr(A_b Lambda_i)) / (2 s_i^2)} - KL."""
        idx = torch.arange(5, 13)
        xb, yb, nb = self.x[idx], self.y[:, idx], self.noise[:, idx]
        self.gp.set_latent_data(xb, yb, nb, num_data=24)
        _, mu_b, a_b = batch_titsias_reference(self.kernel, self.u, xb, yb, nb, 24)
        kmm_inv = torch.linalg.inv(dense(self.kernel, self.u))
        kbm = dense(self.kernel, xb, self.u)
        interp = kbm @ kmm_inv  # rows k_i K^-1
        k_tilde = dense(self.kernel, xb).diagonal(dim1=-1, dim2=-2) - (interp * kbm).sum(-1)
        trace = ((interp @ a_b) * interp).sum(-1)  # tr(A Lambda_i)
        data = log_normal(yb, (interp @ mu_b.unsqueeze(-1)).squeeze(-1), nb) - (k_tilde + trace) / (2 * nb)
        kl = gaussian_kl(mu_b, a_b, torch.zeros_like(mu_b), dense(self.kernel, self.u))
        expected = 24 / 8 * data.sum(-1) - kl
        torch.testing.assert_close(self.gp.variational_strategy.hensman_bound(), expected, atol=1e-6, rtol=1e-8)

    def test_sigma_b_averages_to_sigma(self):
        kmm = dense(self.kernel, self.u)
        sigmas = []
        for idx in torch.randperm(24, generator=torch.Generator().manual_seed(0)).chunk(4):
            self.gp.set_latent_data(self.x[idx], self.y[:, idx], self.noise[:, idx], num_data=24)
            a_b = self.gp.variational_strategy.variational_distribution.covariance_matrix
            sigmas.append(kmm @ torch.linalg.solve(a_b, kmm))  # A_b = K Sigma_b^-1 K
        _, _, _, sigma = titsias_reference(self.kernel, self.u, self.x, self.y, self.noise)
        torch.testing.assert_close(torch.stack(sigmas).mean(0), sigma, atol=1e-6, rtol=1e-6)


class TestStreamingConditioning:
    def test_dataloader_equals_one_batch(self):
        x, y, noise = latent_data(50, seed=3)
        gp = make_sparse_gp(torch.linspace(0, 6, 8, dtype=torch.float64).unsqueeze(-1))
        strategy = gp.variational_strategy
        strategy.set_latent_data(x, y, noise)
        q_one = strategy.variational_distribution
        xr = torch.linspace(0, 6, 9, dtype=torch.float64).unsqueeze(-1)
        gp.eval()
        f_one = gp(xr)
        loader = DataLoader(TensorDataset(x, y.mT, noise.mT), batch_size=7, shuffle=True)
        with torch.no_grad():
            stats = strategy.condition_on_batches((xb, yb.mT, nb.mT) for xb, yb, nb in loader)
        assert stats.num_points == 50 and stats.precision_update.shape == torch.Size([L_CHANNELS, 8, 8])
        q_stream = strategy.variational_distribution
        torch.testing.assert_close(q_stream.mean, q_one.mean.detach(), atol=1e-9, rtol=1e-9)
        torch.testing.assert_close(q_stream.covariance_matrix, q_one.covariance_matrix.detach(), atol=1e-9, rtol=1e-9)
        torch.testing.assert_close(gp(xr).mean, f_one.mean.detach(), atol=1e-9, rtol=1e-9)


class TestNoStaleCaches:
    def test_eval_mode_follows_latent_data(self):
        x, y, noise = latent_data(10, seed=4)
        gp = make_sparse_gp(x[::2].clone())
        gp.eval()
        gp.set_latent_data(x, y, noise)
        first = gp(x).mean.detach().clone()
        q_first = gp.variational_strategy.variational_distribution.mean.detach().clone()
        gp.set_latent_data(x, -y, noise)
        torch.testing.assert_close(gp(x).mean, -first)
        torch.testing.assert_close(gp.variational_strategy.variational_distribution.mean, -q_first)

    def test_eval_mode_follows_hyperparameters(self):
        x, y, noise = latent_data(10, seed=5)
        gp = make_sparse_gp(x[::2].clone())
        gp.eval()
        gp.set_latent_data(x, y, noise)
        before = gp(x).mean.detach().clone()
        gp.covar_module.base_kernel.lengthscale = 3.0
        mu, _, _, _ = titsias_reference(gp.covar_module, x[::2], x, y, noise)
        torch.testing.assert_close(gp.variational_strategy.variational_distribution.mean, mu, atol=ATOL, rtol=1e-6)
        assert not torch.allclose(gp(x).mean, before)


class TestBatchShapes:
    def test_independent_gps_equal_separate_gps(self):
        batch = 3
        x, y, noise = latent_data(9, seed=6, batch=(batch,))
        u = torch.linspace(0, 6, 5, dtype=torch.float64).unsqueeze(-1)
        gp = make_sparse_gp(u)  # kernel batch [L]; data batch [B, L]
        gp.set_latent_data(x.unsqueeze(-3), y, noise)
        kl = gp.variational_strategy.kl_divergence()
        bound = gp.variational_strategy.hensman_bound()
        assert kl.shape == bound.shape == torch.Size([batch, L_CHANNELS])
        xr = torch.linspace(0, 6, 4, dtype=torch.float64).unsqueeze(-1)
        gp.eval()
        q_f = gp(xr.expand(batch, 1, 4, 1))
        assert q_f.mean.shape == torch.Size([batch, L_CHANNELS, 4])
        for i in range(batch):
            single = make_sparse_gp(u)
            single.set_latent_data(x[i], y[i], noise[i])
            torch.testing.assert_close(kl[i], single.variational_strategy.kl_divergence())
            torch.testing.assert_close(bound[i], single.variational_strategy.hensman_bound())
            single.eval()
            torch.testing.assert_close(q_f.mean[i], single(xr).mean)

    def test_single_channel(self):
        x, y, noise = latent_data(8, channels=1, seed=7)
        gp = make_sparse_gp(x.clone(), batch_shape=torch.Size([]), lengthscale=(0.7,), outputscale=(1.0,))
        gp.set_latent_data(x, y[0], noise[0])
        mean, _, lml = exact_gp_reference(x, y[0], noise[0], make_kernel(torch.Size([]), (0.7,), (1.0,)))
        torch.testing.assert_close(gp.variational_strategy.variational_distribution.mean, mean, atol=ATOL, rtol=0)
        torch.testing.assert_close(gp.variational_strategy.hensman_bound(), lml, atol=1e-6, rtol=0)


class TestContract:
    """The public contract of issue #2, written exactly as a user would."""

    def test_user_model(self):
        num_latent = 3

        class LatentGP(gpytorch.models.ApproximateGP):
            def __init__(self, inducing_points):
                strategy = AmortizedHybridVariationalStrategy(self, inducing_points, learn_inducing_locations=True)
                super().__init__(strategy)
                batch = torch.Size([num_latent])
                self.mean_module = gpytorch.means.ZeroMean(batch_shape=batch)
                self.covar_module = gpytorch.kernels.ScaleKernel(
                    gpytorch.kernels.MaternKernel(batch_shape=batch), batch_shape=batch
                )

            def forward(self, x):
                return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))

        gp = LatentGP(torch.rand(6, 2))
        x_b, y_b, noise_b = torch.rand(10, 2), torch.randn(num_latent, 10), torch.rand(num_latent, 10) + 0.1
        gp.variational_strategy.set_latent_data(x_b, y_b, noise_b, num_data=100)
        q_u = gp.variational_strategy.variational_distribution
        assert isinstance(q_u, gpytorch.distributions.MultivariateNormal)
        assert q_u.mean.shape == torch.Size([num_latent, 6])
        q_f = gp(torch.rand(4, 2))
        assert q_f.mean.shape == torch.Size([num_latent, 4])
        kl = gp.variational_strategy.kl_divergence()
        assert kl.shape == torch.Size([num_latent]) and bool((kl > 0).all())
        (kl.sum() + q_f.mean.sum()).backward()
        assert gp.variational_strategy.inducing_points.grad.abs().sum() > 0

    def test_errors(self):
        gp = make_sparse_gp(torch.rand(4, 1))
        with pytest.raises(RuntimeError, match="set_latent_data"):
            gp.variational_strategy.kl_divergence()
        x, y, noise = latent_data(5)
        with pytest.raises(ValueError, match="same shape"):
            gp.set_latent_data(x, y, noise[:, :3])
        with pytest.raises(ValueError, match="positive"):
            gp.set_latent_data(x, y, -noise)
        with pytest.raises(ValueError, match="num_data"):
            gp.set_latent_data(x, y, noise, num_data=2)
        with pytest.raises(ValueError, match=r"\(\.\.\., b, D\)"):
            gp.set_latent_data(x[:4], y, noise)


class TestGPyTorchObjective:
    """The strategy inside a plain GPyTorch model, trained with GPyTorch's own VariationalELBO."""

    def test_hensman_bound_equals_variational_elbo_with_fixed_noise(self):
        """GPyTorch's VariationalELBO with a FixedNoiseGaussianLikelihood holding the encoder variances is the
        minibatch Hensman bound (Eq. 7) divided by N, channel by channel."""
        x, y, noise = latent_data(12, seed=6)
        gp = make_sparse_gp(x[::3].clone())
        gp.train()
        batch = slice(2, 9)
        gp.set_latent_data(x[batch], y[..., batch], noise[..., batch], num_data=40)
        likelihood = gpytorch.likelihoods.FixedNoiseGaussianLikelihood(noise=noise[..., batch])
        mll = gpytorch.mlls.VariationalELBO(likelihood, gp, num_data=40)
        elbo = mll(gp(x[batch]), y[..., batch])
        torch.testing.assert_close(elbo, gp.variational_strategy.hensman_bound() / 40, atol=1e-10, rtol=1e-10)

    def test_one_kernel_evaluation_per_step(self, monkeypatch):
        """gp(x) then kl_divergence() (what VariationalELBO does) evaluates the kernel and factorises K_mm once."""
        from gpytorch_vae.variational import prior_terms

        x, y, noise = latent_data(10, seed=7)
        gp = make_sparse_gp(x[::2].clone())
        gp.train()
        calls = []
        original = prior_terms.WhitenedPriorTerms.compute.__func__
        monkeypatch.setattr(prior_terms.WhitenedPriorTerms, "compute",
                            classmethod(lambda cls, *a, **k: calls.append(1) or original(cls, *a, **k)))  # fmt: skip
        gp.set_latent_data(x, y, noise, num_data=30)
        likelihood = gpytorch.likelihoods.FixedNoiseGaussianLikelihood(noise=noise)
        gpytorch.mlls.VariationalELBO(likelihood, gp, num_data=30)(gp(x), y).sum().backward()
        assert len(calls) == 1
