"""Forecast: next month's CO2 at Mauna Loa from the two years before it.

Task
    The Mauna Loa atmospheric CO2 record bundled with statsmodels
    (``statsmodels.datasets.co2``: weekly, March 1958 to December 2001, ppm, with gaps),
    averaged by month and the gaps interpolated: 526 months of a trend with a yearly cycle.
    From the last ``WINDOW`` = 24 months, forecast the next one. The last ten years are
    held out; every forecast there is one step ahead from the measured past.
Model
    The series is differenced (month-to-month change) and scaled by the training part's
    mean and standard deviation; ``Input(24, 1) -> LSTM -> Dense(1)`` reads the last 24
    changes and predicts the next change, trained with Adam on the mean squared error. The
    forecast is the last measured value plus the predicted change.
Reports
    held-out RMSE in ppm against the last-value forecast (persistence) and the seasonal
    naive forecast (the value twelve months before), and, as a stronger yardstick, the
    seasonal naive forecast with drift (twelve months before plus the last year's rise);
    ``forecast_held_out.png`` (forecasts against the measurements, and their errors) and
    ``forecast_training.png`` (training curves).
Model type
    many-to-one regression (a window of the series in, one number out).
"""
import time

import numpy as np

import crnn
from crnn.examples import ExampleError, Result
from crnn.examples._plots import plot_histories, pyplot, save

NAME = "forecast"
TITLE = "Mauna Loa CO2, next month from the last 24, LSTM (many-to-one regression)"
WINDOW, TEST_MONTHS = 24, 120


def load_series():
    """``(dates, ppm)``: the monthly means, gaps interpolated linearly (526 months)."""
    try:
        from statsmodels.datasets import co2
    except ImportError:
        raise ExampleError('statsmodels is needed for the CO2 data: pip install '
                           '".[examples]"') from None
    monthly = co2.load_pandas().data["co2"].resample("MS").mean().interpolate()
    return monthly.index.to_numpy(), monthly.to_numpy(dtype="float64")


def windows(diff, targets):
    """``(N, WINDOW, 1)`` windows of ``diff`` ending before each index in ``targets``
    (indices into ``diff``), and the changes ``(N, 1)`` at them."""
    x = np.stack([diff[t - WINDOW:t] for t in targets])[..., None]
    return x.astype("float32"), diff[targets][:, None].astype("float32")


def build(units, steps_per_epoch, epochs, seed=0):
    """``Input(24, 1) -> LSTM(units) -> Dense(1)``, MSE, Adam with a decaying rate."""
    inputs = crnn.Input(shape=(WINDOW, 1), name="changes")
    h = crnn.LSTM(units, seed=seed, name="LSTM")(inputs)
    model = crnn.Model(inputs, crnn.Dense(1, seed=seed, name="next_change")(h), name="co2")
    lr = crnn.optimizers.ExponentialDecay(5e-3, steps_per_epoch * epochs, 0.05)
    model.compile(optimizer=crnn.optimizers.Adam(lr), loss="mse")
    return model


def plot_forecast(dates, y, test, preds, out_dir):
    """Top: the held-out measurements and the forecasts; bottom: their errors."""
    plt = pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True,
                                      gridspec_kw={"height_ratios": [2, 1]})
    shown = np.arange(test[0] - 36, len(y))
    top.plot(dates[shown], y[shown], color="black", lw=1.2, label="measured")
    top.axvline(dates[test[0]], color="grey", ls=":", lw=1)
    for (label, p), style in zip(preds.items(), ("-", "--", ":", "-.")):
        first = label == next(iter(preds))        # the model's: thicker, on top
        kw = dict(ls=style, lw=1.8 if first else 1, zorder=3 if first else 2, label=label,
                  alpha=1 if first else 0.8)
        top.plot(dates[test], p, **kw)
        bottom.plot(dates[test], p - y[test], **kw)
    top.set_ylabel("CO2 (ppm)")
    top.set_title("Mauna Loa CO2: one-month-ahead forecasts on the held-out ten years")
    top.legend(fontsize=8, loc="upper left")
    bottom.axhline(0, color="black", lw=0.8)
    bottom.set_ylabel("forecast - measured (ppm)")
    bottom.set_xlabel("month")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    return save(fig, out_dir, "forecast_held_out.png")


def run(out_dir, quick=True, seed=0, verbose=1, tiny=False, epochs=None, units=None,
        n_train=None):
    """Train on all but the last ten years, forecast those one month ahead.

    ``tiny`` (seconds, for the tests), ``epochs``, ``units`` and ``n_train`` (training
    windows used, the latest ones) override the quick or full settings.
    """
    start = time.perf_counter()
    if tiny:
        epochs, units, n_train = epochs or 3, units or 8, n_train or 120
    epochs = epochs or (60 if quick else 200)
    units = units or 32
    dates, y = load_series()
    diff = np.diff(y, prepend=np.nan)             # diff[t] = y[t] - y[t-1]
    test = np.arange(len(y) - TEST_MONTHS, len(y))
    train = np.arange(WINDOW + 1, test[0])
    if n_train:
        train = train[-n_train:]
    mean, std = diff[1:test[0]].mean(), diff[1:test[0]].std()
    scaled = (diff - mean) / std
    x_train, t_train = windows(scaled, train)
    x_test, t_test = windows(scaled, test)

    batch_size = 16
    model = build(units, -(-len(train) // batch_size), epochs, seed)
    if verbose:
        print(f"forecast: LSTM({units}), {epochs} epochs on {len(train)} windows")
    hist = model.fit(x_train, t_train, batch_size=batch_size, epochs=epochs, verbose=verbose,
                     validation_data=(x_test, t_test), seed=seed)
    change = model.predict(x_test, batch_size=len(x_test))[:, 0] * std + mean
    preds = {"LSTM": y[test - 1] + change,
             "last value": y[test - 1],
             "seasonal naive": y[test - 12],
             "seasonal naive + drift": y[test - 12] + y[test - 1] - y[test - 13]}
    rmse = {k: float(np.sqrt(np.mean((p - y[test]) ** 2))) for k, p in preds.items()}
    plots = [plot_forecast(dates, y, test, preds, out_dir),
             plot_histories({"LSTM": hist.history}, out_dir, "forecast_training.png",
                            "CO2 forecast: MSE of the scaled monthly change")]
    rows = [{"forecast": k, "held-out RMSE (ppm)": v} for k, v in rmse.items()]
    rows[0].update({"first loss": hist.history["loss"][0],
                    "last loss": hist.history["loss"][-1]})
    return Result(name=NAME, metric="held-out RMSE, ppm (LSTM)", value=rmse["LSTM"],
                  baseline=f"last value {rmse['last value']:.3f}, seasonal naive "
                           f"{rmse['seasonal naive']:.3f}, with drift "
                           f"{rmse['seasonal naive + drift']:.3f}",
                  rows=rows, plots=plots, seconds=time.perf_counter() - start)
