"""The scaling study on rotated MNIST (SVGP-VAE Fig. 7 and Fig. 6; ``docs/scaling.md``).

Four parts, each resumable and writing its own results, then a report that joins them::

    # MSE at a fixed budget: the SVGP-VAE on 1, 2, 5 and 10 digit classes (Fig. 7), and with m = 8..32 inducing
    # points beside GPPVAE with GP-LVM dimension M = 8..32 (Fig. 6); two single-thread runs at a time
    python benchmarks/studies/scaling.py train --runs-dir runs/scaling --seeds 0 1 --epochs 100 --data-dir MNIST_DIR
    # time per epoch and peak memory, one single-thread process at a time (run it on a quiet machine)
    python benchmarks/studies/scaling.py timing --data-dir MNIST_DIR
    # throughput of 1 process x 1 thread against torchrun with 2 processes x 1 thread (same global batch)
    python benchmarks/studies/scaling.py processes --data-dir MNIST_DIR
    # tables (stdout), benchmarks/results/scaling.json and the figures in docs/figures/scaling/
    python benchmarks/studies/scaling.py report --runs-dir runs/scaling --seeds 0 1

Every run is ``examples/rotated_mnist.py`` (so every number here can be reproduced with one command of it);
``--data-dir`` (or ``$GPYTORCH_VAE_DATA``) is the folder with the MNIST IDX files, needed for more than digit 3.
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

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # benchmarks/: common.py
import common
import numpy as np
from study import ROOT, pending_runs, run_queue

SIZES = ("3", "36", "13679", "0123456789")  # docs/protocols/scaling.md
CAPACITIES = (8, 16, 24, 32)  # m of the SVGP-VAE, M of GPPVAE (Fig. 6)
RESULTS = os.path.join(ROOT, "benchmarks", "results")
FIGURES = os.path.join(ROOT, "docs", "figures", "scaling")
SCRIPT = os.path.join(ROOT, "examples", "rotated_mnist.py")


def size_name(dataset: str) -> str:
    return f"svgpvae_{dataset}_m32"


def capacity_names() -> dict[str, tuple[str, int]]:
    """Run name -> (model, capacity) of Fig. 6."""
    names = {f"svgpvae_3_m{m}": ("svgpvae", m) for m in CAPACITIES}
    names.update({f"gppvae_M{m}": ("gppvae", m) for m in CAPACITIES})
    return names


def configs(epochs: int, data_dir: str | None) -> dict[str, str]:
    """The training runs of both figures (``svgpvae_3_m32`` is the 1-class point of Fig. 7 and m = 32 of Fig. 6)."""
    data = f" --data-dir {data_dir}" if data_dir else ""
    runs = {size_name(d): f"--model svgpvae --dataset {d} --generate-images --epochs {epochs}{data}" for d in SIZES}
    for name, (model, m) in capacity_names().items():
        option = "--inducing-points" if model == "svgpvae" else "--object-dim"
        runs.setdefault(name, f"--model {model} {option} {m} --epochs {epochs}")
    return runs


# ---------------------------------------------------------------------- measuring
def run_example(options: list[str], launcher: list[str] | None = None) -> tuple[dict, dict]:
    """Run ``examples/rotated_mnist.py`` once (one thread per process, no figures) in a temporary folder; its
    ``metrics.json`` and ``history.json``. Raises with the tail of its output if it fails."""
    with tempfile.TemporaryDirectory() as out:
        command = [*(launcher or [sys.executable]), SCRIPT, *options, "--threads", "1", "--no-plots", "--out", out]
        print("run", " ".join(command[1:]), flush=True)
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
        with open(os.path.join(out, "metrics.json")) as f, open(os.path.join(out, "history.json")) as g:
            return json.load(f), json.load(g)


def quiet_check() -> float:
    """The 1-minute load average; warns when other work would disturb the timings."""
    load = os.getloadavg()[0]
    if load > 0.5:
        print(f"warning: load average {load:.2f}: timings are only meaningful on a quiet machine", flush=True)
    return load


def timing(args) -> None:
    """Seconds per epoch (median of the epochs after the first, which compiles) and peak resident memory of one
    process per run, one at a time: the four data sets (m = 32), the SVGP-VAE's m and GPPVAE's M."""
    data = ["--data-dir", args.data_dir] if args.data_dir else []
    load, rows = quiet_check(), []
    for dataset in SIZES:
        options = ["--model", "svgpvae", "--dataset", dataset, "--epochs", str(args.epochs), *data]
        metrics, _ = run_example([*options, "--generate-images"])
        rows.append({"part": "size", "dataset": dataset, **_timing_fields(metrics)})
        if dataset == "3":  # what making the images per batch costs
            metrics, _ = run_example(options)
            rows.append({"part": "stored-images", "dataset": dataset, **_timing_fields(metrics)})
    for m in CAPACITIES:
        metrics, _ = run_example(["--model", "svgpvae", "--inducing-points", str(m), "--epochs", str(args.epochs)])
        rows.append({"part": "capacity", "model": "svgpvae", "capacity": m, **_timing_fields(metrics)})
    for m in CAPACITIES:  # 3 VAE + 3 GP epochs; each phase's median without its first epoch
        metrics, history = run_example(["--model", "gppvae", "--object-dim", str(m), "--epochs", "6"])
        seconds = history["train"]["seconds"]  # history.json: {"train": per-epoch logs, "evaluation": ...}
        vae, gp = statistics.median(seconds[1:3]), statistics.median(seconds[4:6])
        row = {"part": "capacity", "model": "gppvae", "capacity": m, **_timing_fields(metrics)}
        row.update(vae_epoch_seconds=vae, gp_epoch_seconds=gp, seconds_per_epoch=(vae + gp) / 2)
        rows.append(row)
    payload = {"machine": {**common.machine(), "threads": 1}, "load_average": load, "epochs": args.epochs,
               "rows": rows}  # fmt: skip
    common.save(os.path.join(RESULTS, "scaling_timing.json"), payload)


def _timing_fields(metrics: dict) -> dict:
    keys = ("num_train", "seconds_per_epoch", "first_epoch_seconds", "peak_rss_mb", "training_peak_rss_mb")
    return {key: metrics.get(key) for key in keys}


def processes(args) -> None:
    """Time per epoch of one process with one thread against ``torchrun`` with ``--nproc`` processes of one thread
    each (every rank a shard of the same global batch of 256), and against the ideal (one process on batches of
    256 / nproc, its epoch time divided by nproc: the ranks' compute without communication or duplicated work),
    ``--repeats`` times each, alternating."""
    data = ["--data-dir", args.data_dir] if args.data_dir else []
    options = [
        "--model",
        "svgpvae",
        "--dataset",
        args.dataset,
        *([] if args.stored_images else ["--generate-images"]),
        "--epochs",
        str(args.epochs),
        *data,
    ]
    if args.stored_images and args.dataset != "3":
        raise SystemExit("--stored-images: only digit 3 has its images stored (--dataset 3)")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}"]
    # the ideal: one process on a rank's share of each batch (256 / R), its epoch divided by R (no communication)
    share = ["--batch-size", str(256 // args.nproc)]
    variants = {"1": (options, None), str(args.nproc): (options, torchrun), "ideal": (options + share, None)}
    load, times = quiet_check(), {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, (variant, launcher) in variants.items():
            metrics, _ = run_example(variant, launcher)
            times[name].append(metrics["seconds_per_epoch"] / (args.nproc if name == "ideal" else 1))
            num_train = metrics["num_train"]
    rows = [{"processes": name if name == "ideal" else int(name), "threads_per_process": 1, "runs": t,
             "seconds_per_epoch": statistics.median(t), "images_per_second": num_train / statistics.median(t),
             "speed_up": times_ratio(times["1"], t)} for name, t in times.items()]  # fmt: skip
    payload = {"machine": {**common.machine(), "threads": 1}, "load_average": load, "dataset": args.dataset,
               "generated_images": not args.stored_images, "epochs": args.epochs, "rows": rows}  # fmt: skip
    name = "scaling_processes_stored.json" if args.stored_images else "scaling_processes.json"
    common.save(os.path.join(RESULTS, name), payload)
    columns = ["processes", "seconds_per_epoch", "images_per_second", "speed_up"]
    print(common.markdown_table(rows, columns, {**FORMATS, "images_per_second": ".0f", "speed_up": ".2f"}))


def times_ratio(reference: list[float], values: list[float]) -> float:
    return statistics.median(reference) / statistics.median(values)


# ---------------------------------------------------------------------- report
def mean_sd(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def linear_fit(n: np.ndarray, t: np.ndarray) -> dict:
    """Least squares ``t = c0 + c1 N`` and its :math:`R^2`."""
    c1, c0 = np.polyfit(n, t, 1)
    residual = t - (c0 + c1 * n)
    return {"c0": float(c0), "c1": float(c1), "r2": float(1 - residual.var() / t.var())}


def report(args) -> None:
    timing_rows = _read(os.path.join(RESULTS, "scaling_timing.json")).get("rows", [])
    timed = {(r["part"], r.get("dataset"), r.get("model"), r.get("capacity")): r for r in timing_rows}
    sizes = []
    for dataset in SIZES:
        runs = [m for m, _ in common.load_runs(args.runs_dir, size_name(dataset), args.seeds)]
        mse, mse_sd = mean_sd([r["mse"] for r in runs])
        t = timed.get(("size", dataset, None, None), {})
        sizes.append({"dataset": dataset, "N": 4050 * len(dataset), "seeds": len(runs), "mse": mse, "mse_sd": mse_sd,
                      "epochs": runs[0]["epochs"] if runs else None,
                      **{key: t.get(key) for key in TIMED}})  # fmt: skip
    capacity = []
    for name, (model, m) in capacity_names().items():
        runs = [m for m, _ in common.load_runs(args.runs_dir, name, args.seeds)]
        mse, mse_sd = mean_sd([r["mse"] for r in runs])
        t = timed.get(("capacity", None, model, m), {})
        capacity.append({"model": model, "capacity": m, "seeds": len(runs), "mse": mse, "mse_sd": mse_sd,
                         "seconds_per_epoch": t.get("seconds_per_epoch")})  # fmt: skip
    summary = {}
    timed_sizes = [r for r in sizes if r["seconds_per_epoch"]]
    if len(timed_sizes) >= 2:
        n = np.array([r["N"] for r in timed_sizes], dtype=float)
        t = np.array([r["seconds_per_epoch"] for r in timed_sizes])
        summary["time_fit"] = linear_fit(n, t)
        summary["time_ratio_largest_to_smallest"] = float(t[-1] / t[0])
        summary["size_ratio_largest_to_smallest"] = float(n[-1] / n[0])
        for key in ("peak_rss_mb", "training_peak_rss_mb"):
            memory = [r[key] for r in timed_sizes if r.get(key)]
            if memory:
                summary[f"{key}_ratio"] = max(memory) / min(memory)
    stored = timed.get(("stored-images", "3", None, None))
    if stored and sizes[0]["seconds_per_epoch"]:  # what rotating the images per batch costs, digit 3
        summary["image_generation_seconds_per_epoch"] = sizes[0]["seconds_per_epoch"] - stored["seconds_per_epoch"]
    processes_payload = [_read(os.path.join(RESULTS, f"scaling_processes{kind}.json")) for kind in ("", "_stored")]
    payload = {"sizes": sizes, "capacity": capacity, "summary": summary, "processes": processes_payload,
               "timing_machine": _read(os.path.join(RESULTS, "scaling_timing.json")).get("machine")}  # fmt: skip
    print(common.markdown_table(sizes, ["dataset", "N", "seeds", "epochs", "mse", "mse_sd", "seconds_per_epoch",
                                        "peak_rss_mb", "training_peak_rss_mb"], FORMATS))  # fmt: skip
    print()
    print(
        common.markdown_table(capacity, ["model", "capacity", "seeds", "mse", "mse_sd", "seconds_per_epoch"], FORMATS)
    )
    print()
    print(json.dumps(summary, indent=2))
    common.save(os.path.join(RESULTS, "scaling.json"), payload)
    if not args.no_plots:
        plot(sizes, capacity)


TIMED = ("seconds_per_epoch", "peak_rss_mb", "training_peak_rss_mb")
FORMATS = {
    "mse": ".4f",
    "mse_sd": ".4f",
    "seconds_per_epoch": ".2f",
    "peak_rss_mb": ".0f",
    "training_peak_rss_mb": ".0f",
}


def _read(path: str) -> dict:
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def plot(sizes: list[dict], capacity: list[dict]) -> None:
    """Fig. 7 (MSE and time per epoch against N) and Fig. 6 (MSE against time per epoch, by capacity)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(FIGURES, exist_ok=True)
    done = [r for r in sizes if r["mse"] is not None]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    left.errorbar([r["N"] for r in done], [r["mse"] for r in done], [r["mse_sd"] for r in done], marker="o")
    left.set(xlabel="N (training images)", ylabel="test MSE", title="SVGP-VAE: MSE against N")
    timed = [r for r in sizes if r["seconds_per_epoch"]]
    right.plot([r["N"] for r in timed], [r["seconds_per_epoch"] for r in timed], marker="o")
    right.set(xlabel="N (training images)", ylabel="seconds per epoch", title="time per epoch (1 CPU thread)")
    fig.tight_layout()
    fig.savefig(os.path.join(FIGURES, "mse_and_time_vs_n.png"), dpi=120)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(4.8, 3.6))
    for model, label, letter in (("svgpvae", "SVGP-VAE (m)", "m"), ("gppvae", "GPPVAE (M)", "M")):
        rows = [r for r in capacity if r["model"] == model and r["mse"] is not None and r["seconds_per_epoch"]]
        ax.errorbar([r["seconds_per_epoch"] for r in rows], [r["mse"] for r in rows], [r["mse_sd"] for r in rows],
                    marker="o", label=label)  # fmt: skip
        for r in rows:
            ax.annotate(f"{letter}={r['capacity']}", (r["seconds_per_epoch"], r["mse"]), fontsize=7)
    ax.set(xlabel="seconds per epoch (1 CPU thread)", ylabel="test MSE", title="MSE against time (digit 3)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(FIGURES, "mse_vs_time_capacity.png"), dpi=120)
    plt.close(fig)
    print(f"wrote figures to {FIGURES}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parts = parser.add_subparsers(dest="part", required=True)
    train = parts.add_parser("train", help="the MSE runs of Fig. 7 and Fig. 6")
    train.add_argument("--runs-dir", default="runs/scaling")
    train.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    train.add_argument("--epochs", type=int, default=100)
    train.add_argument("--jobs", type=int, default=2)
    train.add_argument("--only", nargs="+", default=None, help="run names to run (default: all)")
    timed = parts.add_parser("timing", help="time per epoch and peak memory, one process at a time")
    timed.add_argument("--epochs", type=int, default=5)
    procs = parts.add_parser("processes", help="1 process against torchrun with several")
    procs.add_argument("--dataset", default="13679", choices=SIZES)
    procs.add_argument("--epochs", type=int, default=4)
    procs.add_argument("--nproc", type=int, default=2)
    procs.add_argument("--repeats", type=int, default=3)
    procs.add_argument("--stored-images", action="store_true", help="digit 3 with its stored images (no rotation)")
    rep = parts.add_parser("report", help="tables, JSON and figures")
    rep.add_argument("--runs-dir", default="runs/scaling")
    rep.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    rep.add_argument("--no-plots", action="store_true")
    for sub in (train, timed, procs):
        sub.add_argument("--data-dir", default=None, help="the MNIST IDX files (default: $GPYTORCH_VAE_DATA)")
    args = parser.parse_args()
    if args.part == "train":
        runs = configs(args.epochs, args.data_dir)
        if args.only:
            runs = {name: runs[name] for name in args.only}
        sys.exit(1 if run_queue(pending_runs("rotated_mnist", args.runs_dir, runs, args.seeds), args.jobs) else 0)
    {"timing": timing, "processes": processes, "report": report}[args.part](args)


if __name__ == "__main__":
    main()
