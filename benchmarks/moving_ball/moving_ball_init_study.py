"""The moving-ball initialisation study (issue #24): which network initialisation and learning rates make every model
lock onto the ball's paths, across seeds and true lengthscales, and whether a learned lengthscale finds the truth.

python benchmarks/moving_ball/moving_ball_init_study.py run --arms svgp-learned-torch --lengthscales 1.5 3 4 \\
    --seeds 1 2 --jobs 1
python benchmarks/moving_ball/moving_ball_init_study.py report --json benchmarks/results/moving_ball_init_study.json

Each run is ``examples/moving_ball.py`` with ``--threads 1`` in ``RUNS/ARM_lsL_sS`` (resumed where interrupted, skipped
when finished); ``report`` reads every finished run and prints, per arm and true lengthscale, the runs, how many lock
on (final test-path RMSE below ``--lock-on``), the RMSE (mean and sd), the learned lengthscale's relative error, the
step of lock-on (first trace point below the threshold), the codes' final scale (standard deviation of the encoder
means on the test batch; the true paths' is 1) and a learned amplitude, writes JSON and a figure. The JSON keeps each
run's record, so that ``report --keep`` adds runs to a study whose earlier run folders are gone (another session or
machine) instead of starting the table again.
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
from studies.study import pending_runs, run_queue

SEEDS = (1, 2, 3, 4, 5)
LENGTHSCALES = (1.5, 2.0, 3.0, 4.0)
LOCK_ON = 0.4  # test-path RMSE below which the paths are traced (a VAE stays near 0.7)

#: the exact GP-VAE's learned-lengthscale starts that the study compares (arms gpvae-learned-*, gpvae-warmup-*)
GPVAE_STARTS = {"learned": "--lengthscale-init 1", "warmup": "--lengthscale-init 4 --prior-warmup 1000"}
#: name -> (options of examples/moving_ball.py, steps): each model with PyTorch's and the reference code's truncated
#: normal initialisation (every model's default is the truncated normal: see NETWORK_INIT)
ARMS = {
    "svgp-learned-torch": ("--model svgpvae --learn-lengthscale --lengthscale-init 1 --init torch", 10000),
    "svgp-learned-truncnormal": (
        "--model svgpvae --learn-lengthscale --lengthscale-init 1 --init truncated-normal",
        10000,
    ),
    "svgp-fixed-torch": ("--model svgpvae --init torch", 3000),
    "svgp-fixed-truncnormal": ("--model svgpvae --init truncated-normal", 3000),
    "gpvae-torch": ("--model gpvae --init torch", 3000),
    "gpvae-truncnormal": ("--model gpvae --init truncated-normal", 3000),
    # the exact GP-VAE with the example's defaults (truncated normal, lengthscale fixed at the truth) at the budget of
    # the SVGP-VAE's default arm: a run late at 3,000 steps is the same run continued (the learning rate is constant)
    "gpvae-default": ("--model gpvae", 10000),
    # the exact GP-VAE's learned lengthscale: round 2's start (1, not held) against the SVGP-VAE's warm-up (now the
    # default of both), at 3,000 steps and at the budget of the SVGP-VAE's default arm (the exact GP-VAE locks on later)
    **{
        f"gpvae-{start}-truncnormal{suffix}": (
            f"--model gpvae --learn-lengthscale {options} --init truncated-normal",
            steps,
        )
        for suffix, steps in (("", 3000), ("-10k", 10000))
        for start, options in GPVAE_STARTS.items()
    },
    "vae-torch": ("--model vae --init torch", 3000),
    "vae-truncnormal": ("--model vae --init truncated-normal", 3000),
    # the lengthscale started long and held for 1,000 steps (docs/moving_ball.md, "a warm-up of the prior")
    "svgp-warmup-torch": (
        "--model svgpvae --learn-lengthscale --lengthscale-init 4 --prior-warmup 1000 --init torch",
        3000,
    ),
    "svgp-warmup-truncnormal": (
        "--model svgpvae --learn-lengthscale --lengthscale-init 4 --prior-warmup 1000 --init truncated-normal",
        3000,
    ),
    # today's defaults (examples/experiments/moving_ball.py: truncated normal, lengthscale from 4 held 1,000 steps)
    "svgp-default": ("--model svgpvae --learn-lengthscale", 10000),
    # the same with the kernel's amplitude learned (held at 1 through the warm-up with the lengthscale) at a prior
    # learning rate of 0.01: the amplitude has to grow to the codes' squared scale, 4-25
    "svgp-default-outputscale-fast": (
        "--model svgpvae --learn-lengthscale --learn-outputscale --prior-lr 0.01",
        10000,
    ),
}


def configs(arms, lengthscales) -> dict[str, str]:
    out = {}
    for arm in arms:
        options, steps = ARMS[arm]
        for ls in lengthscales:
            out[f"{arm}_ls{ls:g}"] = f"{options} --true-lengthscale {ls:g} --steps {steps} --compile off"
    return out


def run_record(seed: int, metrics: dict, history: dict, lock_on: float) -> dict:
    """What the study keeps of one finished run: its final test-path RMSE, learned lengthscale and amplitude (``None``
    where fixed), the step of lock-on (the first trace point below ``lock_on``; ``None`` if never) and the codes'
    final scale (``None`` where the run recorded no ``encoder_mean_sd``)."""
    traced = [s for s, r in zip(history.get("step", []), history.get("test_rmse", [])) if r is not None and r < lock_on]
    codes = history.get("encoder_mean_sd")
    return {
        "seed": seed, "rmse": metrics["rmse"],
        "lengthscale": metrics["lengthscale"] if metrics.get("learn_lengthscale") else None,
        "outputscale": metrics["outputscale"] if metrics.get("learn_outputscale") else None,
        "lock_on_step": traced[0] if traced else None, "codes_sd": codes[-1] if codes else None,
    }  # fmt: skip


def aggregate(arm: str, true_lengthscale: float, steps: int, records: list[dict], lock_on: float) -> dict:
    """One row of the study: the runs of an arm at a true lengthscale, summarised (the records kept with it)."""

    def known(key):
        return [r[key] for r in records if r[key] is not None]

    keys = ("rmse", "lengthscale", "lock_on_step", "codes_sd", "outputscale")
    rmse, learned, locks, codes, amplitude = (known(k) for k in keys)
    return {
        "arm": arm, "true_lengthscale": true_lengthscale, "runs": len(records),
        "seeds": [r["seed"] for r in records], "steps": steps,
        "locked": sum(r < lock_on for r in rmse), "rmse_mean": statistics.mean(rmse),
        "rmse_sd": statistics.stdev(rmse) if len(rmse) > 1 else None, "rmse_max": max(rmse),
        "lengthscale_mean": statistics.mean(learned) if learned else None,
        "lengthscale_error_max": max(abs(v / true_lengthscale - 1) for v in learned) if learned else None,
        "lock_on_step_median": statistics.median(locks) if locks else None,
        "codes_sd_median": statistics.median(codes) if codes else None,
        "outputscale_median": statistics.median(amplitude) if amplitude else None,
        "records": records,
    }  # fmt: skip


def kept_rows(path: str, lock_on: float) -> dict:
    """The rows of an earlier report at ``path``, by ``(arm, true lengthscale)``, so that a study spread over sessions
    (whose run folders are gone) adds new runs to the ones already reported."""
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        previous = json.load(f)
    if previous["lock_on"] != lock_on:
        raise SystemExit(f"{path} counts lock-on below {previous['lock_on']}, not {lock_on}: report without --keep")
    return {(row["arm"], row["true_lengthscale"]): row for row in previous["rows"]}


def report(runs_dir: str, arms, lengthscales, seeds, lock_on: float, kept: dict | None = None) -> list[dict]:
    """A row per arm and true lengthscale with a finished run in ``runs_dir`` or in ``kept`` (:func:`kept_rows`): a
    run folder replaces a kept record of the same seed; a kept row that no run joins is reported as it was, and so
    are the kept rows outside ``arms`` x ``lengthscales``."""
    kept = kept or {}
    rows = []
    for arm in arms:
        for ls in lengthscales:
            previous = kept.get((arm, ls))
            records = {r["seed"]: r for r in previous["records"] if r["seed"] in seeds} if previous else {}
            steps = previous["steps"] if previous else None
            finished = common.load_runs(runs_dir, f"{arm}_ls{ls:g}", seeds)
            for metrics, history in finished:
                if steps is not None and metrics["steps"] != steps:
                    raise SystemExit(f"{arm} at {ls:g}: seed {metrics['seed']} ran {metrics['steps']} steps, "
                                     f"the others {steps}")  # fmt: skip
                records[metrics["seed"]] = run_record(metrics["seed"], metrics, history, lock_on)
                steps = metrics["steps"]
            if previous and not finished and set(previous["seeds"]) <= set(seeds):
                rows.append(previous)
            elif records:
                rows.append(aggregate(arm, ls, steps, [records[s] for s in sorted(records)], lock_on))
    chosen = {(arm, ls) for arm in arms for ls in lengthscales}
    rows += [row for key, row in kept.items() if key not in chosen]
    return sorted(rows, key=lambda row: (list(ARMS).index(row["arm"]), row["true_lengthscale"]))


SUMMARY_COLUMNS = ("arm", "true lengthscale", "runs", "traced", "path RMSE: mean ± sd (max)",
                   "learned lengthscale: mean (range)", "largest error", "lock-on step: median (range)",
                   "codes' scale at the end", "amplitude")  # fmt: skip


def summary(row: dict) -> dict:
    """One :func:`report` row as the printed table's cells (the layout of docs/moving_ball.md's study table)."""
    sd = "" if row["rmse_sd"] is None else f" ± {row['rmse_sd']:.3f}"
    cells = {
        "arm": row["arm"], "true lengthscale": f"{row['true_lengthscale']:g}", "runs": str(row["runs"]),
        "traced": f"{row['locked']} of {row['runs']}",
        "path RMSE: mean ± sd (max)": f"{row['rmse_mean']:.3f}{sd} ({row['rmse_max']:.3f})",
    }  # fmt: skip
    learned = [r["lengthscale"] for r in row["records"] if r["lengthscale"] is not None]
    if learned:
        truth = row["true_lengthscale"]
        cells["learned lengthscale: mean (range)"] = (
            f"{statistics.mean(learned):.2f} ({min(learned):.2f}-{max(learned):.2f})"
        )
        cells["largest error"] = f"{max((v / truth - 1 for v in learned), key=abs):+.0%}"
    locks = [r["lock_on_step"] for r in row["records"] if r["lock_on_step"] is not None]
    if locks:
        spread = f" ({min(locks):,}-{max(locks):,})" if len(locks) > 1 else ""
        cells["lock-on step: median (range)"] = f"{statistics.median(locks):,.0f}{spread}"
    if row["codes_sd_median"] is not None:
        cells["codes' scale at the end"] = f"{row['codes_sd_median']:.2f}"
    if row["outputscale_median"] is not None:
        cells["amplitude"] = f"{row['outputscale_median']:.2f}"
    return cells


def plot(rows: list[dict], path: str) -> None:
    """Each run's test-path RMSE (left; the lock-on threshold dashed) and learned lengthscale over the truth (right;
    the issue's 10 % band shaded), per arm and true lengthscale."""
    from experiments.plotting import pyplot

    plt = pyplot()
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.4))
    for i, arm in enumerate(arms):
        mine = [r for r in rows if r["arm"] == arm]
        for r in mine:
            x = r["true_lengthscale"] + 0.4 * (i - (len(arms) - 1) / 2) / len(arms)  # the arms side by side
            label = arm if r is mine[0] else None
            rmse = [run["rmse"] for run in r["records"]]
            left.scatter([x] * len(rmse), rmse, s=12, color=f"C{i}", label=label)
            ratios = [run["lengthscale"] / r["true_lengthscale"] for run in r["records"] if run["lengthscale"]]
            right.scatter([x] * len(ratios), ratios, s=12, color=f"C{i}", label=label)
    left.axhline(LOCK_ON, color="k", ls="--", lw=1)
    left.set_ylabel("test path RMSE")
    right.axhspan(0.9, 1.1, color="0.9", zorder=0)
    right.axhline(1.0, color="k", lw=1)
    right.set_ylabel("learned / true lengthscale")
    for ax in (left, right):
        ax.set_xlabel("true lengthscale")
    fig.legend(*left.get_legend_handles_labels(), loc="center right", fontsize=7)
    fig.tight_layout(rect=(0, 0, 0.8, 1))
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("run", "report"))
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--lengthscales", type=float, nargs="+", default=list(LENGTHSCALES))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--runs-dir", default="runs/moving_ball_init_study")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--lock-on", type=float, default=LOCK_ON)
    parser.add_argument("--json", default="benchmarks/results/moving_ball_init_study.json")
    parser.add_argument("--figure", default=None, help="write the RMSE figure here")
    parser.add_argument("--keep", action="store_true",
                        help="add the runs to those already in --json (runs whose folders are gone) instead of "
                             "reporting the folders alone")  # fmt: skip
    args = parser.parse_args()
    if args.action == "run":
        queue = pending_runs("moving_ball", args.runs_dir, configs(args.arms, args.lengthscales), args.seeds)
        raise SystemExit(1 if run_queue(queue, args.jobs) else 0)
    kept = kept_rows(args.json, args.lock_on) if args.keep else {}
    rows = report(args.runs_dir, args.arms, args.lengthscales, args.seeds, args.lock_on, kept)
    print(f"traced: final test-path RMSE below {args.lock_on}; lock-on: the first trace point below it")
    print(common.markdown_table([summary(r) for r in rows], list(SUMMARY_COLUMNS)))
    common.save(args.json, {"lock_on": args.lock_on, "rows": rows, "arms": {a: ARMS[a] for a in args.arms},
                            "machine": common.machine()})  # fmt: skip
    if args.figure:
        plot(rows, args.figure)


if __name__ == "__main__":
    main()
