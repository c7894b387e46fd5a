"""Digits: read an 8x8 handwritten digit one row at a time, then name it.

Task
    scikit-learn's bundled digits (1797 images, 8x8 pixels, 16 grey levels) as sequences of
    8 steps of 8 features: step ``t`` is image row ``t``. The class (0-9) is predicted after
    the last row; a quarter of the images (stratified) are held out.
Model
    ``Input(8, 8) -> SimpleRNN | LSTM | GRU (128 units, input dropout 0.1) -> Dense(10,
    softmax)``, trained with Adam on the sparse categorical cross-entropy, one model per
    cell type from the same seed.
Reports
    held-out accuracy of each cell type (the headline is the LSTM's), against logistic
    regression on the 64 pixels (which sees the whole image at once) and the majority class;
    ``digits_training.png`` holds the training curves (validation is the held-out quarter,
    used only for the curves: the number of epochs is fixed in advance).
Model type
    many-to-one classification (sequence in, one label out).
"""
import time

import numpy as np

import crnn
from crnn.examples import ExampleError, Result
from crnn.examples._plots import plot_histories

NAME = "digits"
TITLE = "8x8 digits read row by row: SimpleRNN vs LSTM vs GRU (many-to-one)"
CELLS = {"SimpleRNN": crnn.SimpleRNN, "LSTM": crnn.LSTM, "GRU": crnn.GRU}


def load_data(seed=0, test_size=0.25):
    """``(x_train, y_train, x_test, y_test)``: images ``(N, 8, 8)`` in [0, 1], labels ``(N,)``."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise ExampleError('scikit-learn is needed for the digits: pip install ".[examples]"') \
            from None
    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=test_size, random_state=seed, stratify=digits.target)
    return x_train, y_train, x_test, y_test


def build(cell, units, steps_per_epoch, epochs, seed=0):
    """``Input(8, 8) -> cell(units, dropout=0.1) -> Dense(10, softmax)``, compiled with Adam
    whose learning rate decays fiftyfold over the run."""
    inputs = crnn.Input(shape=(8, 8), name="rows")
    h = CELLS[cell](units, dropout=0.1, seed=seed, name=cell)(inputs)
    outputs = crnn.Dense(10, activation="softmax", seed=seed, name="digit")(h)
    model = crnn.Model(inputs, outputs, name=f"digits_{cell}")
    lr = crnn.optimizers.ExponentialDecay(1e-2, steps_per_epoch * epochs, 0.02)
    model.compile(optimizer=crnn.optimizers.Adam(lr), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def baselines(x_train, y_train, x_test, y_test):
    """Held-out accuracy of logistic regression on the pixels and of the majority class."""
    from sklearn.linear_model import LogisticRegression
    clf = LogisticRegression(max_iter=2000).fit(x_train.reshape(len(x_train), -1), y_train)
    logreg = clf.score(x_test.reshape(len(x_test), -1), y_test)
    majority = np.mean(y_test == np.bincount(y_train).argmax())
    return float(logreg), float(majority)


def run(out_dir, quick=True, seed=0, verbose=1, tiny=False, epochs=None, units=None,
        n_train=None, cells=tuple(CELLS)):
    """Train one model per cell type and return the held-out accuracies.

    ``tiny`` (seconds, for the tests), ``epochs``, ``units``, ``n_train`` (training images
    used) and ``cells`` override the quick or full settings.
    """
    start = time.perf_counter()
    if tiny:
        epochs, units, n_train = epochs or 3, units or 16, n_train or 300
    epochs = epochs or (40 if quick else 100)
    units = units or 128
    batch_size = 32
    x_train, y_train, x_test, y_test = load_data(seed)
    if n_train:
        x_train, y_train = x_train[:n_train], y_train[:n_train]
    logreg, majority = baselines(x_train, y_train, x_test, y_test)
    histories, rows = {}, []
    for cell in cells:
        if verbose:
            print(f"digits: {cell}({units}), {epochs} epochs on {len(x_train)} images")
        t0 = time.perf_counter()
        model = build(cell, units, -(-len(x_train) // batch_size), epochs, seed)
        hist = model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs,
                         validation_data=(x_test, y_test), verbose=verbose, seed=seed)
        histories[cell] = hist.history
        _, acc = model.evaluate(x_test, y_test, verbose=0)
        rows.append({"model": cell, "held-out accuracy": float(acc),
                     "params": model.count_params(),
                     "first loss": hist.history["loss"][0],
                     "last loss": hist.history["loss"][-1],
                     "seconds": time.perf_counter() - t0})
    plot = plot_histories(histories, out_dir, "digits_training.png",
                          f"digits read row by row ({units} units, {len(x_train)} images)")
    head = next((r for r in rows if r["model"] == "LSTM"), rows[0])
    return Result(name=NAME, metric=f"held-out accuracy ({head['model']})",
                  value=head["held-out accuracy"],
                  baseline=f"logistic regression {logreg:.3f}, majority {majority:.3f}",
                  rows=rows, plots=[plot], seconds=time.perf_counter() - start)
