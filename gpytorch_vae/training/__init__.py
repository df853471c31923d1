"""Training: :func:`fit` (objective + data + optimizer, callbacks, crash-safe checkpoints, exact resume) and its
building blocks."""

from .checkpoint import CheckpointError, atomic_write, load_checkpoint, save_checkpoint, write_json
from .fit import (
    Callback,
    Evaluation,
    FitResult,
    FitState,
    adam,
    fit,
    prior_parameter_groups,
    train_step,
    trainable_parameters,
)
from .loop import DivergenceError, DivergenceGuard, NonFiniteLossError, epoch_timing, guarded_step, run_epochs

__all__ = [
    "Callback",
    "CheckpointError",
    "DivergenceError",
    "DivergenceGuard",
    "Evaluation",
    "FitResult",
    "FitState",
    "NonFiniteLossError",
    "adam",
    "atomic_write",
    "epoch_timing",
    "fit",
    "guarded_step",
    "load_checkpoint",
    "prior_parameter_groups",
    "run_epochs",
    "save_checkpoint",
    "train_step",
    "trainable_parameters",
    "write_json",
]
