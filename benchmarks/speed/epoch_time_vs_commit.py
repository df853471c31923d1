"""Seconds per SVGP-VAE epoch on rotated MNIST: this tree against an earlier commit, side by side.

python benchmarks/speed/epoch_time_vs_commit.py --commit-tree /tmp/wt-dadff79 --threads 1 2 --epochs 6 --rounds 3

``--commit-tree`` is a work tree of the earlier commit (``git worktree add /tmp/wt-dadff79 dadff79``). Each round
runs ``examples/rotated_mnist.py --model svgpvae --epochs E`` once in each tree, alternately, for each thread count,
in fresh processes (so both pay their own start-up) and reads the per-epoch wall time: this tree writes every
epoch's time into ``history.json`` and the median after the first (which holds the compilation when compiling) is
taken. An older tree that writes no per-epoch times is run twice, for E and 2E epochs, and the difference of the
two wall times over E gives its steady per-epoch time. Prints a table, writes JSON.
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
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # benchmarks/: common.py
import common

ROOT = str(pathlib.Path(__file__).resolve().parents[2])


def run(tree: str, threads: int, epochs: int, extra: list[str]) -> tuple[float, dict]:
    out = tempfile.mkdtemp(prefix="epoch_time_")
    command = [sys.executable, os.path.join(tree, "examples", "rotated_mnist.py"), "--model", "svgpvae", "--epochs",
               str(epochs), "--threads", str(threads), "--out", out, *extra]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": tree}
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=env, cwd=os.path.join(tree, "examples"))
    wall = time.perf_counter() - start
    with open(os.path.join(out, "metrics.json")) as f:
        metrics = json.load(f)
    history_path = os.path.join(out, "history.json")
    history = json.load(open(history_path)) if os.path.exists(history_path) else {}
    return wall, {"metrics": metrics, "history": history}


def steady_seconds(tree: str, threads: int, epochs: int, extra: list[str]) -> float:
    """Median seconds per epoch after the first; from two run lengths where the tree records no per-epoch times."""
    _, result = run(tree, threads, epochs, extra)
    seconds = result["history"].get("train", {}).get("seconds")
    if seconds:
        return statistics.median(seconds[1:])
    short, _ = run(tree, threads, epochs, extra)
    long, _ = run(tree, threads, 2 * epochs, extra)
    return (long - short) / epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commit-tree", required=True)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--commit-args", default="", help="extra arguments for the commit's run, one string")
    parser.add_argument("--json", default="benchmarks/results/epoch_time_vs_commit.json")
    args = parser.parse_args()
    results = {}
    for threads in args.threads:
        new, old = [], []
        for _ in range(args.rounds):
            new.append(steady_seconds(ROOT, threads, args.epochs, ["--no-plots"]))
            old.append(steady_seconds(args.commit_tree, threads, args.epochs, args.commit_args.split()))
        results[threads] = {"this": statistics.median(new), "commit": statistics.median(old), "this_all": new,
                            "commit_all": old}  # fmt: skip
    rows = [{"threads": t, "commit s/epoch": r["commit"], "this s/epoch": r["this"], "ratio": r["this"] / r["commit"]}
            for t, r in results.items()]  # fmt: skip
    print(common.markdown_table(rows, list(rows[0]), {"commit s/epoch": ".3f", "this s/epoch": ".3f", "ratio": ".2f"}))
    common.save(args.json, {"machine": common.machine(), "commit_tree": args.commit_tree, "epochs": args.epochs,
                            "rounds": args.rounds,
                            "results": results})  # fmt: skip


if __name__ == "__main__":
    main()
