"""Numerics and guards of training: no KL spikes in the exact GP-VAE, the divergence guard, a warning inside the
model printed once (docs/reliability.md)."""

import subprocess
import sys

import gpytorch
import pyro
import pytest
import torch

from gpytorch_vae import GPVAE, ExactLatentGP, ExactLatentPrior
from gpytorch_vae.data import make_synthetic_gp_data
from gpytorch_vae.likelihoods import GaussianLikelihood
from gpytorch_vae.objectives import ELBO
from gpytorch_vae.training import DivergenceError, DivergenceGuard, fit
from reference import LinearEncoder


def test_the_exact_gp_vae_trains_without_kl_spikes():
    """At ab19055 this run's loss jumped from about 620 to 1.3e7 at epoch 37 (the KL, from a jittered Cholesky factor
    of the noise-free K_XX) and came back the next epoch."""
    data = make_synthetic_gp_data(num_points=40, seed=0)
    pyro.set_rng_seed(0)
    kernel = gpytorch.kernels.RBFKernel(batch_shape=torch.Size([2]))
    vae = GPVAE(LinearEncoder(16, 2), torch.nn.Linear(2, 16), ExactLatentPrior(ExactLatentGP(kernel).double()), 2,
                GaussianLikelihood(), gp_dtype=torch.float64)  # fmt: skip
    loss = fit(ELBO(vae, None), [(data.x, data.y)], epochs=200, lr=1e-2, progress=False).history["loss"]
    jumps = [i for i in range(21, len(loss)) if loss[i] > loss[i - 1] + 10 * abs(loss[i - 1])]
    assert not jumps and max(loss[20:]) < 2 * min(loss[20:]), (jumps, max(loss[20:]))


class TestDivergenceGuard:
    def test_an_improving_negative_loss_never_trips_it(self):
        guard = DivergenceGuard(1e3, patience=2)
        for period, value in enumerate([1.0, -10.0, -300.0, -1500.0, -1499.0], 1):
            guard.check("loss", value, period, None, first_step=1.0)

    def test_one_bad_period_is_tolerated_two_are_not_and_the_checkpoint_is_named_only_if_there_is_one(self):
        guard = DivergenceGuard(1e3, patience=2)
        guard.check("loss", 60.0, 1, None, first_step=60.0)
        guard.check("loss", 2.45e7, 2, None)
        guard.check("loss", 59.0, 3, None)  # the spike recovered: no error
        guard.check("loss", 2.45e7, 4, None)
        with pytest.raises(DivergenceError) as error:
            guard.check("loss", 3.0e7, 5, None)
        assert "checkpoint" not in str(error.value)
        with pytest.raises(DivergenceError, match="the last checkpoint kept is /x/ckpt.pt"):
            guard.check("loss", 3.0e7, 6, "/x/ckpt.pt")


def test_a_warning_inside_the_model_is_printed_once_not_per_step(tmp_path):
    """At ab19055 GPVAE.model/guide wrapped every call in warnings.catch_warnings(), which resets Python's
    once-per-location rule: a warning printed at every step (400 lines in a 200-step run)."""
    script = (
        "import warnings, torch, pyro\n"
        "from pyro.infer import SVI, TraceMeanField_ELBO\n"
        "from gpytorch_vae import GPVAE, IndependentLatentPrior\n"
        "from gpytorch_vae.likelihoods import DistributionLikelihood\n"
        "def noisy(out):\n"
        "    warnings.warn('a warning from inside the model', UserWarning)\n"
        "    return torch.distributions.Normal(out, 1.0)\n"
        "class Encoder(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.net = torch.nn.Linear(4, 4)\n"
        "    def forward(self, y):\n"
        "        return self.net(y).chunk(2, -1)\n"
        "vae = GPVAE(Encoder(), torch.nn.Linear(2, 4), IndependentLatentPrior(), 2, DistributionLikelihood(noisy))\n"
        "svi = SVI(vae.model, vae.guide, pyro.optim.Adam({'lr': 1e-2}), TraceMeanField_ELBO())\n"
        "x, y = torch.zeros(8, 1), torch.randn(8, 4)\n"
        "for _ in range(30):\n"
        "    svi.step(x, y, 8)\n"
    )
    result = subprocess.run(
        [sys.executable, "-W", "default", "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("a warning from inside the model") == 1, result.stderr
