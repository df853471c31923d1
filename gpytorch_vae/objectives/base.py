"""What :func:`gpytorch_vae.training.fit` needs of an objective: a loss module (as GPyTorch's marginal log
likelihoods are) whose terms say what training records."""

from __future__ import annotations

import abc
import contextlib
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import Tensor

from ..variational.latent_data import check_num_data


class _Omitted:
    """The default of ``num_data``: not given (``fit`` gives the data set's length for its run)."""

    def __repr__(self) -> str:
        return "<the length of fit's data>"


_OMITTED = _Omitted()


@dataclass
class ObjectiveTerms:
    """The result of an objective on one batch: ``loss``, the scalar to minimise (on several ranks, this rank's share
    of the union batch's), and the terms it is made of. :meth:`logged` says which values training records."""

    loss: Tensor

    def logged(self) -> dict[str, Tensor]:
        """The values training records, as 0-dim tensors (``fit`` moves them to the host with the loss in one
        transfer); subclasses say which."""
        return {"loss": self.loss.detach()}

    def logs(self) -> dict[str, float]:
        """:meth:`logged` as floats (one host transfer)."""
        logged = self.logged()
        return dict(zip(logged, torch.stack(list(logged.values())).tolist()))


class Objective(torch.nn.Module, abc.ABC):
    """An objective over a model, a pure loss module: :meth:`forward` maps a batch to :class:`ObjectiveTerms`. Its
    ``state_dict`` holds the model's and its own state (e.g. GECO's multiplier), which is what a checkpoint needs.
    What happens around the optimizer step (e.g. GECO's multiplier update) is a callback of
    :func:`~gpytorch_vae.training.fit` (:class:`~gpytorch_vae.training.GECOUpdate`).

    :param model: the model whose parameters are trained.
    :param num_data: :math:`N`, the size of the training set; ``None`` when every batch is a whole data set (e.g. a
        batch of independent sequences); omitted, :func:`~gpytorch_vae.training.fit` gives the length of the data
        it trains on for its run (:meth:`using_num_data`).
    """

    #: the key of :meth:`ObjectiveTerms.logged` that the divergence guard watches
    watch = "loss"

    def __init__(self, model: torch.nn.Module, num_data: int | None = _OMITTED):
        super().__init__()
        self.model = model
        self._num_data = num_data if num_data is _OMITTED else check_num_data(num_data, 1)
        self._run_num_data = None

    @property
    def num_data(self) -> int | None:
        r""":math:`N` as given, or within :meth:`using_num_data` the one given there."""
        if self._num_data is not _OMITTED:
            return self._num_data
        if self._run_num_data is None:
            raise ValueError(
                f"{type(self).__name__} needs num_data, the size N of the training set: pass it, or train with "
                f"gpytorch_vae.training.fit on a DataLoader (which takes len(loader.dataset))"
            )
        return self._run_num_data

    @contextlib.contextmanager
    def using_num_data(self, num_data: int | None) -> Iterator[None]:
        """Within the block, an objective built without ``num_data`` uses ``num_data`` (``None``: unknown, an error
        when needed); one built with it keeps its own. What :func:`~gpytorch_vae.training.fit` does with the length
        of its data; the objective is left as it was."""
        previous = self._run_num_data
        self._run_num_data = None if num_data is None else check_num_data(num_data, 1)
        try:
            yield
        finally:
            self._run_num_data = previous

    @abc.abstractmethod
    def forward(self, *batch: Tensor) -> ObjectiveTerms:
        """The terms of one batch."""

    def progress(self, logs: dict[str, float]) -> dict[str, str]:
        """What a progress bar shows of the mean ``logs`` of an epoch."""
        return {key: f"{value:.4g}" for key, value in logs.items()}
