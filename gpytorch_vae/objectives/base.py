"""What :func:`gpytorch_vae.training.fit` needs of an objective."""

from __future__ import annotations

import abc
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class ObjectiveTerms:
    """The result of an objective on one batch: ``loss``, the scalar to minimise (on several ranks, this rank's share
    of the union batch's), and the terms it is made of. :meth:`logs` gives the values training records."""

    loss: Tensor

    def logs(self) -> dict[str, float]:
        """The scalar terms as floats (progress output and the training history); subclasses say which."""
        return {"loss": self.loss.item()}


class Objective(torch.nn.Module, abc.ABC):
    """An objective over a model: :meth:`forward` maps a batch to :class:`ObjectiveTerms`. Its ``state_dict``
    holds the model's and its own state (e.g. GECO's multiplier), which is what a checkpoint needs.

    :func:`~gpytorch_vae.training.fit` calls :meth:`prepare_optimizer` once, then for each batch :meth:`forward`,
    the backward pass of ``terms.loss``, and :meth:`step` (which steps the optimizer and updates the objective's own
    state). ``num_data`` objectives may leave :math:`N` to ``fit``, which takes it from the data set's length.

    :param model: the model whose parameters are trained.
    """

    #: the key of :meth:`ObjectiveTerms.logs` that the divergence guard watches
    watch = "loss"

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    @abc.abstractmethod
    def forward(self, *batch: Tensor) -> ObjectiveTerms:
        """The terms of one batch."""

    def prepare_optimizer(self, optimizer):
        """The optimizer to step (e.g. wrapped for a scaled loss); default: ``optimizer`` itself."""
        return optimizer

    def step(self, optimizer, terms: ObjectiveTerms) -> None:
        """Step the optimizer after the backward pass of ``terms.loss`` (and update the objective's own state)."""
        optimizer.step()

    def progress(self, logs: dict[str, float]) -> dict[str, str]:
        """What a progress bar shows of the mean ``logs`` of an epoch."""
        return {key: f"{value:.4g}" for key, value in logs.items()}


def num_data_of(data) -> int | None:
    """The length of the data set behind ``data`` (a :class:`~torch.utils.data.DataLoader`'s ``dataset`` or a sized
    data set), else ``None``."""
    dataset = getattr(data, "dataset", data)
    try:
        return len(dataset)
    except TypeError:
        return None
