r"""An imputer for multivariate time series with holes, in the manner of PyPOTS and scikit-learn, built on
:class:`~gpytorch_vae.models.GPVAE`: every sequence (or window of a long series) is one GP data set over its
timestamps, so irregular sampling needs nothing special, and the imputations come with a predictive distribution
(standard deviations, quantiles, intervals, multiple imputations).

.. code-block:: python

    imputer = GPVAEImputer(epochs=100).fit(X)  # X: (n_sequences, n_steps, n_features) or (n_steps, n_features)
    filled = imputer.impute(X)  # the same shape, NaN (the missing values) replaced by the point imputation
    prediction = imputer.predict(X)  # .mean, .std, .samples, .quantile(q), .interval(0.9)
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from typing import Any

import gpytorch
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from .gps import ExactLatentGP
from .io import atomic_write
from .likelihoods import GaussianLikelihood
from .models import GPVAE
from .nn import ContextEncoder, MaskedEncoder, MLPDecoder, MLPEncoder, ResidualDecoder, WindowEncoder
from .objectives import ELBO
from .priors import ExactLatentPrior
from .training import Callback, fit

__all__ = [
    "GPVAEImputer",
    "ImputationDistribution",
    "ImputerConfig",
    "Windows",
    "class_entries",
    "estimate_period",
    "fit_blend_weights",
    "gap_distance",
    "interpolation_context",
    "seasonal_context",
    "validation_holdout",
]

FORMAT = 2  # of the files written by GPVAEImputer.save
DISTANCE_BINS = 8  # calibration classes of the distance d to the nearest observation: d < 2, [2, 4), ..., >= 128
MIN_CALIBRATION_ENTRIES = 50  # held-out entries a distance class needs for a factor (or blend weight) of its own
BLEND_GRID = np.linspace(0.0, 1.0, 11)  # the interpolation's candidate weights in the baseline


@dataclass
class ImputerConfig:
    """The settings of a :class:`GPVAEImputer` (its constructor's arguments; stored by :meth:`GPVAEImputer.save`)."""

    latent_dim: int = 8
    hidden: int = 64
    encoder_window: int = 3
    kernel: str = "matern52"
    window_length: int = 96
    window_overlap: float = 0.5
    epochs: int = 100
    batch_size: int = 8
    lr: float = 3e-3
    validation_fraction: float = 0.1
    patience: int = 30
    eval_every: int = 5
    num_samples: int = 50
    noise_floor: float = 1e-3
    context: bool = True
    period: Any = "auto"
    seed: int = 0
    progress: bool = True


# ---------------------------------------------------------------------------------------------------- input checks
def _as_array(X, name: str = "X") -> np.ndarray:
    array = X.detach().cpu().numpy() if isinstance(X, Tensor) else np.asarray(X)
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise TypeError(f"{name} must hold numbers (NaN where missing), got dtype {array.dtype}")
    if array.ndim not in (2, 3):
        raise ValueError(
            f"{name} must be (n_sequences, n_steps, n_features) or one series (n_steps, n_features), got shape "
            f"{array.shape}"
        )
    array = array.astype(np.float64)
    if np.isinf(array).any():
        raise ValueError(f"{name} holds {int(np.isinf(array).sum())} infinite values: use NaN for missing values")
    return array


def _sequences(X) -> tuple[np.ndarray, bool]:
    """``X`` as ``(n_sequences, n_steps, n_features)`` float64, and whether it was one series."""
    array = _as_array(X)
    single = array.ndim == 2
    return (array[None] if single else array), single


def _times(times, shape: tuple[int, int, int]) -> np.ndarray:
    """Timestamps ``(n_sequences, n_steps)`` float64 (default ``0, 1, ...``), checked finite and increasing."""
    n, steps, _ = shape
    if times is None:
        return np.broadcast_to(np.arange(steps, dtype=np.float64), (n, steps))
    values = times.detach().cpu().numpy() if isinstance(times, Tensor) else np.asarray(times)
    if np.issubdtype(values.dtype, np.datetime64):
        values = (values - values.reshape(-1)[0]) / np.timedelta64(1, "s")  # seconds since the first timestamp
    values = values.astype(np.float64)
    if values.shape == (steps,):
        values = np.broadcast_to(values, (n, steps))
    if values.shape != (n, steps):
        raise ValueError(f"times must be ({steps},) for every sequence or ({n}, {steps}), one row per sequence; got "
                         f"{values.shape}")  # fmt: skip
    if not np.isfinite(values).all():
        raise ValueError("times hold NaN or inf: every step needs a timestamp (its values may be missing)")
    steps_back = np.diff(values, axis=-1) <= 0
    if steps_back.any():
        sequence, step = np.argwhere(steps_back)[0]
        raise ValueError(f"times must increase strictly along each sequence: sequence {sequence} goes from "
                         f"{values[sequence, step]} to {values[sequence, step + 1]} at step {step + 1} "
                         f"({int(steps_back.sum())} such steps)")  # fmt: skip
    return values


# ---------------------------------------------------------------------------------------------------- context
def _kept_neighbours(kept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every entry of ``kept`` ``(n, T, F)``: the index of the previous and of the next kept entry of its feature
    strictly before and after it (-1 and ``T`` where there is none). Numpy's running maxima, not a loop."""
    n, length, features = kept.shape
    index = np.broadcast_to(np.arange(length)[None, :, None], kept.shape)
    before = np.maximum.accumulate(np.where(kept, index, -1), axis=1)  # last kept index at or before t
    before = np.concatenate([np.full((n, 1, features), -1), before[:, :-1]], axis=1)  # strictly before
    after = np.minimum.accumulate(np.where(kept, index, length)[:, ::-1], axis=1)[:, ::-1]
    after = np.concatenate([after[:, 1:], np.full((n, 1, features), length)], axis=1)  # strictly after
    return before, after


def gap_distance(kept: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """The time (in steps) from every entry ``(n, T, F)`` to the nearest *other* kept entry of its feature in its
    sequence (``inf`` where the feature has none), from the mask ``kept`` and times ``(n, T)`` in steps: 1 for a
    random hole of a regular series, growing towards the middle of a gap."""
    before, after = _kept_neighbours(kept)
    length = kept.shape[1]
    times = np.broadcast_to(steps[..., None], kept.shape)
    since = np.where(before >= 0, times - np.take_along_axis(times, before.clip(0), axis=1), np.inf)
    until = np.where(after < length, np.take_along_axis(times, after.clip(max=length - 1), axis=1) - times, np.inf)
    return np.minimum(since, until)


def distance_bin(distance: np.ndarray) -> np.ndarray:
    """The calibration class of each distance (in steps) to the nearest observation: 0 below 2 steps, then one class
    per doubling, the last (``DISTANCE_BINS - 1``) from 128 steps and for entries with no observation at all."""
    octave = np.floor(np.log2(np.maximum(np.nan_to_num(distance, posinf=2.0**DISTANCE_BINS), 1.0)))
    return np.clip(octave, 0, DISTANCE_BINS - 1).astype(np.int64)


def class_entries(classes: np.ndarray, distance: np.ndarray, c: int) -> np.ndarray:
    """Which of some held-out entries (their :func:`distance_bin` ``classes`` and ``distance``, 1-D) stand for
    distance class ``c``: its own entries if it has ``MIN_CALIBRATION_ENTRIES``, else the ``MIN_CALIBRATION_ENTRIES``
    entries farthest from the data among those of class ``c`` or nearer (the far classes, which few validation gaps
    reach, borrow from the farthest entries there are)."""
    chosen = classes == c
    if chosen.sum() >= MIN_CALIBRATION_ENTRIES:
        return chosen
    far = np.where(classes <= c, np.nan_to_num(distance, posinf=np.finfo(np.float64).max), -1.0)
    chosen = np.zeros_like(chosen)
    chosen[np.argsort(-far, kind="stable")[:MIN_CALIBRATION_ENTRIES]] = True
    return chosen


def fit_blend_weights(first: np.ndarray, second: np.ndarray, truth: np.ndarray, distance: np.ndarray) -> np.ndarray:
    r"""Per distance class (:func:`distance_bin`), the weight :math:`w` in ``BLEND_GRID`` of ``first`` in the blend
    :math:`w\,\hat y_1 + (1 - w)\,\hat y_2` of two estimates with the least absolute error on held-out entries (1-D
    arrays of the two estimates, the true values and the distances to the data; :func:`class_entries` for classes
    with few entries). The imputer blends the interpolation (first) and the seasonal estimate: near the data the
    interpolation wins, in the middle of a long gap the cycle; and the model's imputation (first) and that baseline.
    A grid search: 11 weights x 8 classes."""
    classes = distance_bin(distance)
    weights = np.ones(DISTANCE_BINS)
    for c in range(DISTANCE_BINS):
        chosen = class_entries(classes, distance, c)
        if chosen.any():
            step = first[chosen] - second[chosen]
            errors = [np.abs(second[chosen] + w * step - truth[chosen]).mean() for w in BLEND_GRID]
            weights[c] = BLEND_GRID[int(np.argmin(errors))]
    return weights


def validation_holdout(observed: np.ndarray, fraction: float, longest: int, rng: np.random.Generator) -> np.ndarray:
    """The entries hidden from training for early stopping and for calibrating the intervals, ``(n, T, F)``: about
    half of ``fraction`` of the observed entries at random and, for the other half, gaps of every feature, runs of 2
    to ``longest`` steps (log-uniform lengths) in random sequences, so that both see random holes *and* gaps (an
    interval calibrated on random holes alone is far too narrow in the middle of a blackout)."""
    n, length, _ = observed.shape
    hidden = observed & (rng.random(observed.shape) < fraction / 2)
    gaps = np.zeros((n, length), dtype=bool)
    longest = max(2, min(longest, length - 1))
    budget = fraction / 2 * n * length
    while budget > 0:
        run = int(round(math.exp(rng.uniform(math.log(2), math.log(longest)))))
        start = int(rng.integers(0, length - run + 1))
        gaps[int(rng.integers(n)), start : start + run] = True
        budget -= run
    return hidden | (gaps[..., None] & observed)


def interpolation_context(values: np.ndarray, kept: np.ndarray, steps: np.ndarray, horizon: float) -> np.ndarray:
    r"""What the observed neighbours say about every entry, ``(n, T, 3F)`` from values ``(n, T, F)`` (read where
    ``kept``), the mask ``kept`` and times ``(n, T)`` in steps:

    - the **leave-one-out linear interpolation** of each feature from the *other* kept entries of its sequence
      (the previous and next kept entry strictly before and after the step; the nearest one carried flat beyond the
      first or last; 0, the standardised mean, with none), so that at a kept entry it is what the entry would be
      imputed from if it were missing, and the model can learn how far to trust it;
    - the time since the previous kept entry and until the next one, over ``horizon`` and clipped at 1 (1 without
      one).

    No library computes this leave-one-out form; it is written with numpy (:func:`_kept_neighbours`).
    """
    length = values.shape[1]
    before, after = _kept_neighbours(kept)
    has_before, has_after = before >= 0, after < length
    both = has_before & has_after
    times = np.broadcast_to(steps[..., None], values.shape)
    value_before = np.take_along_axis(values, before.clip(0, length - 1), axis=1)
    value_after = np.take_along_axis(values, after.clip(0, length - 1), axis=1)
    time_before = np.take_along_axis(times, before.clip(0, length - 1), axis=1)
    time_after = np.take_along_axis(times, after.clip(0, length - 1), axis=1)
    weight = np.where(both, (times - time_before) / np.where(both, time_after - time_before, 1.0), 0.0)
    baseline = np.where(both, value_before + weight * (value_after - value_before),
                        np.where(has_before, value_before, np.where(has_after, value_after, 0.0)))  # fmt: skip
    since = np.where(has_before, np.minimum((times - time_before) / horizon, 1.0), 1.0)
    until = np.where(has_after, np.minimum((time_after - times) / horizon, 1.0), 1.0)
    return np.concatenate([baseline, since, until], axis=-1)


def seasonal_context(values: np.ndarray, kept: np.ndarray, period: int, fallback: np.ndarray,
                     cycles: int = 3) -> np.ndarray:  # fmt: skip
    """The seasonal-naive estimate of every entry ``(n, T, F)``: the mean of the kept values of the feature 1 to
    ``cycles`` periods before and after the step (``period`` in steps of the grid), ``fallback`` where none is kept.
    So a gap longer than the interpolation can bridge (a day of an hourly series) still gets the shape of the
    neighbouring days."""
    total, count = np.zeros_like(values), np.zeros_like(values)
    seen = np.where(kept, values, 0.0)
    for shift in range(period, cycles * period + 1, period):
        if shift >= values.shape[1]:
            break
        total[:, shift:] += seen[:, :-shift]  # one period (or more) before
        count[:, shift:] += kept[:, :-shift]
        total[:, :-shift] += seen[:, shift:]  # after
        count[:, :-shift] += kept[:, shift:]
    return np.where(count > 0, total / np.maximum(count, 1), fallback)


def estimate_period(values: np.ndarray, kept: np.ndarray, steps: int, min_correlation: float = 0.3,
                    min_prominence: float = 0.1) -> int | None:  # fmt: skip
    """The period (in steps) of the strongest cycle of standardised series ``(n, T, F)`` (missing entries filled by
    interpolation): the lag of the highest local maximum of their mean autocorrelation between 2 and
    ``min(T / 3, steps)`` steps that reaches ``min_correlation`` and rises ``min_prominence`` above the lowest
    autocorrelation at a shorter lag (a cycle, not the slow decay of a smooth series); else ``None``. The
    autocorrelation comes from numpy's FFT."""
    length = values.shape[1]
    filled = np.where(kept, values, interpolation_context(values, kept, np.arange(length, dtype=float)[None], 1.0)[
        ..., : values.shape[-1]])  # fmt: skip
    centred = filled - filled.mean(axis=1, keepdims=True)
    spectrum = np.fft.rfft(centred, n=2 * length, axis=1)
    correlation = np.fft.irfft(np.abs(spectrum) ** 2, axis=1)[:, :length]
    energy = correlation[:, :1]
    acf = np.where(energy > 0, correlation / np.where(energy > 0, energy, 1.0), 0.0).mean(axis=(0, 2))
    top = min(length // 3, steps)
    peaks = [lag for lag in range(2, top) if acf[lag] > acf[lag - 1] and acf[lag] >= acf[lag + 1]
             and acf[lag] - acf[1:lag].min() >= min_prominence]  # fmt: skip
    best = max(peaks, key=lambda lag: acf[lag], default=None)
    return best if best is not None and acf[best] >= min_correlation else None


def _baseline(x: Tensor, features: int) -> Tensor:
    """The ``ResidualDecoder``'s baseline ``(W, length, F)``: the first ``F`` context features of the GP inputs."""
    return x[:, 0, :, 1 : 1 + features]


def _context_features(x: Tensor) -> Tensor:
    """The networks' context ``(*batch, b, C)`` from the GP inputs ``(*batch, 1, b, 1 + C)`` (time first)."""
    return x[..., 0, :, 1:].float()


# ---------------------------------------------------------------------------------------------------- windows
@dataclass
class Windows:
    """How sequences of ``n_steps`` are cut into windows of ``length`` steps (``starts`` within each sequence, the
    last one flush with the end), and which window answers for each step: the one in which the step lies furthest
    from an edge (:attr:`owner`, :attr:`position`)."""

    length: int
    starts: np.ndarray

    @classmethod
    def cover(cls, steps: int, length: int, overlap: float) -> Windows:
        length = min(length, steps)
        stride = max(1, int(round(length * (1 - overlap))))
        starts = list(range(0, steps - length + 1, stride))
        if starts[-1] != steps - length:
            starts.append(steps - length)
        return cls(length, np.asarray(starts))

    def owner(self, steps: int) -> tuple[np.ndarray, np.ndarray]:
        """For each step of a sequence: the index of the window answering for it and the step's position there."""
        offsets = np.arange(steps)[:, None] - self.starts[None, :]
        inside = (offsets >= 0) & (offsets < self.length)
        centrality = np.where(inside, np.minimum(offsets, self.length - 1 - offsets), -1)
        owner = centrality.argmax(1)
        return owner, offsets[np.arange(steps), owner]

    def cut(self, array: np.ndarray) -> np.ndarray:
        """``(n, steps, ...)`` to ``(n * n_windows, length, ...)``, windows of a sequence consecutive."""
        return np.stack([array[:, s : s + self.length] for s in self.starts], axis=1).reshape(
            -1, self.length, *array.shape[2:]
        )

    def join(self, windows: np.ndarray, n: int, steps: int) -> np.ndarray:
        """The inverse of :meth:`cut` for outputs ``(..., n * n_windows, length, F)`` (leading dims kept): each step
        from the window that answers for it."""
        lead = windows.shape[:-3]
        per_sequence = windows.reshape(*lead, n, len(self.starts), self.length, windows.shape[-1])
        owner, position = self.owner(steps)
        return per_sequence[..., :, owner, position, :]


@dataclass
class _Series:
    """Whole sequences as the imputer reads them, ``(n, T, F)`` unless said: the input ``data`` and whether it was
    one ``single`` series, where ``observed`` and ``kept`` (observed, less what is hidden), the standardised
    ``values`` (0 where not kept), ``steps`` ``(n, T)``, every entry's ``distance`` to the kept ones, and with context
    the :func:`interpolation_context` ``neighbours`` ``(n, T, 3F)`` and the ``seasonal`` estimate (``None``
    without a cycle)."""

    data: np.ndarray
    single: bool
    observed: np.ndarray
    kept: np.ndarray
    values: np.ndarray
    steps: np.ndarray
    distance: np.ndarray
    neighbours: np.ndarray | None
    seasonal: np.ndarray | None


# ---------------------------------------------------------------------------------------------------- predictions
@dataclass
class ImputationDistribution:
    r"""The imputer's predictive distribution of every entry, arrays shaped like the input ``X``.

    At a missing entry it is the mixture over the posterior draws of the latent codes :math:`\mathbf z^{(k)}` of
    the Gaussian likelihood :math:`\mathcal N(\mu_k, \sigma^2_f)`, :math:`\mu_k` the decoded mean of draw :math:`k`
    and :math:`\sigma^2_f` the learned noise of feature :math:`f`, in the data's units. At an observed entry it is the
    observed value (zero spread).

    :ivar mean: the point imputation: the decoded posterior mean of the codes (:meth:`GPVAE.impute`); observed
        entries kept.
    :ivar std: predictive standard deviations (0 where observed).
    :ivar samples: ``(K, *X.shape)`` multiple imputations, one per draw (observed entries kept).
    :ivar component_means: ``(K, *X.shape)`` the mixture's component means :math:`\mu_k`.
    :ivar noise_std: the likelihood's :math:`\sigma_f` for every entry, times the calibration factor of the entry's
        distance to the nearest observation (:meth:`GPVAEImputer.fit`); shaped like ``X``.
    :ivar observed: True where ``X`` was observed.
    """

    mean: np.ndarray
    std: np.ndarray
    samples: np.ndarray
    component_means: np.ndarray
    noise_std: np.ndarray
    observed: np.ndarray

    def cdf(self, value: np.ndarray) -> np.ndarray:
        """The predictive CDF at ``value`` (shaped like ``X``); at observed entries a step at the observed value."""
        standardised = (np.asarray(value)[None] - self.component_means) / self.noise_std
        mixture = 0.5 * (1 + _erf(standardised / math.sqrt(2))).mean(0)
        return np.where(self.observed, (np.asarray(value) >= self.mean).astype(float), mixture)

    def quantile(self, q: float) -> np.ndarray:
        """The predictive ``q``-quantile of every entry (the mixture's, by bisection to 1e-10 of the noise scale)."""
        if not 0 < q < 1:
            raise ValueError(f"q must lie strictly between 0 and 1, got {q}")
        spread = 8 * self.noise_std
        low, high = self.component_means.min(0) - spread, self.component_means.max(0) + spread
        for _ in range(64):  # the mixture CDF is increasing: halve the bracket around its q-crossing
            middle = 0.5 * (low + high)
            below = self.cdf(middle) < q
            low, high = np.where(below, middle, low), np.where(below, high, middle)
        return np.where(self.observed, self.mean, 0.5 * (low + high))

    def interval(self, level: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
        """The central ``level`` predictive interval ``(lower, upper)`` of every entry."""
        if not 0 < level < 1:
            raise ValueError(f"level must lie strictly between 0 and 1, got {level}")
        return self.quantile((1 - level) / 2), self.quantile((1 + level) / 2)


def _erf(x: np.ndarray) -> np.ndarray:
    return torch.special.erf(torch.from_numpy(np.asarray(x, dtype=np.float64))).numpy()


# ---------------------------------------------------------------------------------------------------- the imputer
class _EarlyStopping(Callback):
    """Every ``every`` epochs: the imputation MAE on the held-out validation entries, the model's departure from the
    baseline weighted per distance class (:meth:`GPVAEImputer.fit_gates`); keeps the best model's state and weights
    and stops the run after ``patience`` epochs without improvement."""

    def __init__(self, imputer: GPVAEImputer, data: tuple, distance: np.ndarray, every: int, patience: int):
        self.imputer, self.data, self.distance, self.every, self.patience = imputer, data, distance, every, patience
        self.best, self.best_epoch, self.best_state, self.best_gates, self.trace = math.inf, 0, None, None, []

    def on_fit_start(self, state) -> None:
        self.on_epoch_end(state, {})  # the untrained model is a candidate too (with context: the baseline)

    def on_epoch_end(self, state, logs) -> None:
        if state.epoch % self.every:
            return
        x, y, mask, held_out, truth = self.data
        with torch.random.fork_rng():
            mean = self.imputer.model_mean(x, y, mask)
        gates = self.imputer.fit_gates(x, mean, held_out, truth, self.distance)
        gated = self.imputer.gated(x, mean, self.distance, gates)
        error = float((gated - truth).abs()[held_out].mean())
        self.trace.append({"epoch": state.epoch, "validation_mae": error})
        if error < self.best:
            self.best, self.best_epoch, self.best_gates = error, state.epoch, gates
            self.best_state = copy.deepcopy(self.imputer.model.state_dict())
        elif state.epoch - self.best_epoch >= self.patience:
            state.stop = True


class GPVAEImputer:
    r"""Impute multivariate time series with a GP-VAE: an encoder of each step's observed values (and its
    neighbours'), a GP prior over time on the latent codes of each sequence, a decoder to the features' means and a
    Gaussian likelihood with a learned noise per feature.

    Input: ``X`` of shape ``(n_sequences, n_steps, n_features)`` (e.g. ICU stays) or one series ``(n_steps,
    n_features)``, NaN where a value is missing; optional ``times``, ``(n_steps,)`` shared or ``(n_sequences,
    n_steps)``, increasing (numbers or ``datetime64``): irregular sampling is the GP's native case. Each feature is
    standardised with the mean and standard deviation of its observed values; times are measured in units of the
    median step. A sequence longer than ``window_length`` is cut into overlapping windows, each one GP data set; a
    step is answered by the window in which it lies most central.

    Defaults derived from the data: the latent channels' lengthscales start spread geometrically from 1 step to
    half a window (fast and slow latent factors), the noise is floored at ``noise_floor`` (standardised units).

    Training maximises the ELBO (:class:`~gpytorch_vae.objectives.ELBO`, every window its own GP data set) with
    :func:`~gpytorch_vae.training.fit`; a ``validation_fraction`` of the observed entries, half at random and half in
    gaps of every feature (:func:`validation_holdout`), is hidden from training and the model with the lowest
    imputation MAE on them is kept (early stopping after ``patience`` epochs without improvement, checked every
    ``eval_every`` epochs). The same entries then set the width of the predictive intervals, one factor on the
    noise per class of distance to the nearest observation (:meth:`_calibrate`): wider in the middle of a gap.

    :param latent_dim: latent channels :math:`L` (one GP each).
    :param hidden: width of the encoder's and decoder's two hidden layers.
    :param encoder_window: steps the encoder sees per code (:class:`~gpytorch_vae.nn.WindowEncoder`; odd).
    :param kernel: ``"matern52"``, ``"matern32"`` or ``"rbf"``, the latent GPs' kernel (outputscale 1).
    :param window_length: the longest sequence trained as one GP data set.
    :param window_overlap: the share of a window that the next one overlaps.
    :param epochs: the most passes over the windows; ``batch_size`` windows per step; Adam at ``lr``.
    :param validation_fraction: share of the observed entries held out for early stopping (0: none, train all
        ``epochs``).
    :param num_samples: posterior draws of the codes for :meth:`predict` (the mixture's components).
    :param noise_floor: the lowest noise variance of a feature (standardised units).
    :param context: whether the networks read naive estimates of every entry from its observed neighbours: the
        :func:`interpolation_context` (the encoder beside the values; the decoder gives the departure from a
        baseline, :class:`~gpytorch_vae.nn.ResidualDecoder`, which is the interpolation without a cycle).
    :param period: with ``context``, the period of the series' cycle in steps (e.g. 24 for a daily cycle of hourly
        data), whose :func:`seasonal_context` the networks read too; ``"auto"``: :func:`estimate_period` of the
        data; ``None``: no cycle. With a cycle the baseline blends the interpolation and the seasonal estimate, with
        a weight per class of distance to the nearest observation fitted on the validation entries
        (:func:`fit_blend_weights`): the interpolation near the data, the cycle's shape inside a long gap.
    :param seed: seeds the model's initialisation, the validation split, the batches and the draws.
    :param progress: show a progress bar while fitting.
    """

    def __init__(self, latent_dim: int = 8, hidden: int = 64, encoder_window: int = 3, kernel: str = "matern52",
                 window_length: int = 96, window_overlap: float = 0.5, epochs: int = 100, batch_size: int = 8,
                 lr: float = 3e-3, validation_fraction: float = 0.1, patience: int = 30, eval_every: int = 5,
                 num_samples: int = 50, noise_floor: float = 1e-3, context: bool = True, period="auto",
                 seed: int = 0, progress: bool = True):  # fmt: skip
        self.config = ImputerConfig(latent_dim, hidden, encoder_window, kernel, window_length, window_overlap, epochs,
                                    batch_size, lr, validation_fraction, patience, eval_every, num_samples,
                                    noise_floor, context, period, seed, progress)  # fmt: skip
        self.period: int | None = None
        _check_config(self.config)
        self.model: GPVAE | None = None
        self.history: dict = {}
        self.noise_scale = np.ones(DISTANCE_BINS)  # the calibration factors per distance class
        self.blend_weights = np.ones(DISTANCE_BINS)  # the interpolation's weight in the baseline, per distance class
        self.residual_gates = np.ones(DISTANCE_BINS)  # the weight of the model's departure from it, per class

    # ------------------------------------------------------------------ the model
    def _build(self, num_features: int) -> GPVAE:
        c = self.config
        shape = torch.Size([c.latent_dim])
        kernels = {"rbf": lambda: gpytorch.kernels.RBFKernel(batch_shape=shape),
                   "matern52": lambda: gpytorch.kernels.MaternKernel(2.5, batch_shape=shape),
                   "matern32": lambda: gpytorch.kernels.MaternKernel(1.5, batch_shape=shape)}  # fmt: skip
        kernel = kernels[c.kernel]()
        kernel.active_dims = torch.tensor([0])  # the time; the context features ride along in x for the networks
        # lengthscales from one step to half a window (times are in steps), one per channel: fast and slow factors
        longest = max(2.0, self.window_length / 2)
        starts = torch.logspace(0.0, math.log10(longest), c.latent_dim, dtype=torch.float64)
        kernel.lengthscale = starts.view(c.latent_dim, 1, 1)
        context = (3 + 2 * (self.period is not None)) * num_features if c.context else 0
        encoder = MLPEncoder(2 * num_features * c.encoder_window + context, [c.hidden, c.hidden], c.latent_dim)
        decoder = MLPDecoder(c.latent_dim + context, [c.hidden, c.hidden], num_features)
        if c.context:
            encoder, decoder = ContextEncoder(encoder), ResidualDecoder(decoder, num_features)
        if c.encoder_window > 1:
            encoder = WindowEncoder(encoder, c.encoder_window)
        likelihood = GaussianLikelihood(noise=0.1, learn_noise=True, noise_shape=(num_features,),
                                        min_noise=c.noise_floor)  # fmt: skip
        return GPVAE(MaskedEncoder(encoder), decoder, ExactLatentPrior(ExactLatentGP(kernel)), c.latent_dim,
                     likelihood=likelihood, gp_dtype=torch.float64,
                     features=_context_features if c.context else None)  # fmt: skip

    def _standardised(self, data: np.ndarray) -> np.ndarray:
        """``data`` in the fitted per-feature units (NaN as 0 before scaling: mask it)."""
        return (np.nan_to_num(data) - self.scale_mean) / self.scale_std

    def _series(self, X, times, hide: np.ndarray | None = None) -> _Series:
        """What the windows are cut from, at the level of the whole sequences (:class:`_Series`): the entries kept
        (observed, less ``hide``), their standardised values, times in steps, every entry's :func:`gap_distance` to
        the kept ones and, with context, the naive estimates."""
        data, single = _sequences(X)
        if data.shape[-1] != len(self.scale_mean):
            raise ValueError(f"X has {data.shape[-1]} features, the imputer was fitted on {len(self.scale_mean)}")
        steps = _times(times, data.shape) / self.time_step
        observed = ~np.isnan(data)
        kept = observed if hide is None else observed & ~hide
        values = np.where(kept, self._standardised(data), 0.0)
        neighbours, seasonal = self._naive_estimates(values, kept, steps) if self.config.context else (None, None)
        return _Series(data, single, observed, kept, values, steps, gap_distance(kept, steps), neighbours, seasonal)

    def _windowed(self, series: _Series) -> tuple[Tensor, Tensor, Tensor, tuple]:
        """The windows as the model takes them: GP inputs ``(W, 1, length, 1 + C)`` (times in steps from each
        window's start, then the context), standardised values ``(W, length, F)`` with zeros where not kept, the
        mask of the kept entries; and the layout ``(windows, data, single, observed, distance)``."""
        windows = Windows.cover(series.data.shape[1], self.config.window_length, self.config.window_overlap)
        t = windows.cut(series.steps[..., None])
        inputs = t - t[:, :1]  # each window's times from its start, in steps
        if self.config.context:
            context, features = series.neighbours, series.values.shape[-1]
            if series.seasonal is not None:  # the baseline first (ResidualDecoder's), then the two estimates it blends
                weight = self.blend_weights[distance_bin(series.distance)]
                interpolation = context[..., :features]
                blend = series.seasonal + weight * (interpolation - series.seasonal)
                context = np.concatenate([blend, context[..., features:], interpolation, series.seasonal], -1)
            inputs = np.concatenate([inputs, windows.cut(context)], axis=-1)
        x = torch.from_numpy(inputs).unsqueeze(1)
        y = torch.from_numpy(windows.cut(series.values)).float()
        mask = torch.from_numpy(windows.cut(series.kept))
        return x, y, mask, (windows, series.data, series.single, series.observed, series.distance)

    def _tensors(self, X, times, hide: np.ndarray | None = None) -> tuple[Tensor, Tensor, Tensor, tuple]:
        """:meth:`_windowed` of :meth:`_series`: the windows of ``X`` with the ``hide`` entries hidden."""
        return self._windowed(self._series(X, times, hide))

    def _naive_estimates(self, values: np.ndarray, kept: np.ndarray, steps: np.ndarray) -> tuple:
        """:func:`interpolation_context` ``(n, T, 3F)`` of standardised values and, with a period, their
        :func:`seasonal_context` ``(n, T, F)`` (else ``None``)."""
        neighbours = interpolation_context(values, kept, steps, float(self.window_length))
        if self.period is None:
            return neighbours, None
        return neighbours, seasonal_context(values, kept, self.period, neighbours[..., : values.shape[-1]])

    @torch.no_grad()
    def model_mean(self, x: Tensor, y: Tensor, mask: Tensor) -> Tensor:
        """The model's point imputation of standardised windows (:meth:`GPVAE.impute`'s mean), ungated."""
        return self._window_predictions(x, y, mask, 0)[0]

    def fit_gates(self, x: Tensor, mean: Tensor, held_out: Tensor, truth: Tensor, distance: np.ndarray) -> np.ndarray:
        """With context: per distance class, the weight of the model's departure from its baseline that imputes the
        ``held_out`` entries of the windows best (:func:`fit_blend_weights` of the model's imputation ``mean`` and
        the baseline; near the data the learned part helps, deep in a gap it may not). Ones without context."""
        if not self.config.context:
            return np.ones(DISTANCE_BINS)
        chosen = held_out.numpy()
        baseline = _baseline(x, mean.shape[-1]).double().numpy()
        return fit_blend_weights(mean.double().numpy()[chosen], baseline[chosen], truth.double().numpy()[chosen],
                                 distance[chosen])  # fmt: skip

    def gated(self, x: Tensor, values: Tensor, distance: np.ndarray, gates: np.ndarray) -> Tensor:
        """The baseline plus ``gates`` (one per distance class) times the departure of ``values`` ``(..., W, length,
        F)`` (model imputations or draws) from it; the values themselves without context."""
        if not self.config.context:
            return values
        baseline = _baseline(x, values.shape[-1]).to(values)
        weight = torch.from_numpy(gates[distance_bin(distance)]).to(values)
        return baseline + weight * (values - baseline)

    @torch.no_grad()
    def _window_predictions(self, x: Tensor, y: Tensor, mask: Tensor, num_samples: int) -> tuple:
        """:meth:`GPVAE.impute` of standardised windows in batches: the means ``(W, length, F)`` and, with
        ``num_samples``, the decoded means of the draws ``(K, W, length, F)`` (seeded by the imputer's seed)."""
        training = self.model.training
        self.model.eval()
        means, components = [], []
        with torch.random.fork_rng():
            torch.manual_seed(self.config.seed)
            for batch in _batches(self.config.batch_size, x, y, mask):
                result = self.model.impute(*batch, num_samples=num_samples)
                means.append(result.mean)
                if num_samples:
                    components.append(result.sample_means)
        self.model.train(training)
        return torch.cat(means), (torch.cat(components, 1) if num_samples else None)

    def _calibrate(self, x: Tensor, y: Tensor, mask: Tensor, held_out: Tensor, truth: Tensor,
                   distance: np.ndarray) -> np.ndarray:  # fmt: skip
        """The factors on the likelihood's noise, one per class of distance to the nearest observation
        (:func:`distance_bin`), that make the central 90 % predictive intervals hold 90 % of the held-out validation
        entries of the class: a split-conformal recalibration of the intervals' width (the entries were hidden from
        training), by bisection on the factor, on the entries :func:`class_entries` gives for the class; factors never
        fall with the distance."""
        components = self._window_predictions(x, y, mask, max(self.config.num_samples, 1))[1]
        components = self.gated(x, components, distance, self.residual_gates)
        centres = components[:, held_out].double()  # (K, n)
        noise = self.model.likelihood.noise.detach().double().sqrt().expand(held_out.shape)[held_out]
        target = truth[held_out].double()
        distance = distance[held_out.numpy()]
        classes = distance_bin(distance)

        def factor(chosen: Tensor) -> float:
            def coverage(scale: float) -> float:
                u = torch.special.ndtr((target[chosen] - centres[:, chosen]) / (scale * noise[chosen])).mean(0)
                return float(((u > 0.05) & (u < 0.95)).double().mean())

            low, high = -3.0, 3.0  # log10 of the factor; the coverage grows with it
            for _ in range(40):
                middle = 0.5 * (low + high)
                low, high = (middle, high) if coverage(10**middle) < 0.9 else (low, middle)
            return 10 ** (0.5 * (low + high))

        factors = []
        for c in range(DISTANCE_BINS):
            chosen = torch.from_numpy(class_entries(classes, distance, c))
            factors.append(max([factor(chosen), *factors[-1:]]))
        return np.asarray(factors)

    # ------------------------------------------------------------------ fit / impute / predict
    def fit(self, X, times=None) -> GPVAEImputer:
        """Fit the imputer on ``X`` ``(n_sequences, n_steps, n_features)`` or ``(n_steps, n_features)`` with NaN
        where missing, at ``times`` (default ``0, 1, ...``). Returns ``self``."""
        c = self.config
        data, _ = _sequences(X)
        n, steps, num_features = data.shape
        if steps < 3:
            raise ValueError(f"each sequence needs at least 3 steps, got {steps}")
        observed = ~np.isnan(data)
        counts = observed.sum((0, 1))
        if (counts == 0).any():
            raise ValueError(f"features {np.flatnonzero(counts == 0).tolist()} have no observed value: drop them")
        self.scale_mean = np.nanmean(data, axis=(0, 1))
        self.scale_std = np.nanstd(data, axis=(0, 1))
        if (self.scale_std == 0).any():
            constant = np.flatnonzero(self.scale_std == 0).tolist()
            raise ValueError(f"features {constant} are constant where observed (e.g. feature {constant[0]} is always "
                             f"{self.scale_mean[constant[0]]:g}): they carry nothing to learn, drop them")  # fmt: skip
        stamps = _times(times, data.shape)
        self.time_step = float(np.median(np.diff(stamps, axis=-1)))
        self.window_length = min(steps, c.window_length)
        self.period = c.period if c.context and c.period != "auto" else None
        if c.context and c.period == "auto":
            values = np.where(observed, self._standardised(data), 0.0)
            self.period = estimate_period(values, observed, 10 * self.window_length)
        torch.manual_seed(c.seed)
        self.model = self._build(num_features)
        held_out, callbacks, validation = None, [], None
        if c.validation_fraction > 0:  # entries of the series (not of its overlapping windows) hidden from training
            rng = np.random.default_rng(c.seed)
            held_out = validation_holdout(observed, c.validation_fraction, self.window_length // 2, rng)
        self.blend_weights, self.residual_gates, self.noise_scale = (np.ones(DISTANCE_BINS) for _ in range(3))
        series = self._series(data, stamps, hide=held_out)
        if series.seasonal is not None and held_out is not None:  # the naive estimates of the held-out entries
            interpolation = series.neighbours[..., :num_features]
            self.blend_weights = fit_blend_weights(interpolation[held_out], series.seasonal[held_out],
                                                   self._standardised(data)[held_out],
                                                   series.distance[held_out])  # fmt: skip
        x, y, train_mask, (windows, *_, distance) = self._windowed(series)
        if held_out is not None:
            truth = torch.from_numpy(windows.cut(np.where(observed, self._standardised(data), 0.0))).float()
            full_mask = torch.from_numpy(windows.cut(observed))
            validation = _EarlyStopping(self, (x, y, train_mask, full_mask & ~train_mask, truth),
                                        windows.cut(distance), c.eval_every, c.patience)  # fmt: skip
            callbacks.append(validation)
        loader = DataLoader(TensorDataset(x, y, train_mask), batch_size=c.batch_size,
                            shuffle=True, generator=torch.Generator().manual_seed(c.seed))  # fmt: skip
        objective = ELBO(self.model, None, loss_scale=1.0 / c.batch_size)  # every window its own GP data set
        result = fit(objective, loader, epochs=c.epochs, lr=c.lr, callbacks=callbacks, progress=c.progress)
        self.history = dict(result.history)
        if validation is not None and validation.best_state is not None:
            self.model.load_state_dict(validation.best_state)
            self.history["validation"] = validation.trace
            self.history["best_epoch"] = validation.best_epoch
            self.residual_gates = validation.best_gates
            self.noise_scale = self._calibrate(*validation.data, windows.cut(distance))
        self.model.eval()
        return self

    def _check_fitted(self) -> None:
        if self.model is None:
            raise RuntimeError("the imputer is not fitted: call fit(X) first (or GPVAEImputer.load(path))")

    def impute(self, X, times=None) -> np.ndarray:
        """``X`` with its NaN replaced by the point imputation (the observed values kept), same shape."""
        return self.predict(X, times, num_samples=0).mean

    @torch.no_grad()
    def predict(self, X, times=None, num_samples: int | None = None) -> ImputationDistribution:
        """The predictive distribution of every entry of ``X`` (:class:`ImputationDistribution`) with
        ``num_samples`` posterior draws (default the imputer's; 0: the mean only, no spread)."""
        self._check_fitted()
        k = self.config.num_samples if num_samples is None else int(num_samples)
        x, y, mask, (windows, data, single, observed, distance) = self._tensors(X, times)
        means, components = self._window_predictions(x, y, mask, k)
        means = self.gated(x, means, windows.cut(distance), self.residual_gates)
        if k:
            components = self.gated(x, components, windows.cut(distance), self.residual_gates)
        n, steps, _ = data.shape
        unscale = lambda a: a * self.scale_std + self.scale_mean  # noqa: E731
        mean = np.where(observed, data, unscale(windows.join(means.double().numpy(), n, steps)))
        noise = self.model.likelihood.noise.detach().double().sqrt().numpy()
        noise_std = noise * self.noise_scale[distance_bin(distance)] * self.scale_std
        if k:
            component_means = unscale(windows.join(components.double().numpy(), n, steps))
            rng = np.random.default_rng(self.config.seed)
            samples = component_means + noise_std * rng.standard_normal(component_means.shape)
            spread = component_means.var(0) + noise_std**2
        else:
            component_means = samples = mean[None]
            spread = np.broadcast_to(noise_std**2, mean.shape)
        samples = np.where(observed, data, samples)
        component_means = np.where(observed, data, component_means)
        std = np.where(observed, 0.0, np.sqrt(spread))
        if single:
            mean, std, observed, noise_std = mean[0], std[0], observed[0], noise_std[0]
            samples, component_means = samples[:, 0], component_means[:, 0]
        return ImputationDistribution(mean, std, samples, component_means, noise_std, observed)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str) -> None:
        """Write the fitted imputer (settings, scaling, time step, model weights, training history) to ``path``
        atomically; :meth:`load` reads it back (with ``torch.load(weights_only=True)``: no code is unpickled)."""
        self._check_fitted()
        state = {"format": FORMAT, "config": asdict(self.config), "scale_mean": torch.from_numpy(self.scale_mean),
                 "scale_std": torch.from_numpy(self.scale_std), "time_step": self.time_step,
                 "noise_scale": torch.from_numpy(self.noise_scale), "period": self.period,
                 "blend_weights": torch.from_numpy(self.blend_weights),
                 "residual_gates": torch.from_numpy(self.residual_gates),
                 "window_length": self.window_length, "model": self.model.state_dict(),
                 "history": self.history}  # fmt: skip
        atomic_write(path, lambda f: torch.save(state, f))

    @classmethod
    def load(cls, path: str) -> GPVAEImputer:
        """An imputer written by :meth:`save`."""
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises several types for a file that is not its format
            raise ValueError(f"{path} cannot be read as a GPVAEImputer file ({error})") from None
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise ValueError(f"{path} is not a GPVAEImputer file of format {FORMAT}")
        imputer = cls(**state["config"])
        imputer.scale_mean, imputer.scale_std = state["scale_mean"].numpy(), state["scale_std"].numpy()
        imputer.time_step, imputer.history = state["time_step"], state["history"]
        imputer.window_length, imputer.noise_scale = state["window_length"], state["noise_scale"].numpy()
        imputer.period, imputer.blend_weights = state["period"], state["blend_weights"].numpy()
        imputer.residual_gates = state["residual_gates"].numpy()
        imputer.model = imputer._build(len(imputer.scale_mean))
        imputer.model.load_state_dict(state["model"])
        imputer.model.eval()
        return imputer


def _check_config(c: ImputerConfig) -> None:
    positive = {"latent_dim": c.latent_dim, "hidden": c.hidden, "window_length": c.window_length,
                "epochs": c.epochs, "batch_size": c.batch_size, "eval_every": c.eval_every,
                "patience": c.patience}  # fmt: skip
    for name, value in positive.items():
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if c.encoder_window < 1 or c.encoder_window % 2 == 0:
        raise ValueError(f"encoder_window must be a positive odd number, got {c.encoder_window}")
    if c.window_length < 3:
        raise ValueError(f"window_length must be at least 3, got {c.window_length}")
    if not (c.period in (None, "auto") or (isinstance(c.period, int) and not isinstance(c.period, bool)
                                             and c.period >= 2)):  # fmt: skip
        raise ValueError(f"period must be None, 'auto' or a whole number of steps >= 2, got {c.period!r}")
    if c.kernel not in ("rbf", "matern52", "matern32"):
        raise ValueError(f"kernel must be 'rbf', 'matern52' or 'matern32', got {c.kernel!r}")
    if not 0 <= c.window_overlap < 1 or not 0 <= c.validation_fraction < 1:
        raise ValueError("window_overlap and validation_fraction must lie in [0, 1)")
    if not (c.lr > 0 and c.noise_floor > 0 and c.num_samples >= 0):
        raise ValueError("lr and noise_floor must be positive and num_samples non-negative")


def _batches(size: int, *tensors: Tensor):
    return zip(*(t.split(size) for t in tensors))
