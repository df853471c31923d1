"""The epoch loop shared by every trainer: progress output, finite-loss guard, checkpoints, exact resume."""

from __future__ import annotations

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
    """An epoch's mean of the watched value (e.g. the loss) exceeded its first step's by the divergence factor;
    the epoch was not checkpointed."""


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


class _Progress:
    """tqdm when installed, else a line every ``every`` seconds on stderr."""

    def __init__(self, start: int, total: int, enabled: bool, every: float = 10.0):
        self.enabled, self.every, self.last = enabled, every, time.perf_counter()
        self.bar = None
        if enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, initial=start, desc="epochs", mininterval=2.0)
        self.total = total

    def update(self, epoch: int, means: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        text = {key: f"{value:.4g}" for key, value in means.items()}
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(text)
        elif time.perf_counter() - self.last > self.every or epoch + 1 == self.total:
            self.last = time.perf_counter()
            print(f"epoch {epoch + 1}/{self.total} " + " ".join(f"{k}={v}" for k, v in text.items()), file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _iterate(batches, epoch: int) -> Iterable:
    iterable = batches() if callable(batches) else batches
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
    :param divergence_key, divergence_factor: when an epoch's mean of the logged value ``divergence_key`` exceeds
        ``divergence_factor`` times the magnitude of its value at the run's first step (before any update), raise
        :class:`DivergenceError` before that epoch is checkpointed (e.g. ``--lr 10``). ``None``: no check.
    :return: the mean loss of each epoch run by this call.
    """
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    start, reference = 0, None
    history = {} if history is None else history
    history.clear()
    extra_state = dict(extra_state or {})
    if resume and checkpoint:
        saved = load_checkpoint(checkpoint) if os.path.exists(checkpoint) else None  # no file: a fresh run
        if saved is not None:
            if saved["epoch"] > epochs:
                raise ValueError(
                    f"checkpoint {checkpoint} holds {saved['epoch']} epochs, more than the {epochs} asked for: pass "
                    f"at least {saved['epoch']} epochs to continue it, or drop --resume to start afresh"
                )
            load_state(saved)
            for name, obj in extra_state.items():
                obj.load_state_dict(saved["extra"][name])
            start, reference = saved["epoch"], saved.get("divergence_reference")
            history.update(saved.get("history", {}))
            torch.set_rng_state(saved["rng_state"])
    losses = []
    sitting = max(history.get("sitting", [-1.0]), default=-1.0) + 1  # which call of a resumed run: see epoch_timing
    bar = _Progress(start, epochs, progress)
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
            if divergence_key is not None and divergence_factor is not None:
                if reference is None:
                    reference = abs(logs[0][divergence_key])
                value = means[divergence_key]
                if abs(value) > divergence_factor * max(reference, 1e-12):
                    raise DivergenceError(
                        f"epoch {epoch + 1}: the mean {divergence_key} is {value:.4g}, more than {divergence_factor:g} "
                        f"times its first value ({reference:.4g}): training diverged (lower the learning rate, or "
                        f"clip gradients with max_grad_norm); the last good checkpoint was kept"
                    )
            for key, value in means.items():
                history.setdefault(key, []).append(value)
            history.setdefault("seconds", []).append(time.perf_counter() - started)
            history.setdefault("sitting", []).append(float(sitting))
            losses.append(means["loss"])
            bar.update(epoch, means)
            if callback is not None:
                callback(epoch, means["loss"])
            if checkpoint and is_writer:
                saved = {**state(), "epoch": epoch + 1, "history": history, "rng_state": torch.get_rng_state(),
                         "divergence_reference": reference}  # fmt: skip
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
