"""Issue #32 item 1: NaN means missing, everywhere. NaN at unobserved entries trains, conditions and imputes exactly
as the zero-filled data with the same mask; without a mask, ``~isnan(y)`` is the mask; NaN where a mask says observed
is refused; no NaN gradient reaches an optimiser step. Also: batched sequences need ``x`` ``(B, 1, T, D)``."""

import math

import gpytorch
import pyro
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from gpytorch_vae import ELBO, GPVAE, GaussianLikelihood, GECOObjective, PyroELBO, SparseLatentGP, SparseLatentPrior
from gpytorch_vae import fit
from gpytorch_vae.nn import MaskedEncoder, MLPDecoder, MLPEncoder, WindowEncoder

B, T, D, L = 3, 8, 4, 2


def model(encoder: str = "masked", seed: int = 0) -> GPVAE:
    """The quickstart's model (float32 networks, float64 GP) with a learned noise, over ``D`` features."""
    torch.manual_seed(seed)
    width = 2 * D if encoder in ("masked", "window") else D
    if encoder == "window":
        net = MaskedEncoder(WindowEncoder(MLPEncoder(3 * width, 16, L), window=3))
    elif encoder == "masked":
        net = MaskedEncoder(MLPEncoder(width, 16, L))
    else:
        net = MLPEncoder(width, 16, L)
    kernel = gpytorch.kernels.RBFKernel(batch_shape=torch.Size([L]))
    gp = SparseLatentGP(inducing_points=torch.linspace(0, T, 5).unsqueeze(-1), covar_module=kernel)
    return GPVAE(net, MLPDecoder(L, 16, D), SparseLatentPrior(gp), latent_dim=L,
                 likelihood=GaussianLikelihood(noise=0.1, learn_noise=True), gp_dtype=torch.float64)  # fmt: skip


def sequences(seed: int = 0):
    """``B`` sequences of ``T`` steps, ``x`` ``(B, 1, T, 1)``, a mask with a fully missing step, the NaN-holed
    ``y`` and the zero-filled one."""
    g = torch.Generator().manual_seed(seed)
    x = torch.arange(T, dtype=torch.float32).expand(B, 1, T).unsqueeze(-1)
    y = torch.randn(B, T, D, generator=g)
    mask = torch.rand(B, T, D, generator=g) > 0.3
    mask[0, 2] = False
    return x, y.masked_fill(~mask, math.nan), y.masked_fill(~mask, 0.0), mask


def loss_and_grads(objective, *batch):
    """The loss of one batch and every parameter's gradient, at a fixed random state."""
    objective.zero_grad()
    torch.manual_seed(7)
    pyro.set_rng_seed(7)
    loss = objective(*batch).loss
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in objective.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("objective", [ELBO, GECOObjective, PyroELBO])
@pytest.mark.parametrize("encoder", ["masked", "window", "plain"])
def test_nan_holes_train_bit_for_bit_as_the_zero_filled_data(objective, encoder):
    x, nan_y, zero_y, mask = sequences()
    net = model(encoder)
    reference_loss, reference_grads = loss_and_grads(objective(net, None), x, zero_y, mask)
    assert torch.isfinite(reference_loss)
    for batch in ((x, nan_y, mask), (x, nan_y)):  # the mask given, or taken from the NaN
        loss, grads = loss_and_grads(objective(net, None), *batch)
        assert torch.equal(loss, reference_loss)
        assert grads.keys() == reference_grads.keys() and len(grads) > 4
        for name, grad in grads.items():
            assert torch.equal(grad, reference_grads[name]), name
            assert torch.isfinite(grad).all(), name


def test_without_the_zero_fill_a_nan_hole_would_poison_the_gradients():
    """What the boundary prevents (issue 32): the masked likelihood's backward pass multiplies NaN by zero."""
    _, nan_y, _, mask = sequences()
    output = torch.zeros_like(nan_y, requires_grad=True)
    GaussianLikelihood(noise=0.1).total_log_prob(output, nan_y, mask).backward()
    assert torch.isnan(output.grad[~mask]).all()


def test_one_step_of_fit_on_nan_holes_leaves_every_parameter_finite():
    x, nan_y, _, _ = sequences()
    net = model()
    before = {name: p.detach().clone() for name, p in net.named_parameters()}
    fit(ELBO(net, None), [(x, nan_y)], epochs=1, lr=1e-2, progress=False)
    for name, p in net.named_parameters():
        assert torch.isfinite(p).all(), name
    assert any(not torch.equal(p, before[name]) for name, p in net.named_parameters())


def test_the_mask_defaults_to_the_entries_that_are_not_nan():
    x, nan_y, zero_y, mask = sequences()
    net = model()
    y, taken = net.observations(nan_y)
    assert torch.equal(taken, mask) and torch.equal(y, zero_y)
    y, none = net.observations(zero_y)  # no NaN, no mask: nothing missing
    assert none is None and torch.equal(y, zero_y)
    float64 = net.observations(zero_y.double())[0]  # the one cast, to the encoder's dtype
    assert float64.dtype == torch.float32


def test_nan_where_the_mask_says_observed_is_refused_with_how_many_and_where():
    x, nan_y, zero_y, mask = sequences()
    net = model()
    holed = zero_y.clone()
    holed[0, 5, 2] = holed[1, 0, 0] = holed[2, 7, 3] = math.nan
    observed = torch.ones_like(mask)
    for call in (lambda: net(x, holed, None, observed), lambda: net.impute(x, holed, observed),
                 lambda: net.latent_dataset(holed, mask=observed),
                 lambda: net.condition_on_observations([(x, holed, observed)]),
                 lambda: ELBO(net, None)(x, holed, observed)):  # fmt: skip
        with pytest.raises(ValueError, match=r"3 entries of y are NaN where mask says observed \(first at index "
                                             r"\(0, 5, 2\)\)"):  # fmt: skip
            call()


def test_conditioning_and_imputing_nan_holes_equals_the_zero_filled_data():
    x, nan_y, zero_y, mask = sequences()
    net = model()
    torch.manual_seed(3)
    reference = net.impute(x, zero_y, mask, num_samples=4)
    torch.manual_seed(3)
    imputed = net.impute(x, nan_y, num_samples=4)  # the mask from the NaN
    for field in ("mean", "variance", "samples", "mask", "predictive_mean", "sample_means"):
        assert torch.equal(getattr(imputed, field), getattr(reference, field)), field
    assert torch.equal(imputed.mean[mask], zero_y[mask]) and torch.isfinite(imputed.mean).all()
    long_x = torch.arange(T, dtype=torch.float32).unsqueeze(-1)
    batches = [(long_x, zero_y[i], mask[i]) for i in range(B)]
    expected = net.condition_on_observations(batches).predict(long_x)
    posterior = net.condition_on_observations([(long_x, nan_y[i]) for i in range(B)])
    assert torch.equal(posterior.predict(long_x).mean, expected.mean)
    assert torch.equal(net.latent_dataset(nan_y)[0], net.latent_dataset(zero_y, mask=mask)[0])
    assert torch.equal(net.posterior(x, nan_y, None).mean, net.posterior(x, zero_y, None, mask).mean)


def test_sample_means_are_the_likelihood_means_of_the_draws_behind_the_samples():
    x, nan_y, _, mask = sequences()
    net = model()
    imputed = net.impute(x, nan_y, num_samples=5)
    assert imputed.sample_means.shape == (5, B, T, D)
    # the predictive mean at the missing entries is their average, an independent reduction of the same draws
    torch.testing.assert_close(imputed.predictive_mean[~mask], imputed.sample_means.mean(0)[~mask], rtol=0, atol=0)
    assert net.impute(x, nan_y).sample_means is None


def test_sequence_inputs_without_their_channel_dim_get_a_message():
    x, nan_y, zero_y, mask = sequences()
    net = model()
    flat = x.squeeze(1)  # (B, T, 1): would broadcast against the L channels
    assert net.impute(x, nan_y).mean.shape == (B, T, D)
    # B == L sequences: (B, T, 1) broadcasts against (B, L) without an error of torch's; B != L: torch's would fail
    for b in (L, B):
        for call in (lambda: net(flat[:b], zero_y[:b], None, mask[:b]), lambda: net.impute(flat[:b], nan_y[:b]),
                     lambda: net.impute(flat[:b], nan_y[:b], posterior=net.posterior(x[:b], nan_y[:b], None))):  # fmt: skip
            with pytest.raises(ValueError, match=r"pass x of shape \(\*batch, 1, b, D\).*x.unsqueeze\(-3\)"):
                call()


def test_fit_on_a_loader_of_nan_holed_rows_trains():
    """The quickstart's set-up with NaN instead of a mask: the loss falls and stays finite."""
    x, nan_y, _, _ = sequences()
    rows = torch.arange(T, dtype=torch.float32).repeat(B).unsqueeze(-1)
    net = model()
    loader = DataLoader(TensorDataset(rows, nan_y.reshape(B * T, D)), batch_size=8)
    losses = fit(ELBO(net), loader, epochs=15, lr=1e-2, progress=False).losses
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
