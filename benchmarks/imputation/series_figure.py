"""A figure of one real series with its holes: the held-out values, GPVAEImputer's imputation with its 90 % band, and
linear interpolation, over a stretch of steps (the masks and standardisation of ``real_imputation.py``).

python benchmarks/imputation/series_figure.py --dataset etth1 --pattern blocks --seed 0 --feature 0 \\
    --steps 600 1000 --out docs/figures/time_series/etth1_blocks.png
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import real_imputation as bench
import torch

from gpytorch_vae import GPVAEImputer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="etth1", choices=sorted(bench.GRID))
    parser.add_argument("--pattern", default="blocks")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--feature", type=int, default=0)
    parser.add_argument("--sequence", type=int, default=0, help="for a data set of sequences (PhysioNet)")
    parser.add_argument("--steps", type=int, nargs=2, default=(600, 1000), help="the stretch shown, [start, stop)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = bench.prepare(args.dataset, args.pattern, args.seed)
    x, truth, held_out = data["x"], data["truth"], data["eval_mask"]
    imputer = GPVAEImputer(seed=args.seed, progress=False).fit(x, times=data["series"].times)
    prediction = imputer.predict(x, times=data["series"].times)
    lower, upper = prediction.interval(0.9)
    linear = bench.linear_method(x, data["series"].times, held_out, args.seed).mean
    pick = (lambda a: a[args.sequence]) if x.ndim == 3 else (lambda a: a)
    start, stop = args.steps
    t = np.arange(start, stop)
    column = np.s_[start:stop, args.feature]
    seen, hidden = ~np.isnan(pick(x)[column]), pick(held_out)[column]

    fig, ax = plt.subplots(figsize=(10, 3.2))
    ax.fill_between(t, pick(lower)[column], pick(upper)[column], where=~seen, color="tab:blue", alpha=0.2,
                    step="mid", label="GPVAEImputer 90 % interval")  # fmt: skip
    ax.plot(t, np.where(seen, np.nan, pick(prediction.mean)[column]), color="tab:blue", label="GPVAEImputer")
    ax.plot(t, np.where(seen, np.nan, pick(linear)[column]), color="tab:orange", ls="--", label="linear interpolation")
    ax.plot(t[seen], pick(x)[column][seen], ".", color="k", ms=3, label="observed")
    ax.plot(t[hidden], pick(truth)[column][hidden], ".", color="tab:red", ms=3, label="held out (truth)")
    name = data["series"].feature_names[args.feature]
    ax.set(xlabel=f"step ({data['series'].step})", ylabel=f"{name} (standardised)",
           title=f"{args.dataset}, {args.pattern}, seed {args.seed}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    fig.savefig(args.out, dpi=120)
    shown = hidden & np.isfinite(pick(truth)[column])
    error = np.abs(pick(prediction.mean)[column] - pick(truth)[column])[shown].mean()
    linear_error = np.abs(pick(linear)[column] - pick(truth)[column])[shown].mean()
    print(f"wrote {args.out}; held-out values shown: {int(shown.sum())}, MAE imputer {error:.3f}, "
          f"linear {linear_error:.3f}")


if __name__ == "__main__":
    main()
