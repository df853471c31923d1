"""Tabulate an accuracy study (``benchmarks/studies/study.py`` runs): test MSE at fixed epochs, mean over seeds.

python benchmarks/studies/study_table.py --runs-dir runs/study --seeds 0 1 --epochs 40 100 \\
    --json benchmarks/results/study.json

One row per configuration (the run folders' ``NAME`` in ``NAME_sSEED``), with the options that the runs recorded in
their ``metrics.json`` (initialisation, network dtype, batch order, GECO's bound, encoder-variance clip).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import statistics
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # benchmarks/: common.py
import common

OPTIONS = ("model", "init", "network_dtype", "shuffle", "lambda_max", "max_variance", "compiled")


def _at(metrics: dict, history: dict, epoch: int, key: str) -> float | None:
    """The evaluation trace's value at ``epoch``, else the final model's if the run ended there."""
    value = common.curve_at(history, epoch, key)
    return metrics.get(key) if value is None and metrics.get("epochs") == epoch else value


def configurations(runs_dir: str) -> list[str]:
    names = {re.sub(r"_s\d+$", "", entry) for entry in os.listdir(runs_dir) if re.search(r"_s\d+$", entry)}
    return sorted(names)


def rows(runs_dir: str, names, seeds, epochs, key: str) -> list[dict]:
    table = []
    for name in names:
        runs = common.load_runs(runs_dir, name, seeds)
        if not runs:
            continue
        row = {"configuration": name, "seeds": len(runs), **{o: runs[0][0].get(o) for o in OPTIONS}}
        for epoch in epochs:
            values = [v for metrics, history in runs if (v := _at(metrics, history, epoch, key)) is not None]
            row[f"mse@{epoch}"] = statistics.mean(values) if values else None
            row[f"values@{epoch}"] = values
        table.append(row)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-dir", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, nargs="+", default=[40, 100])
    parser.add_argument("--names", nargs="+", default=None, help="configurations (default: every one found)")
    parser.add_argument("--key", default="mse_sample", help="mse_sample (one decoded sample) or mse (mean)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    table = rows(args.runs_dir, args.names or configurations(args.runs_dir), args.seeds, args.epochs, args.key)
    columns = ["configuration", "seeds", *OPTIONS, *(f"mse@{e}" for e in args.epochs)]
    print(common.markdown_table(table, columns, {f"mse@{e}": ".4f" for e in args.epochs}))
    if args.json:
        common.save(args.json, {"key": args.key, "rows": table})


if __name__ == "__main__":
    main()
