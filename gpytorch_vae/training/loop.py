"""The epoch loop shared by every trainer: progress output, finite-loss guard, checkpoints, exact resume."""

from __future__ import annotations

import inspect
import math
import os
import statistics
import sys
import time
from typing import Callable, Iterable, Mapping, Protocol

import torch

from .checkpoint import load_checkpoint, save_checkpoint

NONFINITE = ("raise", "skip")


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss (or gradient); nothing of that step was applied or written."""


class DivergenceError(RuntimeError):
    """The watched value (e.g. the loss) stayed far above its best for several epochs (:class:`DivergenceGuard`);
    the epoch that showed it was not checkpointed."""


class DivergenceGuard:
    """Signed divergence guard: the watched value (a loss to minimise) has diverged when, for ``patience``
    consecutive periods (epochs), its mean exceeds the best value so far (the run's first step included) by more
    than ``factor`` times the larger of the best and the first values' magnitudes. A loss that improves (e.g. from 1
    to -1500) never trips it, nor does a single bad epoch that recovers."""

    def __init__(self, key: str, factor: float | None, patience: int = 2):
        self.key, self.factor, self.patience = key, factor, int(patience)
        self.first, self.best, self.strikes = None, None, 0

    def check(self, value: float, period: int, checkpoint: str | None, first_step: float | None = None) -> None:
        """Check a period's mean ``value``; ``first_step``: the run's first step's value (before any update)."""
        if self.factor is None:
            return
        if self.first is None:
            self.first = self.best = value if first_step is None else first_step
        scale = max(abs(self.best), abs(self.first), 1e-12)
        self.strikes = self.strikes + 1 if value - self.best > self.factor * scale else 0
        self.best = min(self.best, value)
        if self.strikes >= self.patience:
            kept = f"; the last checkpoint kept is {checkpoint}" if checkpoint else ""
            raise DivergenceError(
                f"period {period}: the mean {self.key} is {value:.4g}, above its best ({self.best:.4g}) by more than "
                f"{self.factor:g} times {scale:.4g} for {self.patience} periods in a row: training diverged (lower the "
                f"learning rate, or clip gradients with max_grad_norm){kept}"
            )

    def state_dict(self) -> dict:
        return {"first": self.first, "best": self.best, "strikes": self.strikes}

    def load_state_dict(self, state: dict) -> None:
        self.first, self.best, self.strikes = state["first"], state["best"], state["strikes"]


class Stateful(Protocol):
    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


def _grad_parameters(optimizer) -> list[torch.Tensor]:
    inner = getattr(optimizer, "optimizer", optimizer)  # ScaledLossOptimizer wraps a torch optimizer
    return [p for group in inner.param_groups for p in group["params"] if p.grad is not None]


def guarded_step(
    loss: torch.Tensor,
    optimizer,
    max_grad_norm: float | None = None,
    on_nonfinite: str = "raise",
    step: Callable[[], None] | None = None,
) -> bool:
    """``loss.backward()`` and one optimiser step, unless the loss (or, with ``max_grad_norm``, the gradient norm) is
    not finite: then raise :class:`NonFiniteLossError` (``on_nonfinite="raise"``) or skip the step (``"skip"``),
    before any parameter changes. With ``max_grad_norm`` the gradients are clipped to that total norm
    (:func:`torch.nn.utils.clip_grad_norm_`). ``step`` replaces ``optimizer.step()`` (e.g. a
    :class:`~gpytorch_vae.objectives.ScaledLossOptimizer` step with its exponent). Returns whether it stepped."""
    optimizer.zero_grad()
    if not bool(torch.isfinite(loss.detach())):
        if on_nonfinite == "skip":
            return False
        raise NonFiniteLossError(
            f"the loss is {loss.item()} (lower the learning rate, clip gradients with max_grad_norm, or pass "
            f"on_nonfinite='skip'); the step was not applied"
        )
    loss.backward()
    if max_grad_norm is not None:
        norm = torch.nn.utils.clip_grad_norm_(_grad_parameters(optimizer), max_grad_norm)
        if not bool(torch.isfinite(norm)):
            optimizer.zero_grad()
            if on_nonfinite == "skip":
                return False
            raise NonFiniteLossError(f"the gradient norm is {norm.item()}; the step was not applied")
    (step or optimizer.step)()
    return True


class Progress:
    """tqdm when installed, else a line every ``every`` seconds on stderr; ``update`` takes the texts to show."""

    def __init__(self, start: int, total: int, enabled: bool, desc: str = "epochs", every: float = 10.0):
        self.enabled, self.every, self.last = enabled, every, time.perf_counter()
        self.bar = None
        if enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, initial=start, desc=desc, mininterval=2.0)
        self.total = total

    def update(self, epoch: int, text: Mapping[str, str]) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(text)
        elif time.perf_counter() - self.last > self.every or epoch + 1 == self.total:
            self.last = time.perf_counter()
            print(f"epoch {epoch + 1}/{self.total} " + " ".join(f"{k}={v}" for k, v in text.items()), file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def set_data_epoch(data, epoch: int) -> Iterable:
    """The iterable of batches of pass ``epoch``: ``data(epoch)`` for a callable, else ``data``, with the epoch set on
    its sampler where it has ``set_epoch`` (:class:`~torch.utils.data.DistributedSampler`,
    :class:`~gpytorch_vae.distributed.ShardedBatchSampler`: a new order per epoch)."""
    if callable(data):
        try:
            takes_epoch = bool(inspect.signature(data).parameters)
        except (TypeError, ValueError):
            takes_epoch = False
        data = data(epoch) if takes_epoch else data()
    return _set_epoch(data, epoch)


def _iterate(batches, epoch: int) -> Iterable:
    """``run_epochs``' version: a callable is called without arguments."""
    return _set_epoch(batches() if callable(batches) else batches, epoch)


def _set_epoch(iterable, epoch: int) -> Iterable:
    for sampler in (iterable, getattr(iterable, "sampler", None), getattr(iterable, "batch_sampler", None)):
        inner = getattr(sampler, "sampler", None)
        for candidate in (sampler, inner):  # DistributedSampler, ShardedBatchSampler: a new order per epoch
            if hasattr(candidate, "set_epoch"):
                candidate.set_epoch(epoch)
    return iterable


def run_epochs(
    step: Callable[..., Mapping[str, float] | None],
    batches,
    epochs: int,
    state: Callable[[], dict],
    load_state: Callable[[dict], None],
    checkpoint: str | None = None,
    resume: bool = False,
    progress: bool = True,
    callback: Callable[[int, float], None] | None = None,
    device=None,
    extra_state: Mapping[str, Stateful] | None = None,
    is_writer: bool = True,
    history: dict | None = None,
    divergence_key: str | None = None,
    divergence_factor: float | None = 1e3,
    divergence_patience: int = 2,
) -> list[float]:
    """Run ``epochs`` epochs of ``step(*batch)`` over ``batches`` (an iterable, e.g. a
    :class:`~torch.utils.data.DataLoader`, or a callable giving one per epoch).

    ``step`` returns ``{"loss": ..., other logged values}`` (or ``None`` for a skipped step); the mean of each over
    the epoch goes to the progress output. After every epoch a checkpoint holds ``state()``, ``extra_state``'s
    ``state_dict()``, the epoch, the per-epoch history and torch's RNG state, written atomically, so a resumed run
    continues exactly as an uninterrupted one would (same data stream, same random draws, complete history).

    :param resume: continue from ``checkpoint`` when it exists; a checkpoint with more epochs than ``epochs`` is an
        error (it would be mislabelled), an equal number trains nothing.
    :param callback: ``callback(epoch, mean_loss)`` after each epoch (before the checkpoint).
    :param device: every tensor of a batch is moved there.
    :param is_writer: whether this process writes checkpoints (rank 0 in distributed training).
    :param history: a dict to fill with the per-epoch means of every logged value over the whole run (resumed
        epochs included), e.g. for learning curves, each epoch's wall time (``"seconds"``) and the index of the call
        (sitting) that ran it (``"sitting"``); :func:`epoch_timing` summarises the times.
    :param divergence_key, divergence_factor, divergence_patience: the signed :class:`DivergenceGuard` on the
        logged value ``divergence_key`` (a loss to minimise); ``None``: no check.
    :return: the mean loss of each epoch run by this call.
    """
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    start = 0
    guard = DivergenceGuard(divergence_key, divergence_factor if divergence_key else None, divergence_patience)
    history = {} if history is None else history
    history.clear()
    extra_state = dict(extra_state or {})
    if resume and checkpoint:
        saved = load_checkpoint(checkpoint) if os.path.exists(checkpoint) else None  # no file: a fresh run
        if saved is not None:
            if saved["epoch"] > epochs:
                raise ValueError(
                    f"checkpoint {checkpoint} holds {saved['epoch']} epochs, more than the {epochs} asked for: pass "
                    f"at least {saved['epoch']} epochs to continue it, or resume=False to start afresh"
                )
            load_state(saved)
            for name, obj in extra_state.items():
                obj.load_state_dict(saved["extra"][name])
            start = saved["epoch"]
            if saved.get("divergence") is not None:
                guard.load_state_dict(saved["divergence"])
            history.update(saved.get("history", {}))
            torch.set_rng_state(saved["rng_state"])
    losses = []
    sitting = max(history.get("sitting", [-1.0]), default=-1.0) + 1  # which call of a resumed run: see epoch_timing
    bar = Progress(start, epochs, progress)
    try:
        for epoch in range(start, epochs):
            logs, skipped, started = [], 0, time.perf_counter()
            for batch in _iterate(batches, epoch):
                if device is not None:
                    batch = tuple(t.to(device) if isinstance(t, torch.Tensor) else t for t in batch)
                log = step(*batch)
                if log is None:
                    skipped += 1
                else:
                    logs.append(log)
            if not logs:
                raise RuntimeError(f"epoch {epoch + 1}: no batch was trained on (no batches, or every step skipped)")
            means = {key: math.fsum(log[key] for log in logs) / len(logs) for key in logs[0]}
            if skipped:
                means["skipped_steps"] = float(skipped)
            if divergence_key is not None:
                guard.check(
                    means[divergence_key], epoch + 1, checkpoint if is_writer else None, logs[0][divergence_key]
                )
            for key, value in means.items():
                history.setdefault(key, []).append(value)
            history.setdefault("seconds", []).append(time.perf_counter() - started)
            history.setdefault("sitting", []).append(float(sitting))
            losses.append(means["loss"])
            bar.update(epoch, {key: f"{value:.4g}" for key, value in means.items()})
            if callback is not None:
                callback(epoch, means["loss"])
            if checkpoint and is_writer:
                saved = {**state(), "epoch": epoch + 1, "history": history, "rng_state": torch.get_rng_state(),
                         "divergence": guard.state_dict()}  # fmt: skip
                saved["extra"] = {name: obj.state_dict() for name, obj in extra_state.items()}
                save_checkpoint(saved, checkpoint)
    finally:
        bar.close()
    return losses


def epoch_timing(history: Mapping[str, list]) -> dict[str, float | None]:
    """Summarise the epoch wall times of a run's ``history`` (as filled by :func:`run_epochs`), over every sitting of
    a resumed run.

    The first epoch of each sitting carries one-off costs (``torch.compile``, cold caches) and is left out of the
    steady-state median. Epochs from histories written before sittings were recorded count as one sitting.

    :return: ``seconds_per_epoch`` (median of the steady epochs; of all epochs when every epoch began a sitting),
        ``first_epoch_seconds`` (the run's first epoch), ``warmup_seconds`` (median over sittings of the first epoch's
        excess over the steady median, at least 0; ``None`` without steady epochs) and ``epochs_timed``; every value
        ``None`` when no epoch was timed.
    """
    seconds = [float(t) for t in history.get("seconds", [])]
    if not seconds:
        return {"seconds_per_epoch": None, "first_epoch_seconds": None, "warmup_seconds": None, "epochs_timed": 0}
    labels = [float(s) for s in history.get("sitting", [])]
    labels = [-1.0] * (len(seconds) - len(labels)) + labels  # epochs of an older history: one sitting
    starts = [i == 0 or labels[i] != labels[i - 1] for i in range(len(seconds))]
    steady = [t for t, first in zip(seconds, starts) if not first]
    warmup = None
    if steady:
        median = statistics.median(steady)
        warmup = max(0.0, statistics.median(t for t, first in zip(seconds, starts) if first) - median)
    return {
        "seconds_per_epoch": statistics.median(steady or seconds),
        "first_epoch_seconds": seconds[0],
        "warmup_seconds": warmup,
        "epochs_timed": len(seconds),
    }
