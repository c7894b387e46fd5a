"""Benchmark whole models as a user times them: one epoch of ``fit`` against PyTorch (and Keras).

What is measured
----------------
For each model below, one training epoch over the same synthetic data, in float32, with
Adam (learning rate 1e-3) and batch 64, in one process:

- ``crnn``: ``model.fit(x, y, batch_size=64, epochs=1, shuffle=True, verbose=0)`` of a
  ``crnn.Sequential`` model compiled with ``Adam`` and the model's loss;
- ``torch``: the same architecture as ``torch.nn`` modules trained by the loop a PyTorch
  user writes (a permutation per epoch, then for each batch ``zero_grad``, forward, loss,
  ``backward``, ``step``); the last softmax/sigmoid folded into the loss
  (``CrossEntropyLoss`` / ``BCEWithLogitsLoss``) as a PyTorch user writes it;
- ``keras``: the same ``Sequential`` in Keras 3 on its torch backend, ``fit`` as for
  crnn, when ``keras`` is importable (set ``KERAS_BACKEND=torch``; it is set here if unset).

Models (``MODELS``; the first three are issue 13's, the fourth a character-level LM):

- ``imdb-lstm``: Embedding(5000, 64) -> LSTM(128) -> Dense(1, sigmoid), 4096 x 100 ids,
  binary cross-entropy;
- ``gru-stack``: Input(50, 8) -> GRU(64, return_sequences) -> GRU(64) -> Dense(1), 4096
  windows, mean squared error;
- ``bilstm-tagger``: Embedding(2000, 32) -> Bidirectional(LSTM(64, return_sequences)) ->
  TimeDistributed(Dense(10, softmax)), 2048 x 40 ids, sparse categorical cross-entropy;
- ``char-gru``: Embedding(96, 32) -> GRU(256, return_sequences) ->
  TimeDistributed(Dense(96, softmax)), 1024 windows of 64 characters, sparse categorical
  cross-entropy.

How
---
Each library first trains one untimed epoch (the warm-up: builds, allocates, wakes its
thread pools). Then ``--repeats`` rounds, each timing one epoch of every library with
``time.perf_counter``, the starting library rotating each round so that slow drifts of
machine noise hit all alike; ``--settle`` seconds of sleep before each timed epoch let the
previous library's thread pools go idle. The table reports the MEDIAN epoch time and the
ratio ``other / crnn`` (above 1: crnn is faster).

Threads: crnn uses ``crnn.get_num_threads()`` (set with ``--threads``), and torch gets the
same count (``torch.set_num_threads``). ``--load N`` starts N busy processes (a pure-Python
spin loop each) before the first warm-up and stops them at the end: a shared machine,
measured for every library under the same load.

The SGEMM peak of this machine is measured first (the best of a few 2048-cubed float32
products through SciPy's OpenBLAS), so that runs on different machines can be compared.

Usage::

    python benchmarks/bench_fit.py                    # all models, 3 rounds
    python benchmarks/bench_fit.py --models imdb-lstm --repeats 5
    python benchmarks/bench_fit.py --load 2           # beside two busy processes
    crnn bench --fit --quick                          # the same through the CLI
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

import crnn
from bench_rnn import cpu_model, sgemm_peak  # benchmarks/ (this folder) is on sys.path

BATCH = 64
LEARNING_RATE = 1e-3
REPEATS, QUICK_REPEATS = 3, 1
SETTLE = 0.2
SEED = 0
RESULTS_DIR = Path(__file__).resolve().parent / "results"


# -- the models ---------------------------------------------------------------------------
def ids_data(n, T, vocab, labels):
    """``n`` sequences of ``T`` ids in ``[0, vocab)`` and their targets: ``labels`` an int
    for one class label per sequence (-1: one per step, as many classes as ``vocab``)."""
    rng = np.random.default_rng(SEED)
    x = rng.integers(0, vocab, size=(n, T)).astype(np.int64)
    if labels == "binary":
        y = rng.integers(0, 2, size=(n, 1)).astype(np.float32)
    else:
        y = rng.integers(0, labels, size=(n, T)).astype(np.int64)
    return x, y


def windows_data(n, T, D):
    rng = np.random.default_rng(SEED)
    x = rng.standard_normal((n, T, D)).astype(np.float32)
    y = (x[:, -5:, 0].mean(axis=1, keepdims=True)).astype(np.float32)
    return x, y


def _crnn_imdb():
    return crnn.Sequential([crnn.Embedding(5000, 64), crnn.LSTM(128),
                            crnn.Dense(1, activation="sigmoid")])


def _crnn_gru_stack():
    return crnn.Sequential([crnn.Input((50, 8)), crnn.GRU(64, return_sequences=True),
                            crnn.GRU(64), crnn.Dense(1)])


def _crnn_tagger():
    return crnn.Sequential([
        crnn.Embedding(2000, 32),
        crnn.Bidirectional(crnn.LSTM(64, return_sequences=True)),
        crnn.TimeDistributed(crnn.Dense(10, activation="softmax"))])


def _crnn_char():
    return crnn.Sequential([crnn.Embedding(96, 32), crnn.GRU(256, return_sequences=True),
                            crnn.TimeDistributed(crnn.Dense(96, activation="softmax"))])


def _keras_builders(keras):
    L = keras.layers
    return {
        "imdb-lstm": lambda: keras.Sequential([
            keras.Input((100,), dtype="int64"), L.Embedding(5000, 64), L.LSTM(128),
            L.Dense(1, activation="sigmoid")]),
        "gru-stack": lambda: keras.Sequential([
            keras.Input((50, 8)), L.GRU(64, return_sequences=True), L.GRU(64), L.Dense(1)]),
        "bilstm-tagger": lambda: keras.Sequential([
            keras.Input((40,), dtype="int64"), L.Embedding(2000, 32),
            L.Bidirectional(L.LSTM(64, return_sequences=True)),
            L.TimeDistributed(L.Dense(10, activation="softmax"))]),
        "char-gru": lambda: keras.Sequential([
            keras.Input((64,), dtype="int64"), L.Embedding(96, 32),
            L.GRU(256, return_sequences=True),
            L.TimeDistributed(L.Dense(96, activation="softmax"))]),
    }


def _torch_builders(torch):
    nn = torch.nn

    class Last(nn.Module):
        """The last step of a recurrent module's output sequence."""

        def __init__(self, rnn):
            super().__init__()
            self.rnn = rnn

        def forward(self, x):
            return self.rnn(x)[0][:, -1]

    class Seq(nn.Module):
        """A recurrent module's whole output sequence."""

        def __init__(self, rnn):
            super().__init__()
            self.rnn = rnn

        def forward(self, x):
            return self.rnn(x)[0]

    return {
        "imdb-lstm": lambda: nn.Sequential(nn.Embedding(5000, 64),
                                           Last(nn.LSTM(64, 128, batch_first=True)),
                                           nn.Linear(128, 1)),
        "gru-stack": lambda: nn.Sequential(Seq(nn.GRU(8, 64, batch_first=True)),
                                           Last(nn.GRU(64, 64, batch_first=True)),
                                           nn.Linear(64, 1)),
        "bilstm-tagger": lambda: nn.Sequential(
            nn.Embedding(2000, 32),
            Seq(nn.LSTM(32, 64, batch_first=True, bidirectional=True)), nn.Linear(128, 10)),
        "char-gru": lambda: nn.Sequential(nn.Embedding(96, 32),
                                          Seq(nn.GRU(32, 256, batch_first=True)),
                                          nn.Linear(256, 96)),
    }


MODELS = {
    "imdb-lstm": ("Embedding(5000,64) -> LSTM(128) -> Dense(1, sigmoid), 4096 x 100",
                  lambda: ids_data(4096, 100, 5000, "binary"), _crnn_imdb, "binary"),
    "gru-stack": ("Input(50,8) -> GRU(64, seq) -> GRU(64) -> Dense(1), 4096 windows",
                  lambda: windows_data(4096, 50, 8), _crnn_gru_stack, "mse"),
    "bilstm-tagger": ("Embedding(2000,32) -> Bidirectional(LSTM(64, seq)) -> "
                      "TimeDistributed(Dense(10, softmax)), 2048 x 40",
                      lambda: ids_data(2048, 40, 2000, 10), _crnn_tagger, "sparse"),
    "char-gru": ("Embedding(96,32) -> GRU(256, seq) -> TimeDistributed(Dense(96, softmax)), "
                 "1024 x 64", lambda: ids_data(1024, 64, 96, 96), _crnn_char, "sparse"),
}
CRNN_LOSSES = {"binary": "binary_crossentropy", "mse": "mse",
               "sparse": "sparse_categorical_crossentropy"}


# -- one epoch per library ------------------------------------------------------------------
def crnn_trainer(name, x, y):
    model = MODELS[name][2]()
    model.compile(optimizer=crnn.optimizers.Adam(LEARNING_RATE),
                  loss=CRNN_LOSSES[MODELS[name][3]])
    rng = np.random.default_rng(SEED)

    def epoch():
        model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=True, verbose=0,
                  seed=int(rng.integers(2**31)))
    return epoch


def keras_trainer(keras, name, x, y):
    model = _keras_builders(keras)[name]()
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE),
                  loss=CRNN_LOSSES[MODELS[name][3]])

    def epoch():
        model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=True, verbose=0)
    return epoch


def torch_trainer(torch, name, x, y):
    model = _torch_builders(torch)[name]()
    kind = MODELS[name][3]
    loss_fn = {"binary": torch.nn.BCEWithLogitsLoss(), "mse": torch.nn.MSELoss(),
               "sparse": torch.nn.CrossEntropyLoss()}[kind]
    opt = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    n = len(x)

    def epoch():
        model.train()
        for idx in torch.randperm(n).split(BATCH):
            xb, yb = xt[idx], yt[idx]
            opt.zero_grad()
            out = model(xb)
            if kind == "sparse":
                out, yb = out.reshape(-1, out.shape[-1]), yb.reshape(-1)
            loss = loss_fn(out, yb)
            loss.backward()
            opt.step()
    return epoch


# -- the run ------------------------------------------------------------------------------------
def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def start_load(n):
    """``n`` busy processes (a spin loop each): a machine shared with other work."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def stop_load(procs):
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


def run_model(name, libs, repeats, settle):
    """``{library: [epoch seconds]}`` of one model, the libraries interleaved."""
    x, y = MODELS[name][1]()
    trainers = {}
    for lib, make in libs.items():
        trainers[lib] = make(name, x, y)
        trainers[lib]()  # warm-up epoch
    times = {lib: [] for lib in libs}
    order = list(libs)
    for r in range(repeats):
        for lib in order[r % len(order):] + order[:r % len(order)]:
            time.sleep(settle)
            times[lib].append(_timed(trainers[lib]))
    return times


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS),
                   help="models to train (default: all)")
    p.add_argument("--repeats", type=int, help=f"timed epochs per library (default "
                                               f"{REPEATS}, --quick {QUICK_REPEATS})")
    p.add_argument("--quick", action="store_true", help="one timed epoch (a smoke test)")
    p.add_argument("--threads", type=int, help="threads for every library (default: "
                                               "crnn.get_num_threads())")
    p.add_argument("--load", type=int, default=0, metavar="N",
                   help="busy processes to run beside the benchmark (default 0)")
    p.add_argument("--settle", type=float, default=SETTLE,
                   help=f"seconds of sleep before each timed epoch (default {SETTLE:g})")
    p.add_argument("--no-torch", action="store_true", help="do not train PyTorch")
    p.add_argument("--no-keras", action="store_true", help="do not train Keras")
    p.add_argument("--json", type=Path, metavar="PATH",
                   help="where to write the results (default "
                        "benchmarks/results/bench_fit-<UTC timestamp>.json)")
    args = p.parse_args(argv)
    if args.repeats is None:
        args.repeats = QUICK_REPEATS if args.quick else REPEATS
    if args.repeats < 1 or args.load < 0 or args.settle < 0:
        p.error("expected --repeats >= 1, --load >= 0 and --settle >= 0")
    if args.threads is not None and args.threads < 1:
        p.error(f"expected --threads >= 1, got {args.threads}")
    return args


def libraries(args):
    """``{name: make(model_name, x, y) -> epoch function}``, and notes on what is skipped."""
    libs = {"crnn": crnn_trainer}
    notes = []
    threads = crnn.get_num_threads()
    if not args.no_torch:
        try:
            import torch
        except ImportError as e:
            notes.append(f"torch skipped (not importable: {e})")
        else:
            torch.set_num_threads(threads)
            libs["torch"] = lambda name, x, y: torch_trainer(torch, name, x, y)
    if not args.no_keras:
        os.environ.setdefault("KERAS_BACKEND", "torch")
        try:
            import keras
        except ImportError as e:
            notes.append(f"keras skipped (not importable: {e})")
        else:
            libs["keras"] = lambda name, x, y: keras_trainer(keras, name, x, y)
    return libs, notes


def main(argv=None):
    args = parse_args(argv)
    if args.threads is not None:
        crnn.set_num_threads(args.threads)
    libs, notes = libraries(args)
    peak = sgemm_peak(None)["openblas"]
    print(f"CPU: {cpu_model()}, {os.cpu_count()} CPUs; threads per library: "
          f"{crnn.get_num_threads()}; SGEMM peak (SciPy's OpenBLAS): {peak:.1f} GFLOP/s; "
          f"busy processes beside: {args.load}")
    for note in notes:
        print(note)
    load = start_load(args.load)
    results = {}
    try:
        for name in args.models:
            results[name] = run_model(name, libs, args.repeats, args.settle)
            med = {lib: statistics.median(t) for lib, t in results[name].items()}
            ratios = ", ".join(f"{lib} {med[lib]:.3f} s ({med[lib] / med['crnn']:.2f}x)"
                               for lib in med if lib != "crnn")
            print(f"{name}: crnn {med['crnn']:.3f} s; {ratios}", flush=True)
    finally:
        stop_load(load)
    print()
    others = [lib for lib in libs if lib != "crnn"]
    print("| model | crnn epoch | " + " | ".join(f"{lib} epoch | {lib} / crnn"
                                              for lib in others) + " |")
    print("|---|---|" + "---|---|" * len(others))
    for name, times in results.items():
        med = {lib: statistics.median(t) for lib, t in times.items()}
        cells = " | ".join(f"{med[lib]:.3f} s | {med[lib] / med['crnn']:.2f}x"
                           for lib in others)
        print(f"| {MODELS[name][0]} | {med['crnn']:.3f} s | {cells} |")
    out = args.json or RESULTS_DIR / "bench_fit-{}.json".format(
        datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "cpu": cpu_model(), "cpus": os.cpu_count(), "threads": crnn.get_num_threads(),
        "sgemm_peak_gflops": peak, "load": args.load, "repeats": args.repeats,
        "epochs_seconds": results}, indent=1))
    print(f"\nresults written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
