"""crnn.utils: pad_sequences, to_categorical, PyDataset, timeseries_dataset_from_array,
against Keras 3's semantics (and keras itself where installed)."""
import math
import os

import numpy as np
import pytest
from conftest import require

from crnn import utils
from crnn.utils import (PyDataset, Sequence, pad_sequences, timeseries_dataset_from_array,
                        to_categorical)


os.environ.setdefault("KERAS_BACKEND", "torch")   # the referee runs on torch here


def keras_or_skip():
    """Keras 3, the referee: skipped without it unless CRNN_REQUIRE_KERAS=1."""
    return require("keras", "KERAS")


# -- pad_sequences ---------------------------------------------------------------------------
def test_pad_sequences_keras_docstring_examples():
    seqs = [[1], [2, 3], [4, 5, 6]]
    np.testing.assert_array_equal(pad_sequences(seqs), [[0, 0, 1], [0, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(pad_sequences(seqs, value=-1),
                                  [[-1, -1, 1], [-1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(pad_sequences(seqs, padding="post"),
                                  [[1, 0, 0], [2, 3, 0], [4, 5, 6]])
    np.testing.assert_array_equal(pad_sequences(seqs, maxlen=2), [[0, 1], [2, 3], [5, 6]])
    assert pad_sequences(seqs).dtype == np.int32


def test_pad_sequences_vectors_floats_and_edge_cases():
    seqs = [np.ones((2, 3)), np.zeros((0, 3)), 2 * np.ones((4, 3))]
    out = pad_sequences(seqs, maxlen=3, dtype="float32", padding="post", truncating="post",
                        value=0.5)
    assert out.shape == (3, 3, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0, 2], 0.5)
    np.testing.assert_array_equal(out[1], 0.5)
    np.testing.assert_array_equal(out[2], 2)
    assert pad_sequences([[1, 2]], maxlen=0).shape == (1, 0)
    assert pad_sequences([]).shape == (0, 0)
    strings = pad_sequences([["a", "b"], ["c"]], dtype=object, value="<pad>")
    assert strings.tolist() == [["a", "b"], ["<pad>", "c"]]


@pytest.mark.parametrize("kwargs, match", [
    ({"padding": "middle"}, "padding"), ({"truncating": "x"}, "truncating"),
    ({"maxlen": -1}, "maxlen"), ({"maxlen": 2.5}, "maxlen"), ({"value": "pad"}, "string"),
])
def test_pad_sequences_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        pad_sequences([[1, 2], [3]], **kwargs)


def test_pad_sequences_bad_sequences():
    with pytest.raises(ValueError, match="sequences"):
        pad_sequences(5)
    with pytest.raises(ValueError, match=r"sequences\[1\]"):
        pad_sequences([[1], 2])
    with pytest.raises(ValueError, match="shape"):
        pad_sequences([np.ones((2, 3)), np.ones((2, 4))])


def test_pad_sequences_matches_keras():
    keras = keras_or_skip()
    rng = np.random.default_rng(0)
    seqs = [rng.integers(1, 50, size=rng.integers(0, 12)).tolist() for _ in range(30)]
    for padding in ("pre", "post"):
        for truncating in ("pre", "post"):
            for maxlen in (None, 1, 5, 20):
                ours = pad_sequences(seqs, maxlen, padding=padding, truncating=truncating,
                                     value=7)
                theirs = keras.utils.pad_sequences(seqs, maxlen, padding=padding,
                                                   truncating=truncating, value=7)
                np.testing.assert_array_equal(ours, theirs)
                assert ours.dtype == theirs.dtype


# -- to_categorical --------------------------------------------------------------------------
def test_to_categorical():
    np.testing.assert_array_equal(to_categorical([0, 2, 1]), np.eye(3)[[0, 2, 1]])
    out = to_categorical(np.array([[1], [0]]), num_classes=4)
    assert out.shape == (2, 4)
    seq = to_categorical(np.array([[0, 1, 2], [2, 2, 0]]))
    assert seq.shape == (2, 3, 3) and seq[1, 0, 2] == 1
    assert to_categorical(np.array([1.0, 0.0])).tolist() == [[0, 1], [1, 0]]
    with pytest.raises(ValueError, match="num_classes"):
        to_categorical([0, 3], num_classes=3)
    with pytest.raises(ValueError, match=">= 0"):
        to_categorical([-1, 0])
    with pytest.raises(ValueError, match="integer"):
        to_categorical([0.5])


def test_to_categorical_matches_keras():
    keras = keras_or_skip()
    for x, c in (([0, 2, 1, 2], None), (np.array([[1], [3]]), 5),
                 (np.array([[0, 1], [2, 0]]), 3)):
        np.testing.assert_array_equal(to_categorical(x, c), keras.utils.to_categorical(x, c))


# -- PyDataset -------------------------------------------------------------------------------
class Squares(PyDataset):
    def __init__(self, n, batch_size, **kwargs):
        super().__init__(**kwargs)
        self.n, self.batch_size = n, batch_size
        self.epochs_ended = 0

    def __len__(self):
        return math.ceil(self.n / self.batch_size)

    def __getitem__(self, i):
        x = np.arange(i * self.batch_size, min((i + 1) * self.batch_size, self.n),
                      dtype="float32")[:, None]
        return x, x ** 2

    def on_epoch_end(self):
        self.epochs_ended += 1


def test_pydataset_protocol():
    ds = Squares(10, 4)
    assert Sequence is PyDataset
    assert len(ds) == ds.num_batches == 3
    assert [len(x) for x, _ in ds] == [4, 4, 2]
    assert ds.workers == 1 and ds.use_multiprocessing is False and ds.max_queue_size == 10
    with pytest.raises(ValueError, match="workers"):
        Squares(10, 4, workers=0)
    with pytest.warns(UserWarning, match="threads"):
        Squares(10, 4, workers=2, use_multiprocessing=True)

    class NoItems(PyDataset):
        pass
    with pytest.raises(NotImplementedError, match="__getitem__"):
        NoItems()[0]
    with pytest.raises(NotImplementedError, match="__len__"):
        NoItems().num_batches


# -- timeseries_dataset_from_array -----------------------------------------------------------
def test_timeseries_keras_example_1():
    ds = timeseries_dataset_from_array(np.arange(99), None, sequence_length=10,
                                       sampling_rate=2, sequence_stride=3, batch_size=128)
    (x,) = [b for b in ds]
    np.testing.assert_array_equal(x[0], np.arange(0, 20, 2))
    np.testing.assert_array_equal(x[1], np.arange(3, 23, 2))
    np.testing.assert_array_equal(x[-1], np.arange(78, 98, 2))


def test_timeseries_keras_example_2_regression():
    data = np.arange(100, dtype="float32")
    ds = timeseries_dataset_from_array(data[:-10], data[10:], sequence_length=10,
                                       batch_size=16)
    x, y = ds[0]
    np.testing.assert_array_equal(x[0], data[:10])
    assert y[0] == data[10] and x.shape == (16, 10)
    total = sum(len(b[0]) for b in ds)
    assert total == 81 and len(ds) == 6
    for xb, yb in ds:        # every window's target is the step after it
        np.testing.assert_array_equal(xb[:, -1] + 1, yb)


def test_timeseries_start_end_shuffle_and_unbatched():
    data = np.arange(50)[:, None] * np.array([[1, -1]])
    ds = timeseries_dataset_from_array(data, np.arange(50), sequence_length=4,
                                       start_index=10, end_index=30, batch_size=None)
    assert len(ds) == 17
    x, y = ds[0]
    assert x.shape == (4, 2) and x[0, 0] == 10 and y == 10
    shuffled = timeseries_dataset_from_array(data, np.arange(50), 4, batch_size=5,
                                             shuffle=True, seed=1)
    starts = np.concatenate([b[0][:, 0, 0] for b in shuffled])
    ys = np.concatenate([b[1] for b in shuffled])
    np.testing.assert_array_equal(starts, ys)
    assert sorted(starts.tolist()) == list(range(47)) and starts.tolist() != list(range(47))
    with pytest.raises(ValueError, match="end_index"):
        timeseries_dataset_from_array(data, None, 4, start_index=5, end_index=5)
    with pytest.raises(ValueError, match="sequence_length"):
        timeseries_dataset_from_array(data, None, 0)
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_timeseries_matches_keras():
    keras = keras_or_skip()
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        pytest.skip("keras.utils.timeseries_dataset_from_array needs tensorflow")
    data = np.arange(60, dtype="float32")[:, None]
    ours = timeseries_dataset_from_array(data, np.arange(60), 5, sequence_stride=2,
                                         sampling_rate=3, batch_size=4, start_index=3)
    theirs = keras.utils.timeseries_dataset_from_array(
        data, np.arange(60), 5, sequence_stride=2, sampling_rate=3, batch_size=4,
        start_index=3)
    for (a, b), (c, d) in zip(ours, theirs):
        np.testing.assert_array_equal(a, np.asarray(c))
        np.testing.assert_array_equal(b, np.asarray(d))


def test_utils_in_package_namespace():
    import crnn
    assert crnn.utils is utils
    assert utils.pad_sequences is pad_sequences
