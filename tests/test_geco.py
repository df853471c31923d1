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


def run_geco(dtype, scaled: bool, steps: int = 120, before_step=None):
    """Adam (lr 1e-3) on GECO with kappa^2 = 0 on noise targets: the constraint is never met, lambda explodes.
    ``before_step(model, geco, optimizer, y)``, if given, sees each step's state after the backward pass."""
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
        if before_step is not None:
            before_step(model, geco, optimizer, y)
        optimizer.step(geco.loss_exponent)
        geco.update()
        trajectory.append(flat_parameters(model))
    return torch.stack(trajectory), geco, adam


def flat_parameters(model, grad=False):
    return torch.cat([(p.grad if grad else p).detach().double().flatten() for p in model.parameters()])


def unscaled_float64_step(model, geco, optimizer, y):
    """What the unscaled objective does in float64 from the run's current state (the run is not changed): its
    gradient, and the parameters after an Adam step that takes the run's own gradient brought to the unscaled size.
    Parameters and GECO's state are copied; Adam's moments are brought from the scale ``2 ** -e`` they are kept in
    to the unscaled one (exact: powers of two); the same step count."""
    reference = copy.deepcopy(model).double()
    reference_geco = GECO(kappa2=geco.kappa2, alpha=geco.alpha, scale_loss=False)
    reference_geco.load_state_dict(geco.state_dict())
    kl, decoded = reference.terms(y.double())
    reference.zero_grad()
    reference_geco.loss(kl, reference_geco.constraint(y.double(), decoded, 1)).backward()
    gradient = flat_parameters(reference, grad=True)

    adam = torch.optim.Adam(reference.parameters(), lr=1e-3)
    state_scale, gradient_scale = 2.0**optimizer.exponent, 2.0**geco.loss_exponent
    for p, p_ref in zip(model.parameters(), reference.parameters()):
        p_ref.grad = p.grad.double() * gradient_scale
        state = optimizer.optimizer.state.get(p)
        if state:
            adam.state[p_ref] = {
                "step": state["step"].clone(),
                "exp_avg": state["exp_avg"].double() * state_scale,
                "exp_avg_sq": state["exp_avg_sq"].double() * state_scale**2,
            }
    adam.step()
    return gradient, flat_parameters(reference)


class TestLossScaling:
    """Each step of a scaled run is checked against the unscaled objective in float64 *from the same state*: the
    gradient (the loss scaling of :class:`GECO`) and the parameter update (the moment scaling of
    :class:`ScaledLossOptimizer`). Whole trajectories are not compared: past lambda = 1e60 a float32 run drifts from a
    float64 one by rounding, by an amount that depends on the CPU's vector kernels (issue #19); a wrong scaling is
    wrong at the step where it happens."""

    @staticmethod
    def one_step_errors(dtype):
        """Per step: the relative error of the run's gradient (times ``2 ** e``) against the unscaled float64 one,
        and the largest difference between the run's parameters after the step and the float64 Adam step."""
        expected = []
        record = lambda *state: expected.append(unscaled_float64_step(*state))  # noqa: E731
        gradients = []
        record_gradient = lambda model, geco, *_: gradients.append(  # noqa: E731
            flat_parameters(model, grad=True) * 2.0**geco.loss_exponent
        )
        trajectory, geco, adam = run_geco(
            dtype, scaled=True, before_step=lambda *state: (record(*state), record_gradient(*state))
        )
        reference_gradients, reference_parameters = (torch.stack(t) for t in zip(*expected))
        gradient_error = (torch.stack(gradients) - reference_gradients).abs().amax(-1)
        gradient_error = gradient_error / reference_gradients.abs().amax(-1)
        return gradient_error, (trajectory - reference_parameters).abs().amax(-1), trajectory, geco, adam

    def test_each_step_equals_the_unscaled_float64_step_past_lambda_1e60(self):
        gradient_error, update_error, _, geco64, _ = self.one_step_errors(torch.float64)
        assert geco64.log_lagrange_multiplier.item() > math.log(1e60)
        assert geco64.loss_exponent > 200
        assert gradient_error.max() < 1e-12 and update_error.max() < 1e-12  # float64 rounding of one step

        gradient_error, update_error, trajectory, geco32, adam32 = self.one_step_errors(torch.float32)
        assert geco32.log_lagrange_multiplier.item() > math.log(1e60)
        state = [t for s in adam32.state.values() for t in (s["exp_avg"], s["exp_avg_sq"])]
        assert all(torch.isfinite(t).all() for t in state)
        assert (trajectory[-1] - trajectory[0]).abs().max() > 0.05  # the parameters did travel
        # float32 rounding of one gradient, relative to its largest entry (a wrong loss scale is off by a factor 2)
        assert gradient_error.max() < 1e-4
        # float32 rounding of one Adam step of the same gradient: half an ulp of parameters below 1, plus rounding
        # of a step of size lr = 1e-3 (moments in the wrong scale move it by a sizeable fraction of lr)
        assert update_error.max() < 1e-6

    def test_unscaled_float64_run_needs_float64(self):
        """The reference run's own size: its Adam second moments pass float32's range (what the scaling avoids)."""
        _, geco, adam = run_geco(torch.float64, scaled=False)
        assert geco.log_lagrange_multiplier.item() > math.log(1e30)
        second_moments = torch.cat([s["exp_avg_sq"].flatten() for s in adam.state.values()])
        assert second_moments.max() > 1e60

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
