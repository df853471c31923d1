"""Training loop (checkpoint/resume), metric and synthetic generator."""

import pyro
import torch

from gpytorch_vae import PyroELBO, fit
from gpytorch_vae.training import Checkpoint
from gpytorch_vae.data import make_synthetic_gp_data
from gpytorch_vae.metrics import affine_aligned_rmse
from reference import tiny_vae


def test_affine_aligned_rmse():
    z = torch.randn(50, 2)
    assert affine_aligned_rmse(z @ torch.tensor([[2.0, 1.0], [-0.5, 3.0]]) + 4.0, z) < 1e-5
    assert affine_aligned_rmse(torch.randn(50, 2), z) > 0.5


def test_synthetic_data_deterministic_and_gp_like():
    a, b = make_synthetic_gp_data(num_points=200, seed=3), make_synthetic_gp_data(num_points=200, seed=3)
    assert torch.equal(a.y, b.y) and a.y.shape == (200, 16) and a.z.shape == (200, 2)
    assert not torch.equal(a.y, make_synthetic_gp_data(num_points=200, seed=4).y)
    # smooth latents: neighbours are strongly correlated, unit marginal variance
    assert torch.corrcoef(torch.stack([a.z[:-1, 0], a.z[1:, 0]]))[0, 1] > 0.8


def test_resume_continues_from_saved_epoch(tmp_path):
    data = make_synthetic_gp_data(num_points=40)
    batches = lambda: [(data.x, data.y)]  # noqa: E731
    path = str(tmp_path / "ckpt.pt")
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    trained = tiny_vae()
    fit(PyroELBO(trained, None), batches, epochs=2, lr=1e-2, callbacks=[Checkpoint(path)], progress=False)
    saved = {k: v.clone() for k, v in trained.state_dict().items()}

    pyro.clear_param_store()
    restored = tiny_vae()
    resume = [Checkpoint(path, resume=True)]
    assert fit(PyroELBO(restored, None), batches, epochs=2, callbacks=resume, progress=False).losses == []
    for name, value in restored.state_dict().items():
        torch.testing.assert_close(value, saved[name])

    more = fit(PyroELBO(restored, None), batches, epochs=5, lr=1e-2, callbacks=resume, progress=False).losses
    assert len(more) == 3 and torch.load(path, weights_only=False)["epoch"] == 5
    # SVI updated the module's own parameters (not copies in the param store)
    assert pyro.get_param_store()["encoder$$$net.weight"] is restored.encoder.net.weight
    assert not torch.allclose(restored.encoder.net.weight, saved["encoder.net.weight"])
