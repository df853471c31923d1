"""``fit``: train an objective on data in the manner of BoTorch's ``fit_gpytorch_mll``: a small loop of steps, with
everything else (progress, the divergence guard, checkpoints and exact resume, schedulers, clipping, GECO's
multiplier update, evaluations) in callbacks (:mod:`gpytorch_vae.training.callbacks`)."""

from __future__ import annotations

import functools
import inspect
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import torch

from ..objectives.base import Objective, ObjectiveTerms
from .callbacks import Callback, Checkpoint, DivergenceGuard, GECOUpdate, NonFiniteLossError, ProgressBar

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
    """Where a :func:`fit` run stands, as callbacks see it.

    :ivar objective: the objective trained; :ivar optimizer: its optimizer.
    :ivar epochs: the epochs (or log periods of ``log_every`` steps) of the whole run; :ivar log_every: ``None``
        for epochs.
    :ivar epoch: epochs (or log periods) completed; :ivar step: optimizer steps taken.
    :ivar history: the whole run's per-epoch means of every logged value, ``seconds`` and ``sitting``.
    :ivar step_logs: the logged values of the last step (floats); :ivar period_logs: those of every step of the
        current epoch.
    :ivar stop: set it to True in :meth:`Callback.on_epoch_end` to end the run after that epoch (early stopping;
        the epoch is checkpointed as usual).
    :ivar is_writer: whether this process writes checkpoints and shows progress (rank 0).
    :ivar stateful: ``name -> object`` checkpointed with the run (stateful callbacks and data).
    :ivar data_position: where the data stream stands (checkpointed for an exact resume).
    :ivar checkpoint_path: the file a :class:`~gpytorch_vae.training.Checkpoint` writes, if any.
    """

    objective: Objective
    optimizer: Any
    epochs: int
    log_every: int | None = None
    epoch: int = 0
    step: int = 0
    history: dict = field(default_factory=dict)
    step_logs: dict = field(default_factory=dict)
    period_logs: list = field(default_factory=list)
    stop: bool = False
    is_writer: bool = True
    stateful: dict = field(default_factory=dict)
    data_position: dict = field(default_factory=lambda: {"pass": 0, "batch": 0, "rng_at_pass": None})
    checkpoint_path: str | None = None

    @property
    def total_steps(self) -> int | None:
        """The steps of the whole run (``None`` for epochs)."""
        return None if self.log_every is None else self.epochs * self.log_every


@dataclass
class FitResult:
    """What :func:`fit` returns: the whole run's ``history``, the mean ``losses`` of the epochs this call ran, its
    ``optimizer`` and its final :class:`FitState` ``state``."""

    history: dict
    losses: list
    optimizer: Any
    state: FitState


def train_step(objective, optimizer, batch: Sequence, before_step: Sequence[Callable] = (),
               after_step: Sequence[Callable] = ()) -> tuple[ObjectiveTerms, dict]:  # fmt: skip
    """One step, as :func:`fit` takes it: ``terms = objective(*batch)``; the loss and the logged values to the host
    in one transfer (:meth:`ObjectiveTerms.logged`); a non-finite loss raises :class:`NonFiniteLossError` before
    any gradient is computed; the backward pass, ``before_step(terms, logs)`` hooks (e.g. clipping, which may raise
    :class:`NonFiniteLossError`), the optimizer step, ``after_step(terms, logs)`` hooks.

    :return: the terms and their logged values as floats."""
    terms = objective(*batch)
    logged = terms.logged()
    values = torch.stack([terms.loss.detach(), *logged.values()]).tolist()  # the step's one host sync
    optimizer.zero_grad()
    if not math.isfinite(values[0]):
        raise NonFiniteLossError(f"the loss is {values[0]} (lower the learning rate, clip gradients with "
                                 f"ClipGradients, or skip such steps with SkipNonFinite; under "
                                 f"gpytorch_vae.settings.debug(True) every input and factorisation of the step is "
                                 f"checked and the first bad one named); the step was not applied")  # fmt: skip
    logs = dict(zip(logged, values[1:]))
    terms.loss.backward()
    for hook in before_step:
        hook(terms, logs)
    optimizer.step()
    for hook in after_step:
        hook(terms, logs)
    return terms, logs


def fit(
    objective: Objective,
    data,
    *,
    epochs: int | None = None,
    steps: int | None = None,
    log_every: int | None = None,
    optimizer: Callable | torch.optim.Optimizer | None = None,
    lr: float | None = None,
    callbacks: Sequence[Callback] = (),
    progress: bool = True,
    device=None,
) -> FitResult:
    r"""Train ``objective`` (e.g. :class:`~gpytorch_vae.objectives.ELBO` or
    :class:`~gpytorch_vae.objectives.GECOObjective` of a :class:`~gpytorch_vae.models.GPVAE`) on ``data``.

    A loop of :func:`train_step` over the batches; after each epoch (or ``log_every`` steps) the mean logs go to the
    history and to the callbacks' :meth:`~Callback.on_epoch_end`, in their :attr:`~Callback.order`. Besides the
    given ``callbacks``, ``fit`` adds a :class:`~gpytorch_vae.training.DivergenceGuard` (unless one is given), a
    :class:`~gpytorch_vae.training.GECOUpdate` for an objective with a ``geco`` (unless one is given) and, with
    ``progress``, a :class:`~gpytorch_vae.training.ProgressBar`. A callback ends the run early with ``state.stop =
    True``. A :class:`~gpytorch_vae.training.Checkpoint` makes the run resumable exactly.

    An objective built without ``num_data`` (:math:`N`) takes the data set's length (``len(data.dataset)`` or
    ``len(data)``) for this run; the objective itself is left as it was.

    :param objective: an :class:`~gpytorch_vae.objectives.Objective`.
    :param data: batches (tuples of tensors): an iterable such as a :class:`~torch.utils.data.DataLoader` (set to
        the next epoch when it has a sampler with ``set_epoch``), a callable giving one per epoch (called with the
        epoch index when it takes an argument), or, with ``steps``, an endless stream. A ``data`` with
        ``state_dict``/``load_state_dict`` (e.g. :class:`~gpytorch_vae.data.MovingBallStream`) is checkpointed too.
    :param epochs: passes over ``data`` in all (a resumed run continues up to it); or
    :param steps: optimizer steps in all, logged every ``log_every`` steps (default 100).
    :param optimizer: a factory ``parameters -> optimizer`` (default: Adam, :func:`adam`) or an optimizer.
    :param lr: learning rate of the default Adam (1e-3).
    :param callbacks: :class:`~gpytorch_vae.training.Callback` objects.
    :param progress: show a progress bar (in the writing process).
    :param device: every tensor of a batch is moved there.
    :return: a :class:`FitResult`.
    """
    periods, log_every = _periods(epochs, steps, log_every)
    if lr is not None and not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive finite number, got {lr}")
    ranks = getattr(objective, "ranks", None)
    is_writer = ranks is None or ranks.rank == 0
    opt = _optimizer(optimizer, lr, trainable_parameters(objective))
    callbacks = _with_defaults(objective, callbacks, progress and is_writer)
    state = FitState(objective, opt, periods, log_every, is_writer=is_writer)
    if _stateful(data) and not callable(data):
        state.stateful["data"] = data
    for name, callback in _named(callbacks):
        if _stateful(callback):
            state.stateful[name] = callback
    for callback in callbacks:
        if isinstance(callback, Checkpoint):
            callback.restore(state)
    forward = objective
    if ranks is not None:  # DDP averages the ranks' gradients during the backward pass
        from ..distributed import data_parallel

        forward = data_parallel(objective, device)
    step = step_function(state, callbacks, forward)
    skips = _overriding(callbacks, "on_nonfinite")

    sitting = max(state.history.get("sitting", [-1.0]), default=-1.0) + 1
    losses = []
    batches = _Batches(data, state.data_position, log_every is None)
    with objective.using_num_data(_data_length(data)):
        for callback in callbacks:
            callback.on_fit_start(state)
        try:
            while state.epoch < periods and not state.stop:
                skipped, started, state.period_logs = 0, time.perf_counter(), []
                for batch in batches.period(log_every):
                    if device is not None:
                        batch = tuple(t.to(device) if isinstance(t, torch.Tensor) else t for t in batch)
                    try:
                        _, state.step_logs = step(batch)
                    except NonFiniteLossError as error:
                        opt.zero_grad()
                        if not any(c.on_nonfinite(state, error) for c in skips):
                            raise
                        skipped += 1
                        continue
                    state.step += 1
                    state.period_logs.append(state.step_logs)
                means = _epoch_means(state, skipped)
                for key, value in means.items():
                    state.history.setdefault(key, []).append(value)
                state.history.setdefault("seconds", []).append(time.perf_counter() - started)
                state.history.setdefault("sitting", []).append(float(sitting))
                state.epoch += 1
                losses.append(means["loss"])
                for callback in callbacks:
                    callback.on_epoch_end(state, means)
        finally:
            for callback in callbacks:
                callback.on_fit_end(state)
    return FitResult(state.history, losses, opt, state)


def step_function(state: FitState, callbacks: Sequence[Callback], forward=None) -> Callable:
    """``batch -> (terms, logs)``: :func:`train_step` of ``state``'s objective (or ``forward``, e.g. it in DDP) and
    optimizer with the step hooks of ``callbacks`` (those that override :meth:`Callback.on_before_step` or
    :meth:`Callback.on_after_step`)."""
    before = [functools.partial(c.on_before_step, state) for c in _overriding(callbacks, "on_before_step")]
    after = [functools.partial(c.on_after_step, state) for c in _overriding(callbacks, "on_after_step")]
    forward = state.objective if forward is None else forward
    return functools.partial(train_step, forward, state.optimizer, before_step=before, after_step=after)


def fit_step(objective: Objective, optimizer=None, lr: float | None = None) -> Callable:
    """The step :func:`fit` takes, as a function ``batch -> (terms, logs)`` (with fit's default step hooks, e.g.
    GECO's update; the optimizer as ``fit`` makes it from ``optimizer``/``lr``): for timing and tracing one step, or
    a loop of your own."""
    state = FitState(objective, _optimizer(optimizer, lr, trainable_parameters(objective)), 1)
    callbacks = _with_defaults(objective, (), progress=False)
    for callback in callbacks:
        callback.on_fit_start(state)
    return step_function(state, callbacks)


def _periods(epochs: int | None, steps: int | None, log_every: int | None) -> tuple[int, int | None]:
    """The number of log periods and ``log_every`` (``None`` for epochs), checked."""
    if (epochs is None) == (steps is None):
        raise ValueError("pass exactly one of epochs and steps")
    total = epochs if epochs is not None else steps
    if isinstance(total, bool) or not isinstance(total, int) or total < 0:
        raise ValueError(f"epochs/steps must be a non-negative integer, got {total!r}")
    if steps is None:
        if log_every is not None:
            raise ValueError("log_every applies to steps; with epochs, logs come once per epoch")
        return epochs, None
    log_every = 100 if log_every is None else int(log_every)
    if log_every < 1 or steps % log_every:
        raise ValueError(f"steps ({steps}) must be a multiple of log_every ({log_every})")
    return steps // log_every, log_every


def _optimizer(optimizer, lr: float | None, parameters: list) -> Any:
    if isinstance(optimizer, torch.optim.Optimizer):
        if lr is not None:
            raise ValueError("pass lr either to fit or inside the optimizer, not both")
        return optimizer
    if optimizer is None:
        return adam(parameters, lr=1e-3 if lr is None else lr)
    if lr is not None:
        raise ValueError("pass lr either to fit or inside the optimizer factory, not both")
    return optimizer(parameters)


def _with_defaults(objective: Objective, callbacks: Sequence[Callback], progress: bool) -> list[Callback]:
    """The callbacks of a run, sorted by :attr:`Callback.order`: the given ones and fit's defaults."""
    callbacks = list(callbacks)
    for callback in callbacks:
        if not isinstance(callback, Callback):
            raise TypeError(f"callbacks must be Callback objects, got {type(callback).__name__}")
    if not any(isinstance(c, DivergenceGuard) for c in callbacks):
        callbacks.append(DivergenceGuard())
    geco = getattr(objective, "geco", None)
    if geco is not None and not any(isinstance(c, GECOUpdate) for c in callbacks):
        callbacks.append(GECOUpdate(geco))
    if progress:
        callbacks.append(ProgressBar())
    return sorted(callbacks, key=lambda c: c.order)


def _named(callbacks: Sequence[Callback]) -> Iterable[tuple[str, Callback]]:
    """Each callback's name in a checkpoint: its class name, numbered from the second of a class on."""
    seen: dict[str, int] = {}
    for callback in callbacks:
        name = type(callback).__name__
        seen[name] = seen.get(name, 0) + 1
        yield (name if seen[name] == 1 else f"{name}_{seen[name]}"), callback


def _overriding(callbacks: Sequence[Callback], hook: str) -> list[Callback]:
    """The callbacks whose ``hook`` does something (the base class's does nothing)."""
    return [c for c in callbacks if getattr(type(c), hook) is not getattr(Callback, hook)]


def _epoch_means(state: FitState, skipped: int) -> dict[str, float]:
    logs = state.period_logs
    if not logs:
        raise RuntimeError(f"period {state.epoch + 1}: no batch was trained on (no batches, or every step skipped)")
    means = {key: math.fsum(log[key] for log in logs) / len(logs) for key in logs[0]}
    if skipped:
        means["skipped_steps"] = float(skipped)
    return means


def _stateful(obj) -> bool:
    return hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict")


def _data_length(data) -> int | None:
    """The length of the data set behind ``data`` (a :class:`~torch.utils.data.DataLoader`'s ``dataset`` or a sized
    data set), else ``None``."""
    dataset = getattr(data, "dataset", data)
    try:
        return len(dataset)
    except TypeError:
        return None


def set_data_epoch(data, epoch: int) -> Iterable:
    """The iterable of batches of pass ``epoch``: ``data(epoch)`` for a callable (``data()`` when it takes no
    argument), else ``data``, with the epoch set on its sampler where it has ``set_epoch``
    (:class:`~torch.utils.data.DistributedSampler`, :class:`~gpytorch_vae.distributed.ShardedBatchSampler`: a new
    order per epoch)."""
    if callable(data):
        try:
            takes_epoch = bool(inspect.signature(data).parameters)
        except (TypeError, ValueError):
            takes_epoch = False
        data = data(epoch) if takes_epoch else data()
    for sampler in (data, getattr(data, "sampler", None), getattr(data, "batch_sampler", None)):
        for candidate in (sampler, getattr(sampler, "sampler", None)):
            if hasattr(candidate, "set_epoch"):
                candidate.set_epoch(epoch)
    return data


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
            yield from self.iterator
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
