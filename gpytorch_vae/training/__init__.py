"""Training: loops with progress output, guarded steps, crash-safe checkpoints and exact resume."""

from .checkpoint import CheckpointError, atomic_write, load_checkpoint, save_checkpoint, write_json
from .loop import DivergenceError, NonFiniteLossError, epoch_timing, guarded_step, run_epochs
from .trainers import adam, fit_geco, fit_svi, geco_step, svi_step, trainable_parameters

__all__ = [
    "CheckpointError",
    "DivergenceError",
    "adam",
    "epoch_timing",
    "NonFiniteLossError",
    "atomic_write",
    "fit_geco",
    "fit_svi",
    "geco_step",
    "guarded_step",
    "load_checkpoint",
    "run_epochs",
    "save_checkpoint",
    "svi_step",
    "trainable_parameters",
    "write_json",
]
