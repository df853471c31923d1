"""The moving-ball initialisation study (issue #24): which network initialisation and learning rates make every model
lock onto the ball's paths, across seeds and true lengthscales, and whether a learned lengthscale finds the truth.

python benchmarks/moving_ball_init_study.py run --arms svgp-learned-torch --lengthscales 1.5 3 4 --seeds 1 2 --jobs 1
python benchmarks/moving_ball_init_study.py report --json benchmarks/results/moving_ball_init_study.json

Each run is ``examples/moving_ball.py`` with ``--threads 1`` in ``RUNS/ARM_lsL_sS`` (resumed where interrupted, skipped
when finished); ``report`` reads every finished run and prints, per arm and true lengthscale, the runs, how many lock
on (final test-path RMSE below ``--lock-on``), the RMSE (mean and sd), the learned lengthscale's relative error, the
step of lock-on (first trace point below the threshold), the codes' final scale (standard deviation of the encoder
means on the test batch; the true paths' is 1) and a learned amplitude, writes JSON and a figure.
"""

from __future__ import annotations

import argparse
import statistics

import common
from study import pending_runs, run_queue

SEEDS = (1, 2, 3, 4, 5)
LENGTHSCALES = (1.5, 2.0, 3.0, 4.0)
LOCK_ON = 0.4  # test-path RMSE below which the paths are traced (a VAE stays near 0.7)

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


def report(runs_dir: str, arms, lengthscales, seeds, lock_on: float) -> list[dict]:
    rows = []
    for arm in arms:
        for ls in lengthscales:
            found = common.load_runs(runs_dir, f"{arm}_ls{ls:g}", seeds)
            if not found:
                continue
            rmse = [m["rmse"] for m, _ in found]
            lengthscale = [m["lengthscale"] for m, _ in found if m.get("learn_lengthscale")]
            locks = []
            for _, h in found:
                steps = [s for s, r in zip(h.get("step", []), h.get("test_rmse", [])) if r is not None and r < lock_on]
                locks.append(steps[0] if steps else None)
            locked = [s for s in locks if s is not None]
            # the codes' final scale (the true paths' is 1) and, when learned, the kernel's amplitude
            codes = [h["encoder_mean_sd"][-1] for _, h in found if h.get("encoder_mean_sd")]
            amplitude = [m["outputscale"] for m, _ in found if m.get("learn_outputscale")]
            rows.append({
                "arm": arm, "true_lengthscale": ls, "runs": len(found), "steps": found[0][0]["steps"],
                "locked": sum(r < lock_on for r in rmse), "rmse_mean": statistics.mean(rmse),
                "rmse_sd": statistics.stdev(rmse) if len(rmse) > 1 else None, "rmse_max": max(rmse),
                "lengthscale_mean": statistics.mean(lengthscale) if lengthscale else None,
                "lengthscale_error_max": max(abs(v / ls - 1) for v in lengthscale) if lengthscale else None,
                "lock_on_step_median": statistics.median(locked) if locked else None,
                "codes_sd_median": statistics.median(codes) if codes else None,
                "outputscale_median": statistics.median(amplitude) if amplitude else None,
                "rmse": rmse, "lengthscale": lengthscale, "lock_on_steps": locks,
            })  # fmt: skip
    return rows


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
    learned = row["lengthscale"]
    if learned:
        truth = row["true_lengthscale"]
        cells["learned lengthscale: mean (range)"] = (
            f"{statistics.mean(learned):.2f} ({min(learned):.2f}-{max(learned):.2f})"
        )
        cells["largest error"] = f"{max((v / truth - 1 for v in learned), key=abs):+.0%}"
    locks = [s for s in row["lock_on_steps"] if s is not None]
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
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    for i, arm in enumerate(arms):
        mine = [r for r in rows if r["arm"] == arm]
        for r in mine:
            x = r["true_lengthscale"] + 0.08 * (i - len(arms) / 2)
            label = arm if r is mine[0] else None
            left.scatter([x] * len(r["rmse"]), r["rmse"], s=12, color=f"C{i}", label=label)
            ratios = [v / r["true_lengthscale"] for v in r["lengthscale"]]
            right.scatter([x] * len(ratios), ratios, s=12, color=f"C{i}", label=label)
    left.axhline(LOCK_ON, color="k", ls="--", lw=1)
    left.set_ylabel("test path RMSE")
    right.axhspan(0.9, 1.1, color="0.9", zorder=0)
    right.axhline(1.0, color="k", lw=1)
    right.set_ylabel("learned / true lengthscale")
    for ax in (left, right):
        ax.set_xlabel("true lengthscale")
    left.legend(fontsize=7)
    fig.tight_layout()
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
    args = parser.parse_args()
    if args.action == "run":
        queue = pending_runs("moving_ball", args.runs_dir, configs(args.arms, args.lengthscales), args.seeds)
        raise SystemExit(1 if run_queue(queue, args.jobs) else 0)
    rows = report(args.runs_dir, args.arms, args.lengthscales, args.seeds, args.lock_on)
    print(f"traced: final test-path RMSE below {args.lock_on}; lock-on: the first trace point below it")
    print(common.markdown_table([summary(r) for r in rows], list(SUMMARY_COLUMNS)))
    common.save(args.json, {"lock_on": args.lock_on, "rows": rows, "arms": {a: ARMS[a] for a in args.arms},
                            "machine": common.machine()})  # fmt: skip
    if args.figure:
        plot(rows, args.figure)


if __name__ == "__main__":
    main()
