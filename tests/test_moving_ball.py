"""Moving-ball generator, metric and models (issue #3)."""

import json

import pyro
import pytest
import torch
from experiments.moving_ball import build_model, gp_inputs, path_rmse, predicted_paths
from pyro import poutine
from pyro.infer import SVI, TraceMeanField_ELBO

from gpytorch_vae.data.moving_ball import MovingBallDataset, MovingBallGenerator, moving_ball_test_batch
from gpytorch_vae.metrics import affine_align, affine_aligned_rmse


class TestGenerator:
    def test_shapes_and_values(self):
        batch = MovingBallGenerator().sample(35, torch.Generator().manual_seed(0))
        assert batch.times.shape == (35, 30, 1) and batch.paths.shape == (35, 30, 2)
        assert batch.frames.shape == (35, 30, 1024)
        assert set(batch.frames.unique().tolist()) <= {0.0, 1.0}
        torch.testing.assert_close(batch.times[3, :, 0], torch.arange(30.0))

    def test_deterministic_under_seed(self):
        gen = MovingBallGenerator()
        a, b = moving_ball_test_batch(gen), moving_ball_test_batch(gen)
        assert torch.equal(a.frames, b.frames) and torch.equal(a.paths, b.paths)
        stream_a, stream_b = iter(MovingBallDataset(gen, 4, seed=3)), iter(MovingBallDataset(gen, 4, seed=3))
        first, second = next(stream_a), next(stream_a)
        assert torch.equal(first.paths, next(stream_b).paths) and not torch.equal(first.paths, second.paths)

    @pytest.mark.parametrize("lengthscale", [2.0, 4.0])
    def test_path_statistics_match_the_gp(self, lengthscale):
        paths = MovingBallGenerator(lengthscale=lengthscale).sample(4000, torch.Generator().manual_seed(1)).paths
        coords = paths.permute(0, 2, 1).reshape(-1, 30).double()  # x and y are independent draws
        t = torch.arange(30, dtype=torch.float64)
        expected = torch.exp(-0.5 * (t[:, None] - t[None, :]).square() / lengthscale**2)
        assert coords.mean(0).abs().max() < 0.1
        assert (coords.T @ coords / coords.size(0) - expected).abs().max() < 0.1
        # x and y uncorrelated
        assert (paths[..., 0] * paths[..., 1]).mean().abs() < 0.05

    def test_rendering_puts_the_ball_at_the_path(self):
        gen = MovingBallGenerator()
        paths = torch.tensor([[[0.0, 0.0], [1.0, -0.5], [-1.5, 0.8]]])
        frames = gen.render(paths).reshape(1, 3, 32, 32)
        grid = torch.arange(32.0)
        for k in range(3):
            on = frames[0, k]
            assert 24 <= on.sum() <= 32  # lattice points strictly inside a circle of radius 3
            centre = torch.stack([(on.sum(1) * grid).sum(), (on.sum(0) * grid).sum()]) / on.sum()
            torch.testing.assert_close(centre, 6.4 * paths[0, k] + 16, atol=0.5, rtol=0)


class TestMetric:
    def test_affine_image_scores_zero(self):
        true = torch.randn(35, 30, 2)
        pred = true @ torch.tensor([[0.5, -2.0], [1.5, 0.3]]) - 7.0
        assert affine_aligned_rmse(pred, true) < 1e-5
        torch.testing.assert_close(affine_align(pred, true), true, atol=1e-4, rtol=0)

    def test_unrelated_paths_score_high(self):
        assert affine_aligned_rmse(torch.randn(35, 30, 2), torch.randn(35, 30, 2)) > 0.9


def _loss(vae, batch, svi_loss):
    with torch.no_grad():
        return sum(svi_loss.loss(vae.model, vae.guide, gp_inputs(batch), batch.frames) for _ in range(3)) / 3


@pytest.mark.parametrize("model", ["vae", "gpvae", "svgpvae"])
def test_short_training_reduces_the_loss(model):
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    gen = MovingBallGenerator()
    vae = build_model(model, num_inducing=10, learn_lengthscale=True, learn_inducing=True)
    batch = gen.sample(8, torch.Generator().manual_seed(0))
    elbo = TraceMeanField_ELBO()
    before = _loss(vae, batch, elbo)
    scale = 1.0 / 8
    svi = SVI(poutine.scale(vae.model, scale=scale), poutine.scale(vae.guide, scale=scale),
              pyro.optim.Adam({"lr": 1e-3}), elbo)  # fmt: skip
    for _ in range(25):
        svi.step(gp_inputs(batch), batch.frames)
    assert _loss(vae, batch, elbo) < 0.8 * before


def test_svgpvae_with_inducing_at_every_frame_is_the_exact_gpvae():
    """m = T inducing points at the frame times, b = N: the sparse posterior equals the exact one."""
    torch.manual_seed(0)
    sparse = build_model("svgpvae", num_inducing=30)
    exact = build_model("gpvae")
    exact.encoder.load_state_dict(sparse.encoder.state_dict())
    batch = MovingBallGenerator().sample(5, torch.Generator().manual_seed(2))
    torch.testing.assert_close(predicted_paths(sparse, batch), predicted_paths(exact, batch), atol=1e-4, rtol=1e-4)
    assert abs(path_rmse(sparse, batch)[0] - path_rmse(exact, batch)[0]) < 1e-4


def test_a_prior_warmup_holds_the_lengthscale_and_resumes_exactly(tmp_path):
    """``prior_warmup``: the latent prior's parameters stay at their start for that many steps, then learn; a run
    stopped inside the warm-up and resumed ends where an uninterrupted run ends."""
    from experiments.moving_ball import run

    options = dict(model="svgpvae", inducing=6, seed=0, learn_lengthscale=True, lengthscale_init=4.0, batch_size=4,
                   log_every=10, progress=False, plots=False, compile=False, prior_warmup=20)  # fmt: skip
    whole = run(steps=40, out=str(tmp_path / "whole"), **options)
    run(steps=10, out=str(tmp_path / "parts"), **options)
    parts = run(steps=40, out=str(tmp_path / "parts"), resume=True, **options)
    history = json.loads((tmp_path / "whole" / "history.json").read_text())
    assert history["lengthscale"][:2] == [pytest.approx(4.0, rel=1e-6)] * 2 and history["lengthscale"][3] != 4.0
    assert parts["lengthscale"] == whole["lengthscale"] and parts["rmse"] == whole["rmse"]
    with pytest.raises(ValueError, match="prior_warmup"):
        run(steps=40, out=str(tmp_path / "bad"), **{**options, "prior_warmup": 15})
    # both GP models' default for a learned lengthscale: started at 4 and held (for 1,000 steps)
    default = {key: value for key, value in options.items() if key not in ("lengthscale_init", "prior_warmup")}
    for model in ("svgpvae", "gpvae"):
        metrics = run(steps=20, out=str(tmp_path / model), **{**default, "model": model})
        assert metrics["prior_warmup"] == 1000 and metrics["lengthscale"] == pytest.approx(4.0, rel=1e-6)


def test_a_learned_amplitude_starts_at_the_protocols_unit_amplitude_and_is_trained(tmp_path):
    """``learn_outputscale``: a ``ScaleKernel`` started at 1 gives the fixed-amplitude model's posterior, and training
    moves the amplitude (recorded in the metrics and the trace)."""
    from experiments.moving_ball import run

    torch.manual_seed(0)
    fixed = build_model("svgpvae", num_inducing=6, learn_lengthscale=True)
    torch.manual_seed(0)
    scaled = build_model("svgpvae", num_inducing=6, learn_lengthscale=True, learn_outputscale=True)
    batch = MovingBallGenerator().sample(3, torch.Generator().manual_seed(1))
    torch.testing.assert_close(predicted_paths(scaled, batch), predicted_paths(fixed, batch))
    options = dict(model="svgpvae", inducing=6, seed=0, learn_lengthscale=True, batch_size=4, log_every=10,
                   progress=False, plots=False, compile=False, prior_warmup=0)  # fmt: skip
    metrics = run(steps=20, out=str(tmp_path / "scaled"), learn_outputscale=True, **options)
    assert metrics["learn_outputscale"] and metrics["outputscale"] != pytest.approx(1.0, rel=1e-4)
    history = json.loads((tmp_path / "scaled" / "history.json").read_text())
    assert history["outputscale"][-1] == metrics["outputscale"]
    assert run(steps=10, out=str(tmp_path / "fixed"), **options)["outputscale"] == 1.0
