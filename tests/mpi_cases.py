"""The programs tests/test_distributed.py runs under ``mpiexec``: one process per rank,
``python tests/mpi_cases.py CASE OUT_DIR [SHARD SIZES...]``. Each case writes what the
test checks into OUT_DIR (rank 0's weights and history as .npz, per-rank notes as text).

The models and data are made here and, for the single-process reference, imported by the
test from here (one definition of both sides).
"""
import json
import os
import sys

import numpy as np

import crnn
from crnn import distributed

T, D, UNITS, BATCH, EPOCHS = 5, 3, 4, 4, 3
CELLS = ("SimpleRNN", "LSTM", "GRU")
OPTIMIZERS = ("sgd", "adam")


def make_model(cell, optimizer, seed, units=UNITS, d=D):
    """A small float64 model: SimpleRNN many-to-many (per-step outputs), LSTM and GRU
    many-to-one; dropout off. ``seed`` sets the initial weights."""
    layer = getattr(crnn, cell)
    if cell == "SimpleRNN":
        layers = [crnn.Input((T, d), dtype="float64"),
                  layer(units, return_sequences=True, seed=seed, dtype="float64"),
                  crnn.TimeDistributed(crnn.Dense(2, seed=seed + 1, dtype="float64"))]
    else:
        layers = [crnn.Input((T, d), dtype="float64"),
                  layer(units, seed=seed, dtype="float64"),
                  crnn.Dense(2, seed=seed + 1, dtype="float64")]
    model = crnn.Sequential(layers)
    opt = (crnn.optimizers.SGD(0.05, momentum=0.9) if optimizer == "sgd"
           else crnn.optimizers.Adam(0.01))
    model.compile(opt, "mse", metrics=["mae"])
    return model


def make_data(cell, n, seed):
    """``n`` samples of inputs ``(n, T, D)`` and targets (per step for SimpleRNN)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, T, D))
    y = rng.normal(size=(n, T, 2) if cell == "SimpleRNN" else (n, 2))
    return x, y


def shards(sizes):
    """The slices of the global data each rank holds (contiguous, in rank order)."""
    starts = np.cumsum([0] + list(sizes))
    return [slice(int(a), int(b)) for a, b in zip(starts[:-1], starts[1:])]


def _check_same_everywhere(model, what):
    weights = model.get_weights()
    every = distributed.allgather(weights)
    for r, theirs in enumerate(every):
        for a, b in zip(weights, theirs):
            if not np.array_equal(a, b):
                raise AssertionError(f"{what}: rank {r}'s weights differ from rank "
                                     f"{distributed.rank()}'s")


def case_exact(out, sizes):
    """Every cell and optimizer trained over the ranks' shards; rank 0 writes the initial
    and final weights and the history. Ranks start from different weights (fit
    broadcasts rank 0's)."""
    rank = distributed.rank()
    part = shards(sizes)[rank]
    results = {}
    for k, cell in enumerate(CELLS):
        for optimizer in OPTIMIZERS:
            name = f"{cell}-{optimizer}"
            x, y = make_data(cell, sum(sizes), seed=k)
            xv, yv = make_data(cell, 2 * sum(sizes), seed=100 + k)
            val = shards([2 * s for s in sizes])[rank]
            model = make_model(cell, optimizer, seed=10 + rank)
            initial = model.get_weights()
            verbose = 2 if name == "SimpleRNN-sgd" else 0   # the progress: rank 0's alone
            checkpoint = crnn.callbacks.ModelCheckpoint(
                os.path.join(out, f"{name}-rank{rank}.weights.npz"), monitor="loss",
                save_weights_only=True)
            history = model.fit(x[part], y[part], batch_size=BATCH, epochs=EPOCHS,
                                shuffle=False, verbose=verbose,
                                validation_data=(xv[val], yv[val]), callbacks=[checkpoint])
            _check_same_everywhere(model, name)
            evaluated = model.evaluate(xv[val], yv[val], batch_size=3, verbose=0,
                                       return_dict=True)
            if rank == 0:
                results[name] = {"history": history.history, "evaluate": evaluated}
                np.savez(os.path.join(out, f"{name}.npz"),
                         *[a for pair in zip(initial, model.get_weights()) for a in pair])
    # shuffling: each rank its own order, from fit's seed and its rank
    model = make_model("GRU", "sgd", seed=1)
    order = model._generators(3).permutation(50)
    orders = distributed.allgather(order.tolist())
    if rank == 0:
        results["orders_differ"] = all(o != orders[0] for o in orders[1:])
        with open(os.path.join(out, "results.json"), "w") as f:
            json.dump(results, f)


class _StopOnRank(crnn.callbacks.Callback):
    """A callback that stops training on one rank only, after batch 1 of epoch 1."""

    def __init__(self, rank):
        super().__init__()
        self.rank = rank
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if distributed.rank() == self.rank and self.epoch == 1 and batch == 1:
            self.model.stop_training = True


def case_stop(out, sizes):
    """A stop decided on the last rank alone stops every rank at the same step."""
    rank = distributed.rank()
    x, y = make_data("LSTM", sum(sizes), seed=0)
    model = make_model("LSTM", "adam", seed=10)
    seen = []
    count = crnn.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: seen.append(b))
    history = model.fit(x[shards(sizes)[rank]], y[shards(sizes)[rank]], batch_size=2,
                        epochs=5, verbose=0, callbacks=[_StopOnRank(len(sizes) - 1), count])
    _check_same_everywhere(model, "stop")
    with open(os.path.join(out, f"stop-rank{rank}.json"), "w") as f:
        json.dump({"epochs": len(history.history["loss"]), "batches": len(seen)}, f)


class _Subclassed(crnn.Model):
    """A subclassed model: built by its first call (fit builds it before broadcasting),
    its outputs, and so its metrics, known only then."""

    def __init__(self, seed):
        super().__init__()
        self.gru = crnn.GRU(UNITS, seed=seed, dtype="float64")
        self.dense = crnn.Dense(2, seed=seed, dtype="float64")

    def call(self, x, training=False):
        return self.dense(self.gru(x, training=training))


def case_subclassed(out, sizes):
    """A subclassed model, never called before fit, different initial weights per rank."""
    rank = distributed.rank()
    x, y = make_data("GRU", sum(sizes), seed=0)
    model = _Subclassed(seed=10 + rank)
    model.compile(crnn.optimizers.Adam(0.01), "mse", metrics=["mae"])
    part = shards(sizes)[rank]
    history = model.fit(x[part], y[part], batch_size=3, epochs=3, verbose=0)
    _check_same_everywhere(model, "subclassed")
    with open(os.path.join(out, f"subclassed-rank{rank}.json"), "w") as f:
        json.dump(history.history, f)


class _RaiseOnRank1(crnn.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if distributed.rank() == 1 and batch == 2:
            raise RuntimeError("planted failure on rank 1")


def case_raise(out, sizes):
    """Rank 1 raises in the middle of an epoch: every rank must end, none hang."""
    rank = distributed.rank()
    x, y = make_data("GRU", sum(sizes), seed=0)
    model = make_model("GRU", "sgd", seed=10)
    model.fit(x[shards(sizes)[rank]], y[shards(sizes)[rank]], batch_size=2, epochs=50,
              verbose=0, callbacks=[_RaiseOnRank1()])
    with open(os.path.join(out, f"finished-rank{rank}"), "w") as f:
        f.write("fit returned\n")


def _fit_catching(out, model, x, y):
    rank = distributed.rank()
    try:
        model.fit(x, y, batch_size=2, epochs=1, verbose=0)
        message = "no error"
    except ValueError as e:
        message = f"ValueError: {e}"
    with open(os.path.join(out, f"error-rank{rank}.txt"), "w") as f:
        f.write(message)


def case_shapes(out, sizes):
    """The last rank's inputs have one more feature: ValueError on every rank."""
    rank = distributed.rank()
    d = D + 1 if rank == len(sizes) - 1 else D
    x = np.random.default_rng(rank).normal(size=(sizes[rank], T, d))
    y = np.zeros((sizes[rank], 2))
    model = crnn.Sequential([crnn.LSTM(UNITS), crnn.Dense(2)])    # built by fit
    model.compile("adam", "mse")
    _fit_catching(out, model, x, y)


def case_architecture(out, sizes):
    """The last rank's LSTM has one more unit: ValueError on every rank."""
    rank = distributed.rank()
    units = UNITS + 1 if rank == len(sizes) - 1 else UNITS
    model = make_model("LSTM", "adam", seed=1, units=units)
    x, y = make_data("LSTM", sizes[rank], seed=rank)
    _fit_catching(out, model, x, y)


CASES = {"exact": case_exact, "stop": case_stop, "subclassed": case_subclassed,
         "raise": case_raise,
         "shapes": case_shapes, "architecture": case_architecture}


if __name__ == "__main__":
    crnn.set_num_threads(1)
    distributed.init()
    case, out = sys.argv[1], sys.argv[2]
    sizes = [int(s) for s in sys.argv[3:]]
    if len(sizes) != distributed.size():
        raise ValueError(f"expected one shard size per rank ({distributed.size()}), got "
                         f"{sizes}")
    CASES[case](out, sizes)
