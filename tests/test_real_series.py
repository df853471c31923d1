"""The real-series loaders and the masks of the imputation protocols (gpytorch_vae.data.real_series).

The data files come from wheels that the project's extras do not install: ``imputegap`` must be installed with
``--no-deps`` (its own dependencies are huge), and ``pygrinder`` pulls pandas, scikit-learn and pyarrow. The tests
that need them skip, saying what to install; the error paths run everywhere.
"""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

from gpytorch_vae.data import real_series
from gpytorch_vae.data.real_series import (
    IMPUTEGAP_INSTALL,
    block_mask,
    holdout_mask,
    imputegap_dataset_path,
    load_real_series,
    make_mask,
    mcar_mask,
)

HAVE_IMPUTEGAP = importlib.util.find_spec("imputegap") is not None
HAVE_VEGA = importlib.util.find_spec("vega_datasets") is not None
HAVE_PYGRINDER = importlib.util.find_spec("pygrinder") is not None
needs_imputegap = pytest.mark.skipif(not HAVE_IMPUTEGAP, reason=f"the imputegap data files: {IMPUTEGAP_INSTALL}")
needs_vega = pytest.mark.skipif(not HAVE_VEGA, reason="Seattle's weather: pip install vega_datasets")
needs_pygrinder = pytest.mark.skipif(not HAVE_PYGRINDER, reason="the protocol masks: pip install pygrinder")


# ------------------------------------------------------------------------------------------ errors (run everywhere)
def test_missing_imputegap_names_the_pip_command(monkeypatch):
    monkeypatch.setattr(real_series.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install --no-deps imputegap==1\.1\.2"):
        imputegap_dataset_path("electricity.txt")
    with pytest.raises(ModuleNotFoundError, match="pip install vega_datasets"):
        load_real_series("seattle")


def test_file_missing_from_the_package_is_named(monkeypatch, tmp_path):
    (tmp_path / "datasets").mkdir()
    spec = importlib.util.spec_from_loader("imputegap", loader=None, is_package=True)
    spec.submodule_search_locations = [str(tmp_path)]
    monkeypatch.setattr(real_series.importlib.util, "find_spec", lambda name: spec)
    with pytest.raises(FileNotFoundError, match="z_etth.txt"):
        imputegap_dataset_path("z_etth.txt")


def test_unknown_names_are_listed():
    with pytest.raises(KeyError, match="physionet2012"):
        load_real_series("physionet")
    with pytest.raises(KeyError, match="blocks"):
        make_mask("block", np.zeros((10, 2)), 0)


def test_bad_mask_arguments():
    with pytest.raises(ValueError, match="rate"):
        block_mask(np.zeros((100, 2)), rate=1.5)
    with pytest.raises(ValueError, match="min_len"):
        block_mask(np.zeros((100, 2)), min_len=10, max_len=5)


# --------------------------------------------------------------------------------------------------------- loaders
@needs_imputegap
def test_physionet_shape_names_and_ids():
    series = load_real_series("physionet2012")
    assert series.values.shape == (163, 48, 37) and series.values.dtype == np.float64
    assert len(series.feature_names) == 37 and "RecordID" not in series.feature_names
    assert len(set(series.sequence_ids.tolist())) == 163
    np.testing.assert_array_equal(series.times, np.arange(48))
    observed = ~np.isnan(series.values)
    assert 0.15 < observed.mean() < 0.25  # about 20 % observed
    hr = series.feature_names.index("HR")
    assert 60 < np.nanmean(series.values[..., hr]) < 110  # beats per minute: the column order is right


@needs_imputegap
@pytest.mark.parametrize("name, features, total", [("electricity", 20, 5000), ("traffic", 20, 17544),
                                                   ("etth1", 7, 17420)])  # fmt: skip
def test_long_series_are_cut_to_their_first_steps(name, features, total):
    series = load_real_series(name)
    assert series.values.shape == (4000, features)
    assert len(series.feature_names) == features and np.isfinite(series.values).all()
    full = load_real_series(name, n_steps=None)
    assert full.values.shape == (total, features)
    np.testing.assert_array_equal(full.values[:4000], series.values)
    assert "first 4000" in series.source
    with pytest.raises(ValueError, match="n_steps"):
        load_real_series(name, n_steps=0)


@needs_imputegap
def test_the_data_files_are_read_without_importing_imputegap():
    imported_before = "imputegap" in sys.modules
    load_real_series("etth1", n_steps=10)
    assert imported_before or "imputegap" not in sys.modules


@needs_vega
def test_seattle_weather():
    series = load_real_series("seattle")
    assert series.values.shape == (1461, 4) and np.isfinite(series.values).all()
    assert series.feature_names == ("precipitation", "temp_max", "temp_min", "wind")
    np.testing.assert_allclose(series.values[:2, 0], np.log1p([0.0, 10.9]))  # log(1 + mm) of the first two days


# ----------------------------------------------------------------------------------------------------------- masks
def _data_with_holes(shape=(6, 60, 5), missing=0.3, seed=0):
    rng = np.random.default_rng(seed)
    values = rng.normal(size=shape)
    values[rng.random(shape) < missing] = np.nan
    return values


@needs_pygrinder
@pytest.mark.parametrize("maker", [holdout_mask, mcar_mask, block_mask])
def test_masks_are_seeded_and_leave_the_global_state_alone(maker):
    values = _data_with_holes()
    np.random.seed(123)
    expected_next = np.random.rand()
    np.random.seed(123)
    first = maker(values, seed=4)
    assert np.random.rand() == expected_next  # numpy's global generator is as the caller left it
    np.testing.assert_array_equal(first, maker(values, seed=4))
    assert not np.array_equal(first, maker(values, seed=5))
    assert first.dtype == bool and first.shape == values.shape
    assert not (first & np.isnan(values)).any()  # only observed values are held out


@needs_pygrinder
def test_holdout_and_mcar_rates():
    values = _data_with_holes((50, 48, 10), missing=0.8)
    observed = ~np.isnan(values)
    assert abs(holdout_mask(values, 0.1, seed=0).sum() / observed.sum() - 0.1) < 0.015
    long = _data_with_holes((5000, 8), missing=0.0)
    assert abs(mcar_mask(long, 0.2, seed=0).mean() - 0.2) < 0.01


@needs_pygrinder
def test_blocks_hide_every_variable_in_runs():
    values = _data_with_holes((4000, 7), missing=0.0)
    hidden = block_mask(values, rate=0.2, min_len=24, max_len=48, seed=1)
    steps = hidden.any(axis=1)
    np.testing.assert_array_equal(steps, hidden.all(axis=1))  # all variables at once
    assert 0.2 <= steps.mean() < 0.2 + 48 / 4000
    edges = np.diff(np.r_[0, steps.astype(int), 0])
    runs = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
    assert runs.min() >= 24  # overlapping blocks may merge into longer runs, never shorter ones


@needs_pygrinder
def test_blocks_in_sequences_hide_whole_steps():
    values = _data_with_holes((20, 48, 4), missing=0.5)
    hidden = block_mask(values, rate=0.2, min_len=24, max_len=48, seed=0)
    observed = ~np.isnan(values)
    assert hidden.sum() >= 0.2 * observed.sum()
    touched = hidden.any(axis=2, keepdims=True)  # (sequence, step) pairs a block covered
    np.testing.assert_array_equal(hidden, observed & touched)  # every observed value of a covered step is hidden


@needs_imputegap
@needs_pygrinder
def test_physionet_protocol_holds_out_ten_percent():
    values = load_real_series("physionet2012").values
    held_out = make_mask("holdout10", values, seed=0)
    share = held_out.sum() / (~np.isnan(values)).sum()
    assert 0.09 < share < 0.11
