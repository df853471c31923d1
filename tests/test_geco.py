"""GECO's update rule, against the protocol's equations written out by hand."""

import math

import pytest
import torch

from gpytorch_vae.models import GECO


class TestGECO:
    def test_loss_value_gradient_and_multiplier(self):
        geco = GECO(kappa2=0.02, alpha=0.99)
        constraints = [0.05, 0.03, 0.01]
        lam, ma = 1.0, None
        for c_value in constraints:
            c = torch.tensor(c_value, requires_grad=True)
            kl = torch.tensor(3.0)
            loss = geco.loss(kl, c)
            ma = c_value if ma is None else 0.99 * ma + 0.01 * c_value
            assert loss.item() == pytest.approx(3.0 + lam * ma, rel=1e-6)
            loss.backward()
            assert c.grad.item() == pytest.approx(lam)  # gradient of C, value of C_ma
            geco.update()
            lam = lam * math.exp(ma)
            assert geco.lagrange_multiplier.item() == pytest.approx(lam, rel=1e-6)

    def test_multiplier_is_bounded(self):
        geco = GECO(lambda_max=10.0)
        for _ in range(50):
            geco.loss(torch.tensor(0.0), torch.tensor(1.0))
            geco.update()
        assert geco.lagrange_multiplier.item() == pytest.approx(10.0)

    def test_constraint_and_state_dict(self):
        geco = GECO(kappa2=0.02)
        y = torch.zeros(4, 1, 2, 2)
        decoded = torch.full_like(y, 0.2)
        assert geco.constraint(y, decoded, observation_dims=3).item() == pytest.approx(0.04 - 0.02)
        geco.loss(torch.tensor(0.0), torch.tensor(0.5))
        geco.update()
        restored = GECO(kappa2=0.02)
        restored.load_state_dict(geco.state_dict())
        assert restored.lagrange_multiplier.item() == pytest.approx(math.exp(0.5))
        assert bool(restored.initialized)

    def test_bad_arguments(self):
        with pytest.raises(ValueError):
            GECO(alpha=1.0)
        with pytest.raises(ValueError):
            GECO(lambda_init=0.0)
