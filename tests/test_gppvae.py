"""GPPVAE: the low-rank exact GP (against dense GPyTorch) and the Taylor trick (issue #4)."""

import math

import pytest
import torch
from gpytorch.distributions import MultivariateNormal

from gpytorch_vae.baselines import GPPVAE, LowRankViewObjectGP, fit_gppvae
from gpytorch_vae.kernels import ObjectViewInputs, view_object_kernel
from gpytorch_vae.training import Checkpoint
from reference import tiny_vae

DT = torch.float64
ANGLES = torch.linspace(0, 2 * math.pi, 17, dtype=DT)[:-1]


def make_gp(num_objects=7, object_dim=3, noise=0.3):
    torch.manual_seed(0)
    kernel = view_object_kernel(object_dim, lengthscale=0.8, outputscale=1.2, dtype=DT)
    inputs = ObjectViewInputs(torch.randn(num_objects, object_dim, dtype=DT))
    return LowRankViewObjectGP(kernel, inputs, ANGLES, noise=noise, jitter=1e-13)


def random_aux(n, num_objects=7, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, num_objects, (n,), generator=g).to(DT)
    return torch.stack([ids, ANGLES[torch.randint(0, 16, (n,), generator=g)]], dim=-1)


def dense_covariance(gp, aux, other=None):
    inputs = gp.input_map(aux)
    return gp.kernel(inputs, inputs if other is None else gp.input_map(other)).to_dense()


def test_log_marginal_likelihood_equals_dense_gpytorch():
    gp = make_gp()
    aux = random_aux(60)
    z = torch.randn(4, 60, dtype=DT)
    covariance = dense_covariance(gp, aux) + 0.3 * torch.eye(60, dtype=DT)
    expected = MultivariateNormal(torch.zeros(60, dtype=DT), covariance).log_prob(z).sum()
    torch.testing.assert_close(gp.log_marginal_likelihood(z, aux), expected, atol=1e-7, rtol=1e-10)
    # gradients w.r.t. the kernel, GP-LVM vectors and noise agree too
    params = [p for p in gp.parameters() if p.requires_grad]
    ours = torch.autograd.grad(gp.log_marginal_likelihood(z, aux), params)
    covariance = dense_covariance(gp, aux) + gp.noise * torch.eye(60, dtype=DT)
    dense = torch.autograd.grad(MultivariateNormal(torch.zeros(60, dtype=DT), covariance).log_prob(z).sum(), params)
    for a, b in zip(ours, dense):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


def test_features_never_build_an_n_by_n_matrix():
    gp = make_gp()
    features = gp.features(random_aux(500))
    assert features.shape == (500, 16 * 3)


def test_posterior_equals_dense_gp():
    gp = make_gp()
    aux, new = random_aux(50), random_aux(5, seed=2)
    z = torch.randn(3, 50, dtype=DT)
    covariance = dense_covariance(gp, aux) + 0.3 * torch.eye(50, dtype=DT)
    cross = dense_covariance(gp, new, aux)
    mean, var = gp.predict(z, aux, new)
    torch.testing.assert_close(mean, (cross @ torch.linalg.solve(covariance, z.T)).T, atol=1e-9, rtol=0)
    expected_var = dense_covariance(gp, new).diagonal() - (cross @ torch.linalg.solve(covariance, cross.T)).diagonal()
    torch.testing.assert_close(var, expected_var, atol=1e-9, rtol=0)


def test_off_grid_angles_are_refused():
    gp = make_gp()
    with pytest.raises(ValueError, match="grid"):
        gp.features(torch.tensor([[0.0, 0.1]], dtype=DT))


def make_gppvae():
    vae = tiny_vae(data_dim=5)
    return GPPVAE(vae.double(), make_gp())


def test_taylor_anchor_gradient_is_the_full_data_gradient():
    model = make_gppvae()
    aux, y = random_aux(30), torch.randn(30, 5, dtype=DT)
    torch.manual_seed(3)
    anchor, gradient = model.taylor_anchor(aux, y)
    z = anchor.clone().requires_grad_(True)
    model.gp.log_marginal_likelihood(z, aux).backward()
    torch.testing.assert_close(gradient, z.grad)
    # the expansion is exact to first order: a small step changes log p by g . dz
    step = 1e-6 * torch.randn_like(anchor)
    change = model.gp.log_marginal_likelihood(anchor + step, aux) - model.gp.log_marginal_likelihood(anchor, aux)
    assert change.item() == pytest.approx((gradient * step).sum().item(), rel=1e-3)


def test_regime_trains_the_right_parameters(tmp_path):
    model = make_gppvae()
    aux, y = random_aux(40), torch.randn(40, 5, dtype=DT)
    network = model.vae.encoder.net.weight.detach().clone()
    kernel = model.gp.kernel.kernels[0].raw_outputscale.detach().clone()
    path = str(tmp_path / "ckpt.pt")
    fit_gppvae(model, aux, y, vae_epochs=2, gp_epochs=0, batch_size=16, callbacks=[Checkpoint(path)], progress=False)
    assert not torch.equal(model.vae.encoder.net.weight, network)
    assert torch.equal(model.gp.kernel.kernels[0].raw_outputscale, kernel)
    network = model.vae.encoder.net.weight.detach().clone()
    losses = fit_gppvae(model, aux, y, vae_epochs=2, gp_epochs=20, batch_size=16,
                        callbacks=[Checkpoint(path, resume=True)], progress=False)  # fmt: skip
    assert torch.equal(model.vae.encoder.net.weight, network)  # GP phase: networks fixed
    assert not torch.equal(model.gp.kernel.kernels[0].raw_outputscale, kernel)
    assert len(losses) == 20 and sum(losses[-5:]) < sum(losses[:5])  # -log p(Z~)/N falls
    fit_gppvae(model, aux, y, vae_epochs=2, gp_epochs=20, joint_epochs=1, batch_size=16,
               callbacks=[Checkpoint(path, resume=True)], progress=False)  # fmt: skip
    assert not torch.equal(model.vae.encoder.net.weight, network)  # joint phase: networks move
    assert torch.load(path, weights_only=False)["epoch"] == 23
