"""Training: :func:`fit` (objective + data + optimizer, a small loop of :func:`train_step`) and its callbacks
(progress, divergence guard, crash-safe checkpoints with exact resume, scheduler, clipping, GECO's multiplier
update, evaluation, early stopping through ``state.stop``)."""

from .callbacks import (
    Callback,
    Checkpoint,
    ClipGradients,
    DivergenceError,
    DivergenceGuard,
    Evaluation,
    GECOUpdate,
    NonFiniteLossError,
    ProgressBar,
    Scheduler,
    SkipNonFinite,
    epoch_timing,
)
from .checkpoint import CheckpointError, atomic_write, load_checkpoint, save_checkpoint, write_json
from .fit import (
    FitResult,
    FitState,
    adam,
    fit,
    fit_step,
    prior_parameter_groups,
    step_function,
    train_step,
    trainable_parameters,
)

__all__ = [
    "Callback",
    "Checkpoint",
    "CheckpointError",
    "ClipGradients",
    "DivergenceError",
    "DivergenceGuard",
    "Evaluation",
    "FitResult",
    "FitState",
    "GECOUpdate",
    "NonFiniteLossError",
    "ProgressBar",
    "Scheduler",
    "SkipNonFinite",
    "adam",
    "atomic_write",
    "epoch_timing",
    "fit",
    "fit_step",
    "load_checkpoint",
    "prior_parameter_groups",
    "save_checkpoint",
    "step_function",
    "train_step",
    "trainable_parameters",
    "write_json",
]
