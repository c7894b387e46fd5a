"""Sentiment of movie reviews (IMDB): the textbook's many-to-one classifier.

Task
    Read a review as a sequence of word ids and say whether it is positive. The data is
    the IMDB reviews of Maas et al. (2011), 25,000 for training and 25,000 for testing,
    which the user supplies (``crnn demo sentiment --data PATH``) in either of the forms
    people have: Keras's ``imdb.npz`` (arrays ``x_train``, ``y_train``, ``x_test``,
    ``y_test``; each ``x`` an object array of lists of word ids, ranked by frequency from
    1) or the ``aclImdb/`` folder of the original release (``train`` and ``test``, each
    with ``pos`` and ``neg`` folders of ``.txt`` files). Nothing is downloaded.
Model
    Many-to-one: ``Embedding(num_words, 32) -> SimpleRNN(units) -> Dense(1, sigmoid)``,
    binary cross-entropy, Adam, as in the textbook; ``cells=("SimpleRNN", "LSTM",
    "GRU")`` trains each (the full form does). Reviews are capped to the ``num_words``
    most frequent words and padded or truncated to ``maxlen`` words at the front
    (:func:`crnn.utils.pad_sequences`, Keras's ``"pre"``), so the recurrence ends on the
    last words.
Reports
    Held-out accuracy on the test reviews against the majority-class baseline (always
    answering the more frequent training label), and the training curves.

The loaders (:func:`load_imdb_npz`, :func:`load_aclimdb`) are public and return Keras's ``(x_train, y_train), (x_test, y_test)``.
"""
import collections
import os
import pickle
import re
import time
import zipfile

import numpy as np

import crnn
from crnn.examples import ExampleError, Result, _plots
from crnn.utils import pad_sequences

NAME = "sentiment"
TITLE = "IMDB review sentiment (many-to-one)"

PAD, OOV = 0, 1                      # the aclImdb vocabulary's reserved ids
_TOKEN = re.compile(r"[a-z0-9']+")


def _labels(y, what, path):
    y = np.asarray(y)
    if y.ndim != 1 or not np.isin(y, (0, 1)).all():
        raise ExampleError(f"expected {what} in {path} to be a 1-D array of 0/1 labels, "
                           f"found shape {y.shape} with values {np.unique(y)[:5].tolist()}")
    return y.astype("float32")


def load_imdb_npz(path, num_words=10000, maxlen=200, start_char=1, oov_char=2,
                  index_from=3):
    """Keras's ``imdb.npz`` as ``(x_train, y_train), (x_test, y_test)``, x padded to
    ``(N, maxlen)`` ``int32``, y ``float32`` 0/1.

    Ids as ``keras.datasets.imdb.load_data`` makes them: each review starts with
    ``start_char``, the file's word ranks are shifted by ``index_from``, and ids at or
    above ``num_words`` become ``oov_char``; 0 is padding. Unlike ``load_data``, whose
    ``maxlen`` drops the longer reviews, ``maxlen`` here truncates them
    (:func:`pad_sequences`, keeping the last words).

    Keras stores each ``x`` as an object array of Python lists, which NumPy reads only
    with ``allow_pickle=True``: unpickling can run code, so this is done only for the file
    named here, which you should trust (the official one from Keras's storage).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ExampleError(f"expected Keras's imdb.npz at {path}, found no such file")
    if not zipfile.is_zipfile(path):
        raise ExampleError(f"expected {path} to be an .npz archive (Keras's imdb.npz), "
                           f"found a file that is not one")
    keys = ("x_train", "y_train", "x_test", "y_test")
    try:
        with np.load(path, allow_pickle=True) as f:   # the user named this file
            missing = [k for k in keys if k not in f.files]
            if missing:
                raise ExampleError(f"expected arrays {', '.join(keys)} in {path}, found "
                                   f"{', '.join(f.files) or 'none'}")
            arrays = {k: f[k] for k in keys}
    except (OSError, ValueError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as e:
        raise ExampleError(f"expected {path} to be a readable .npz archive, found: "
                           f"{e}") from None
    out = []
    for part in ("train", "test"):
        x, y = arrays[f"x_{part}"], _labels(arrays[f"y_{part}"], f"y_{part}", path)
        if len(x) != len(y):
            raise ExampleError(f"expected as many reviews as labels in {path}, found "
                               f"{len(x)} x_{part} and {len(y)} y_{part}")
        try:
            seqs = [[start_char] + [int(w) + index_from for w in review] if start_char
                    is not None else [int(w) + index_from for w in review] for review in x]
        except (TypeError, ValueError):
            raise ExampleError(f"expected x_{part} in {path} to hold lists of word ids, "
                               f"found {type(x[0]).__name__} entries") from None
        if num_words is not None:
            seqs = [[w if w < num_words else oov_char for w in s] for s in seqs]
        out.append((pad_sequences(seqs, maxlen), y))
    return out[0], out[1]


def tokenize(text):
    """Lower-case words (letters, digits, apostrophes), the ``<br />`` tags removed."""
    return _TOKEN.findall(text.lower().replace("<br />", " "))


def _read_folder(path, part):
    texts, labels = [], []
    for label, name in ((0, "neg"), (1, "pos")):
        folder = os.path.join(path, part, name)
        if not os.path.isdir(folder):
            raise ExampleError(f"expected an aclImdb folder with train/ and test/, each "
                               f"with pos/ and neg/; found no {part}/{name}/ in {path}")
        for fname in sorted(os.listdir(folder)):
            if fname.endswith(".txt"):
                with open(os.path.join(folder, fname), encoding="utf-8",
                          errors="replace") as f:
                    texts.append(f.read())
                labels.append(label)
    if not texts:
        raise ExampleError(f"expected .txt reviews in {path}/{part}/pos and neg, found none")
    return texts, np.array(labels, dtype="float32")


def load_aclimdb(path, num_words=10000, maxlen=200, return_word_index=False):
    """The original ``aclImdb/`` folder as ``(x_train, y_train), (x_test, y_test)``.

    The vocabulary is built from the training reviews only: words by decreasing count
    (ties alphabetically), ids from 2 (0 is padding, 1 the out-of-vocabulary id), capped
    so that every id is below ``num_words``. Reviews are read in file-name order, negative
    then positive, and padded/truncated to ``maxlen`` (:func:`pad_sequences`).
    ``return_word_index=True`` adds the ``{word: id}`` dict as a third item.
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise ExampleError(f"expected an aclImdb folder at {path}, found no such folder")
    train_texts, y_train = _read_folder(path, "train")
    test_texts, y_test = _read_folder(path, "test")
    train_tokens = [tokenize(t) for t in train_texts]
    counts = collections.Counter(w for toks in train_tokens for w in toks)
    ranked = sorted(counts, key=lambda w: (-counts[w], w))
    if num_words is not None:
        ranked = ranked[:max(num_words - 2, 0)]
    word_index = {w: i + 2 for i, w in enumerate(ranked)}

    def ids(tokens):
        return [word_index.get(w, OOV) for w in tokens]
    x_train = pad_sequences([ids(t) for t in train_tokens], maxlen)
    x_test = pad_sequences([ids(tokenize(t)) for t in test_texts], maxlen)
    result = ((x_train, y_train), (x_test, y_test))
    return result + (word_index,) if return_word_index else result


def load(data, num_words, maxlen):
    """Either format, told apart by what ``data`` is."""
    if data is None:
        raise ExampleError("expected the IMDB reviews: pass data=PATH (crnn demo sentiment "
                           "--data PATH) to Keras's imdb.npz or the aclImdb/ folder, found "
                           "none given")
    data = os.fspath(data)
    if os.path.isdir(data):
        inner = os.path.join(data, "aclImdb")
        return load_aclimdb(inner if os.path.isdir(inner) else data, num_words, maxlen)
    if os.path.isfile(data):
        return load_imdb_npz(data, num_words, maxlen)
    raise ExampleError(f"expected imdb.npz or an aclImdb/ folder at {data}, found nothing "
                       f"there")


def build(cell, vocabulary, units, seed):
    model = crnn.Sequential([crnn.Embedding(vocabulary, 32, seed=seed),
                             getattr(crnn, cell)(units, seed=seed + 1),
                             crnn.Dense(1, activation="sigmoid", seed=seed + 2)])
    model.compile(optimizer=crnn.optimizers.Adam(learning_rate=0.002, clipnorm=5.0),
                  loss="binary_crossentropy", metrics=["accuracy"])
    return model


def _subset(x, y, n, rng):
    if n is None or n >= len(x):
        return x, y
    keep = np.sort(rng.permutation(len(x))[:n])
    return x[keep], y[keep]


def run(out_dir, quick=True, seed=0, verbose=1, data=None, tiny=False, cells=None,
        num_words=None, maxlen=None, n_train=None, n_test=None, epochs=None, units=32):
    """Load, train each cell, evaluate; see the module docstring.

    ``tiny=True`` is a seconds-long smoke test; the other keywords override the form's
    settings (``n_train``/``n_test`` train and test on a random subset).
    """
    start = time.perf_counter()
    if tiny:
        form = dict(num_words=200, maxlen=20, n_train=None, n_test=None, epochs=3,
                    cells=("SimpleRNN",), units=8)
    elif quick:
        form = dict(num_words=10000, maxlen=150, n_train=None, n_test=10000, epochs=3,
                    cells=("SimpleRNN",), units=units)
    else:
        form = dict(num_words=10000, maxlen=200, n_train=None, n_test=None, epochs=4,
                    cells=("SimpleRNN", "LSTM", "GRU"), units=units)
    num_words = num_words or form["num_words"]
    (x, y), (x_test, y_test) = load(data, num_words, maxlen or form["maxlen"])
    rng = np.random.default_rng(seed)
    x, y = _subset(x, y, n_train or form["n_train"], rng)
    x_test, y_test = _subset(x_test, y_test, n_test or form["n_test"], rng)
    vocabulary = int(max(num_words, x.max(initial=0) + 1, x_test.max(initial=0) + 1))
    majority = float(y.mean() >= 0.5)
    baseline = float(np.mean(y_test == majority))
    if verbose:
        print(f"{len(x)} training and {len(x_test)} test reviews of {x.shape[1]} words, "
              f"vocabulary {vocabulary}")
    rows, histories = [], {}
    for cell in cells or form["cells"]:
        model = build(cell, vocabulary, form["units"], seed)
        hist = model.fit(x, y, batch_size=64, epochs=epochs or form["epochs"],
                         verbose=verbose, validation_data=(x_test, y_test),
                         seed=seed).history
        histories[cell] = hist
        rows.append({"model": f"{cell}({form['units']})",
                     "held-out accuracy": round(hist["val_accuracy"][-1], 4),
                     "first loss": round(hist["loss"][0], 4),
                     "last loss": round(hist["loss"][-1], 4)})
    rows.append({"model": "majority class", "held-out accuracy": round(baseline, 4)})
    plot = _plots.plot_histories(histories, out_dir, "sentiment_training.png",
                                 f"IMDB sentiment, {len(x)} reviews of {x.shape[1]} words "
                                 f"(majority class {baseline:.3f})")
    best = max(rows[:-1], key=lambda r: r["held-out accuracy"])
    return Result(name=NAME, metric=f"held-out accuracy ({best['model']})",
                  value=best["held-out accuracy"], baseline=f"majority class {baseline:.3f}",
                  rows=rows, plots=[plot], seconds=time.perf_counter() - start)
