"""Run a set of configurations of an example script (each once per seed), two at a time, skipping finished ones.

python benchmarks/studies/study.py --example rotated_mnist --runs-dir runs/study --seeds 0 1 --jobs 2 \\
    --config base="--model svgpvae --epochs 100 --eval-every 10" --config keras="--model svgpvae --epochs 100 \\
    --eval-every 10 --init keras"

Each run is ``python examples/EXAMPLE.py CONFIG --seed S --threads 1 --no-plots --out RUNS_DIR/NAME_sS`` (resumed
if interrupted). Results stay in each run's ``metrics.json`` / ``history.json``; ``study_table.py`` tabulates them.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pending_runs(example: str, runs_dir: str, configs: dict[str, str], seeds, plots: bool = False,
                 script: str | None = None) -> list:  # fmt: skip
    """``(out, command)`` of every configuration x seed without a ``metrics.json`` yet (resumed where interrupted);
    ``script`` (default ``examples/<example>.py``) takes ``--seed --threads --no-plots --out --resume``."""
    script = script or os.path.join(ROOT, "examples", f"{example}.py")
    queue = []
    for name, options in configs.items():
        for seed in seeds:
            out = os.path.join(runs_dir, f"{name}_s{seed}")
            if os.path.exists(os.path.join(out, "metrics.json")):
                continue
            command = [sys.executable, script, *shlex.split(options), "--seed", str(seed), "--threads", "1",
                       *([] if plots else ["--no-plots"]), "--out", out, "--resume"]  # fmt: skip
            queue.append((out, command))
    return queue


def run_queue(queue: list, jobs: int = 2) -> int:
    """Run the ``(out, command)`` pairs ``jobs`` at a time, each logging to ``out.log``; returns the number failed."""
    queue, running, failed = list(queue), [], 0
    while queue or running:
        while queue and len(running) < jobs:
            out, command = queue.pop(0)
            os.makedirs(out, exist_ok=True)
            log = open(out + ".log", "w")
            print("start", " ".join(command[1:]), flush=True)
            running.append((out, subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), log))
        time.sleep(2)
        for item in list(running):
            out, process, log = item
            if process.poll() is not None:
                log.close()
                running.remove(item)
                failed += process.returncode != 0
                print("done" if process.returncode == 0 else f"FAILED ({process.returncode})", out, flush=True)
    return failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--example", default=None, help="examples/EXAMPLE.py (or give --script)")
    parser.add_argument("--script", default=None, help="another script taking the same run options")
    parser.add_argument("--runs-dir", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--config", action="append", required=True, help="NAME=ARGS")
    parser.add_argument("--plots", action="store_true", help="draw each run's figures (default: --no-plots)")
    args = parser.parse_args()
    configs = dict(config.partition("=")[::2] for config in args.config)
    if (args.example is None) == (args.script is None):
        parser.error("give one of --example and --script")
    queue = pending_runs(args.example, args.runs_dir, configs, args.seeds, args.plots, args.script)
    sys.exit(1 if run_queue(queue, args.jobs) else 0)


if __name__ == "__main__":
    main()
