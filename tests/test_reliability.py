"""Issue #12: every fault and bad input found, each with a test that failed before the fix (docs/reliability.md)."""

import gzip
import json
import math
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import gpytorch
import pyro
import pytest
import torch

from gpytorch_vae import PyroELBO
from gpytorch_vae.data import make_synthetic_gp_data, mnist
from gpytorch_vae.gps import SparseLatentGP
from gpytorch_vae.objectives import Objective, ObjectiveTerms
from gpytorch_vae.training import (
    Checkpoint,
    CheckpointError,
    ClipGradients,
    DivergenceGuard,
    NonFiniteLossError,
    SkipNonFinite,
    epoch_timing,
    fit,
    load_checkpoint,
    save_checkpoint,
    write_json,
)
from reference import latent_data, make_sparse_gp, tiny_vae

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


# ---------------------------------------------------------------------- 1. crash-safe files
class TestAtomicFiles:
    def test_a_failing_write_keeps_the_old_file_and_leaves_no_temporary(self, tmp_path):
        path = tmp_path / "checkpoint.pt"
        save_checkpoint({"epoch": 1, "value": torch.ones(3)}, str(path))

        class Boom:
            def __reduce__(self):
                raise RuntimeError("killed mid-write")

        with pytest.raises(RuntimeError, match="mid-write"):
            save_checkpoint({"epoch": 2, "value": Boom()}, str(path))
        assert load_checkpoint(str(path))["epoch"] == 1
        assert os.listdir(tmp_path) == ["checkpoint.pt"]

    @pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated zip"])
    def test_a_bad_checkpoint_names_the_file_and_what_to_do(self, tmp_path, content):
        path = tmp_path / "checkpoint.pt"
        path.write_bytes(content)
        with pytest.raises(CheckpointError, match=str(path)) as error:
            load_checkpoint(str(path))
        assert "Delete it" in str(error.value)

    def test_metrics_are_written_atomically(self, tmp_path):
        path = tmp_path / "metrics.json"
        write_json(str(path), {"mse": 0.1})
        with pytest.raises(TypeError):
            write_json(str(path), {"bad": object()})  # not JSON: the old file stays whole
        assert json.loads(path.read_text()) == {"mse": 0.1}

    def test_the_last_checkpoint_survives_sigkill_during_writes(self, tmp_path):
        """A process writing large checkpoints in a loop is killed at random moments; the file always loads."""
        script = (
            "import sys, torch\n"
            "from gpytorch_vae.training import save_checkpoint\n"
            "i = 0\n"
            "while True:\n"
            "    i += 1\n"
            "    save_checkpoint({'epoch': i, 'w': torch.randn(2_000_000)}, sys.argv[1])\n"
        )
        path = tmp_path / "checkpoint.pt"
        for delay in (0.13, 0.37, 0.71):  # after the first checkpoint: kills land at various points of a write
            process = subprocess.Popen([sys.executable, "-c", script, str(path)])
            deadline = time.time() + 120
            while not path.exists() and time.time() < deadline:
                time.sleep(0.01)
            time.sleep(delay)
            process.send_signal(signal.SIGKILL)
            process.wait()
            assert load_checkpoint(str(path))["epoch"] >= 1


# ---------------------------------------------------------------------- 2. exact resume, with a real SIGKILL
def run_example(script, args, timeout=240):
    plots = [] if script == "synthetic.py" else ["--no-plots"]
    command = [sys.executable, str(EXAMPLES / script), *args, "--threads", "1", *plots]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=EXAMPLES)


class TestExactResume:
    def test_moving_ball_resume_after_sigkill_equals_an_uninterrupted_run(self, tmp_path):
        args = ["--model", "svgpvae", "--steps", "60", "--log-every", "10"]
        straight = run_example("moving_ball.py", [*args, "--out", str(tmp_path / "straight")])
        assert straight.returncode == 0, straight.stderr
        out = tmp_path / "killed"
        command = [sys.executable, str(EXAMPLES / "moving_ball.py"), *args, "--out", str(out), "--threads", "1",
                   "--no-plots"]  # fmt: skip
        process = subprocess.Popen(command, cwd=EXAMPLES, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        checkpoint = out / "checkpoint.pt"
        deadline = time.time() + 200
        while time.time() < deadline:  # kill as soon as two checkpoints (20 steps) are written
            if checkpoint.exists():
                try:
                    if load_checkpoint(str(checkpoint))["epoch"] >= 2:
                        break
                except CheckpointError:
                    pass
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert not (out / "metrics.json").exists()
        resumed = run_example("moving_ball.py", [*args, "--out", str(out), "--resume"])
        assert resumed.returncode == 0, resumed.stderr
        a, b = (json.loads((d / "metrics.json").read_text()) for d in (tmp_path / "straight", out))
        assert a["rmse"] == b["rmse"] and a["final_loss"] == b["final_loss"]
        history_a, history_b = (json.loads((d / "history.json").read_text()) for d in (tmp_path / "straight", out))
        assert history_a == history_b and len(history_a["step"]) == 6

    def test_synthetic_resume_equals_an_uninterrupted_run(self, tmp_path):
        common = ["--model", "svgpvae", "--inducing", "8"]
        assert run_example("synthetic.py", [*common, "--epochs", "4", "--out", str(tmp_path / "a")]).returncode == 0
        assert run_example("synthetic.py", [*common, "--epochs", "2", "--out", str(tmp_path / "b")]).returncode == 0
        resumed = run_example("synthetic.py", [*common, "--epochs", "4", "--out", str(tmp_path / "b"), "--resume"])
        assert resumed.returncode == 0, resumed.stderr
        a, b = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in "ab")
        assert a["rmse"] == b["rmse"] and a["final_loss"] == b["final_loss"]

    def test_resume_with_fewer_epochs_than_the_checkpoint_is_an_error(self, tmp_path):
        common = ["--model", "vae", "--out", str(tmp_path)]
        assert run_example("synthetic.py", [*common, "--epochs", "3"]).returncode == 0
        result = run_example("synthetic.py", [*common, "--epochs", "1", "--resume"])
        assert result.returncode == 1 and "holds 3 epochs" in result.stderr and "Traceback" not in result.stderr


class TestEpochTimingAcrossSittings:
    """A resumed run reports the time per epoch of all its sittings, each sitting's first epoch left out (it pays
    for compilation); resuming a finished run (zero new epochs) keeps the numbers instead of reporting None."""

    class Constant(Objective):
        """A loss of 1 whatever the parameter."""

        def __init__(self):
            super().__init__(torch.nn.Linear(1, 1), None)

        def forward(self, x):
            return ObjectiveTerms(self.model.weight.sum() * 0.0 + x)

    def run(self, checkpoint, epochs):
        return fit(self.Constant(), [(torch.ones(()),)], epochs=epochs, callbacks=[Checkpoint(checkpoint, resume=True)],
                   progress=False).history  # fmt: skip

    def test_sittings_are_recorded_and_survive_a_resume(self, tmp_path):
        checkpoint = str(tmp_path / "c.pt")
        self.run(checkpoint, 3)
        history = self.run(checkpoint, 5)
        assert history["sitting"] == [0.0, 0.0, 0.0, 1.0, 1.0] and len(history["seconds"]) == 5
        finished = self.run(checkpoint, 5)  # nothing left to train
        assert finished == history and epoch_timing(finished)["seconds_per_epoch"] is not None

    def test_the_first_epoch_of_each_sitting_is_left_out(self):
        history = {"seconds": [9.0, 1.0, 1.2, 7.0, 1.4], "sitting": [0.0, 0.0, 0.0, 1.0, 1.0]}
        timing = epoch_timing(history)
        assert timing["seconds_per_epoch"] == pytest.approx(1.2) and timing["first_epoch_seconds"] == 9.0
        assert timing["warmup_seconds"] == pytest.approx(8.0 - 1.2) and timing["epochs_timed"] == 5

    def test_histories_without_sittings_and_without_epochs(self):
        assert epoch_timing({"seconds": [5.0, 1.0, 3.0]})["seconds_per_epoch"] == 2.0  # one sitting
        assert epoch_timing({"seconds": [4.0], "sitting": [0.0]})["warmup_seconds"] is None
        assert epoch_timing({})["seconds_per_epoch"] is None


# ---------------------------------------------------------------------- 3. latent data at the API boundary
class TestLatentDataValidation:
    def setup_method(self):
        self.gp = make_sparse_gp(torch.linspace(0, 6, 4, dtype=torch.float64).unsqueeze(-1))
        self.x, self.y, self.noise = latent_data(6)

    def expect(self, match, x=None, y=None, noise=None):
        x, y, noise = (
            (self.x if x is None else x),
            (self.y if y is None else y),
            (self.noise if noise is None else noise),
        )
        with pytest.raises(ValueError, match=match):
            self.gp.variational_strategy.condition(x, y, noise, num_data=60)

    def test_wrong_number_of_channels(self):
        self.expect(r"y has batch shape \(3,\).*GP's batch shape \(2,\)", y=self.y[:1].expand(3, -1),
                    noise=self.noise[:1].expand(3, -1))  # fmt: skip

    def test_wrong_input_dimension(self):
        self.expect(r"x must have D = 1 input columns.*\(6, 2\)", x=self.x.expand(-1, 2))

    def test_empty_batch(self):
        self.expect("empty", x=self.x[:0], y=self.y[:, :0], noise=self.noise[:, :0])

    @pytest.mark.parametrize("value", [math.nan, math.inf])
    def test_non_finite_inputs_and_targets(self, value):
        x, y = self.x.clone(), self.y.clone()
        x[2, 0], y[1, 3] = value, value
        self.expect("x .* NaN or inf", x=x)
        self.expect("y .* NaN or inf", y=y)

    @pytest.mark.parametrize("value", [math.inf, 0.0, -1.0, math.nan])
    def test_bad_noise(self, value):
        noise = self.noise.clone()
        noise[0, 1] = value
        self.expect("noise .* finite and strictly positive", noise=noise)

    def test_the_convenience_layer_checks_too(self):
        with pytest.raises(ValueError, match="empty"):
            self.gp.set_latent_data(self.x[:0], self.y[:, :0], self.noise[:, :0])


# ---------------------------------------------------------------------- 4. non-finite and diverging losses


class TestGuardedTraining:
    def test_a_nan_loss_stops_before_anything_changes_or_is_written(self, tmp_path):
        data = make_synthetic_gp_data(num_points=40)
        path = str(tmp_path / "checkpoint.pt")
        pyro.set_rng_seed(0)
        vae = tiny_vae()
        fit(PyroELBO(vae, None), [(data.x, data.y)], epochs=1, callbacks=[Checkpoint(path)], progress=False)
        before = {k: v.clone() for k, v in vae.state_dict().items()}
        huge = data.y * 1e30  # float32: the squared error overflows, the loss is inf
        resume = [Checkpoint(path, resume=True)]
        with pytest.raises(NonFiniteLossError, match="not applied"):
            fit(PyroELBO(vae, None), [(data.x, huge)], epochs=2, callbacks=resume, progress=False)
        inf = data.y.clone()
        inf[3, 2] = math.inf  # inf observations are refused earlier, when they come in (NaN marks a missing entry)
        with pytest.raises(ValueError, match="observations y .* hold NaN or inf"):
            fit(PyroELBO(vae, None), [(data.x, inf)], epochs=2, callbacks=resume, progress=False)
        for key, value in vae.state_dict().items():
            assert torch.equal(value, before[key]), key
        assert load_checkpoint(path)["epoch"] == 1

    def test_skip_mode_skips_the_bad_step(self):
        data = make_synthetic_gp_data(num_points=40)
        bad = data.y * 1e30
        pyro.set_rng_seed(0)
        history = fit(PyroELBO(tiny_vae(), None), [(data.x, bad), (data.x, data.y)], epochs=1,
                      callbacks=[SkipNonFinite()], progress=False).history  # fmt: skip
        assert history["skipped_steps"] == [1.0] and math.isfinite(history["loss"][0])

    def test_a_diverging_run_stops_with_a_clear_error_before_its_checkpoint(self, tmp_path):
        result = run_example("moving_ball.py", ["--model", "vae", "--steps", "150", "--log-every", "50", "--lr", "10",
                                                "--out", str(tmp_path)])  # fmt: skip
        assert result.returncode == 1 and "diverged" in result.stderr and "Traceback" not in result.stderr
        # the guard needs two bad periods in a row: the second is not checkpointed, and the message names the first's
        assert (
            str(tmp_path / "checkpoint.pt") in result.stderr
            and load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 50
        )
        assert not (tmp_path / "metrics.json").exists()

    def test_gradient_clipping_bounds_the_update(self):
        data = make_synthetic_gp_data(num_points=40)
        pyro.set_rng_seed(0)
        vae = tiny_vae()
        before = vae.encoder.net.weight.detach().clone()
        fit(PyroELBO(vae, None), [(data.x, data.y * 1e6)], epochs=1, lr=1.0, progress=False,
            callbacks=[ClipGradients(1e-3), DivergenceGuard(None)])  # fmt: skip
        assert (vae.encoder.net.weight - before).abs().max() <= 1.0 + 1e-6  # Adam: at most lr per step anyway
        with pytest.raises(ValueError, match="max_norm must be positive"):
            ClipGradients(0.0)


# ---------------------------------------------------------------------- 5. command-line values
@pytest.mark.parametrize(
    "script, argument",
    [
        ("rotated_mnist.py", ["--epochs", "-1"]),
        ("rotated_mnist.py", ["--threads", "-1"]),
        ("rotated_mnist.py", ["--lr", "0"]),
        ("rotated_mnist.py", ["--device", "nonsense"]),
        ("moving_ball.py", ["--steps", "-100"]),
        ("moving_ball.py", ["--log-every", "0"]),
        ("moving_ball.py", ["--steps", "150", "--log-every", "100"]),
        ("synthetic.py", ["--epochs", "0"]),
    ],
)
def test_bad_command_line_values_are_refused_by_the_parser(script, argument):
    result = run_example(script, argument, timeout=60)
    assert result.returncode == 2 and "error:" in result.stderr and "Traceback" not in result.stderr


# ---------------------------------------------------------------------- 6. the data layer
class TestDataLayer:
    def test_truncated_and_non_gzip_files_are_named(self, tmp_path):
        good = tmp_path / "good.gz"
        with gzip.open(good, "wb") as f:
            f.write(bytes([0, 0, 8, 1, 0, 0, 0, 200]) + bytes(200))
        truncated = tmp_path / "train-images-idx3-ubyte.gz"
        truncated.write_bytes(good.read_bytes()[:20])
        with pytest.raises(ValueError, match=str(truncated)):
            mnist.read_idx(str(truncated))
        plain = tmp_path / "plain.gz"
        plain.write_bytes(b"not gzip at all")
        with pytest.raises(ValueError, match=str(plain)):
            mnist.read_idx(str(plain))

    def test_a_bad_data_folder_creates_nothing(self, tmp_path, monkeypatch):
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv(mnist.DATA_ENV, "garbage")
        with pytest.raises(FileNotFoundError, match="GPYTORCH_VAE_DATA = 'garbage' is not an existing folder"):
            mnist.load_mnist("train")
        assert os.listdir(tmp_path) == []

    def test_a_failing_download_gives_the_friendly_error(self, tmp_path, monkeypatch):
        monkeypatch.delenv(mnist.DATA_ENV, raising=False)
        calls = []

        def refuse(url, timeout=None):
            calls.append(timeout)
            raise PermissionError(13, "Permission denied", str(tmp_path))

        monkeypatch.setattr(mnist.urllib.request, "urlopen", refuse)
        with pytest.raises(FileNotFoundError, match="Permission denied") as error:
            mnist.find_mnist_file("t10k-labels-idx1-ubyte.gz", str(tmp_path))
        assert "--data-dir" in str(error.value)
        assert calls and all(t == 30.0 for t in calls)  # every mirror with a timeout

    def test_local_files_are_md5_checked(self, tmp_path):
        name = "t10k-labels-idx1-ubyte.gz"
        with gzip.open(tmp_path / name, "wb") as f:
            f.write(bytes([0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3]))
        with pytest.raises(ValueError, match=f"{name} is not the official MNIST file"):
            mnist.verified(str(tmp_path / name))


# ---------------------------------------------------------------------- 7. float32 GP models
def stressed_kl(dtype, compute_dtype=torch.float64):
    """A long lengthscale, tiny encoder variances and N/b = 100: Eq. 9 adds entries of 1e6 to the identity."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(32, 1, generator=g, dtype=torch.float64) * 6
    y = torch.sin(x[:, 0])[None] + 0.01 * torch.randn(1, 32, generator=g, dtype=torch.float64)
    kernel = gpytorch.kernels.RBFKernel()
    kernel.lengthscale = 20.0
    gp = SparseLatentGP(torch.linspace(0, 6, 8).unsqueeze(-1), kernel).to(dtype)
    strategy = gp.variational_strategy
    if compute_dtype is None:  # version 0.1: everything, jitter included, in the model's dtype
        strategy.compute_dtype = None
        strategy.jitter_val = gpytorch.settings.variational_cholesky_jitter.value(dtype)
    noise = torch.full((1, 32), 1e-4, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return strategy.condition(x.to(dtype), y.to(dtype), noise.to(dtype), num_data=3200).kl_divergence().item()


def test_a_float32_model_gets_the_float64_kl():
    reference = stressed_kl(torch.float64)
    assert abs(stressed_kl(torch.float32) - reference) < 0.1 * reference
    assert stressed_kl(torch.float32, compute_dtype=None) < 0.1 * reference  # version 0.1 was 40x off
