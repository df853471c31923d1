"""Seconds per training epoch on Healing MNIST, this library's models beside PyPOTS's GP-VAE, side by side in one run.

python benchmarks/imputation/healing_mnist_epoch_time.py --rounds 2 --epochs 3 --threads 1

Each round runs every model once, in turn, as its own process (``examples/healing_mnist.py`` and
``benchmarks/imputation/pypots_healing_mnist.py`` on the quick set, random mechanism, ``--threads``). Every model is
timed the same way: the wall time of its whole fit over its epochs (``fit_seconds_per_epoch``, the median over the
rounds; the first epoch's one-off costs included, as PyPOTS reports no per-epoch times); the library's runs also give
their steady epoch (``steady_seconds_per_epoch``: the median epoch after the first). Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # benchmarks/common.py
import common

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = ("svgpvae", "gpvae", "vae", "pypots")


def one_run(model: str, epochs: int, threads: int, out: str) -> dict:
    if model == "pypots":
        script, options = os.path.join(ROOT, "benchmarks", "imputation", "pypots_healing_mnist.py"), []
    else:
        script, options = os.path.join(ROOT, "examples", "healing_mnist.py"), ["--model", model, "--no-plots"]
    command = [sys.executable, script, *options, "--mechanism", "random", "--size", "quick", "--epochs", str(epochs),
               "--threads", str(threads), "--out", out]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    with open(os.path.join(out, "metrics.json")) as f:
        return json.load(f)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--json", default="benchmarks/results/healing_mnist_epoch_time.json")
    args = parser.parse_args()
    times: dict[str, list[float]] = {m: [] for m in args.models}
    steady: dict[str, list[float]] = {m: [] for m in args.models}
    peaks: dict[str, list[float]] = {m: [] for m in args.models}
    with tempfile.TemporaryDirectory() as scratch:
        for r in range(args.rounds):
            for model in args.models:
                metrics = one_run(model, args.epochs, args.threads, os.path.join(scratch, f"{model}_{r}"))
                fit_seconds = metrics["fit_seconds"] if model == "pypots" else metrics["training_seconds"]
                times[model].append(fit_seconds / metrics["epochs"])
                if model != "pypots":
                    steady[model].append(metrics["seconds_per_epoch"])
                peaks[model].append(metrics.get("training_peak_rss_mb") or metrics["peak_rss_mb"])
            print(f"round {r + 1}/{args.rounds} done", flush=True)
    rows = [{"model": m, "fit_seconds_per_epoch": statistics.median(times[m]),
             "steady_seconds_per_epoch": statistics.median(steady[m]) if steady[m] else None,
             "peak_rss_mb": max(peaks[m])} for m in args.models]  # fmt: skip
    print(f"threads {args.threads}, quick set (6,000 training sequences), {args.rounds} rounds x {args.epochs} epochs")
    columns = ["model", "fit_seconds_per_epoch", "steady_seconds_per_epoch", "peak_rss_mb"]
    print(common.markdown_table(rows, columns, {"fit_seconds_per_epoch": ".1f", "steady_seconds_per_epoch": ".1f",
                                                "peak_rss_mb": ".0f"}))  # fmt: skip
    machine = {**common.machine(), "threads": args.threads}
    common.save(args.json, {"machine": machine, "rounds": args.rounds, "epochs": args.epochs, "rows": rows,
                            "times": times, "steady_times": steady})  # fmt: skip


if __name__ == "__main__":
    main()
