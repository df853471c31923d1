"""Milliseconds per training step of every model: this tree against an earlier commit, side by side.

python benchmarks/speed/step_time_vs_commit.py --commit-tree /tmp/wt-ab19055 --rounds 5 \
    --json benchmarks/results/step_time_vs_ab19055.json

``--commit-tree`` is a work tree of the earlier commit (``git worktree add /tmp/wt-ab19055 ab19055``). Each round runs
``benchmarks/speed/step_time.py`` (one round of ``--steps`` steps per variant, eager, one thread) once in each tree,
alternately, in fresh processes, so both see the same machine; the table gives, per model, the median over rounds of
each tree's step time and the ratio new / old.
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

ROOT = str(pathlib.Path(__file__).resolve().parents[2])


def step_times(tree: str, steps: int, threads: int) -> dict[str, float]:
    """``model -> ms per step`` of one run of the tree's ``step_time.py``."""
    path = os.path.join(tempfile.mkdtemp(prefix="step_time_"), "result.json")
    script = os.path.join(tree, "benchmarks", "speed", "step_time.py")
    if not os.path.exists(script):  # a commit before the benchmarks were grouped into folders
        script = os.path.join(tree, "benchmarks", "step_time.py")
    command = [sys.executable, script, "--rounds", "1", "--steps",
               str(steps), "--threads", str(threads), "--modes", "eager", "--json", path]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": tree, "OMP_NUM_THREADS": str(threads)}
    subprocess.run(command, check=True, capture_output=True, env=env, cwd=tree)
    with open(path) as f:
        return {row["model"]: row["step_ms"] for row in json.load(f)["rows"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commit-tree", required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default="benchmarks/results/step_time_vs_commit.json")
    args = parser.parse_args()
    new, old = {}, {}
    for r in range(args.rounds):
        for tree, times in ((ROOT, new), (args.commit_tree, old)):
            for model, ms in step_times(tree, args.steps, args.threads).items():
                times.setdefault(model, []).append(ms)
        print(f"round {r + 1}/{args.rounds} done", flush=True)
    rows = []
    for model in new:
        if model in old:
            a, b = statistics.median(old[model]), statistics.median(new[model])
            rows.append({"model": model, "before_ms": a, "after_ms": b, "after / before": b / a})
    print(f"threads {args.threads}, eager, {args.rounds} rounds x {args.steps} steps, medians over rounds")
    print(common.markdown_table(rows, ["model", "before_ms", "after_ms", "after / before"],
                                {"before_ms": ".1f", "after_ms": ".1f", "after / before": ".2f"}))  # fmt: skip
    machine = {**common.machine(), "threads": args.threads}  # the steps' threads (this process's are not timed)
    common.save(args.json, {"machine": machine, "commit_tree": args.commit_tree, "rounds": args.rounds,
                            "steps": args.steps, "rows": rows, "times": {"before": old, "after": new}})  # fmt: skip


if __name__ == "__main__":
    main()
