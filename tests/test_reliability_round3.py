"""Issue #23: resume that refuses to mix runs, one owner per output folder, every prior validated, data and command
line checked, numerics guarded. Each finding has a test here that failed at ab19055 (docs/reliability.md)."""

import errno
import json
import math
import os
import stat
import subprocess
import sys
from pathlib import Path

import gpytorch
import numpy as np
import pyro
import pytest
import torch

from gpytorch_vae import GPVAE, ExactLatentGP, ExactLatentPrior, SparseLatentPrior
from gpytorch_vae.data import make_synthetic_gp_data
from gpytorch_vae.data import sprites as sprites_data
from gpytorch_vae.gps import SparseLatentGP
from gpytorch_vae.io import RunFolder, RunFolderBusy, atomic_write, write_json
from gpytorch_vae.likelihoods import GaussianLikelihood
from gpytorch_vae.objectives import ELBO
from gpytorch_vae.training import CheckpointError, DivergenceError, DivergenceGuard, fit, fit_svi
from reference import LinearEncoder, tiny_vae

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(script, args, timeout=300):
    plots = [] if script == "synthetic.py" else ["--no-plots"]
    command = [sys.executable, str(EXAMPLES / script), *args, "--threads", "1", *plots]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=EXAMPLES)


# ---------------------------------------------------------------------- 1. resume refuses to mix runs
class TestResumeRefusesOtherSettings:
    @pytest.mark.parametrize("changed", [["--seed", "1"], ["--batch-size", "128"], ["--lr", "0.01"]])
    def test_rotated_mnist(self, tmp_path, changed):
        common = ["--model", "cvae", "--epochs", "1", "--out", str(tmp_path), "--compile", "off"]
        assert run_example("rotated_mnist.py", common).returncode == 0
        result = run_example("rotated_mnist.py", [*common[:3], "2", *common[4:], "--resume", *changed])
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        key = changed[0][2:].replace("-", "_")
        assert f"{key}: " in result.stderr and "in the checkpoint" in result.stderr and "mix two runs" in result.stderr

    def test_another_model_is_named_not_a_size_mismatch(self, tmp_path):
        common = ["--epochs", "1", "--out", str(tmp_path), "--compile", "off"]
        assert run_example("rotated_mnist.py", ["--model", "cvae", *common]).returncode == 0
        result = run_example("rotated_mnist.py", ["--model", "svgpvae", *common, "--resume"])
        assert result.returncode == 1 and "model: 'cvae' in the checkpoint, 'svgpvae' now" in result.stderr

    def test_moving_ball_log_every_and_synthetic_seed(self, tmp_path):
        ball = ["--model", "vae", "--steps", "20", "--log-every", "10", "--out", str(tmp_path / "ball")]
        assert run_example("moving_ball.py", ball).returncode == 0
        result = run_example("moving_ball.py", [*ball[:3], "40", "--log-every", "20", *ball[6:], "--resume"])
        assert result.returncode == 1 and "log_every: 10 in the checkpoint, 20 now" in result.stderr
        synthetic = ["--model", "vae", "--epochs", "1", "--out", str(tmp_path / "syn")]
        assert run_example("synthetic.py", synthetic).returncode == 0
        result = run_example("synthetic.py", [*synthetic, "--resume", "--seed", "3"])
        assert result.returncode == 1 and "seed: 0 in the checkpoint, 3 now" in result.stderr

    @pytest.mark.filterwarnings("ignore:fit_svi is deprecated:DeprecationWarning")  # the deprecated alias still works
    def test_the_api_names_the_checkpoint_of_another_latent_size(self, tmp_path):
        data = make_synthetic_gp_data(num_points=40)
        path = str(tmp_path / "ckpt.pt")
        fit_svi(tiny_vae(latent_dim=2), [(data.x, data.y)], None, epochs=1, checkpoint=path, progress=False)
        with pytest.raises(CheckpointError, match=f"checkpoint {path} holds another model .* of another shape"):
            fit_svi(tiny_vae(latent_dim=3), [(data.x, data.y)], None, epochs=2, checkpoint=path, resume=True,
                    progress=False)  # fmt: skip


# ---------------------------------------------------------------------- 2. one run per folder
class TestOneOwnerPerFolder:
    def test_a_second_run_on_a_busy_folder_is_refused(self, tmp_path):
        with RunFolder(str(tmp_path)):
            result = run_example("moving_ball.py", ["--model", "vae", "--steps", "10", "--log-every", "10",
                                                    "--out", str(tmp_path)])  # fmt: skip
        assert result.returncode == 1 and "in use by another run" in result.stderr
        assert not (tmp_path / "checkpoint.pt").exists()

    def test_a_dead_run_s_lock_is_taken_over(self, tmp_path):
        script = f"from gpytorch_vae.io import RunFolder; RunFolder({str(tmp_path)!r}).open(); import os; os._exit(0)"
        subprocess.run([sys.executable, "-c", script], check=True)
        with RunFolder(str(tmp_path)):  # the lock died with its process
            pass
        with RunFolder(str(tmp_path)), pytest.raises(RunFolderBusy, match=str(tmp_path)):
            RunFolder(str(tmp_path)).open()


# ---------------------------------------------------------------------- 3. disk and permissions
class TestOutput:
    def test_a_full_disk_says_so_names_the_file_and_keeps_the_previous_one(self, tmp_path, monkeypatch):
        path = tmp_path / "metrics.json"
        write_json(str(path), {"mse": 0.1})

        def full(f):
            raise OSError(errno.ENOSPC, "No space left on device")

        with pytest.raises(OSError, match=f"no space left on the device to write {path}.*was kept"):
            atomic_write(str(path), full, mode="w")
        assert json.loads(path.read_text()) == {"mse": 0.1} and os.listdir(tmp_path) == ["metrics.json"]

    def test_an_unwritable_or_file_out_fails_before_training(self, tmp_path, monkeypatch):
        target = tmp_path / "a_file"
        target.write_text("")
        result = run_example("moving_ball.py", ["--model", "vae", "--steps", "10", "--log-every", "10",
                                                "--out", str(target)])  # fmt: skip
        assert (
            result.returncode == 1 and "is a file, not a folder" in result.stderr and "x10 steps" not in result.stderr
        )

        def refuse(*args, **kwargs):
            raise PermissionError(errno.EACCES, "Permission denied")

        monkeypatch.setattr("tempfile.NamedTemporaryFile", refuse)
        with pytest.raises(PermissionError, match="cannot write in the run folder"):
            RunFolder(str(tmp_path / "out")).open()

    def test_stale_temporaries_are_cleaned_files_follow_the_umask_and_json_is_strict(self, tmp_path):
        (tmp_path / "checkpoint.pt.x1y2.tmp").write_bytes(b"half a checkpoint")
        result = run_example("rotated_mnist.py", ["--model", "svgpvae", "--epochs", "1", "--out", str(tmp_path),
                                                  "--compile", "off"])  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert not list(tmp_path.glob("*.tmp"))
        mode = stat.S_IMODE(os.stat(tmp_path / "metrics.json").st_mode)
        umask = os.umask(0)
        os.umask(umask)
        assert mode == 0o666 & ~umask
        metrics = json.loads((tmp_path / "metrics.json").read_text(), parse_constant=lambda token: 1 / 0)
        assert metrics["lambda_max"] == "inf"


# ---------------------------------------------------------------------- 4. validation of every prior
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
            vae.condition([(x, torch.zeros(8, 5))])
        with pytest.raises(TypeError, match="uint8"):
            vae.condition([(x, torch.zeros(8, 16, dtype=torch.uint8))])
        assert vae.condition([(x, torch.zeros(8, 16, dtype=torch.float64))]).predict(x).mean.shape == (2, 8)

    def test_the_variance_range_is_checked_when_changed(self):
        vae = GPVAE(LinearEncoder(16, 2), torch.nn.Linear(2, 16), sparse_prior(), 2, GaussianLikelihood())
        with pytest.raises(ValueError, match="min_variance < max_variance"):
            vae.max_variance = 1e-4  # below the minimum 1e-3: every variance would become it
        with pytest.raises(MemoryError, match="use fewer inducing points"):
            kernel = gpytorch.kernels.RBFKernel(batch_shape=torch.Size([16]))
            huge = SparseLatentPrior(SparseLatentGP(torch.linspace(0, 5, 100_000).unsqueeze(-1), kernel))
            huge.condition(torch.rand(10, 1), torch.randn(16, 10), torch.ones(16, 10), 10)


# ---------------------------------------------------------------------- 5. data and command line
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


# ---------------------------------------------------------------------- 6. numerics and guards
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
        guard = DivergenceGuard("loss", 1e3, patience=2)
        for period, value in enumerate([1.0, -10.0, -300.0, -1500.0, -1499.0], 1):
            guard.check(value, period, None, first_step=1.0)

    def test_one_bad_period_is_tolerated_two_are_not_and_the_checkpoint_is_named_only_if_there_is_one(self):
        guard = DivergenceGuard("loss", 1e3, patience=2)
        guard.check(60.0, 1, None, first_step=60.0)
        guard.check(2.45e7, 2, None)
        guard.check(59.0, 3, None)  # the spike recovered: no error
        guard.check(2.45e7, 4, None)
        with pytest.raises(DivergenceError) as error:
            guard.check(3.0e7, 5, None)
        assert "checkpoint" not in str(error.value)
        with pytest.raises(DivergenceError, match="the last checkpoint kept is /x/ckpt.pt"):
            guard.check(3.0e7, 6, "/x/ckpt.pt")


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
