"""GPVAEImputer: shapes, windows, irregular times, the predictive distribution, save/load, bad input named."""

import math

import numpy as np
import pytest
import torch

from gpytorch_vae.imputer import (
    GPVAEImputer,
    ImputationDistribution,
    Windows,
    class_entries,
    distance_bin,
    estimate_period,
    fit_blend_weights,
    gap_distance,
    interpolation_context,
    seasonal_context,
    validation_holdout,
)

SMALL = dict(latent_dim=2, hidden=8, epochs=4, batch_size=8, eval_every=2, num_samples=4, progress=False)


def series(n=6, steps=20, features=3, missing=0.3, seed=0):
    """Smooth sequences (sines of random phase) with a share of entries missing (NaN)."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps)
    phase = rng.uniform(0, 2 * np.pi, (n, 1, 1))
    truth = np.sin(2 * np.pi * t[None, :, None] / 10 + phase) * np.arange(1, features + 1) + 5.0
    data = truth + 0.05 * rng.standard_normal(truth.shape)
    data[rng.random(data.shape) < missing] = np.nan
    return data, truth


@pytest.fixture(scope="module")
def fitted():
    data, _ = series()
    return GPVAEImputer(**SMALL).fit(data), data


class TestShapes:
    def test_sequences_keep_their_shape_and_observed_values(self, fitted):
        imputer, data = fitted
        filled = imputer.impute(data)
        assert filled.shape == data.shape and np.isfinite(filled).all()
        observed = ~np.isnan(data)
        np.testing.assert_array_equal(filled[observed], data[observed])
        prediction = imputer.predict(data)
        assert prediction.samples.shape == (4, *data.shape) and prediction.std.shape == data.shape
        assert (prediction.std[observed] == 0).all() and (prediction.std[~observed] > 0).all()
        kept = np.broadcast_to(data[observed], (4, observed.sum()))
        np.testing.assert_array_equal(prediction.samples[:, observed], kept)

    def test_one_long_series_is_cut_into_windows(self):
        data, _ = series(n=1, steps=50)
        imputer = GPVAEImputer(**{**SMALL, "window_length": 16}).fit(data[0])
        assert imputer.window_length == 16
        filled = imputer.impute(data[0])
        assert filled.shape == (50, 3) and np.isfinite(filled).all()
        assert imputer.predict(data[0]).samples.shape == (4, 50, 3)

    def test_a_tensor_is_taken_like_an_array(self, fitted):
        imputer, data = fitted
        np.testing.assert_array_equal(imputer.impute(torch.from_numpy(data)), imputer.impute(data))


class TestWindows:
    def test_cut_then_join_gives_the_sequence_back_from_the_most_central_window(self):
        windows = Windows.cover(steps=23, length=8, overlap=0.5)
        assert windows.starts.tolist() == [0, 4, 8, 12, 15]  # the last one flush with the end
        array = np.random.default_rng(0).random((2, 23, 3))
        cut = windows.cut(array)
        assert cut.shape == (10, 8, 3)
        np.testing.assert_array_equal(windows.join(cut, 2, 23), array)
        owner, position = windows.owner(23)
        assert (owner[:2] == 0).all() and owner[6] == 1 and owner[22] == 4  # step 6: position 2 of the window at 4
        for step in range(23):
            start = windows.starts[owner[step]]
            assert position[step] == step - start
            centrality = min(position[step], 7 - position[step])
            assert all(min(step - s, s + 7 - step) <= centrality for s in windows.starts if s <= step < s + 8)

    def test_a_short_sequence_is_one_window(self):
        windows = Windows.cover(steps=5, length=96, overlap=0.5)
        assert windows.length == 5 and windows.starts.tolist() == [0]


class TestTimes:
    def test_times_are_measured_in_median_steps(self):
        data, _ = series()
        plain = GPVAEImputer(**SMALL).fit(data)
        hourly = GPVAEImputer(**SMALL).fit(data, times=3600.0 * np.arange(20))
        assert hourly.time_step == 3600.0 and plain.time_step == 1.0
        np.testing.assert_array_equal(hourly.impute(data, times=3600.0 * np.arange(20)), plain.impute(data))

    def test_irregular_times_per_sequence_reach_the_gp(self):
        data, _ = series()
        rng = np.random.default_rng(1)
        times = np.cumsum(rng.uniform(0.5, 1.5, (6, 20)), axis=1)
        imputer = GPVAEImputer(**SMALL).fit(data, times=times)
        x, _, _, _ = imputer._tensors(data, times)
        np.testing.assert_allclose(x[:, 0, :, 0].numpy(), (times - times[:, :1]) / imputer.time_step)
        assert np.isfinite(imputer.impute(data, times=times)).all()
        datetimes = np.datetime64("2026-01-01T00:00") + (3600 * np.arange(20)).astype("timedelta64[s]")
        assert GPVAEImputer(**SMALL).fit(data, times=datetimes).time_step == 3600.0


class TestDistribution:
    def test_one_component_quantiles_are_the_gaussians(self):
        means = np.array([[[0.0, 1.0]]])  # K = 1, shape (1, 1, 2)
        d = ImputationDistribution(means[0], np.full((1, 2), 2.0), means, means, np.array([2.0, 0.5]),
                                   np.zeros((1, 2), bool))  # fmt: skip
        for q in (0.05, 0.5, 0.9):
            z = torch.special.ndtri(torch.tensor(q, dtype=torch.float64)).item()
            np.testing.assert_allclose(d.quantile(q), [[0.0 + 2.0 * z, 1.0 + 0.5 * z]], atol=1e-8)
        lower, upper = d.interval(0.9)
        np.testing.assert_allclose(upper - lower, [[2 * 2.0 * 1.6448536269514722, 2 * 0.5 * 1.6448536269514722]])

    def test_mixture_quantile_inverts_the_mixture_cdf(self):
        rng = np.random.default_rng(0)
        components = rng.normal(size=(5, 3, 4))
        d = ImputationDistribution(components.mean(0), np.ones((3, 4)), components, components, np.array(0.3),
                                   np.zeros((3, 4), bool))  # fmt: skip
        for q in (0.05, 0.3, 0.95):
            value = d.quantile(q)
            erf = np.vectorize(math.erf)
            direct = np.mean([0.5 * (1 + erf((value - c) / (0.3 * math.sqrt(2)))) for c in components], axis=0)
            np.testing.assert_allclose(direct, q, atol=1e-8)
        with pytest.raises(ValueError, match="between 0 and 1"):
            d.quantile(1.0)

    def test_observed_entries_have_no_spread(self, fitted):
        imputer, data = fitted
        prediction = imputer.predict(data)
        observed = ~np.isnan(data)
        lower, upper = prediction.interval(0.9)
        np.testing.assert_array_equal(lower[observed], data[observed])
        assert (upper[~observed] > lower[~observed]).all()

    def test_predictions_are_reproducible(self, fitted):
        imputer, data = fitted
        a, b = imputer.predict(data), imputer.predict(data)
        np.testing.assert_array_equal(a.samples, b.samples)


class TestTraining:
    def test_early_stopping_keeps_the_best_validated_model(self):
        data, _ = series()
        imputer = GPVAEImputer(**{**SMALL, "epochs": 40, "patience": 2, "eval_every": 1}).fit(data)
        trace = imputer.history["validation"]
        best = min(trace, key=lambda point: point["validation_mae"])
        assert imputer.history["best_epoch"] == best["epoch"]
        assert len(imputer.history["loss"]) == trace[-1]["epoch"] <= best["epoch"] + 2  # stopped after 2 bad epochs

    def test_beats_the_mean_on_smooth_series(self):
        data, truth = series(n=12, steps=30, missing=0.4)
        imputer = GPVAEImputer(latent_dim=3, hidden=32, epochs=40, validation_fraction=0.0, progress=False).fit(data)
        missing = np.isnan(data)
        mean_fill = np.where(missing, np.nanmean(data, axis=(0, 1)), data)
        error = np.abs(imputer.impute(data) - truth)[missing].mean()
        assert error < 0.7 * np.abs(mean_fill - truth)[missing].mean()


class TestSaveLoad:
    def test_round_trip_gives_the_same_predictions(self, fitted, tmp_path):
        imputer, data = fitted
        path = str(tmp_path / "imputer.pt")
        imputer.save(path)
        loaded = GPVAEImputer.load(path)
        np.testing.assert_array_equal(loaded.predict(data).samples, imputer.predict(data).samples)
        assert loaded.config == imputer.config and loaded.history["best_epoch"] == imputer.history["best_epoch"]

    def test_a_foreign_file_is_refused(self, tmp_path):
        path = tmp_path / "other.pt"
        torch.save({"weights": torch.zeros(2)}, path)
        with pytest.raises(ValueError, match="not a GPVAEImputer file"):
            GPVAEImputer.load(str(path))
        path.write_bytes(b"garbage")
        with pytest.raises(ValueError, match="cannot be read"):
            GPVAEImputer.load(str(path))


class TestBadInput:
    @pytest.mark.parametrize(
        "make, message",
        [
            (lambda d: d[0, 0], "n_sequences, n_steps, n_features"),
            (lambda d: d[..., None], "n_sequences, n_steps, n_features"),
            (lambda d: np.where(np.arange(3) == 1, np.nan, d), r"features \[1\] have no observed value"),
            (lambda d: np.where(np.arange(3) == 2, 4.0, d), r"features \[2\] are constant.*always 4"),
            (lambda d: d[:, :2], "at least 3 steps"),
            (lambda d: np.where(np.arange(3) == 0, np.inf, d), "infinite"),
            (lambda d: d.astype(str), "must hold numbers"),
        ],
    )
    def test_bad_data_is_named(self, make, message):
        data, _ = series()
        with pytest.raises((ValueError, TypeError), match=message):
            GPVAEImputer(**SMALL).fit(make(data))

    def test_bad_times_are_named(self):
        data, _ = series()
        imputer = GPVAEImputer(**SMALL)
        backwards = np.arange(20.0)
        backwards[7] = 3.0
        with pytest.raises(ValueError, match="increase strictly.*sequence 0.*step 7"):
            imputer.fit(data, times=backwards)
        with pytest.raises(ValueError, match=r"times must be \(20,\).*\(6, 20\)"):
            imputer.fit(data, times=np.arange(19.0))
        with pytest.raises(ValueError, match="NaN or inf"):
            imputer.fit(data, times=np.where(np.arange(20) == 3, np.nan, np.arange(20.0)))

    def test_bad_settings_and_use_before_fit_are_named(self, fitted):
        with pytest.raises(ValueError, match="encoder_window must be a positive odd"):
            GPVAEImputer(encoder_window=2)
        with pytest.raises(ValueError, match="kernel must be"):
            GPVAEImputer(kernel="cosine")
        with pytest.raises(RuntimeError, match="not fitted"):
            GPVAEImputer().impute(np.zeros((3, 2)))
        imputer, data = fitted
        with pytest.raises(ValueError, match="fitted on 3"):
            imputer.impute(data[..., :2])


class TestContext:
    def test_interpolation_context_leaves_each_entry_out(self):
        rng = np.random.default_rng(3)
        values = rng.normal(size=(2, 9, 2))
        kept = rng.random((2, 9, 2)) < 0.5
        kept[0, :, 0] = [True, False, True, True, False, False, True, False, False]
        times = np.cumsum(rng.uniform(0.5, 2.0, (2, 9)), axis=1)
        context = interpolation_context(values, kept, times, horizon=4.0)
        assert context.shape == (2, 9, 6)
        for s in range(2):
            for f in range(2):
                for t in range(9):
                    others = [u for u in range(9) if kept[s, u, f] and u != t]
                    before = [u for u in others if u < t]
                    after = [u for u in others if u > t]
                    if before and after:  # np.interp between the nearest kept entries on each side
                        expected = np.interp(times[s, t], times[s, [before[-1], after[0]]],
                                             values[s, [before[-1], after[0]], f])  # fmt: skip
                    elif before or after:
                        expected = values[s, (before or after)[-1 if before else 0], f]
                    else:
                        expected = 0.0
                    assert context[s, t, f] == pytest.approx(expected, abs=1e-12)
                    since = min((times[s, t] - times[s, before[-1]]) / 4.0, 1.0) if before else 1.0
                    assert context[s, t, 2 + f] == pytest.approx(since, abs=1e-12)
        # sequence 0, feature 0: step 3 is kept, so it is interpolated from steps 2 and 6, never from itself
        expected = np.interp(times[0, 3], times[0, [2, 6]], values[0, [2, 6], 0])
        assert context[0, 3, 0] == pytest.approx(expected)

    def test_seasonal_context_reads_whole_periods_away(self):
        values = np.arange(30, dtype=float).reshape(1, 30, 1)
        kept = np.ones_like(values, dtype=bool)
        kept[0, 10:20] = False
        seasonal = seasonal_context(values, kept, period=4, fallback=np.full_like(values, -1.0), cycles=1)
        assert seasonal[0, 5, 0] == (1 + 9) / 2  # steps 1 and 9
        assert seasonal[0, 14, 0] == -1.0  # steps 10 and 18 both missing: the fallback
        assert seasonal[0, 12, 0] == 8.0  # step 8 (16 is missing)

    def test_the_period_of_a_cycle_is_found_and_noise_has_none(self):
        rng = np.random.default_rng(0)
        t = np.arange(400)
        cycle = np.sin(2 * np.pi * t / 24)[None, :, None] + 0.3 * rng.normal(size=(1, 400, 2))
        kept = rng.random(cycle.shape) < 0.8
        assert estimate_period(np.where(kept, cycle, 0.0), kept, 1000) == 24
        noise = rng.normal(size=(1, 400, 2))
        assert estimate_period(noise, np.ones_like(noise, dtype=bool), 1000) is None

    def test_an_untrained_context_model_imputes_the_interpolation(self):
        data, _ = series()
        imputer = GPVAEImputer(**{**SMALL, "epochs": 1, "validation_fraction": 0.0, "lr": 1e-12}).fit(data)
        observed = ~np.isnan(data)
        steps = np.broadcast_to(np.arange(20.0), data.shape[:2])
        standardised = np.where(observed, (np.nan_to_num(data) - imputer.scale_mean) / imputer.scale_std, 0.0)
        baseline = interpolation_context(standardised, observed, steps, 20.0)[..., :3]
        expected = baseline * imputer.scale_std + imputer.scale_mean
        np.testing.assert_allclose(imputer.impute(data)[~observed], expected[~observed], atol=1e-4)

    def test_calibration_makes_each_distance_class_hold_90_percent(self, fitted):
        imputer, _ = fitted
        data, _ = series(n=24, seed=3)  # more sequences like the training ones: enough entries per class
        observed = ~np.isnan(data)
        rng = np.random.default_rng(5)
        hidden = observed & (rng.random(data.shape) < 0.3)
        hidden[:, 6:14] = observed[:, 6:14]  # a gap of 8 steps in every sequence: distances up to 4
        x, y, mask, (windows, *_, distance) = imputer._tensors(data, None, hide=hidden)
        _, truth, full, _ = imputer._tensors(data, None)
        held_out = full & ~mask
        distance = windows.cut(distance)
        factors = imputer._calibrate(x, y, mask, held_out, truth, distance)
        assert factors.shape == (8,) and (np.diff(factors) >= 0).all()  # never narrower further from the data
        components = imputer._window_predictions(x, y, mask, imputer.config.num_samples)[1][:, held_out].double()
        noise = imputer.model.likelihood.noise.detach().double().sqrt().expand(held_out.shape)[held_out]
        classes = torch.from_numpy(distance_bin(distance))[held_out]
        scale = torch.from_numpy(factors)[classes]
        u = torch.special.ndtr((truth[held_out].double() - components) / (scale * noise)).mean(0)
        inside = (u > 0.05) & (u < 0.95)
        counts = torch.bincount(classes, minlength=8)
        assert counts[0] >= 50 and counts[1] >= 50, counts  # the random holes and the gap: a factor of their own
        first = float(inside[classes == 0].double().mean())
        assert abs(first - 0.9) <= 1.5 / counts[0].item() + 1e-9  # class 0 keeps its own factor: 90 % to one entry
        for c in range(1, 8):  # a later class's factor is its own or raised to the one below: at least 90 % of the
            chosen = torch.from_numpy(class_entries(classes.numpy(), distance[held_out.numpy()], c))  # class's entries
            assert float(inside[chosen].double().mean()) >= 0.9 - 1.5 / int(chosen.sum())

    def test_the_model_s_departure_from_the_baseline_is_weighted_per_distance_class(self, fitted):
        imputer, data = fitted
        observed = ~np.isnan(data)
        steps = np.broadcast_to(np.arange(20.0), data.shape[:2])
        standardised = np.where(observed, (np.nan_to_num(data) - imputer.scale_mean) / imputer.scale_std, 0.0)
        baseline = interpolation_context(standardised, observed, steps, 20.0)[..., :3] * imputer.scale_std
        baseline = baseline + imputer.scale_mean  # no cycle in 20 steps: the baseline is the interpolation
        kept = imputer.residual_gates
        try:
            imputer.residual_gates = np.ones(8)
            model = imputer.impute(data)
            imputer.residual_gates = np.linspace(0.0, 0.7, 8)
            weight = imputer.residual_gates[distance_bin(gap_distance(observed, steps))]
            np.testing.assert_allclose(imputer.impute(data)[~observed],
                                       (baseline + weight * (model - baseline))[~observed], atol=1e-5)  # fmt: skip
        finally:
            imputer.residual_gates = kept
        assert not np.allclose(model[~observed], baseline[~observed], atol=1e-3)  # the trained model departs

    def test_intervals_widen_with_the_distance_to_the_data(self, fitted):
        imputer, data = fitted
        gapped = data.copy()
        gapped[0, 4:16] = np.nan
        prediction = imputer.predict(gapped)
        np.testing.assert_array_equal(  # noise_std: the likelihood's, times the factor of the entry's distance class
            prediction.noise_std,
            imputer.model.likelihood.noise.detach().double().sqrt().numpy()
            * imputer.noise_scale[distance_bin(gap_distance(~np.isnan(gapped), np.arange(20.0)[None]))]
            * imputer.scale_std,
        )
        assert (prediction.noise_std[0, 10] >= prediction.noise_std[0, 4]).all()


class TestGaps:
    def test_a_sparse_class_borrows_the_farthest_entries_at_or_below_it(self):
        distance = np.concatenate([np.ones(60), np.full(30, 3.0), np.arange(20.0, 40.0), [np.inf]])
        classes = distance_bin(distance)
        np.testing.assert_array_equal(class_entries(classes, distance, 0), classes == 0)  # 60 of its own
        chosen = class_entries(classes, distance, 1)  # 30 entries: they and the 20 farthest of class 0
        assert chosen.sum() == 50 and chosen[60:90].all() and chosen[:60].sum() == 20 and not chosen[90:].any()
        chosen = class_entries(classes, distance, 7)  # beyond the data: the 50 farthest entries there are
        assert chosen.sum() == 50 and chosen[90:].all() and chosen[60:90].sum() == 29  # 21 far, 29 at 3 steps

    def test_the_blend_follows_the_better_estimate_at_each_distance(self):
        rng = np.random.default_rng(0)
        near, far = np.ones(200), np.full(200, 20.0)  # classes 0 and 4
        truth = rng.normal(size=400)
        interpolation = truth + np.concatenate([np.zeros(200), rng.normal(size=200)])  # exact near the data
        seasonal = truth + np.concatenate([rng.normal(size=200), 0.1 * rng.normal(size=200)])  # better far away
        weights = fit_blend_weights(interpolation, seasonal, truth, np.concatenate([near, far]))
        assert weights[0] == 1.0 and weights[4] == 0.0
        assert weights[1] == weights[2] == weights[3] == 1.0  # no entries: class 0's farthest, the near ones
        assert weights[5] == weights[7] == 0.0  # beyond the data: the farthest entries

    def test_an_untrained_model_with_a_cycle_imputes_the_blend(self):
        data, _ = series(n=4, steps=60)
        data[:, 20:34] = np.nan  # a gap longer than the cycle (10 steps)
        imputer = GPVAEImputer(**{**SMALL, "epochs": 1, "lr": 1e-12, "period": 10, "validation_fraction": 0.3,
                                  "window_length": 60}).fit(data)  # fmt: skip
        observed = ~np.isnan(data)
        steps = np.broadcast_to(np.arange(60.0), data.shape[:2])
        standardised = np.where(observed, (np.nan_to_num(data) - imputer.scale_mean) / imputer.scale_std, 0.0)
        interpolation = interpolation_context(standardised, observed, steps, 60.0)[..., :3]
        seasonal = seasonal_context(standardised, observed, 10, interpolation)
        weight = imputer.blend_weights[distance_bin(gap_distance(observed, steps))]
        expected = (weight * interpolation + (1 - weight) * seasonal) * imputer.scale_std + imputer.scale_mean
        np.testing.assert_allclose(imputer.impute(data)[~observed], expected[~observed], atol=1e-4)
        assert imputer.blend_weights.min() < 1.0  # the seasonal estimate counts somewhere

    def test_gap_distance_is_the_time_to_the_nearest_other_kept_entry(self):
        rng = np.random.default_rng(0)
        kept = rng.random((3, 12, 2)) < 0.4
        kept[1, :, 1] = False  # a feature never kept in a sequence: no distance
        steps = np.cumsum(rng.uniform(0.5, 2.0, (3, 12)), axis=1)
        distance = gap_distance(kept, steps)
        for i, t, f in np.ndindex(kept.shape):
            others = [abs(steps[i, s] - steps[i, t]) for s in range(12) if kept[i, s, f] and s != t]
            assert distance[i, t, f] == (min(others) if others else np.inf)

    def test_distance_classes_double(self):
        np.testing.assert_array_equal(distance_bin(np.array([0.5, 1.0, 1.9, 2.0, 5.0, 127.9, 128.0, 1e9, np.inf])),
                                      [0, 0, 0, 1, 2, 6, 7, 7, 7])  # fmt: skip

    def test_validation_holds_out_random_entries_and_gaps_of_every_feature(self):
        rng = np.random.default_rng(1)
        observed = rng.random((20, 60, 4)) < 0.8
        hidden = validation_holdout(observed, 0.2, 24, np.random.default_rng(0))
        assert not (hidden & ~observed).any()  # only observed entries are hidden
        share = hidden.sum() / observed.sum()
        assert 0.12 < share < 0.25, share
        whole = (hidden | ~observed).all(-1) & hidden.any(-1)  # steps hidden in every observed feature
        runs = whole[:, 1:] & whole[:, :-1]
        assert runs.sum() > 0.05 * 20 * 60  # gaps of several steps, not only isolated holes
        again = validation_holdout(observed, 0.2, 24, np.random.default_rng(0))
        np.testing.assert_array_equal(hidden, again)
