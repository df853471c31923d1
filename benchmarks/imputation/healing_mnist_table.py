"""Tabulate the Healing MNIST runs: every model x mechanism, mean +- sd over seeds, time per epoch beside each.

python benchmarks/imputation/healing_mnist_table.py --runs-dir runs/healing_mnist --seeds 0 1 2 \\
    --json benchmarks/results/healing_mnist_quick.json

Run folders are ``RUNS_DIR/MODEL-MECHANISM_sSEED`` (``benchmarks/studies/study.py`` names them so): the library's
models from ``examples/healing_mnist.py`` and ``pypots-MECHANISM_sSEED`` from
``benchmarks/imputation/pypots_healing_mnist.py``; variants under their own names (``--models svgpvae svgpvae_w3`` for
runs named ``svgpvae_w3-MECHANISM_sSEED``). Every number is the final model's on the test sequences, over the missing
entries (the protocol's metrics, ``docs/protocols/healing_mnist.md``).
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # benchmarks/common.py
import common

MODELS = ("svgpvae", "gpvae", "vae", "pypots", "mean", "forward")
MECHANISMS = ("random", "mnar", "frames")
METRICS = {  # column: (metrics.json key, format)
    "MSE": ("mse", ".4f"),
    "NLL": ("nll", ".3f"),
    "AUROC": ("auroc", ".3f"),
    "MSE (predictive)": ("mse_sampled", ".4f"),
    "90% coverage": ("coverage_90_sampled", ".3f"),
    "s/epoch": ("seconds_per_epoch", ".1f"),
    "peak MB": ("peak_rss_mb", ".0f"),
}


def summary(values: list[float], form: str) -> str:
    """``mean +- sd`` (sd over seeds when there are two or more), or ``-``."""
    if not values:
        return "-"
    if len(values) == 1:
        return format(values[0], form)
    return f"{statistics.mean(values):{form}} ± {statistics.stdev(values):{form}}"


def rows(runs_dir: str, seeds, models=MODELS) -> list[dict]:
    table = []
    for mechanism in MECHANISMS:
        for model in models:
            runs = common.load_runs(runs_dir, f"{model}-{mechanism}", seeds)
            if not runs:
                continue
            row = {"mechanism": mechanism, "model": model, "seeds": len(runs), "epochs": runs[0][0].get("epochs")}
            for column, (key, _) in METRICS.items():
                row[column] = [metrics[key] for metrics, _ in runs if metrics.get(key) is not None]
            table.append(row)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-dir", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--models", nargs="+", default=list(MODELS), help="run-name prefixes, in table order")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    table = rows(args.runs_dir, args.seeds, args.models)
    shown = [{**row, **{c: summary(row[c], f) for c, (_, f) in METRICS.items()}} for row in table]
    print(common.markdown_table(shown, ["mechanism", "model", "seeds", "epochs", *METRICS]))
    if args.json:
        common.save(args.json, {"runs_dir": args.runs_dir, "machine": common.machine(), "rows": table})


if __name__ == "__main__":
    main()
