"""``fit``: train an objective on data, in the manner of BoTorch's ``fit_gpytorch_mll``, with progress output,
guarded steps, callbacks, crash-safe checkpoints and exact resume."""

from __future__ import annotations

import functools
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch

from ..objectives.base import Objective, ObjectiveTerms, num_data_of
from ..objectives.elbo import FROM_DATA
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .loop import NONFINITE, DivergenceGuard, Progress, guarded_step, set_data_epoch

CHECKPOINT_FORMAT = 3
# torch < 2.4 accepts fused=True for CPU parameters but has no CPU kernel for the step
_FUSED_ADAM_ON_CPU = tuple(int(v) for v in torch.__version__.split(".")[:2]) >= (2, 4)


def adam(parameters, lr: float = 1e-3) -> torch.optim.Adam:
    """:class:`torch.optim.Adam` with its fused implementation where the parameters' devices support it (CPU and
    CUDA: one kernel for all parameters, about 4x faster than the default for the rotated-MNIST models on one CPU
    thread), else the default one. The update is Adam's either way. ``parameters`` may be parameter groups (dicts
    with their own ``lr``, e.g. :func:`prior_parameter_groups`)."""
    parameters = list(parameters)
    tensors = [p for group in parameters for p in (group["params"] if isinstance(group, dict) else [group])]
    if any(p.device.type == "cpu" for p in tensors) and not _FUSED_ADAM_ON_CPU:
        return torch.optim.Adam(parameters, lr=lr)
    try:
        return torch.optim.Adam(parameters, lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(parameters, lr=lr)


def prior_parameter_groups(model: torch.nn.Module, lr: float, prior_lr: float) -> list[dict]:
    """Optimizer parameter groups of a :class:`~gpytorch_vae.models.GPVAE`: the latent prior's trainable parameters
    (kernel hyperparameters, inducing points, GP-LVM vectors) at ``prior_lr``, the rest (networks, likelihood) at
    ``lr``; e.g. ``fit(..., optimizer=lambda _: adam(prior_parameter_groups(vae, 1e-3, 1e-2)))``."""
    prior = {id(p) for p in model.latent_prior.parameters()}
    trainable = trainable_parameters(model)
    groups = [{"params": [p for p in trainable if id(p) not in prior], "lr": lr},
              {"params": [p for p in trainable if id(p) in prior], "lr": prior_lr}]  # fmt: skip
    return [group for group in groups if group["params"]]


def trainable_parameters(module: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The parameters of ``module`` that require gradients (frozen ones, e.g. a fixed lengthscale, stay out)."""
    return [p for p in module.parameters() if p.requires_grad]


@dataclass
class FitState:
    """Where a :func:`fit` run stands, as callbacks see it: ``epoch`` (passes over the data, or log periods of
    ``log_every`` steps, completed), ``step`` (optimizer steps), the whole run's ``history`` (per-period means of
    every logged value, ``seconds`` and ``sitting``), and the objects being trained."""

    objective: Objective
    optimizer: Any
    scheduler: Any = None
    epoch: int = 0
    step: int = 0
    history: dict = field(default_factory=dict)
    is_writer: bool = True


class Callback:
    """Hooks of :func:`fit`; override what you need. A callback with ``state_dict``/``load_state_dict`` (e.g. an
    evaluation trace) has its state checkpointed and restored with the run."""

    def on_fit_start(self, state: FitState) -> None:
        """Before the first step of this call (after a resume has restored everything)."""

    def on_log(self, state: FitState, logs: Mapping[str, float]) -> None:
        """After each epoch (or ``log_every`` steps), with its mean logs, before the checkpoint is written."""

    def on_fit_end(self, state: FitState) -> None:
        """After the last step of this call."""


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

    def on_log(self, state: FitState, logs: Mapping[str, float]) -> None:
        if self.every and state.epoch % self.every == 0 and state.is_writer:
            with torch.random.fork_rng(), torch.no_grad():
                values = dict(self.fn(state))
            self.points.append({"epoch": state.epoch, "step": state.step, **values})

    def state_dict(self) -> dict:
        return {"points": self.points}

    def load_state_dict(self, state: dict) -> None:
        self.points = list(state["points"])


@dataclass
class FitResult:
    """What :func:`fit` returns: the whole run's ``history`` and the ``losses`` of the periods this call ran (mean
    loss of each), with the ``optimizer`` and ``scheduler`` it used."""

    history: dict
    losses: list
    optimizer: Any
    scheduler: Any


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


def train_step(objective: Objective, optimizer, batch, max_grad_norm: float | None = None,
               on_nonfinite: str = "raise", forward=None) -> ObjectiveTerms | None:  # fmt: skip
    """One training step, as :func:`fit` takes it: ``terms = objective(*batch)`` (through ``forward``, e.g. the
    objective in DDP, when given), a guarded backward pass (:func:`~gpytorch_vae.training.guarded_step`) and
    ``objective.step(optimizer, terms)``. Returns the terms, or ``None`` for a skipped step. ``optimizer`` is the one
    :meth:`Objective.prepare_optimizer` gave."""
    terms: ObjectiveTerms = (objective if forward is None else forward)(*batch)
    if not guarded_step(terms.loss, optimizer, max_grad_norm, on_nonfinite, lambda: objective.step(optimizer, terms)):
        return None
    return terms


def _optimizer_factory(optimizer, lr: float | None):
    if optimizer is None:
        return functools.partial(adam, lr=1e-3 if lr is None else lr)
    if lr is not None:
        raise ValueError("pass lr either to fit or inside the optimizer (factory), not both")
    return optimizer


def _stateful(obj) -> bool:
    return hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict")


def fit(
    objective: Objective,
    data,
    *,
    epochs: int | None = None,
    steps: int | None = None,
    log_every: int | None = None,
    optimizer: Callable | torch.optim.Optimizer | None = None,
    lr: float | None = None,
    scheduler: Callable | None = None,
    callbacks: Sequence[Callback] = (),
    checkpoint: str | None = None,
    resume: bool = False,
    run_config: Mapping[str, Any] | None = None,
    progress: bool = True,
    device=None,
    max_grad_norm: float | None = None,
    on_nonfinite: str = "raise",
    divergence_factor: float | None = 1e3,
    divergence_patience: int = 2,
    state: Mapping[str, Any] | None = None,
    is_writer: bool | None = None,
) -> FitResult:
    r"""Train ``objective`` (e.g. :class:`~gpytorch_vae.objectives.ELBO` or
    :class:`~gpytorch_vae.objectives.GECOObjective` of a :class:`~gpytorch_vae.models.GPVAE`) on ``data``.

    Each step: ``terms = objective(*batch)``, a guarded backward pass of ``terms.loss`` (a non-finite loss or
    gradient norm raises :class:`~gpytorch_vae.training.NonFiniteLossError` before anything changes, or skips the
    step), optional gradient clipping, ``objective.step(optimizer, terms)``. After each epoch (or ``log_every``
    steps) the mean logs go to the progress output, the history, the callbacks and the scheduler, and a checkpoint
    (objective, optimizer, scheduler, callbacks, ``state`` objects, data position, RNG state, history) is written
    atomically, so ``resume`` continues exactly as an uninterrupted run would.

    :param objective: an :class:`~gpytorch_vae.objectives.Objective`; one whose ``num_data`` was left out gets the
        data set's length (``len(data.dataset)``).
    :param data: batches (tuples of tensors): an iterable such as a :class:`~torch.utils.data.DataLoader` (set to
        the next epoch when it has a sampler with ``set_epoch``), a callable giving one per epoch (called with
        the epoch index when it takes an argument), or, with
        ``steps``, an endless stream. A ``data`` with ``state_dict``/``load_state_dict`` (e.g.
        :class:`~gpytorch_vae.data.MovingBallStream`) is checkpointed too.
    :param epochs: passes over ``data`` in all (a resumed run continues up to it); or
    :param steps: optimizer steps in all, logged and checkpointed every ``log_every`` steps (default 100).
    :param optimizer: a factory ``parameters -> optimizer`` (default: Adam, :func:`adam`) or an optimizer.
    :param lr: learning rate of the default Adam.
    :param scheduler: a factory ``optimizer -> scheduler`` (stepped after each epoch / log period), or a scheduler.
    :param callbacks: :class:`Callback` objects.
    :param checkpoint: file to write after each period; with ``resume``, continue from it when it exists.
    :param run_config: the settings that define the run (seed, model, batch size, ...): stored in the checkpoint;
        resuming with different values is refused (:class:`~gpytorch_vae.training.CheckpointError`).
    :param device: every tensor of a batch is moved there.
    :param max_grad_norm: clip the gradients to this total norm.
    :param on_nonfinite: ``"raise"`` or ``"skip"``.
    :param divergence_factor, divergence_patience: the signed divergence guard on the objective's watched value
        (:attr:`Objective.watch`): raise :class:`~gpytorch_vae.training.DivergenceError` when its period mean stays
        above its best by more than ``divergence_factor`` times its magnitude for ``divergence_patience`` periods.
        ``None``: no guard.
    :param state: more objects to checkpoint (``name -> object with state_dict/load_state_dict``).
    :param is_writer: whether this process writes checkpoints and shows progress (default: rank 0).
    :return: a :class:`FitResult`.
    """
    if (epochs is None) == (steps is None):
        raise ValueError("pass exactly one of epochs and steps")
    total = epochs if epochs is not None else steps
    if isinstance(total, bool) or not isinstance(total, int) or total < 0:
        raise ValueError(f"epochs/steps must be a non-negative integer, got {total!r}")
    if steps is not None:
        log_every = 100 if log_every is None else int(log_every)
        if log_every < 1 or steps % log_every:
            raise ValueError(f"steps ({steps}) must be a multiple of log_every ({log_every})")
    elif log_every is not None:
        raise ValueError("log_every applies to steps; with epochs, logs come once per epoch")
    if on_nonfinite not in NONFINITE:
        raise ValueError(f"on_nonfinite must be one of {NONFINITE}, got {on_nonfinite!r}")
    if max_grad_norm is not None and not max_grad_norm > 0:
        raise ValueError(f"max_grad_norm must be positive, got {max_grad_norm}")
    if lr is not None and not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive finite number, got {lr}")
    if getattr(objective, "num_data", None) == FROM_DATA:
        length = num_data_of(data)
        if length is None:
            raise ValueError("the objective's num_data was left out and the data has no length: pass num_data")
        objective.num_data = length
    ranks = getattr(objective, "ranks", None)
    if is_writer is None:
        is_writer = ranks is None or ranks.rank == 0

    parameters = trainable_parameters(objective)
    factory = _optimizer_factory(optimizer, lr)
    opt = factory if isinstance(factory, torch.optim.Optimizer) else factory(parameters)
    opt = objective.prepare_optimizer(opt)
    inner = getattr(opt, "optimizer", opt)
    sched = scheduler(inner) if callable(scheduler) and not hasattr(scheduler, "step") else scheduler
    forward = objective
    if ranks is not None:  # DDP averages the ranks' gradients during the backward pass
        from ..distributed import data_parallel

        forward = data_parallel(objective, device)

    named_state = dict(state or {})
    if _stateful(data) and not callable(data):
        named_state.setdefault("data", data)
    for i, callback in enumerate(callbacks):
        if _stateful(callback):
            named_state.setdefault(f"callback_{i}", callback)
    fit_state = FitState(objective, opt, sched, is_writer=is_writer)
    divergence = DivergenceGuard(objective.watch, divergence_factor, divergence_patience)
    data_position = {"pass": 0, "batch": 0, "rng_at_pass": None}

    if resume and checkpoint and os.path.exists(checkpoint):
        saved = load_checkpoint(checkpoint)
        if saved.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"checkpoint {checkpoint} was written by another version of gpytorch-vae (format "
                                  f"{saved.get('format', 'unknown')}): start afresh in another folder")  # fmt: skip
        _check_config(saved.get("run_config"), run_config, checkpoint)
        _check_structure(saved["objective"], objective.state_dict(), checkpoint)
        done = saved["epoch"] if epochs is not None else saved["step"]
        if done > total:
            raise ValueError(
                f"checkpoint {checkpoint} holds {done} {'epochs' if epochs is not None else 'steps'}, more than the "
                f"{total} asked for: ask for at least {done} to continue it, or start afresh"
            )
        objective.load_state_dict(saved["objective"])
        opt.load_state_dict(saved["optimizer"])
        if sched is not None and saved.get("scheduler") is not None:
            sched.load_state_dict(saved["scheduler"])
        for name, obj in named_state.items():
            if name in saved["state"]:
                obj.load_state_dict(saved["state"][name])
        divergence.load_state_dict(saved["divergence"])
        fit_state.history.update(saved["history"])
        fit_state.epoch, fit_state.step = saved["epoch"], saved["step"]
        data_position.update(saved["data_position"])
        torch.set_rng_state(saved["rng_state"])

    def write_checkpoint() -> None:
        if not (checkpoint and is_writer):
            return
        save_checkpoint({
            "format": CHECKPOINT_FORMAT, "epoch": fit_state.epoch, "step": fit_state.step,
            "objective": objective.state_dict(),
            "optimizer": opt.state_dict(), "scheduler": None if sched is None else sched.state_dict(),
            "state": {name: obj.state_dict() for name, obj in named_state.items()}, "history": fit_state.history,
            "divergence": divergence.state_dict(), "data_position": dict(data_position), "run_config": run_config,
            "rng_state": torch.get_rng_state(),
        }, checkpoint)  # fmt: skip

    def one_step(batch) -> dict | None:
        if device is not None:
            batch = tuple(t.to(device) if isinstance(t, torch.Tensor) else t for t in batch)
        terms = train_step(objective, opt, batch, max_grad_norm, on_nonfinite, forward)
        if terms is None:
            return None
        fit_state.step += 1
        return terms.logs()

    periods = epochs if epochs is not None else steps // log_every
    sitting = max(fit_state.history.get("sitting", [-1.0]), default=-1.0) + 1
    bar = Progress(fit_state.epoch, periods, progress and is_writer, "epochs" if epochs is not None else
                   f"x{log_every} steps")  # fmt: skip
    losses = []
    batches = _Batches(data, data_position, epochs is not None)
    for callback in callbacks:
        callback.on_fit_start(fit_state)
    try:
        while fit_state.epoch < periods:
            logs, skipped, started = [], 0, time.perf_counter()
            for batch in batches.period(log_every):
                log = one_step(batch)
                if log is None:
                    skipped += 1
                else:
                    logs.append(log)
            if not logs:
                raise RuntimeError(f"period {fit_state.epoch + 1}: no batch was trained on (no batches, or every step "
                                   f"skipped)")  # fmt: skip
            means = {key: math.fsum(log[key] for log in logs) / len(logs) for key in logs[0]}
            if skipped:
                means["skipped_steps"] = float(skipped)
            divergence.check(
                means[objective.watch], fit_state.epoch + 1, checkpoint if is_writer else None, logs[0][objective.watch]
            )
            for key, value in means.items():
                fit_state.history.setdefault(key, []).append(value)
            fit_state.history.setdefault("seconds", []).append(time.perf_counter() - started)
            fit_state.history.setdefault("sitting", []).append(float(sitting))
            fit_state.epoch += 1
            losses.append(means["loss"])
            bar.update(fit_state.epoch - 1, objective.progress(means))
            if sched is not None:
                sched.step()
            for callback in callbacks:
                callback.on_log(fit_state, means)
            write_checkpoint()
    finally:
        bar.close()
    for callback in callbacks:
        callback.on_fit_end(fit_state)
    return FitResult(fit_state.history, losses, opt, sched)


class _Batches:
    """The batches of ``data``, period by period: whole passes (epochs), or ``log_every`` steps of a pass that may
    span passes (an endless stream never ends a pass). ``position`` (checkpointed) holds the pass, the batches taken
    from it and the RNG state at its start, so that a resume mid-pass rebuilds the same pass and skips what was
    taken (a stateful stream restores itself and skips nothing)."""

    def __init__(self, data, position: dict, whole_passes: bool):
        self.data, self.position, self.whole_passes = data, position, whole_passes
        self.iterator = None

    def _start_pass(self) -> None:
        self.position["rng_at_pass"] = torch.get_rng_state()
        self.iterator = iter(set_data_epoch(self.data, self.position["pass"]))

    def _resume_pass(self) -> None:
        now = torch.get_rng_state()
        if self.position["rng_at_pass"] is not None and not _stateful(self.data):
            torch.set_rng_state(self.position["rng_at_pass"])
        self.iterator = iter(set_data_epoch(self.data, self.position["pass"]))
        if not _stateful(self.data):
            for _ in range(self.position["batch"]):
                next(self.iterator)
        torch.set_rng_state(now)

    def period(self, log_every: int | None) -> Iterable:
        if self.whole_passes:
            self._start_pass()
            for batch in self.iterator:
                yield batch
            self.position["pass"] += 1
            return
        if self.iterator is None:
            if self.position["batch"] or self.position["rng_at_pass"] is not None:
                self._resume_pass()
            else:
                self._start_pass()
        for _ in range(log_every):
            try:
                batch = next(self.iterator)
            except StopIteration:
                self.position["pass"] += 1
                self.position["batch"] = 0
                self._start_pass()
                try:
                    batch = next(self.iterator)
                except StopIteration:
                    raise RuntimeError("the data gave no batches") from None
            self.position["batch"] += 1
            yield batch
