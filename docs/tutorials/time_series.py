"""# Tutorial 4: your time series with holes

You have a NumPy array of measurements over time with NaN where a value is missing: sensors that drop out, lab
values taken now and then. `GPVAEImputer` fills the holes and says how sure it is: a predictive mean, standard
deviations, intervals and multiple imputations, one GP over time per sequence. The data here are made up (three
sensors following daily cycles, 40 days cut into 8-day sequences); replace `X` with yours: `(n_sequences, n_steps,
n_features)`, or one long series `(n_steps, n_features)`, which is cut into overlapping windows.
"""

import numpy as np

from gpytorch_vae import GPVAEImputer

rng = np.random.default_rng(0)
hours = np.arange(5 * 192)  # 40 days, hourly
daily = np.sin(2 * np.pi * hours / 24)
truth = np.stack([20 + 5 * daily, 60 - 10 * daily + 0.01 * hours, 3 + np.cos(2 * np.pi * hours / 24)], axis=1)
truth = (truth + 0.3 * rng.standard_normal(truth.shape)).reshape(5, 192, 3)  # 5 sequences of 8 days
X = truth.copy()
X[rng.random(X.shape) < 0.3] = np.nan  # 30 % of the values missing

# -- from an array with NaN to imputations with intervals ---------------------------------------------------------
imputer = GPVAEImputer(epochs=30, progress=False).fit(X)
filled = imputer.impute(X)  # X with its NaN filled
prediction = imputer.predict(X)  # .mean, .std, .samples (multiple imputations), .quantile(q)
lower, upper = prediction.interval(0.9)
missing = np.isnan(X)
print(f"MAE on the missing values: {np.abs(filled - truth)[missing].mean():.3f}")
print(f"90 % intervals hold {((truth >= lower) & (truth <= upper))[missing].mean():.0%} of the missing values")
print(f"{prediction.samples.shape[0]} multiple imputations of shape {prediction.samples.shape[1:]}")

# -- irregular timestamps: the same, with the times of each step (here: readings at random moments) ---------------
times = np.sort(rng.uniform(0, 192, (5, 192)), axis=1)  # hours, a row per sequence
irregular = np.stack([20 + 5 * np.sin(2 * np.pi * times / 24), 3 + np.cos(2 * np.pi * times / 24)], axis=-1)
Y = irregular + 0.3 * rng.standard_normal(irregular.shape)
Y[rng.random(Y.shape) < 0.3] = np.nan
imputer = GPVAEImputer(epochs=30, progress=False).fit(Y, times=times)
error = np.abs(imputer.impute(Y, times=times) - irregular)[np.isnan(Y)].mean()
print(f"irregular times: MAE on the missing values {error:.3f} (time unit: the median step, "
      f"{imputer.time_step:.2f} hours)")
