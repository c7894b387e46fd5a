"""A character-level language model of the docstrings of Python's own standard library.

Task
    Predict the next character of English technical prose. The text is present on every
    machine that runs crnn: the docstrings of a fixed list of standard-library modules
    (``difflib``, ``inspect``, ``typing``, ...), read from ``os.path.dirname(os.__file__)``
    with :mod:`ast`, in a fixed order, so the same Python gives the same text. Every
    tenth block of 2,000 characters is held out. Characters outside printable ASCII
    become ``?``.
Model
    Many-to-many, same length: ``Embedding -> GRU -> GRU -> TimeDistributed(Dense(V,
    softmax))`` over windows of ``T`` characters, each step trained to predict the next
    character (sparse categorical cross-entropy at every step; inputs ``c_1..c_T``,
    targets ``c_2..c_{T+1}``). ``cell="LSTM"`` swaps the recurrent layers.
Reports
    Held-out bits per character (the cross-entropy in base 2) against the unigram baseline,
    the entropy of the held-out characters under the training text's character frequencies
    (what a model that ignores context achieves); the training curves; and samples drawn
    from a prompt at a few temperatures (each next character drawn from the softmax of
    ``log p / temperature``, reading the last ``T`` characters).
"""
import ast
import math
import os
import time

import numpy as np

import crnn
from crnn.examples import ExampleError, Result, _plots

NAME = "charlm"
TITLE = "character language model of the stdlib docstrings (many-to-many)"

MODULES = ("difflib.py", "inspect.py", "typing.py", "statistics.py", "threading.py",
           "logging/__init__.py", "email/message.py", "unittest/case.py", "argparse.py",
           "subprocess.py", "collections/__init__.py", "json/__init__.py", "textwrap.py",
           "functools.py", "random.py", "fractions.py", "datetime.py", "pathlib.py",
           "contextlib.py", "calendar.py", "heapq.py")
ALPHABET = "\n" + "".join(chr(c) for c in range(32, 127))   # "?" stands for the rest
PROMPTS = ("Return the ", "The default ")
BLOCK = 2000                                                 # characters


def read_corpus(max_chars=None):
    """The docstrings of :data:`MODULES`, joined by blank lines (ExampleError if the
    standard library's sources are not installed)."""
    root = os.path.dirname(os.__file__)
    docs = []
    for name in MODULES:
        path = os.path.join(root, name)
        if not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                 ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node, clean=True)
                if doc:
                    docs.append(doc)
    text = "\n\n".join(docs)
    if len(text) < 20000:
        raise ExampleError(f"expected the standard library's .py sources under {root} "
                           f"(the modules {', '.join(MODULES[:3])}, ...), found "
                           f"{len(text)} characters of docstrings")
    return text[:max_chars]


def encode(text):
    index = {ch: i for i, ch in enumerate(ALPHABET)}
    unknown = index["?"]
    return np.array([index.get(ch, unknown) for ch in text], dtype=np.int64)


def windows(ids, T, stride):
    """Inputs ``(N, T)`` and next-character targets ``(N, T)`` from windows every
    ``stride`` characters."""
    starts = np.arange(0, len(ids) - T - 1, stride)
    index = starts[:, None] + np.arange(T + 1)
    chunks = ids[index]
    return chunks[:, :-1], chunks[:, 1:]


def unigram_bits(train_ids, test_ids, V):
    """Bits per character of ``test_ids`` under the (add-one) character frequencies of
    ``train_ids``."""
    counts = np.bincount(train_ids, minlength=V) + 1.0
    p = counts / counts.sum()
    return float(-np.mean(np.log2(p[test_ids])))


def build(V, units, layers, cell, seed):
    rnn = getattr(crnn, cell)
    model = crnn.Sequential([crnn.Embedding(V, 32, seed=seed)]
                            + [rnn(units, return_sequences=True, seed=seed + 1 + k)
                               for k in range(layers)]
                            + [crnn.TimeDistributed(crnn.Dense(V, activation="softmax",
                                                               seed=seed + 9))])
    model.compile(optimizer=crnn.optimizers.Adam(learning_rate=0.005, clipnorm=5.0),
                  loss="sparse_categorical_crossentropy")
    return model


def sample(model, prompts, T, n_chars, temperature, rng):
    """Continue each prompt by ``n_chars`` characters, one at a time."""
    ids = [list(encode(p)) for p in prompts]
    for _ in range(n_chars):
        width = min(T, min(len(s) for s in ids))
        batch = np.array([s[-width:] for s in ids])
        p = model.predict(batch, batch_size=len(ids))[:, -1].astype(np.float64)
        logits = np.log(np.maximum(p, 1e-12)) / temperature
        q = np.exp(logits - logits.max(axis=1, keepdims=True))
        q /= q.sum(axis=1, keepdims=True)
        for s, row in zip(ids, q):
            s.append(int(rng.choice(len(row), p=row)))
    return ["".join(ALPHABET[i] for i in s) for s in ids]


def run(out_dir, quick=True, seed=0, verbose=1, tiny=False, cell="GRU", epochs=None,
        units=None, layers=2, max_chars=None):
    """Train, measure bits per character, sample; see the module docstring.

    ``tiny=True`` is a seconds-long smoke test; ``cell``, ``epochs``, ``units``,
    ``layers`` and ``max_chars`` (the length of text used) override the form's settings.
    Training runs a quarter of an epoch at a time, measuring the held-out text after each
    quarter for the curve; ``verbose`` prints one line per quarter.
    """
    start = time.perf_counter()
    if tiny:
        form = dict(max_chars=22000, T=32, stride=64, units=16, epochs=2, n_sample=40,
                    batch_size=16)
    elif quick:
        form = dict(max_chars=150000, T=64, stride=32, units=96, epochs=2, n_sample=160,
                    batch_size=16)
    else:
        form = dict(max_chars=None, T=100, stride=50, units=192, epochs=4, n_sample=400,
                    batch_size=32)
    T, units = form["T"], units or form["units"]
    text = read_corpus(max_chars or form["max_chars"])
    ids = encode(text)
    block = np.arange(len(ids)) // BLOCK                 # every 10th block held out
    train_ids, test_ids = ids[block % 10 != 9], ids[block % 10 == 9]
    V = len(ALPHABET)
    x, y = windows(train_ids, T, form["stride"])
    x_test, y_test = windows(test_ids, T, T)
    if len(x_test) == 0:
        raise ExampleError(f"expected at least {10 * BLOCK} characters of text (every "
                           f"tenth block of {BLOCK} is held out), found {len(text)}")
    if verbose:
        print(f"{len(text)} characters of docstrings, {len(x)} training windows of {T}")
    model = build(V, units, layers, cell, seed)
    rng = np.random.default_rng(seed)
    curve = {"characters": [], "train": [], "held-out": []}
    n_epochs = epochs or form["epochs"]
    for epoch in range(n_epochs):
        for k, part in enumerate(np.array_split(rng.permutation(len(x)), 4)):
            hist = model.fit(x[part], y[part], batch_size=form["batch_size"], epochs=1,
                             verbose=0, validation_data=(x_test, y_test),
                             seed=seed + len(curve["train"])).history
            seen = (curve["characters"] or [0])[-1] + part.size * T
            curve["characters"].append(seen)
            curve["train"].append(hist["loss"][0] / math.log(2))
            curve["held-out"].append(hist["val_loss"][0] / math.log(2))
            if verbose:
                print(f"epoch {epoch + 1}/{n_epochs}, quarter {k + 1}/4: "
                      f"{curve['train'][-1]:.3f} bits/char, held-out "
                      f"{curve['held-out'][-1]:.3f}", flush=True)
    held_out = curve["held-out"][-1]
    baseline = unigram_bits(train_ids, test_ids, V)
    plot = plot_curve(curve, baseline, f"{layers} x {cell}({units})", out_dir)
    samples = []
    for temperature in (0.5, 1.0):
        for s in sample(model, PROMPTS, T, form["n_sample"], temperature, rng):
            samples.append(f"[temperature {temperature}] {s}")
    rows = [{"model": f"{layers} x {cell}({units})",
             "train bits/char": round(curve["train"][-1], 3),
             "held-out bits/char": round(held_out, 3),
             "first quarter bits/char": round(curve["train"][0], 3)},
            {"model": "unigram (train frequencies)", "held-out bits/char": round(baseline, 3)}]
    return Result(name=NAME, metric=f"held-out bits/char ({layers} x {cell})",
                  value=held_out, baseline=f"unigram {baseline:.2f} bits/char", rows=rows,
                  plots=[plot], samples=samples, seconds=time.perf_counter() - start)


def plot_curve(curve, baseline, label, out_dir):
    """Bits per character against characters read in training, with the baseline."""
    plt = _plots.pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    ax.plot(curve["characters"], curve["train"], marker="o", label=f"{label}, training")
    ax.plot(curve["characters"], curve["held-out"], marker="o", linestyle="--",
            label=f"{label}, held-out")
    ax.axhline(baseline, color="gray", linestyle=":",
               label=f"unigram baseline ({baseline:.2f})")
    ax.set_xlabel("training characters read")
    ax.set_ylabel("bits per character")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("character LM of the stdlib docstrings")
    return _plots.save(fig, out_dir, "charlm_training.png")
