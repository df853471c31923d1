"""Training: :func:`fit` (objective + data + optimizer, callbacks, crash-safe checkpoints, exact resume), its
building blocks, and version 0.2's trainers as deprecated wrappers."""

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
from .trainers import fit_geco, fit_svi, geco_step, svi_step

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
    "fit_geco",
    "fit_svi",
    "geco_step",
    "guarded_step",
    "load_checkpoint",
    "prior_parameter_groups",
    "run_epochs",
    "save_checkpoint",
    "svi_step",
    "train_step",
    "trainable_parameters",
    "write_json",
]
