"""The callbacks of :func:`~gpytorch_vae.training.fit`: what a run does besides its steps (progress output, the
divergence guard, checkpoints with exact resume, a scheduler, gradient clipping, skipping non-finite steps, GECO's
multiplier update, evaluations during training)."""

from __future__ import annotations

import os
import statistics
import sys
import time
from typing import TYPE_CHECKING, Any, Callable, Mapping

import torch

from ..objectives.geco import GECO
from ..objectives.loss_scaling import ScaledLossOptimizer
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint

if TYPE_CHECKING:
    from .fit import FitState

CHECKPOINT_FORMAT = 4


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss (or gradient norm); nothing of that step was applied or written."""


class DivergenceError(RuntimeError):
    """The watched value (e.g. the loss) stayed far above its best for several epochs (:class:`DivergenceGuard`);
    the epoch that showed it was not checkpointed."""


class Callback:
    """Hooks of :func:`~gpytorch_vae.training.fit`; override what you need. Each gets the run's
    :class:`~gpytorch_vae.training.FitState`. A callback with ``state_dict``/``load_state_dict`` has its state
    checkpointed and restored with the run (by :class:`Checkpoint`).

    Per step (only the hooks a callback overrides are called): :meth:`on_before_step` after the backward pass,
    :meth:`on_after_step` after the optimizer step. Per epoch (or log period of ``log_every`` steps):
    :meth:`on_epoch_end` with the epoch's mean logs; a callback ends the run after it by setting ``state.stop =
    True`` (early stopping). :attr:`order` sorts the callbacks (stable): the divergence guard first (-1), checkpoints
    last (1), the others (0) in the order given.
    """

    order = 0

    def on_fit_start(self, state: FitState) -> None:
        """Before the first step of this call, after a resume has restored everything."""

    def on_before_step(self, state: FitState, terms, logs: Mapping[str, float]) -> None:
        """After the backward pass of ``terms.loss`` (its logged values: ``logs``), before the optimizer step (e.g.
        to clip gradients); raising :class:`NonFiniteLossError` skips or stops the step before anything changes."""

    def on_after_step(self, state: FitState, terms, logs: Mapping[str, float]) -> None:
        """After the optimizer step of ``terms`` (its logged values: ``logs``)."""

    def on_epoch_end(self, state: FitState, logs: Mapping[str, float]) -> None:
        """After epoch ``state.epoch`` (1 for the first; or log period of ``log_every`` steps), with its mean
        ``logs`` (already in ``state.history``), before the checkpoint is written."""

    def on_nonfinite(self, state: FitState, error: NonFiniteLossError) -> bool:
        """A step's loss or gradient norm was not finite (nothing of the step was applied): return True to skip
        the step and go on; by default the run stops with ``error``."""
        return False

    def on_fit_end(self, state: FitState) -> None:
        """After the last step of this call."""


class ProgressBar(Callback):
    """tqdm when installed, else a line every ``every`` seconds on stderr: the objective's
    :meth:`~gpytorch_vae.objectives.Objective.progress` of each epoch's mean logs. :func:`fit` adds one with
    ``progress=True`` (in the writing process only)."""

    def __init__(self, every: float = 10.0):
        self.every, self.bar, self.last = every, None, time.perf_counter()

    def on_fit_start(self, state: FitState) -> None:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return
        unit = "epochs" if state.log_every is None else f"x{state.log_every} steps"
        self.bar = tqdm(total=state.epochs, initial=state.epoch, desc=unit, mininterval=2.0)

    def on_epoch_end(self, state: FitState, logs: Mapping[str, float]) -> None:
        text = state.objective.progress(dict(logs))
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(text)
        elif time.perf_counter() - self.last > self.every or state.epoch == state.epochs:
            self.last = time.perf_counter()
            line = " ".join(f"{key}={value}" for key, value in text.items())
            print(f"epoch {state.epoch}/{state.epochs} {line}", file=sys.stderr)

    def on_fit_end(self, state: FitState) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class DivergenceGuard(Callback):
    """Signed divergence guard on the objective's watched value (:attr:`Objective.watch
    <gpytorch_vae.objectives.Objective.watch>`, a value to minimise): the run has diverged when, for ``patience``
    consecutive epochs, its mean exceeds the best so far (the run's first step included) by more than ``factor``
    times the larger of the best and the first values' magnitudes; :class:`DivergenceError` is raised before that
    epoch is checkpointed. A loss that improves (e.g. from 1 to -1500) never trips it, nor does one bad epoch that
    recovers. :func:`fit` adds ``DivergenceGuard()`` unless one is given; ``DivergenceGuard(None)`` turns it off.

    :param factor: the tolerated excess (default 1e3); ``None``: no guard.
    :param patience: the bad epochs in a row that stop the run.
    """

    order = -1

    def __init__(self, factor: float | None = 1e3, patience: int = 2):
        self.factor, self.patience = factor, int(patience)
        self.first, self.best, self.strikes = None, None, 0

    def check(self, key: str, value: float, epoch: int, checkpoint: str | None, first_step: float | None = None):
        """Check epoch ``epoch``'s mean ``value`` of ``key``; ``first_step``: the run's first step's value."""
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
                f"period {epoch}: the mean {key} is {value:.4g}, above its best ({self.best:.4g}) by more than "
                f"{self.factor:g} times {scale:.4g} for {self.patience} periods in a row: training diverged (lower the "
                f"learning rate, or clip gradients with ClipGradients){kept}"
            )

    def on_epoch_end(self, state: FitState, logs: Mapping[str, float]) -> None:
        key = state.objective.watch
        self.check(key, logs[key], state.epoch, state.checkpoint_path, state.period_logs[0][key])

    def state_dict(self) -> dict:
        return {"first": self.first, "best": self.best, "strikes": self.strikes}

    def load_state_dict(self, state: dict) -> None:
        self.first, self.best, self.strikes = state["first"], state["best"], state["strikes"]


class ClipGradients(Callback):
    """Clip the gradients to a total norm of ``max_norm`` (:func:`torch.nn.utils.clip_grad_norm_`) before each
    optimizer step; a non-finite norm raises :class:`NonFiniteLossError` (the step is not applied)."""

    def __init__(self, max_norm: float):
        if not max_norm > 0:
            raise ValueError(f"max_norm must be positive, got {max_norm}")
        self.max_norm = float(max_norm)

    def on_before_step(self, state: FitState, terms, logs: Mapping[str, float]) -> None:
        parameters = [p for group in state.optimizer.param_groups for p in group["params"] if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(parameters, self.max_norm)
        if not bool(torch.isfinite(norm)):
            raise NonFiniteLossError(f"the gradient norm is {norm.item()}; the step was not applied")


class SkipNonFinite(Callback):
    """Skip a step whose loss or gradient norm is not finite instead of stopping the run; the epoch's logs count
    the skipped steps (``skipped_steps``)."""

    def on_nonfinite(self, state: FitState, error: NonFiniteLossError) -> bool:
        return True


class Scheduler(Callback):
    """Steps a learning-rate scheduler after each epoch (or log period), checkpointed with the run.

    :param scheduler: a factory ``optimizer -> scheduler`` (called when the run starts) or a scheduler.
    """

    def __init__(self, scheduler):
        self.factory, self.scheduler, self._saved = scheduler, None, None

    def on_fit_start(self, state: FitState) -> None:
        made = callable(self.factory) and not hasattr(self.factory, "step")
        self.scheduler = self.factory(state.optimizer) if made else self.factory
        if self._saved is not None:
            self.scheduler.load_state_dict(self._saved)

    def on_epoch_end(self, state: FitState, logs: Mapping[str, float]) -> None:
        self.scheduler.step()

    def state_dict(self) -> dict:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self._saved = state  # applied when the scheduler is made (a resume restores before the run starts)


class GECOUpdate(Callback):
    r"""GECO's multiplier update as a :func:`fit` callback: before each optimizer step, Adam's moments are brought
    to the scale :math:`2^{-e}` of the step's loss (:class:`~gpytorch_vae.objectives.ScaledLossOptimizer`, so the
    updates are those of the unscaled objective); after it, :meth:`GECO.update
    <gpytorch_vae.objectives.GECO.update>` commits the moving average and sets :math:`\lambda`. :func:`fit` adds one
    for an objective with a ``geco`` (e.g. :class:`~gpytorch_vae.objectives.GECOObjective`) unless one is given.

    :param geco: the :class:`~gpytorch_vae.objectives.GECO` of the objective.
    """

    def __init__(self, geco: GECO):
        self.geco, self.scaled, self._saved = geco, None, None

    def on_fit_start(self, state: FitState) -> None:
        self.scaled = ScaledLossOptimizer(state.optimizer)
        if self._saved is not None:
            self.scaled.exponent, self.scaled.base_eps = int(self._saved["exponent"]), list(self._saved["base_eps"])

    def on_before_step(self, state: FitState, terms, logs: Mapping[str, float]) -> None:
        self.scaled.rescale(terms.loss_exponent)

    def on_after_step(self, state: FitState, terms, logs: Mapping[str, float]) -> None:
        self.geco.update(logs.get("constraint_ma"))

    def state_dict(self) -> dict:
        return {"exponent": self.scaled.exponent, "base_eps": self.scaled.base_eps}

    def load_state_dict(self, state: dict) -> None:
        self._saved = state


class Evaluation(Callback):
    """Calls ``fn(state)`` every ``every`` epochs (or log periods) and keeps what it returns (a dict of values,
    e.g. a test MSE or a kernel's lengthscale) with the epoch and step in :attr:`points`, for learning curves:
    reported, never used by training. ``fn`` runs on a forked RNG, so training draws the same random numbers with or
    without it, under :func:`torch.no_grad`, and only in the writing process (rank 0). The points are checkpointed,
    so a resumed run has the whole curve.

    :param fn: the evaluation.
    :param every: its period (0: never).
    """

    def __init__(self, fn: Callable[[FitState], Mapping[str, Any]], every: int = 1):
        if every < 0:
            raise ValueError(f"every must be >= 0, got {every}")
        self.fn, self.every = fn, int(every)
        self.points: list[dict] = []

    def on_epoch_end(self, state: FitState, logs: Mapping[str, float]) -> None:
        if self.every and state.epoch % self.every == 0 and state.is_writer:
            with torch.random.fork_rng(), torch.no_grad():
                values = dict(self.fn(state))
            self.points.append({"epoch": state.epoch, "step": state.step, **values})

    def state_dict(self) -> dict:
        return {"points": self.points}

    def load_state_dict(self, state: dict) -> None:
        self.points = list(state["points"])


class Checkpoint(Callback):
    """Writes the run to ``path`` after each epoch (or log period), atomically: the objective (model and its own
    state, e.g. GECO's multiplier), the optimizer, every stateful callback, a stateful data stream, the data
    position, torch's RNG state and the history, so that a run resumed from it continues exactly as an uninterrupted
    run would. Only the writing process (rank 0) writes.

    :param path: the checkpoint file.
    :param resume: continue from ``path`` when it exists (a run with more epochs or steps than asked is refused).
    :param run_config: the settings that define the run (seed, model, batch size, ...): stored, and a resume with
        other values is refused (:class:`~gpytorch_vae.training.CheckpointError`), as is one whose model has other
        tensors.
    """

    order = 1

    def __init__(self, path: str, resume: bool = False, run_config: Mapping[str, Any] | None = None):
        self.path, self.resume, self.run_config = os.fspath(path), bool(resume), run_config

    def restore(self, state: FitState) -> None:
        """Restore the run from :attr:`path` (with ``resume``, when it exists); :func:`fit` calls it before any
        :meth:`on_fit_start`."""
        if state.is_writer:
            state.checkpoint_path = self.path
        if not (self.resume and os.path.exists(self.path)):
            return
        saved = load_checkpoint(self.path)
        if saved.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"checkpoint {self.path} was written by another version of gpytorch-vae (format "
                                  f"{saved.get('format', 'unknown')}): start afresh in another folder")  # fmt: skip
        _check_config(saved.get("run_config"), self.run_config, self.path)
        _check_structure(saved["objective"], state.objective.state_dict(), self.path)
        unit = "epochs" if state.log_every is None else "steps"
        done, total = (saved["epoch"], state.epochs) if unit == "epochs" else (saved["step"], state.total_steps)
        if done > total:
            raise ValueError(f"checkpoint {self.path} holds {done} {unit}, more than the {total} asked for: ask for at "
                             f"least {done} to continue it, or start afresh")  # fmt: skip
        state.objective.load_state_dict(saved["objective"])
        state.optimizer.load_state_dict(saved["optimizer"])
        for name, obj in state.stateful.items():
            if name in saved["state"]:
                obj.load_state_dict(saved["state"][name])
        state.history.update(saved["history"])
        state.epoch, state.step = saved["epoch"], saved["step"]
        state.data_position.update(saved["data_position"])
        torch.set_rng_state(saved["rng_state"])

    def on_epoch_end(self, state: FitState, logs: Mapping[str, float]) -> None:
        if not state.is_writer:
            return
        save_checkpoint({
            "format": CHECKPOINT_FORMAT, "epoch": state.epoch, "step": state.step,
            "objective": state.objective.state_dict(), "optimizer": state.optimizer.state_dict(),
            "state": {name: obj.state_dict() for name, obj in state.stateful.items()}, "history": state.history,
            "data_position": dict(state.data_position), "run_config": self.run_config,
            "rng_state": torch.get_rng_state(),
        }, self.path)  # fmt: skip


def _structure(state: Mapping[str, Any]) -> dict[str, tuple]:
    return {key: tuple(value.shape) for key, value in state.items() if isinstance(value, torch.Tensor)}


def _check_structure(saved: Mapping, current: Mapping, path: str) -> None:
    saved_shapes, current_shapes = _structure(saved), _structure(current)
    if saved_shapes == current_shapes:
        return
    missing = sorted(set(current_shapes) - set(saved_shapes))
    extra = sorted(set(saved_shapes) - set(current_shapes))
    resized = [k for k in sorted(set(saved_shapes) & set(current_shapes)) if saved_shapes[k] != current_shapes[k]]
    details = []
    if resized:
        k = resized[0]
        details.append(f"{len(resized)} tensors of another shape, e.g. {k} {saved_shapes[k]} in the checkpoint vs "
                       f"{current_shapes[k]} now")  # fmt: skip
    if missing:
        details.append(f"{len(missing)} tensors missing from it, e.g. {missing[0]}")
    if extra:
        details.append(f"{len(extra)} tensors this model does not have, e.g. {extra[0]}")
    raise CheckpointError(
        f"checkpoint {path} holds another model ({'; '.join(details)}): it was written by a run with other settings "
        f"(model, latent size, inducing points...). Resume with the settings that wrote it, or start afresh elsewhere."
    )


def _check_config(saved: Mapping | None, current: Mapping | None, path: str) -> None:
    if not current:
        return
    saved = saved or {}
    differences = [
        f"{key}: {saved.get(key, '(not recorded)')!r} in the checkpoint, {value!r} now"
        for key, value in current.items()
        if key in saved and saved[key] != value or key not in saved and saved
    ]
    if differences:
        raise CheckpointError(
            f"checkpoint {path} was written by a run with other settings ({'; '.join(differences)}): resuming would "
            f"mix two runs. Resume with the same settings, or start afresh in another folder."
        )


def epoch_timing(history: Mapping[str, list]) -> dict[str, float | None]:
    """Summarise the epoch wall times of a run's ``history`` (as :func:`~gpytorch_vae.training.fit` fills it), over
    every sitting (call) of a resumed run.

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
