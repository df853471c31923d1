"""What the library and the examples refuse at their boundary, each with a message that names the problem: latent
data, kernels and inputs of every prior, observations, data files and command-line values (docs/reliability.md)."""

import math
import subprocess
import sys
from pathlib import Path

import gpytorch
import numpy as np
import pytest
import torch

from gpytorch_vae import GPVAE, ExactLatentGP, ExactLatentPrior, SparseLatentPrior, settings
from gpytorch_vae.data import sprites as sprites_data
from gpytorch_vae.gps import SparseLatentGP
from gpytorch_vae.likelihoods import GaussianLikelihood
from gpytorch_vae.nn import MaskedEncoder, MLPEncoder
from reference import LinearEncoder

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(script, args, timeout=300):
    plots = [] if script == "synthetic.py" else ["--no-plots"]
    command = [sys.executable, str(EXAMPLES / script), *args, "--threads", "1", *plots]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=EXAMPLES)


# ---------------------------------------------------------------------- latent data, kernels and inputs of every prior
def sparse_prior(channels=2):
    kernel = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel(batch_shape=torch.Size([channels])),
                                          batch_shape=torch.Size([channels]))  # fmt: skip
    return SparseLatentPrior(SparseLatentGP(torch.linspace(0, 5, 6).unsqueeze(-1), kernel).double())


def latent(n=10):
    g = torch.Generator().manual_seed(0)
    x = torch.linspace(0, 5, n, dtype=torch.float64).unsqueeze(-1)
    return x, torch.randn(2, n, generator=g, dtype=torch.float64), torch.full((2, n), 0.1, dtype=torch.float64)


class TestValidation:
    def test_predict_checks_nan_and_the_input_dimension(self):
        x, mean, var = latent()
        posterior = sparse_prior().condition(x, mean, var, 10)
        with pytest.raises(ValueError, match="NaN"):
            posterior.predict(torch.tensor([[math.nan]], dtype=torch.float64))
        with pytest.raises(ValueError, match="D = 1 columns"):
            posterior.predict(torch.zeros(3, 2, dtype=torch.float64))

    @pytest.mark.parametrize("num_data", [6.7, math.nan, -3, 5])
    def test_num_data_must_be_a_whole_number_of_at_least_the_batch(self, num_data):
        x, mean, var = latent()
        with pytest.raises(ValueError, match="num_data"):
            sparse_prior().condition(x, mean, var, num_data)

    @pytest.mark.parametrize("problem, match", [("zero lengthscale", "lengthscale = \\[0.0"),
                                                ("nan inducing point", "inducing points hold NaN")])  # fmt: skip
    def test_kernel_problems_get_the_library_s_message(self, problem, match):
        prior = sparse_prior()
        with torch.no_grad():
            if problem == "zero lengthscale":
                prior.gp.covar_module.base_kernel.raw_lengthscale.fill_(-1e6)
            else:
                prior.strategy.inducing_points[2, 0] = math.nan
        with pytest.raises(ValueError, match=match):
            prior.condition(*latent(), 10)

    def test_exact_prior_with_a_kernel_of_other_channels(self):
        prior = ExactLatentPrior(ExactLatentGP(gpytorch.kernels.RBFKernel(batch_shape=torch.Size([3]))).double())
        with pytest.raises(ValueError, match="does not match the GP's batch shape \\(3,\\)"):
            prior.condition(*latent())

    def test_condition_with_bad_observations_is_named(self):
        vae = GPVAE(LinearEncoder(16, 2).float(), torch.nn.Linear(2, 16), sparse_prior(), 2, GaussianLikelihood())
        x, _, _ = latent(8)
        with pytest.raises(RuntimeError, match="the encoder failed on observations of shape \\(8, 5\\)"):
            vae.condition_on_observations([(x, torch.zeros(8, 5))])
        with pytest.raises(TypeError, match="uint8"):
            vae.condition_on_observations([(x, torch.zeros(8, 16, dtype=torch.uint8))])
        assert vae.condition_on_observations([(x, torch.zeros(8, 16, dtype=torch.float64))]).predict(x).mean.shape == (2, 8)

    def test_the_variance_range_is_checked_when_changed(self):
        vae = GPVAE(LinearEncoder(16, 2), torch.nn.Linear(2, 16), sparse_prior(), 2, GaussianLikelihood())
        with pytest.raises(ValueError, match="min_variance < max_variance"):
            vae.max_variance = 1e-4  # below the minimum 1e-3: every variance would become it
        with pytest.raises(MemoryError, match="use fewer inducing points"):
            kernel = gpytorch.kernels.RBFKernel(batch_shape=torch.Size([16]))
            huge = SparseLatentPrior(SparseLatentGP(torch.linspace(0, 5, 100_000).unsqueeze(-1), kernel))
            huge.condition(torch.rand(10, 1), torch.randn(16, 10), torch.ones(16, 10), 10)


class TestNamedAtTheBoundary:
    """Where a raw error escaped (a torch broadcast error, GPyTorch's NotPSDError, a matmul inside the encoder), the
    boundary names what is wrong."""

    def batched(self, datasets=3):
        x, mean, var = latent()
        return x.expand(datasets, 1, -1, -1), mean.expand(datasets, -1, -1), var.expand(datasets, -1, -1)

    def test_batched_data_need_inputs_with_a_channel_dimension(self):
        x, mean, var = self.batched()
        prior = sparse_prior()
        posterior = prior.condition(x, mean, var)
        assert posterior.predict(x).mean.shape == (3, 2, 10)
        for call in (lambda: posterior.predict(x[:, 0]), lambda: prior.condition(x[:, 0], mean, var),
                     lambda: prior.condition_on_batches([(x[:, 0], mean, var)])):  # fmt: skip
            with pytest.raises(ValueError, match=r"\(3, 10, 1\) has batch dims \(3,\).*pass x.unsqueeze\(-3\)"):
                call()

    def test_the_exact_prior_names_inputs_without_a_channel_dimension(self):
        x, mean, var = self.batched()
        prior = ExactLatentPrior(ExactLatentGP(gpytorch.kernels.RBFKernel(batch_shape=torch.Size([2]))).double())
        assert prior.condition(x, mean, var).predict(x).mean.shape == (3, 2, 10)
        with pytest.raises(ValueError, match=r"pass x.unsqueeze\(-3\)"):
            prior.condition(x[:, 0], mean, var)

    @pytest.mark.parametrize("kind", ["sparse", "exact"])
    def test_a_negative_outputscale_is_named(self, kind):
        constraint = gpytorch.constraints.Interval(-5.0, 5.0)
        kernel = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel(batch_shape=torch.Size([2])),
                                              batch_shape=torch.Size([2]), outputscale_constraint=constraint)  # fmt: skip
        kernel.outputscale = -1.0
        if kind == "sparse":
            prior = SparseLatentPrior(SparseLatentGP(torch.linspace(0, 5, 6).unsqueeze(-1), kernel).double())
        else:
            prior = ExactLatentPrior(ExactLatentGP(kernel).double())
        with pytest.warns(gpytorch.utils.warnings.NumericalWarning), pytest.raises(
            ValueError, match=r"not positive definite.*outputscale = \[-1.0.*a negative variance"
        ):  # fmt: skip
            prior.condition(*latent(), 10).rsample()

    def test_without_debug_a_failed_factorisation_is_nan_for_the_loss_check(self):
        constraint = gpytorch.constraints.Interval(-5.0, 5.0)
        kernel = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel(batch_shape=torch.Size([2])),
                                              batch_shape=torch.Size([2]), outputscale_constraint=constraint)  # fmt: skip
        kernel.outputscale = -1.0
        prior = SparseLatentPrior(SparseLatentGP(torch.linspace(0, 5, 6).unsqueeze(-1), kernel).double())
        with settings.debug(False):  # no host sync for the Cholesky's status: never a silent wrong factor
            assert torch.isnan(prior.condition(*latent(), 10).rsample()).all()

    @pytest.mark.parametrize("masked", [False, True])
    def test_observations_of_another_width_than_the_encoder_s_are_named_before_it_runs(self, masked):
        encoder = MLPEncoder(32 if masked else 16, 8, 2)
        vae = GPVAE(MaskedEncoder(encoder) if masked else encoder, torch.nn.Linear(2, 16), sparse_prior(), 2,
                    GaussianLikelihood())  # fmt: skip
        x, _, _ = latent(8)
        y = torch.zeros(8, 5)
        mask = (lambda y: torch.ones_like(y, dtype=torch.bool)) if masked else (lambda y: None)
        with pytest.raises(ValueError, match=r"observations of shape \(8, 5\) .* encoder takes, \(16,\)"):
            vae(x, y, 8, mask=mask(y))
        y = torch.zeros(8, 16)
        assert vae(x, y, 8, mask=mask(y)).z.shape == (2, 8)

    def test_the_memory_estimate_is_made_once_per_shape(self, monkeypatch):
        from gpytorch_vae.variational import amortized_hybrid_variational_strategy as module

        calls = []
        monkeypatch.setattr(module, "check_memory", lambda *args: calls.append(args[1:]))
        prior = sparse_prior()
        for n in (10, 10, 10, 8):
            prior.condition(*latent(n), 10)
        assert calls == [(torch.Size([]), 6, 10, torch.float64), (torch.Size([]), 6, 8, torch.float64)]

    def test_value_checks_follow_the_debug_setting(self):
        x, mean, var = latent()
        mean[0, 3] = math.nan
        with pytest.raises(ValueError, match=r"mean \(2, 10\) holds NaN"):
            sparse_prior().condition(x, mean, var, 10)
        with settings.debug(False):  # no host sync: the NaN goes through
            assert sparse_prior().condition(x, mean, var, 10).rsample().isnan().any()


# ---------------------------------------------------------------------- data files and command-line values
class TestSpritesFiles:
    def test_a_truncated_or_empty_cache_is_named_with_advice(self, tmp_path):
        for content in (b"", b"\x93NUMPY truncated"):
            path = tmp_path / "sprites_frames_x.npy"
            path.write_bytes(content)
            with pytest.raises(ValueError, match=f"SPRITES cache {path} .*delete it"):
                sprites_data.open_frames_cache(str(path))
        np.save(tmp_path / "small.npy", np.zeros((2, 3), dtype=np.uint8))
        with pytest.raises(ValueError, match="holds uint8 \\(2, 3\\)"):
            sprites_data.open_frames_cache(str(tmp_path / "small.npy"))

    def test_bad_sheets_are_named(self, tmp_path):
        from PIL import Image

        Image.new("RGBA", (2000, 2000)).save(tmp_path / "big.png")
        (tmp_path / "text.png").write_text("not an image")
        Image.new("RGBA", (832, 1344)).save(tmp_path / "good.png")  # width x height of an LPC sheet
        assert sprites_data._frames_of_sheet(str(tmp_path / "good.png")).shape[1:] == (64, 64, 4)
        (tmp_path / "truncated.png").write_bytes((tmp_path / "good.png").read_bytes()[:200])
        (tmp_path / "folder.png").mkdir()
        for name, match in [("big", "2000 x 2000"), ("text", "cannot be read"), ("truncated", "cannot be read"),
                            ("folder", "not a file")]:  # fmt: skip
            with pytest.raises((ValueError, FileNotFoundError), match=f"{tmp_path / name}.png.*{match}"):
                sprites_data._frames_of_sheet(str(tmp_path / f"{name}.png"))

    def test_a_cache_dir_that_is_a_file_is_refused_before_rendering(self, tmp_path):
        (tmp_path / "file").write_text("")
        with pytest.raises(NotADirectoryError, match="is a file"):
            sprites_data.cache_folder(str(tmp_path / "file"))
        result = run_example("sprites.py", ["--cache-dir", str(tmp_path / "file")], timeout=60)  # before any data
        assert result.returncode == 2 and "is a file, not a folder" in result.stderr, result.stderr


@pytest.mark.parametrize(
    "script, argument",
    [
        ("rotated_mnist.py", ["--device", "meta"]),
        ("rotated_mnist.py", ["--seed", str(2**70)]),
        ("rotated_mnist.py", ["--object-dim", "1000"]),
        ("rotated_mnist.py", ["--max-variance", "1e-4"]),
        ("moving_ball.py", ["--true-lengthscale", "1e300"]),
        ("moving_ball.py", ["--true-lengthscale", "1e-300"]),
    ],
)
def test_out_of_range_values_are_refused_by_the_parser(script, argument):
    result = run_example(script, argument, timeout=60)
    assert result.returncode == 2 and "error:" in result.stderr and "Traceback" not in result.stderr


def test_too_many_inducing_points_are_refused_before_allocating(tmp_path):
    result = run_example("moving_ball.py", ["--model", "svgpvae", "--inducing", "5000", "--steps", "10",
                                            "--log-every", "10", "--out", str(tmp_path)])  # fmt: skip
    assert result.returncode == 1 and "use fewer inducing points" in result.stderr


