"""The demo's models evaluated with the recurrent weights in float32, bfloat16 and int8:
what reduced-precision streaming costs in accuracy.

Each model is trained as ``crnn demo`` trains it (the quick form by default, ``--full``
for the longer one; the building blocks of ``crnn/examples/``), then its held-out set is
run through steppers (``layer.stepper(batch_size, precision=...)`` or
``model.stepper(...)``), one step at a time, at each precision:

- ``digits``: ``Input(8, 8) -> LSTM / GRU / SimpleRNN(128) -> Dense(10)``, held-out
  accuracy (the recurrent layer stepped over the 8 rows, its last state into the Dense);
- ``charlm``: ``Embedding -> GRU -> GRU -> TimeDistributed(Dense(V))``, held-out bits
  per character (the whole model stepped over each window from zero states, as
  ``evaluate`` runs it);
- ``forecast``: ``Input(24, 1) -> LSTM(32) -> Dense(1)``, held-out RMSE in ppm.

The float32 row is also checked against the model's own ``evaluate``/``predict`` (the
stepper equals the layer to rounding). Only the recurrent layers' ``W_x`` and ``W_h`` are
reduced; embeddings, Dense layers and biases stay float32.

Usage::

    python benchmarks/precision_accuracy.py               # quick forms, ~1-3 min
    python benchmarks/precision_accuracy.py --only digits --full
"""
import argparse
import math
import time

import numpy as np

import crnn
from crnn.examples import charlm, digits, forecast

PRECISIONS = ("float32", "bfloat16", "int8")


def step_layer(layer, x, precision):
    """The last state of ``layer`` run over ``x (B, T, D)`` by a stepper."""
    s = layer.stepper(batch_size=len(x), precision=precision)
    for t in range(x.shape[1]):
        h = s.step(np.ascontiguousarray(x[:, t]))
    return h


def eval_digits(quick, seed):
    x_train, y_train, x_test, y_test = digits.load_data(seed)
    epochs, units, batch_size = (40 if quick else 100), 128, 32
    rows = []
    for cell in digits.CELLS:
        model = digits.build(cell, units, -(-len(x_train) // batch_size), epochs, seed)
        model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, verbose=0,
                  seed=seed)
        _, acc = model.evaluate(x_test, y_test, verbose=0)
        rnn, dense = layer_named(model, cell), layer_named(model, "digit")
        row = {"model": f"digits {cell}({units})", "metric": "accuracy",
               "evaluate": float(acc)}
        for p in PRECISIONS:
            probs = dense(step_layer(rnn, x_test, p))
            row[p] = float(np.mean(np.asarray(probs).argmax(1) == y_test))
        rows.append(row)
    return rows


def eval_charlm(quick, seed):
    form = (dict(max_chars=150000, T=64, stride=32, units=96, epochs=2, batch_size=16)
            if quick else dict(max_chars=None, T=100, stride=50, units=192, epochs=4,
                               batch_size=32))
    T = form["T"]
    ids = charlm.encode(charlm.read_corpus(form["max_chars"]))
    block = np.arange(len(ids)) // charlm.BLOCK
    train_ids, test_ids = ids[block % 10 != 9], ids[block % 10 == 9]
    x, y = charlm.windows(train_ids, T, form["stride"])
    x_test, y_test = charlm.windows(test_ids, T, T)
    model = charlm.build(len(charlm.ALPHABET), form["units"], 2, "GRU", seed)
    rng = np.random.default_rng(seed)
    for epoch in range(form["epochs"]):
        for k, part in enumerate(np.array_split(rng.permutation(len(x)), 4)):
            model.fit(x[part], y[part], batch_size=form["batch_size"], epochs=1,
                      verbose=0, seed=seed + 4 * epoch + k)
    loss = model.evaluate(x_test, y_test, verbose=0)
    loss = loss[0] if isinstance(loss, (list, tuple)) else loss
    row = {"model": f"charlm 2 x GRU({form['units']})", "metric": "bits/char",
           "evaluate": float(loss) / math.log(2)}
    B = len(x_test)
    for p in PRECISIONS:
        s = model.stepper(batch_size=B, precision=p)
        nll = 0.0
        for t in range(T):
            probs = np.asarray(s.step(x_test[:, t]), dtype=np.float64)
            nll -= np.log(np.clip(probs[np.arange(B), y_test[:, t]], 1e-12, None)).sum()
        row[p] = nll / (B * T) / math.log(2)
    return [row]


def eval_forecast(quick, seed):
    epochs, units, batch_size = (60 if quick else 200), 32, 16
    _, y = forecast.load_series()
    diff = np.diff(y, prepend=np.nan)
    test = np.arange(len(y) - forecast.TEST_MONTHS, len(y))
    train = np.arange(forecast.WINDOW + 1, test[0])
    mean, std = diff[1:test[0]].mean(), diff[1:test[0]].std()
    scaled = (diff - mean) / std
    x_train, t_train = forecast.windows(scaled, train)
    x_test, _ = forecast.windows(scaled, test)
    model = forecast.build(units, -(-len(train) // batch_size), epochs, seed)
    model.fit(x_train, t_train, batch_size=batch_size, epochs=epochs, verbose=0, seed=seed)

    def rmse(change):
        pred = y[test - 1] + np.asarray(change, dtype=np.float64)[:, 0] * std + mean
        return float(np.sqrt(np.mean((pred - y[test]) ** 2)))

    row = {"model": f"forecast LSTM({units})", "metric": "RMSE ppm",
           "evaluate": rmse(model.predict(x_test, batch_size=len(x_test)))}
    lstm, dense = layer_named(model, "LSTM"), layer_named(model, "next_change")
    for p in PRECISIONS:
        row[p] = rmse(dense(step_layer(lstm, x_test, p)))
    return [row]


def layer_named(model, name):
    return next(layer for layer in model.layers if layer.name == name)


EXAMPLES = {"digits": eval_digits, "charlm": eval_charlm, "forecast": eval_forecast}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="+", choices=list(EXAMPLES), default=list(EXAMPLES))
    ap.add_argument("--full", action="store_true", help="the demo's --full training")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rows = []
    print(f"{'model':<26} {'metric':<10} {'evaluate':>9} "
          + " ".join(f"{p:>9}" for p in PRECISIONS) + "  seconds")
    for name in args.only:
        t0 = time.perf_counter()
        for r in EXAMPLES[name](not args.full, args.seed):
            print(f"{r['model']:<26} {r['metric']:<10} {r['evaluate']:>9.5f} "
                  + " ".join(f"{r[p]:>9.5f}" for p in PRECISIONS)
                  + f"  {time.perf_counter() - t0:.0f}", flush=True)
            rows.append(r)
    return rows


if __name__ == "__main__":
    main()
