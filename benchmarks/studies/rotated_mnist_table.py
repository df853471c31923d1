"""Rotated MNIST, Table 1: every model with several seeds; writes the table into docs/results.md and JSON.

python benchmarks/studies/rotated_mnist_table.py --runs-dir runs/rotated_mnist --seeds 0 1 2 --run-missing

Runs found in RUNS_DIR/<model>_s<seed>/metrics.json are reused; with --run-missing the others are trained (with the
protocol's epochs unless --epochs is given). The table goes between the table markers of --markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # benchmarks/: common.py
import common
from experiments.rotated_mnist import MODELS, run

PAPER = {  # Table 1 of the SVGP-VAE paper (GPU): MSE mean, sd, seconds per epoch; and issue #11's targets
    "cvae": (0.0796, 0.0023, 0.39, "beside the reference code's ~0.0895 (560 epochs)"),
    "gppvae": (0.0370, 0.0012, 19.10, "<= 0.0370"),
    "svgpvae": (0.0251, 0.0005, 1.90, "one sample <= 0.0255"),
    "deep-svigp": (0.0233, 0.0014, 1.15, "reported (the textbook objective)"),
    "deep-svigp-mean": (0.0233, 0.0014, 1.15, "<= 0.0260"),
    "fgpvae": (0.0284, 0.0004, 1.41, "<= 0.0284"),
    "fgpvae (unseen digits)": (0.0316, 0.0005, float("nan"), "<= 0.0316"),
}
START, END = "<!-- table:start -->", "<!-- table:end -->"


def _mean_sd(values: list[float]) -> str:
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else float("nan")
    return f"{statistics.mean(values):.4f} ± {sd:.4f}" if len(values) > 1 else f"{values[0]:.4f}"


def _seconds(value: float) -> str:
    return "-" if value != value else f"{value:.2f}"  # NaN: not reported


def collect(runs_dir: str, models, seeds, epochs: int | None, run_missing: bool) -> dict[str, list[dict]]:
    results = {}
    for model in models:
        for seed in seeds:
            out = os.path.join(runs_dir, f"{model}_s{seed}")
            path = os.path.join(out, "metrics.json")
            if os.path.exists(path):
                with open(path) as f:
                    metrics = json.load(f)
            elif run_missing:
                metrics = run(model=model, epochs=epochs, seed=seed, out=out)
            else:
                continue
            results.setdefault(model, []).append(metrics)
            if "mse_extrapolation" in metrics:
                unseen = {
                    **metrics,
                    "mse": metrics["mse_extrapolation"],
                    "mse_sample": metrics["mse_extrapolation_sample"],
                }
                results.setdefault(f"{model} (unseen digits)", []).append(unseen)
    return results


def table(results: dict[str, list[dict]]) -> str:
    rows = [
        "| model | runs (seeds) | epochs | test MSE (posterior mean) | test MSE (one sample) | s/epoch here (median) "
        "| paper MSE | paper s/epoch (GPU) | target |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for model, runs in results.items():
        paper = PAPER.get(model, (float("nan"),) * 3 + ("",))
        seconds = [r["seconds_per_epoch"] for r in runs if r.get("seconds_per_epoch")]
        rows.append(
            f"| {model} | {len(runs)} ({', '.join(str(r['seed']) for r in runs)}) "
            f"| {', '.join(sorted({str(r['epochs']) for r in runs}))} "
            f"| {_mean_sd([r['mse'] for r in runs])} | {_mean_sd([r['mse_sample'] for r in runs])} "
            f"| {statistics.median(seconds):.2f} | {paper[0]:.4f} ± {paper[1]:.4f} | {_seconds(paper[2])} "
            f"| {paper[3]} |"
            if seconds
            else f"| {model} | {len(runs)} | | | | | | | |"
        )
    return "\n".join(rows)


def write_markdown(path: str, text: str) -> None:
    block = f"{START}\n{text}\n{END}"
    if os.path.exists(path):
        with open(path) as f:
            document = f.read()
        if START in document and END in document:
            document = document[: document.index(START)] + block + document[document.index(END) + len(END) :]
        else:
            document += "\n" + block + "\n"
    else:
        document = f"# Results\n\n{block}\n"
    with open(path, "w") as f:
        f.write(document)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-dir", default="runs/rotated_mnist")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--run-missing", action="store_true")
    parser.add_argument("--markdown", default="docs/results.md")
    parser.add_argument("--json", default="benchmarks/results/rotated_mnist.json")
    args = parser.parse_args()
    results = collect(args.runs_dir, args.models, args.seeds, args.epochs, args.run_missing)
    text = table(results)
    print(text)
    write_markdown(args.markdown, text)
    common.save(args.json, results)


if __name__ == "__main__":
    main()
