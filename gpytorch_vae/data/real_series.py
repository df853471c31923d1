"""Real multivariate series with holes, for imputation benchmarks that run offline, and the masks of their protocols.

The series are read from text files that ship inside two wheels, so nothing is downloaded at run time:

- ``imputegap==1.1.2`` carries its data sets as whitespace-separated text files in ``imputegap/datasets/``. Install
  it **without its dependencies** (they are large and none is needed here): ``pip install imputegap==1.1.2`` with
  pip's option ``--no-deps`` (the whole command is :data:`IMPUTEGAP_INSTALL`). Only the text files are read; no
  ``imputegap`` module is imported (see :func:`imputegap_dataset_path`).
- ``vega_datasets`` carries ``seattle-weather.csv`` (``pip install vega_datasets``; ``--no-deps`` suffices too: the
  CSV is read with the standard library, not through ``vega_datasets``' pandas-based loaders).

The data sets (:data:`LOADERS`), with the shape returned:

- ``physionet2012``: PhysioNet 2012 ICU stays as prepared by the SAITS authors, ``(163, 48, 37)``, all of the file.
- ``electricity``: UCI electricity load of 20 clients every 15 minutes, ``(4000, 20)``: the first 4,000 of 5,000
  steps (41.7 days).
- ``traffic``: PeMS road occupancy of 20 sensors, hourly, ``(4000, 20)``: the first 4,000 of 17,544 steps (167 days).
- ``etth1``: ETTh1 transformer loads and oil temperature, hourly, ``(4000, 7)``: the first 4,000 of 17,420 steps.
- ``seattle``: Seattle's daily weather 2012-2015, ``(1461, 4)``, all of it.

Every loader returns a :class:`RealSeries`: float64 values with NaN where a value is missing, the feature names and
the time of each step in units of the sampling period. The long series are cut to their first ``n_steps`` steps
(4,000 by default) so that a benchmark cell trains in minutes on two CPU cores; the files of ``electricity`` and
``traffic`` hold only 20 columns each, so every column is kept.

The masks follow the protocols of issue 32, drawn with ``pygrinder`` (``pip install pygrinder``) from a seed, and
deterministic given it: :func:`holdout_mask` (10 % of the observed values, the SAITS protocol, for PhysioNet),
:func:`mcar_mask` (20 % of the entries at random) and :func:`block_mask` (runs of 24-48 steps of every variable at
once, about 20 % of the steps). Each returns the *evaluation mask*: ``True`` where an observed value is held out.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.metadata
import importlib.util
import pathlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

IMPUTEGAP_VERSION = "1.1.2"
#: The pip command that installs imputegap's data files without its dependencies.
IMPUTEGAP_INSTALL = f"pip install --no-deps imputegap=={IMPUTEGAP_VERSION}"
DEFAULT_STEPS = 4000

#: The 37 time-varying variables of PhysioNet 2012, in the column order of ``z_physionet_saits.txt`` (alphabetical,
#: with the ``RecordID`` column, index 27 of the file, taken out). Identified from the file's per-column means, which
#: match the variables' units (e.g. ``ALP`` about 99 IU/L, ``HR`` 88 bpm, ``Temp`` 37.1 C, ``pH`` 7.37).
PHYSIONET_VARIABLES = (
    "ALP", "ALT", "AST", "Albumin", "BUN", "Bilirubin", "Cholesterol", "Creatinine", "DiasABP", "FiO2", "GCS",
    "Glucose", "HCO3", "HCT", "HR", "K", "Lactate", "MAP", "MechVent", "Mg", "NIDiasABP", "NIMAP", "NISysABP", "Na",
    "PaCO2", "PaO2", "Platelets", "RespRate", "SaO2", "SysABP", "Temp", "TroponinI", "TroponinT", "Urine", "WBC",
    "Weight", "pH",
)  # fmt: skip
PHYSIONET_RECORD_COLUMN = 27
#: The seven columns of ETTh1 (Zhou et al. 2021): high, middle and low useful/useless load, and the oil temperature.
ETTH1_VARIABLES = ("HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT")
#: Seattle's variables; precipitation is returned as log(1 + mm), daily rain being heavy-tailed.
SEATTLE_VARIABLES = ("precipitation", "temp_max", "temp_min", "wind")


@dataclass(frozen=True)
class RealSeries:
    """One data set.

    :ivar name: the data set's name (a key of :data:`LOADERS`).
    :ivar values: float64, ``(n_sequences, n_steps, n_features)`` for a set of sequences (PhysioNet's stays) or
        ``(n_steps, n_features)`` for one long series; NaN where a value is missing.
    :ivar feature_names: one name per feature.
    :ivar times: ``(n_steps,)`` float64, the time of each step in units of ``step`` (0, 1, 2, ...: every series here
        is regularly sampled).
    :ivar step: the sampling period in words, e.g. ``"1 hour"``.
    :ivar source: the file the values came from and how they were cut.
    :ivar sequence_ids: ``(n_sequences,)`` identifiers of the sequences (PhysioNet's ``RecordID``), else ``None``.
    """

    name: str
    values: np.ndarray
    feature_names: tuple[str, ...]
    times: np.ndarray
    step: str
    source: str
    sequence_ids: np.ndarray | None = None


def imputegap_dataset_path(filename: str) -> pathlib.Path:
    """The path of one of the text files in ``imputegap``'s ``datasets`` folder.

    The folder is located with :func:`importlib.util.find_spec`, which finds a package without executing its
    ``__init__.py`` (:func:`importlib.resources.files` would import the package; ``imputegap/__init__.py`` of 1.1.2
    only sets ``__version__``, but nothing here should depend on what a later version puts there, and its other
    modules import dependencies that a ``--no-deps`` install does not have).

    :param filename: e.g. ``"z_physionet_saits.txt"``.
    :returns: the file's path.
    :raises ModuleNotFoundError: if ``imputegap`` is not installed (the message gives the pip command).
    :raises FileNotFoundError: if the installed ``imputegap`` does not ship ``filename``.
    """
    spec = importlib.util.find_spec("imputegap")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"the real series need the data files of imputegap; install them with: "
                                  f"{IMPUTEGAP_INSTALL}")  # fmt: skip
    folders = [pathlib.Path(location) / "datasets" for location in spec.submodule_search_locations]
    for folder in folders:
        if (folder / filename).is_file():
            return folder / filename
    try:
        version = importlib.metadata.version("imputegap")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    raise FileNotFoundError(f"{filename} is not in {', '.join(map(str, folders))} (imputegap {version}); "
                            f"these loaders read the files of imputegap {IMPUTEGAP_VERSION}: "
                            f"{IMPUTEGAP_INSTALL}")  # fmt: skip


def _read_imputegap(filename: str) -> np.ndarray:
    """A whitespace-separated text file of imputegap as a float64 ``(rows, columns)`` array (``NaN`` parsed)."""
    return np.loadtxt(imputegap_dataset_path(filename), dtype=np.float64, ndmin=2)


def _long_series(name: str, filename: str, n_steps: int | None, step: str, names: tuple[str, ...] | str) -> RealSeries:
    """One long imputegap series cut to its first ``n_steps`` rows; ``names`` are the columns' names, or a prefix
    to number them with (``"client_"`` -> ``client_00``, ...)."""
    values = _read_imputegap(filename)
    total = len(values)
    if n_steps is not None and n_steps < 1:
        raise ValueError(f"n_steps must be positive or None, got {n_steps}")
    if n_steps is None or n_steps >= total:
        source = f"imputegap {IMPUTEGAP_VERSION}: datasets/{filename}, all {total} steps"
    else:
        values = values[:n_steps].copy()
        source = f"imputegap {IMPUTEGAP_VERSION}: datasets/{filename}, first {n_steps} of {total} steps"
    if isinstance(names, str):
        names = tuple(f"{names}{j:02d}" for j in range(values.shape[1]))
    if len(names) != values.shape[1]:
        raise ValueError(f"{filename}: expected {len(names)} columns, got {values.shape[1]}")
    return RealSeries(name, values, names, np.arange(len(values), dtype=np.float64), step, source)


def load_physionet2012() -> RealSeries:
    """PhysioNet/CinC Challenge 2012 as prepared by the SAITS authors (``z_physionet_saits.txt``).

    The file: 7,824 rows x 38 whitespace-separated columns, ``NaN`` for a missing value; 163 ICU stays of 48 hourly
    rows each, one after the other; 37 time-varying variables in alphabetical order plus ``RecordID`` (column 27,
    constant within a stay, 163 distinct ids from 142129), dropped here. Raw clinical units (not standardised).
    About 20 % of the entries are observed (from 0.1 % for ``TroponinI`` to 89 % for ``HR``); 507 of the 7,824 hours
    have no value at all. ``MechVent`` is 1 wherever observed (an indicator: its observed values have zero spread),
    so a per-feature standardisation must guard against a zero scale. Raw-data artefacts are left as they are: a
    ``Weight`` of -1 (the challenge's code for "unknown" in some records) and a ``Temp`` of -17.8 C.

    :returns: ``values`` ``(163, 48, 37)``, ``times`` the hours 0-47, ``sequence_ids`` the 163 ``RecordID``\\ s.
    """
    filename = "z_physionet_saits.txt"
    raw = _read_imputegap(filename)
    n_steps = 48
    if raw.shape[1] != len(PHYSIONET_VARIABLES) + 1 or raw.shape[0] % n_steps:
        raise ValueError(f"{filename}: expected 48 rows per stay and 38 columns, got {raw.shape}")
    stays = raw.reshape(-1, n_steps, raw.shape[1])
    record = stays[:, :, PHYSIONET_RECORD_COLUMN]
    if np.isnan(record).any() or not np.all(record == record[:, :1]):
        raise ValueError(f"{filename}: column {PHYSIONET_RECORD_COLUMN} is not a RecordID constant within each stay")
    values = np.delete(stays, PHYSIONET_RECORD_COLUMN, axis=2)
    return RealSeries("physionet2012", values, PHYSIONET_VARIABLES, np.arange(n_steps, dtype=np.float64), "1 hour",
                      f"imputegap {IMPUTEGAP_VERSION}: datasets/{filename}, all {len(stays)} stays",
                      record[:, 0].astype(np.int64))  # fmt: skip


def load_electricity(n_steps: int | None = DEFAULT_STEPS) -> RealSeries:
    """UCI ElectricityLoadDiagrams 2011-2014 as shipped by imputegap (``electricity.txt``).

    The file: 5,000 rows (steps of 15 minutes, 52 days) x 20 columns (clients), no missing value, already
    z-scored per column over the 5,000 rows (means 0, standard deviations 1). All 20 columns are kept.

    :param n_steps: keep the first ``n_steps`` steps (default 4,000: 41.7 days); ``None`` keeps all 5,000.
    :returns: ``values`` ``(n_steps, 20)``, features ``client_00`` ... ``client_19``.
    """
    return _long_series("electricity", "electricity.txt", n_steps, "15 minutes", "client_")


def load_traffic(n_steps: int | None = DEFAULT_STEPS) -> RealSeries:
    """PeMS San Francisco Bay Area road occupancy (Lai et al. 2018) as shipped by imputegap (``traffic.txt``).

    The file: 17,544 rows (hourly, 2 years) x 20 columns (sensors), occupancy rates in [0, 0.7], no missing value.
    All 20 columns are kept.

    :param n_steps: keep the first ``n_steps`` hours (default 4,000: 167 days); ``None`` keeps all 17,544.
    :returns: ``values`` ``(n_steps, 20)``, features ``sensor_00`` ... ``sensor_19``.
    """
    return _long_series("traffic", "traffic.txt", n_steps, "1 hour", "sensor_")


def load_etth1(n_steps: int | None = DEFAULT_STEPS) -> RealSeries:
    """ETTh1, the hourly electricity-transformer data set of Zhou et al. (2021), as shipped by imputegap
    (``z_etth.txt``).

    The file: 17,420 rows (hourly, July 2016 - June 2018) x 7 columns (the six loads and the oil temperature, in
    the order of :data:`ETTH1_VARIABLES`; raw units, not standardised; no date column), no missing value.

    :param n_steps: keep the first ``n_steps`` hours (default 4,000: 167 days); ``None`` keeps all 17,420.
    :returns: ``values`` ``(n_steps, 7)``.
    """
    return _long_series("etth1", "z_etth.txt", n_steps, "1 hour", ETTH1_VARIABLES)


def load_seattle_weather() -> RealSeries:
    """Seattle's daily weather 2012-2015, ``seattle-weather.csv`` of ``vega_datasets``.

    The file: a CSV with a header, 1,461 rows (one per day, none missing) of date, precipitation (mm), maximum and
    minimum temperature (C), wind (m/s) and a weather label (dropped). Precipitation is returned as log(1 + mm).
    Read with the standard library (no pandas): the file is located with :func:`importlib.util.find_spec`.

    :returns: ``values`` ``(1461, 4)`` in the order of :data:`SEATTLE_VARIABLES`.
    :raises ModuleNotFoundError: if ``vega_datasets`` is not installed (the message gives the pip command).
    """
    spec = importlib.util.find_spec("vega_datasets")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("Seattle's weather needs the data files of vega_datasets: pip install vega_datasets")
    path = pathlib.Path(next(iter(spec.submodule_search_locations))) / "_data" / "seattle-weather.csv"
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    values = np.array([[float(row[name]) for name in SEATTLE_VARIABLES] for row in rows], dtype=np.float64)
    values[:, 0] = np.log1p(values[:, 0])
    return RealSeries("seattle", values, SEATTLE_VARIABLES, np.arange(len(values), dtype=np.float64), "1 day",
                      f"vega_datasets: _data/seattle-weather.csv, all {len(values)} days")  # fmt: skip


#: The loaders by name; the long series take ``n_steps``.
LOADERS = {
    "physionet2012": load_physionet2012,
    "electricity": load_electricity,
    "traffic": load_traffic,
    "etth1": load_etth1,
    "seattle": load_seattle_weather,
}


def load_real_series(name: str, **kwargs) -> RealSeries:
    """Load one of :data:`LOADERS` by name.

    :param name: ``physionet2012``, ``electricity``, ``traffic``, ``etth1`` or ``seattle``.
    :param kwargs: passed to the loader (``n_steps`` for the long imputegap series).
    :raises KeyError: for an unknown name (the message lists the known ones).
    """
    if name not in LOADERS:
        raise KeyError(f"unknown real series {name!r}; known: {', '.join(LOADERS)}")
    return LOADERS[name](**kwargs)


# ----------------------------------------------------------------------------------------------------------- masks
@contextlib.contextmanager
def _numpy_global_seed(seed: int) -> Iterator[None]:
    """pygrinder draws from numpy's global generator: seed it for the block and put the caller's state back."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _pygrinder():
    try:
        import pygrinder
    except ImportError as error:
        message = "the masks of the real-series protocols need pygrinder: pip install pygrinder"
        raise ModuleNotFoundError(message) from error
    return pygrinder


def _as_sequences(values: np.ndarray) -> np.ndarray:
    """``(n_sequences, n_steps, n_features)``: a long series ``(n_steps, n_features)`` becomes one sequence."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 2:
        return values[None]
    if values.ndim != 3:
        raise ValueError(f"values must be (n_steps, n_features) or (n_sequences, n_steps, n_features), "
                         f"got shape {values.shape}")  # fmt: skip
    return values


def _held_out(values: np.ndarray, corrupted: np.ndarray) -> np.ndarray:
    """The evaluation mask: observed in ``values``, NaN in ``corrupted``; in the shape of ``values``."""
    return (~np.isnan(values)) & np.isnan(corrupted.reshape(values.shape))


def holdout_mask(values: np.ndarray, rate: float = 0.1, seed: int = 0) -> np.ndarray:
    """The SAITS protocol for PhysioNet: hold out ``rate`` of the observed values, at random.

    Drawn with :func:`pygrinder.mcar` on the data (each entry with probability ``rate``; an entry already missing
    stays missing), so the held-out share of the observed values is ``rate`` in expectation.

    :param values: ``(n_sequences, n_steps, n_features)`` or ``(n_steps, n_features)``, NaN where missing.
    :param rate: the share of the observed values to hold out.
    :param seed: seeds numpy's global generator for the draw (the caller's state is restored after).
    :returns: bool, the shape of ``values``: ``True`` where an observed value is held out.
    """
    return mcar_mask(values, rate, seed)


def mcar_mask(values: np.ndarray, rate: float = 0.2, seed: int = 0) -> np.ndarray:
    """Hide each entry independently with probability ``rate`` (:func:`pygrinder.mcar`).

    :param values: ``(n_sequences, n_steps, n_features)`` or ``(n_steps, n_features)``, NaN where missing.
    :param rate: the probability of hiding an entry.
    :param seed: seeds numpy's global generator for the draw (the caller's state is restored after).
    :returns: bool, the shape of ``values``: ``True`` where an observed value is hidden.
    """
    pygrinder = _pygrinder()
    values = np.asarray(values, dtype=np.float64)
    with _numpy_global_seed(seed):
        corrupted = pygrinder.mcar(_as_sequences(values), rate)
    return _held_out(values, corrupted)


def block_mask(
    values: np.ndarray, rate: float = 0.2, min_len: int = 24, max_len: int = 48, seed: int = 0
) -> np.ndarray:
    """Hide runs of ``min_len``-``max_len`` consecutive steps of every variable at once (a blackout of all sensors),
    until at least ``rate`` of the observed values are hidden.

    Each block's length is drawn uniformly from ``min_len..max_len`` (clipped to the sequence length) and the block
    is placed by :func:`pygrinder.block_missing` (as wide as all the features, at a uniformly drawn sequence and start
    step); blocks may overlap. Blocks are added one at a time until the hidden share of the observed values reaches
    ``rate``, so the share ends a little above ``rate`` (by at most one block).

    :param values: ``(n_sequences, n_steps, n_features)`` or ``(n_steps, n_features)``, NaN where missing.
    :param rate: the share of the observed values to hide, in ``(0, 1)``.
    :param min_len: the shortest block, in steps.
    :param max_len: the longest block, in steps.
    :param seed: seeds numpy's global generator (block lengths and places; the caller's state is restored after).
    :returns: bool, the shape of ``values``: ``True`` where an observed value is hidden.
    """
    if not 0 < rate < 1:
        raise ValueError(f"rate must be in (0, 1), got {rate}")
    if not 1 <= min_len <= max_len:
        raise ValueError(f"need 1 <= min_len <= max_len, got {min_len}, {max_len}")
    pygrinder = _pygrinder()
    values = np.asarray(values, dtype=np.float64)
    sequences = _as_sequences(values)
    n_sequences, n_steps, n_features = sequences.shape
    observed = ~np.isnan(sequences)
    if not observed.any():
        raise ValueError("values has no observed entry to hide")
    corrupted = sequences.copy()
    with _numpy_global_seed(seed):
        while (observed & np.isnan(corrupted)).sum() < rate * observed.sum():
            length = min(int(np.random.randint(min_len, max_len + 1)), n_steps)
            # pygrinder places ceil(n_sequences * factor * n_steps / length) blocks: this factor makes it exactly one
            factor = 0.999 * length / (n_steps * n_sequences)
            corrupted = pygrinder.block_missing(corrupted, factor=factor, block_len=length, block_width=n_features)
    return _held_out(values, corrupted)


#: The mask makers by pattern name, each ``(values, seed) -> evaluation mask`` with the protocol's rates.
PATTERNS = {
    "holdout10": lambda values, seed: holdout_mask(values, 0.1, seed),
    "mcar20": lambda values, seed: mcar_mask(values, 0.2, seed),
    "blocks": lambda values, seed: block_mask(values, 0.2, 24, 48, seed),
}


def make_mask(pattern: str, values: np.ndarray, seed: int) -> np.ndarray:
    """The evaluation mask of one protocol pattern.

    :param pattern: ``holdout10`` (:func:`holdout_mask`, 10 %), ``mcar20`` (:func:`mcar_mask`, 20 %) or ``blocks``
        (:func:`block_mask`, 24-48 steps, 20 %).
    :param values: ``(n_sequences, n_steps, n_features)`` or ``(n_steps, n_features)``, NaN where missing.
    :param seed: the mask's seed.
    :returns: bool, the shape of ``values``: ``True`` where an observed value is held out.
    """
    if pattern not in PATTERNS:
        raise KeyError(f"unknown pattern {pattern!r}; known: {', '.join(PATTERNS)}")
    return PATTERNS[pattern](values, seed)
