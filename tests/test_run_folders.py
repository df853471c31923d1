"""Runs and their output folders: a resume that refuses to mix runs, one owner per output folder, crash-safe
and permission-aware output files (docs/reliability.md)."""

import errno
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from gpytorch_vae.data import make_synthetic_gp_data
from gpytorch_vae.io import RunFolder, RunFolderBusy, atomic_write, write_json
from gpytorch_vae.objectives import PyroELBO
from gpytorch_vae.training import Checkpoint, CheckpointError, fit
from reference import tiny_vae

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(script, args, timeout=300):
    plots = [] if script == "synthetic.py" else ["--no-plots"]
    command = [sys.executable, str(EXAMPLES / script), *args, "--threads", "1", *plots]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=EXAMPLES)


# ---------------------------------------------------------------------- resume refuses to mix runs
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

    def test_the_api_names_the_checkpoint_of_another_latent_size(self, tmp_path):
        data = make_synthetic_gp_data(num_points=40)
        path = str(tmp_path / "ckpt.pt")
        fit(PyroELBO(tiny_vae(latent_dim=2), None), [(data.x, data.y)], epochs=1, callbacks=[Checkpoint(path)],
            progress=False)  # fmt: skip
        with pytest.raises(CheckpointError, match=f"checkpoint {path} holds another model .* of another shape"):
            fit(PyroELBO(tiny_vae(latent_dim=3), None), [(data.x, data.y)], epochs=2,
                callbacks=[Checkpoint(path, resume=True)], progress=False)  # fmt: skip


# ---------------------------------------------------------------------- one run per folder
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


# ---------------------------------------------------------------------- disk and permissions
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


