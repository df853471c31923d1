"""GECO's update rule against the protocol's equations written out by hand, and its loss scaling against the
unscaled float64 objective."""

import copy
import math

import pytest
import torch

from gpytorch_vae.objectives import GECO, ScaledLossOptimizer


class TestGECO:
    def test_loss_value_gradient_and_multiplier(self):
        geco = GECO(kappa2=0.02, alpha=0.99)
        constraints = [0.05, 0.03, 0.01]
        lam, ma = 1.0, None
        for c_value in constraints:
            c = torch.tensor(c_value, requires_grad=True)
            kl = torch.tensor(3.0)
            loss = geco.loss(kl, c)
            assert geco.loss_exponent == 0  # lambda < 2: nothing scaled
            ma = c_value if ma is None else 0.99 * ma + 0.01 * c_value
            assert loss.item() == pytest.approx(3.0 + lam * ma, rel=1e-6)
            loss.backward()
            assert c.grad.item() == pytest.approx(lam)  # gradient of C, value of C_ma
            geco.update()
            lam = lam * math.exp(ma)
            assert geco.lagrange_multiplier.item() == pytest.approx(lam, rel=1e-6)

    def test_scaled_loss_is_the_objective_over_a_power_of_two(self):
        geco = GECO(lambda_init=1e40)
        c = torch.tensor(0.5, requires_grad=True)
        kl = torch.tensor(7.0, dtype=torch.float64)
        loss = geco.loss(kl, c)
        exponent = geco.loss_exponent
        assert exponent == math.floor(math.log2(1e40))
        assert 1.0 <= 1e40 / 2.0**exponent < 2.0
        assert loss.item() * 2.0**exponent == pytest.approx(7.0 + 1e40 * 0.5, rel=1e-12)
        loss.backward()
        assert c.grad.item() == pytest.approx(1e40 / 2.0**exponent, rel=1e-6)

    def test_multiplier_unbounded_by_default_and_bounded_on_request(self):
        free, bounded = GECO(), GECO(lambda_max=10.0)
        for _ in range(2000):
            for geco in (free, bounded):
                geco.loss(torch.tensor(0.0), torch.tensor(1.0))
                geco.update()
        assert bounded.lagrange_multiplier.item() == pytest.approx(10.0)
        assert bounded.loss_exponent == 3
        # far past float64's range: log lambda is kept, the loss stays finite
        assert free.log_lagrange_multiplier.item() == pytest.approx(2000.0)
        assert torch.isfinite(free.loss(torch.tensor(1.0), torch.tensor(1.0)))

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
        with pytest.raises(ValueError, match="alpha"):
            GECO(alpha=1.0)
        with pytest.raises(ValueError, match="lambda_init"):
            GECO(lambda_init=0.0)
        with pytest.raises(TypeError, match="Adam"):
            ScaledLossOptimizer(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1))


class TinyAutoencoder(torch.nn.Module):
    """y -> tanh(W1 y) -> W2 h; KL part: a float64 quadratic penalty on W1 (as the GP part is float64)."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w1 = torch.nn.Parameter(torch.randn(3, 6, generator=g, dtype=torch.float64) / 3)
        self.w2 = torch.nn.Parameter(torch.randn(6, 3, generator=g, dtype=torch.float64) / 3)

    def terms(self, y):
        decoded = torch.tanh(y @ self.w1.mT.to(y)) @ self.w2.mT.to(y)
        kl = 0.5 * self.w1.double().square().sum() + 0.1 * self.w2.double().abs().sum()
        return kl, decoded


def run_geco(dtype, scaled: bool, steps: int = 120):
    """Adam (lr 1e-3) on GECO with kappa^2 = 0 on noise targets: the constraint is never met, lambda explodes."""
    model = TinyAutoencoder().to(dtype)
    y = torch.randn(16, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(dtype)
    geco = GECO(kappa2=0.0, alpha=0.9, scale_loss=scaled)
    adam = torch.optim.Adam(model.parameters(), lr=1e-3)
    optimizer = ScaledLossOptimizer(adam)
    trajectory = []
    for _ in range(steps):
        kl, decoded = model.terms(y)
        loss = geco.loss(kl, geco.constraint(y, decoded, 1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step(geco.loss_exponent)
        geco.update()
        trajectory.append(torch.cat([p.detach().double().flatten() for p in model.parameters()]))
    return torch.stack(trajectory), geco, adam


class TestLossScaling:
    def test_updates_equal_the_unscaled_float64_objective_past_lambda_1e30(self):
        reference, geco_ref, adam_ref = run_geco(torch.float64, scaled=False)
        assert geco_ref.log_lagrange_multiplier.item() > math.log(1e30)
        second_moments = torch.cat([s["exp_avg_sq"].flatten() for s in adam_ref.state.values()])
        assert second_moments.max() > 1e60  # float64 holds them; float32 could not

        scaled64, geco64, adam64 = run_geco(torch.float64, scaled=True)
        assert geco64.loss_exponent > 100
        torch.testing.assert_close(scaled64, reference, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(geco64.log_lagrange_multiplier, geco_ref.log_lagrange_multiplier)

        scaled32, geco32, adam32 = run_geco(torch.float32, scaled=True)
        state = [t for s in adam32.state.values() for t in (s["exp_avg"], s["exp_avg_sq"])]
        assert all(torch.isfinite(t).all() for t in state)
        moved = (reference[-1] - reference[0]).abs().max()
        assert moved > 0.05  # the parameters did travel
        error = (scaled32 - reference).abs().amax(-1)
        assert error[:100].max() < 1e-5  # float32 rounding (unscaled float32 is off by 4e-3 at step 40, then NaN)
        assert error.max() < 1e-3  # less than one Adam step (lr) after lambda passed 1e60

    def test_unscaled_float32_overflows_adam(self):
        """The failure the scaling prevents (power check: this test fails if the run were harmless)."""
        _, geco, adam = run_geco(torch.float32, scaled=False)
        second_moments = torch.cat([s["exp_avg_sq"].flatten() for s in adam.state.values()])
        assert not torch.isfinite(second_moments).all()

    def test_rescaling_round_trip_and_state_dict(self):
        p = torch.nn.Parameter(torch.ones(3))
        optimizer = ScaledLossOptimizer(torch.optim.Adam([p], lr=0.1))
        (p.square().sum() * 2.0**-5).backward()
        optimizer.step(5)
        saved = copy.deepcopy(optimizer.state_dict())
        first = optimizer.optimizer.state[p]["exp_avg"].clone()
        optimizer.rescale(8)
        torch.testing.assert_close(optimizer.optimizer.state[p]["exp_avg"], first / 8, rtol=0, atol=0)
        assert optimizer.optimizer.param_groups[0]["eps"] == pytest.approx(1e-8 / 2**8)
        optimizer.rescale(5)
        torch.testing.assert_close(optimizer.optimizer.state[p]["exp_avg"], first, rtol=0, atol=0)
        other = ScaledLossOptimizer(torch.optim.Adam([p], lr=0.1))
        other.load_state_dict(saved)
        assert other.exponent == 5 and other.base_eps == [1e-8]


def test_a_huge_exponent_jump_saturates_instead_of_raising():
    """A diverged batch can move lambda's exponent by more than float range in one step (seen with FGP-VAE)."""
    p = torch.nn.Parameter(torch.ones(3))
    optimizer = ScaledLossOptimizer(torch.optim.Adam([p], lr=0.1))
    p.square().sum().backward()
    optimizer.step(0)
    optimizer.rescale(5000)
    assert optimizer.optimizer.state[p]["exp_avg"].abs().max() == 0
    optimizer.rescale(0)  # back: saturated, finite
    assert torch.isfinite(optimizer.optimizer.state[p]["exp_avg_sq"]).all()
