"""Time of one training step of every model against its plain-network floor, eager and compiled.

python benchmarks/speed/step_time.py --threads 1 --rounds 7 --json benchmarks/results/step_time_1thread.json

For each model the *step* is ``gpytorch_vae.training.fit_step`` of the model's objective (what ``fit`` runs
per batch) on the protocol's batches; GPPVAE's phases are timed as whole ``fit_gppvae`` epochs (their per-epoch
Taylor anchor included) divided by the steps of an epoch. The *floor* is the same networks as a plain PyTorch VAE
step: encoder, reparameterised sample, decoder, the model's likelihood, N(0, I) KL, Adam; no Pyro, no GP (Deep
SVIGP: its decoder alone). Both run eagerly and with the networks (and, for the step, the SVGP-VAE's GP core,
``gpytorch_vae.settings.compile_gp``) under ``torch.compile``; compile time is reported separately. All
variants take turns, ``--rounds`` rounds of ``--steps`` steps, so they see the same machine; the table reports
medians over rounds and the ratio step / floor.

python benchmarks/speed/step_time.py --commit-tree /tmp/wt-ab19055 --rounds 5 \\
    --json benchmarks/results/step_time_vs_ab19055.json

``--commit-tree`` is a work tree of an earlier commit (``git worktree add /tmp/wt-ab19055 ab19055``): each round then
runs this script (one round of ``--steps`` steps per variant, eager, ``--threads``) once in each tree, alternately, in
fresh processes, so both see the same machine (the earlier commit's copy at its own path, ``benchmarks/speed/`` or,
before the benchmarks were grouped, ``benchmarks/``); the table gives, per model, the median over rounds of each
tree's step time and the ratio new / old.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import math
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # benchmarks/: common.py
import common
import numpy as np
import pyro
import torch
from experiments import moving_ball as ball
from experiments.rotated_mnist import MODELS, build_model, model_splits

import gpytorch_vae
from gpytorch_vae.baselines import fit_gppvae
from gpytorch_vae.data import MovingBallGenerator, MovingBallStream, load_rotated_mnist
from gpytorch_vae.likelihoods import BernoulliLikelihood
from gpytorch_vae.nn import compile_networks
from gpytorch_vae.objectives import ELBO
from gpytorch_vae.training import fit_step

ROOT = pathlib.Path(__file__).resolve().parents[2]
ROTATED = ("svgpvae", "cvae", "fgpvae", "deep-svigp", "deep-svigp-mean")
GPPVAE_PHASES = {"gppvae VAE phase": (1, 0, 0), "gppvae GP phase": (0, 1, 0), "gppvae joint phase": (0, 0, 1)}
BALL = ("vae", "gpvae", "svgpvae")


@dataclass
class Variant:
    name: str
    step: Callable
    batches: list
    networks: list = field(default_factory=list)  # compiled when the variant is
    steps_per_call: int = 1
    compile_seconds: float | None = None
    times: list = field(default_factory=list)

    def warm_up(self) -> None:
        start = time.perf_counter()
        for batch in self.batches:
            self.step(*batch)
        self.compile_seconds = time.perf_counter() - start

    def time(self, count: int) -> None:
        batches = itertools.cycle(self.batches)
        start = time.perf_counter()
        for _ in range(count):
            self.step(*next(batches))
        self.times.append((time.perf_counter() - start) / (count * self.steps_per_call))


def plain_step(encoder, decoder, likelihood: str, latent_dim: int, features=None):
    """The floor: the networks as a plain VAE step (``encoder=None``: the decoder on N(0, I) codes)."""
    params = list(decoder.parameters()) + ([] if encoder is None else list(encoder.parameters()))
    optimizer = torch.optim.Adam(params, lr=1e-3)

    def step(x, y):
        extra = () if features is None else (features(x),)
        if encoder is None:
            z, kl = torch.randn(*y.shape[:-2], latent_dim), 0.0
        else:
            mean, log_var = encoder(y, *extra)
            z = mean + (0.5 * log_var).exp() * torch.randn_like(mean)
            kl = 0.5 * (log_var.exp() + mean.square() - 1.0 - log_var).sum()
        out = decoder(z, *extra).reshape(y.shape)
        if likelihood == "bernoulli":
            rec = -torch.nn.functional.binary_cross_entropy_with_logits(out, y, reduction="sum")
        else:
            rec = -0.5 * (out - y).square().sum()
        loss = kl - rec
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def objective_step(objective):
    """``fit``'s step of ``objective`` with Adam (lr 1e-3) as a function of a batch."""
    step = fit_step(objective, lr=1e-3)
    return lambda *batch: step(batch)


def rotated_variants(name: str, data) -> tuple[Variant, Variant]:
    train, _, _ = model_splits(name, data)
    x, y = train.tensors()
    batches = list(zip(x.split(MODELS[name].batch_size), y.split(MODELS[name].batch_size)))[:3]
    pyro.set_rng_seed(0)
    model = build_model(name, data, train)
    step = objective_step(MODELS[name].objective(model, len(x), None, math.inf))
    if name.startswith("deep-svigp"):
        decoder = copy.deepcopy(model.decoder)
        floor = plain_step(None, decoder, "gaussian", 16)
        return Variant(name, step, batches, [model.decoder]), Variant(name + " floor", floor, batches, [decoder])
    encoder, decoder = copy.deepcopy(model.encoder), copy.deepcopy(model.decoder)
    kind = "bernoulli" if isinstance(model.likelihood, BernoulliLikelihood) else "gaussian"
    floor = plain_step(encoder, decoder, kind, model.latent_dim, model.features)
    return (
        Variant(name, step, batches, [model.encoder, model.decoder]),
        Variant(name + " floor", floor, batches, [encoder, decoder]),
    )


def gppvae_variant(phase: str, data) -> Variant:
    train = data.train()
    x, y = train.tensors()
    pyro.set_rng_seed(0)
    model = build_model("gppvae", data, train)
    vae_epochs, gp_epochs, joint_epochs = GPPVAE_PHASES[phase]

    order = torch.from_numpy(np.lexsort((x[:, 1].numpy(), x[:, 0].numpy())))  # whole digits per batch
    x, y = x[order], y[order]

    def epoch():  # one epoch of the phase, its Taylor anchor included
        fit_gppvae(model, x, y, vae_epochs, gp_epochs, joint_epochs, progress=False)

    steps = -(-len(x) // 256)
    networks = [model.vae.encoder, model.vae.decoder]
    return Variant(phase, lambda: epoch(), [()], networks if phase != "gppvae GP phase" else [], steps_per_call=steps)


def ball_variants(name: str) -> tuple[Variant, Variant]:
    pyro.set_rng_seed(0)
    model = ball.build_model(name, num_inducing=15)
    stream = MovingBallStream(MovingBallGenerator(), 35, seed=0)
    batches = [(ball.gp_inputs(b), b.frames) for b in itertools.islice(stream, 3)]
    step = objective_step(ELBO(model, None, loss_scale=1 / 35))
    encoder, decoder = copy.deepcopy(model.encoder), copy.deepcopy(model.decoder)
    floor = plain_step(encoder, decoder, "bernoulli", 2)
    return (
        Variant("ball " + name, step, batches, [model.encoder, model.decoder]),
        Variant("ball " + name + " floor", floor, batches, [encoder, decoder]),
    )


def tree_step_times(tree: str, steps: int, threads: int) -> dict[str, float]:
    """``model -> ms per step`` of one eager round of the tree's copy of this script, in a fresh process."""
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


def against_commit(args: argparse.Namespace) -> None:
    """``--commit-tree``: this tree's and the earlier commit's step times, round by round, side by side."""
    new, old = {}, {}
    for r in range(args.rounds):
        for tree, times in ((str(ROOT), new), (args.commit_tree, old)):
            for model, ms in tree_step_times(tree, args.steps, args.threads).items():
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
    common.save(args.json or "benchmarks/results/step_time_vs_commit.json",
                {"machine": machine, "commit_tree": args.commit_tree, "rounds": args.rounds, "steps": args.steps,
                 "rows": rows, "times": {"before": old, "after": new}})  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=6, help="steps per variant and round")
    parser.add_argument("--models", nargs="+", default=[*ROTATED, *GPPVAE_PHASES, *("ball " + b for b in BALL)])
    parser.add_argument("--modes", nargs="+", default=["eager", "compiled"], choices=["eager", "compiled"])
    parser.add_argument("--json", default=None, help="default benchmarks/results/step_time.json "
                        "(with --commit-tree: step_time_vs_commit.json)")  # fmt: skip
    parser.add_argument("--commit-tree", default=None, help="a work tree of an earlier commit: time both, eager")
    args = parser.parse_args()
    if args.commit_tree:
        against_commit(args)
        return
    args.json = args.json or "benchmarks/results/step_time.json"
    torch.set_num_threads(args.threads)
    data = load_rotated_mnist()
    variants = []
    for mode in args.modes:
        gpytorch_vae.settings.compile_gp.set(mode == "compiled")
        for name in args.models:
            if name in ROTATED:
                pair = rotated_variants(name, data)
            elif name in GPPVAE_PHASES:
                pair = (gppvae_variant(name, data),)
            else:
                pair = ball_variants(name.removeprefix("ball "))
            for variant in pair:
                variant.name += f" [{mode}]"
                if mode == "compiled" and variant.networks:
                    compile_networks(*variant.networks, enabled=True)
                variant.warm_up()
                variants.append(variant)
    for _ in range(args.rounds):
        for variant in variants:
            gpytorch_vae.settings.compile_gp.set(variant.name.endswith("[compiled]"))
            variant.time(1 if variant.steps_per_call > 1 else args.steps)
    rows = []
    by_name = {v.name: v for v in variants}
    for variant in variants:
        if " floor" in variant.name:
            continue
        ms = 1e3 * statistics.median(variant.times)
        floor = by_name.get(variant.name.replace(" [", " floor ["))
        floor_ms = 1e3 * statistics.median(floor.times) if floor else None
        rows.append({
            "model": variant.name,
            "step_ms": ms,
            "floor_ms": floor_ms,
            "ratio": ms / floor_ms if floor_ms else None,
            "warm_up_s": variant.compile_seconds,
        })  # fmt: skip
    print(f"threads {args.threads}, {args.rounds} rounds x {args.steps} steps, medians")
    columns = ["model", "step_ms", "floor_ms", "ratio", "warm_up_s"]
    print(
        common.markdown_table(rows, columns, {"step_ms": ".1f", "floor_ms": ".1f", "ratio": ".2f", "warm_up_s": ".1f"})
    )
    common.save(args.json, {"machine": common.machine(), "rounds": args.rounds, "steps": args.steps, "rows": rows,
                            "times": {v.name: v.times for v in variants}})  # fmt: skip


if __name__ == "__main__":
    main()
