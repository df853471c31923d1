"""Evaluation mode for the experiments: one context manager that every runner uses."""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def evaluating(model: torch.nn.Module):
    """``model`` in eval mode (e.g. no statistics reducer: one process conditions on all data) and no gradients; the
    previous mode is restored on exit."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)
