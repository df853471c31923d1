"""Learning curves of rotated-MNIST runs against the reference implementation's (issue #11), as a table and a figure.

python benchmarks/studies/learning_curves.py --runs-dir runs/table1 --name svgpvae --seeds 0 1 2 3 4 \\
    --figure docs/figures/rotated_mnist/learning_curve_svgpvae.png --json benchmarks/results/learning_curve_svgpvae.json

Test MSE is the runs' evaluation trace (``--eval-every``; ``mse_sample``: one decoded posterior sample, the reference's
metric; ``mse`` for the mean-decoding Deep SVIGP); train MSE the epoch mean of the per-pixel MSE of one sample.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # benchmarks/: common.py
import common

# The reference TF code on the same 4050/270 images and the same CPU, float64 (issue #11, measured outside this
# project): epoch -> test MSE, and epoch -> train MSE where it was recorded.
REFERENCE = {
    "svgpvae": {
        "key": "mse_sample",
        "test": {
            10: 0.0693,
            20: 0.0566,
            30: 0.0471,
            40: 0.0430,
            100: 0.0324,
            200: 0.0302,
            300: 0.0291,
            400: 0.0278,
            600: 0.0274,
            800: 0.0266,
            1000: 0.0262,
        },  # fmt: skip
        "train": {10: 0.0672, 20: 0.0526, 30: 0.0442, 40: 0.0388, 1000: 0.0229},
    },
    "deep-svigp-mean": {"key": "mse", "test": {10: 0.0717, 20: 0.0692, 30: 0.0652, 40: 0.0617}, "train": {}},
}


def curve(runs, key: str) -> dict[int, list[float]]:
    points: dict[int, list[float]] = {}
    for _, history in runs:
        for point in history.get("evaluation", []):
            points.setdefault(point["epoch"], []).append(point[key])
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-dir", required=True)
    parser.add_argument("--name", default="svgpvae", help="the runs' NAME in RUNS_DIR/NAME_sSEED")
    parser.add_argument("--reference", default=None, choices=REFERENCE, help="default: --name")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--figure", default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    reference = REFERENCE[args.reference or args.name]
    runs = common.load_runs(args.runs_dir, args.name, args.seeds)
    if not runs:
        raise SystemExit(f"no finished runs {args.name}_s* in {args.runs_dir}")
    test = curve(runs, reference["key"])
    train = [history["train"]["mse"] for _, history in runs if "mse" in history.get("train", {})]
    rows = []
    for epoch in sorted(set(reference["test"]) | set(reference["train"])):
        ours = test.get(epoch, [])
        ours_train = [values[epoch - 1] for values in train if len(values) >= epoch]
        rows.append({
            "epoch": epoch, "reference_test": reference["test"].get(epoch),
            "test_mean": statistics.mean(ours) if ours else None,
            "test_sd": statistics.stdev(ours) if len(ours) > 1 else None, "seeds": len(ours),
            "reference_train": reference["train"].get(epoch),
            "train_mean": statistics.mean(ours_train) if ours_train else None,
        })  # fmt: skip
    columns = ["epoch", "reference_test", "test_mean", "test_sd", "seeds", "reference_train", "train_mean"]
    print(common.markdown_table(rows, columns, {c: ".4f" for c in columns if c not in ("epoch", "seeds")}))
    if args.json:
        common.save(args.json, {"name": args.name, "key": reference["key"], "rows": rows,
                                "curve": {str(e): v for e, v in sorted(test.items())}})  # fmt: skip
    if args.figure:
        plot(test, reference, args.figure, args.name, len(runs))


def plot(test: dict[int, list[float]], reference: dict, path: str, name: str, seeds: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = sorted(test)
    means = [statistics.mean(test[e]) for e in epochs]
    low = [min(test[e]) for e in epochs]
    high = [max(test[e]) for e in epochs]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot(epochs, means, label=f"gpytorch-vae ({seeds} seeds, mean)")
    ax.fill_between(epochs, low, high, alpha=0.25, label="min-max over seeds")
    ref = sorted(reference["test"].items())
    ax.plot([e for e, _ in ref], [v for _, v in ref], "o--", color="black", label="reference code (1 run)")
    ax.set(xlabel="epoch", ylabel=f"test MSE ({reference['key']})", yscale="log", title=f"{name}: learning curve")
    ax.legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
