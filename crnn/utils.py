"""Data utilities with Keras 3's names and semantics (``keras.utils``): padding lists of
ids to one array (:func:`pad_sequences`), one-hot targets (:func:`to_categorical`), the
base class of a source of batches read one at a time (:class:`PyDataset`, alias
:class:`Sequence`) and windows cut from a long series (:func:`timeseries_dataset_from_array`,
a :class:`PyDataset` that slices each batch when it is asked for it).

Notation: ``N`` sequences or samples, ``T`` steps (``maxlen``, ``sequence_length``),
``C`` classes, ``B`` batch size. Nothing here imports anything from crnn.
"""
import math
import numbers
import warnings

import numpy as np

__all__ = ["PyDataset", "Sequence", "TimeseriesDataset", "pad_sequences",
           "timeseries_dataset_from_array", "to_categorical"]


def _int(name, value, low, allow_none=False):
    if value is None and allow_none:
        return None
    if (not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_))
            or value < low):
        raise ValueError(f"expected {name} to be an int >= {low}"
                         + (" or None" if allow_none else "") + f", got {value!r}")
    return int(value)


# -- sequences ------------------------------------------------------------------------------
def pad_sequences(sequences, maxlen=None, dtype="int32", padding="pre", truncating="pre",
                  value=0.0):
    """Sequences of different lengths as one ``(N, T, ...)`` array
    (``keras.utils.pad_sequences``).

    A sequence longer than ``T`` loses its first entries (``truncating="pre"``) or its
    last (``"post"``); a shorter one gets ``value`` before it (``padding="pre"``) or after
    it (``"post"``). Entries may be numbers or equally shaped arrays (then the result is
    ``(N, T) + entry shape``).

    Parameters
    ----------
    sequences : list of sequences
        ``N`` sequences (lists, tuples or arrays), each of entries of one shape.
    maxlen : int, optional
        ``T``; by default the longest sequence's length.
    dtype : str or dtype, default "int32"
        The result's dtype (``object`` for strings of any length).
    padding, truncating : {"pre", "post"}
    value : number or str, default 0.0
        What fills the padding (cast to ``dtype``).

    Returns
    -------
    ndarray ``(N, T, ...)``

    Examples
    --------
    >>> pad_sequences([[1], [2, 3], [4, 5, 6]], maxlen=2)
    array([[0, 1],
           [2, 3],
           [5, 6]], dtype=int32)
    >>> pad_sequences([[1], [2, 3]], padding="post", value=-1)
    array([[ 1, -1],
           [ 2,  3]], dtype=int32)
    """
    for name, v in (("padding", padding), ("truncating", truncating)):
        if v not in ("pre", "post"):
            raise ValueError(f"expected {name} to be 'pre' or 'post', got {v!r}")
    if isinstance(sequences, (str, bytes)) or not hasattr(sequences, "__len__"):
        raise ValueError(f"expected sequences to be a list of sequences, got "
                         f"{type(sequences).__name__}")
    lengths, sample_shape = [], None
    for i, s in enumerate(sequences):
        if isinstance(s, (str, bytes)) or not hasattr(s, "__len__"):
            raise ValueError(f"expected sequences to be a list of sequences (lists, tuples "
                             f"or arrays), got sequences[{i}] = {s!r:.60}")
        lengths.append(len(s))
        if sample_shape is None and len(s):
            sample_shape = np.asarray(s).shape[1:]
    sample_shape = sample_shape or ()
    maxlen = _int("maxlen", maxlen, 0, allow_none=True)
    if maxlen is None:
        maxlen = max(lengths, default=0)
    dtype = np.dtype(dtype)
    if isinstance(value, str) and dtype.kind not in "OSU":
        raise ValueError(f"expected a numeric value for dtype {dtype}, got the string "
                         f"{value!r}; use dtype=object for strings of any length")
    out = np.full((len(lengths), maxlen) + sample_shape, value, dtype=dtype)
    if maxlen == 0:
        return out
    for i, s in enumerate(sequences):
        if not len(s):
            continue
        kept = s[-maxlen:] if truncating == "pre" else s[:maxlen]
        kept = np.asarray(kept, dtype=dtype)
        if kept.shape[1:] != sample_shape:
            raise ValueError(f"expected every entry of every sequence to have shape "
                             f"{sample_shape} (as the first non-empty sequence's), got "
                             f"{kept.shape[1:]} in sequences[{i}]")
        if padding == "pre":
            out[i, maxlen - len(kept):] = kept
        else:
            out[i, :len(kept)] = kept
    return out


def to_categorical(x, num_classes=None):
    """Class ids as one-hot rows (``keras.utils.to_categorical``).

    Parameters
    ----------
    x : array-like of ints, shape ``S``
        Class ids in ``[0, C)``. A trailing axis of size 1 (``(N, 1)``) is dropped first,
        as Keras does.
    num_classes : int, optional
        ``C``; by default ``max(x) + 1``.

    Returns
    -------
    ndarray ``S + (C,)``, float64
        ``out[..., c] = 1`` where ``x == c``, else 0.

    Examples
    --------
    >>> to_categorical([0, 2, 1])
    array([[1., 0., 0.],
           [0., 0., 1.],
           [0., 1., 0.]])
    """
    a = np.asarray(x)
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a) & (a == np.floor(a))):
            raise ValueError("expected integer class ids, got non-integer numbers")
    elif a.dtype.kind not in "iub":
        raise ValueError(f"expected integer class ids, got dtype {a.dtype}")
    a = a.astype(np.int64)
    shape = a.shape
    if len(shape) > 1 and shape[-1] == 1:
        shape = shape[:-1]
    a = a.reshape(-1)
    if a.size and a.min() < 0:
        raise ValueError(f"expected class ids >= 0, got {a.min()}")
    if num_classes is None:
        num_classes = int(a.max()) + 1 if a.size else 0
    num_classes = _int("num_classes", num_classes, 0)
    if a.size and a.max() >= num_classes:
        raise ValueError(f"expected class ids below num_classes={num_classes}, got "
                         f"{a.max()}")
    out = np.zeros((a.size, num_classes))
    out[np.arange(a.size), a] = 1
    return out.reshape(shape + (num_classes,))


# -- sources of batches -----------------------------------------------------------------------
class PyDataset:
    """Base class of a source of batches read one at a time (Keras 3's
    ``keras.utils.PyDataset``, formerly ``Sequence``): ``fit``, ``evaluate`` and
    ``predict`` take one as ``x`` and ask it for batch ``i`` when they need it, so the
    data need not fit in memory.

    A subclass implements ``__getitem__(index)``, returning batch ``index`` as
    ``(x, y)``, ``(x, y, sample_weight)`` or ``(x,)`` (a bare ``x`` for ``predict``;
    ``x`` a list of arrays for a model with several inputs), and ``__len__``, the number
    of batches; or, for an endless source, the property ``num_batches`` returning None
    (then ``fit`` needs ``steps_per_epoch``). ``on_epoch_begin``/``on_epoch_end`` run
    around every epoch (reshuffle the samples there). ``fit(shuffle=True)`` visits the
    batches of a finite dataset in a new order each epoch, as Keras does.

    Parameters
    ----------
    workers : int, default 1
        Threads that read batches ahead of the step that needs them (1: read in the
        calling thread, when needed). Batches arrive in order either way.
    use_multiprocessing : bool, default False
        Keras reads batches in processes with this; crnn reads them in ``workers``
        threads (a process pool would pickle every batch), and warns when it is set.
    max_queue_size : int, default 10
        Batches read ahead at most, when ``workers > 1``: at most this many batches are
        held at once.

    Examples
    --------
    >>> class Squares(PyDataset):
    ...     def __init__(self, n, batch_size, **kwargs):
    ...         super().__init__(**kwargs)
    ...         self.n, self.batch_size = n, batch_size
    ...     def __len__(self):
    ...         return math.ceil(self.n / self.batch_size)
    ...     def __getitem__(self, i):
    ...         x = np.arange(i * self.batch_size, min((i + 1) * self.batch_size, self.n),
    ...                       dtype="float32")[:, None]
    ...         return x, x ** 2
    >>> ds = Squares(10, 4)
    >>> len(ds), ds[2][1].ravel().tolist()
    (3, [64.0, 81.0])
    """

    def __init__(self, workers=1, use_multiprocessing=False, max_queue_size=10):
        self._workers = _int("workers", workers, 1)
        if not isinstance(use_multiprocessing, (bool, np.bool_)):
            raise ValueError(f"expected use_multiprocessing to be True or False, got "
                             f"{use_multiprocessing!r}")
        self._use_multiprocessing = bool(use_multiprocessing)
        self._max_queue_size = _int("max_queue_size", max_queue_size, 1)
        if self._use_multiprocessing:
            warnings.warn("crnn reads a PyDataset's batches in threads (workers), not in "
                          "processes: use_multiprocessing is ignored", stacklevel=2)

    @property
    def workers(self):
        return getattr(self, "_workers", 1)

    @workers.setter
    def workers(self, value):
        self._workers = _int("workers", value, 1)

    @property
    def use_multiprocessing(self):
        return getattr(self, "_use_multiprocessing", False)

    @use_multiprocessing.setter
    def use_multiprocessing(self, value):
        self._use_multiprocessing = bool(value)

    @property
    def max_queue_size(self):
        return getattr(self, "_max_queue_size", 10)

    @max_queue_size.setter
    def max_queue_size(self, value):
        self._max_queue_size = _int("max_queue_size", value, 1)

    def __getitem__(self, index):
        """Batch ``index``: ``(x, y)``, ``(x, y, sample_weight)`` or ``(x,)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement "
                                  f"__getitem__(index), returning batch index")

    @property
    def num_batches(self):
        """The number of batches (``len(self)``), or None for an endless source."""
        if hasattr(type(self), "__len__"):
            return len(self)
        raise NotImplementedError(f"{type(self).__name__} must implement __len__ (the "
                                  f"number of batches), or a num_batches property that "
                                  f"returns None for an endless source")

    def on_epoch_begin(self):
        """Called before every epoch."""

    def on_epoch_end(self):
        """Called after every epoch (reshuffle the samples here)."""

    def __iter__(self):
        """Batches 0, 1, ... in order (endlessly when ``num_batches`` is None)."""
        n = self.num_batches
        index = 0
        while n is None or index < n:
            yield self[index]
            index += 1


Sequence = PyDataset   # Keras 2's name, which Keras 3 keeps as an alias


class TimeseriesDataset(PyDataset):
    """Windows of a series, batch by batch: what :func:`timeseries_dataset_from_array`
    returns. Batch ``i`` holds windows ``i * B`` to ``(i + 1) * B`` (in a shuffled order
    with ``shuffle``), sliced from ``data`` when it is asked for."""

    def __init__(self, data, targets, starts, sequence_length, sampling_rate, batch_size):
        super().__init__()
        self.data, self.targets = data, targets
        self.starts = starts
        self.sequence_length, self.sampling_rate = sequence_length, sampling_rate
        self.batch_size = batch_size

    def __len__(self):
        if self.batch_size is None:
            return len(self.starts)
        return math.ceil(len(self.starts) / self.batch_size)

    def __getitem__(self, index):
        if not isinstance(index, (int, np.integer)) or not 0 <= index < len(self):
            raise IndexError(f"expected a batch index in [0, {len(self)}), got {index!r}")
        if self.batch_size is None:       # one window, no batch axis (Keras's None)
            starts = self.starts[index:index + 1]
        else:
            starts = self.starts[index * self.batch_size:(index + 1) * self.batch_size]
        steps = np.arange(self.sequence_length) * self.sampling_rate
        x = np.asarray(self.data[starts[:, None] + steps])   # (B, T, ...)
        if self.batch_size is None:
            x = x[0]
        if self.targets is None:
            return x
        y = np.asarray(self.targets[starts])
        return x, (y[0] if self.batch_size is None else y)


def timeseries_dataset_from_array(data, targets, sequence_length, sequence_stride=1,
                                  sampling_rate=1, batch_size=128, shuffle=False,
                                  seed=None, start_index=None, end_index=None):
    """Sliding windows over a series as a :class:`PyDataset` of batches
    (``keras.utils.timeseries_dataset_from_array``, which returns a ``tf.data`` dataset
    of the same batches).

    Window ``j`` starts at step ``s_j = start_index + j * sequence_stride`` and holds
    ``data[s_j + k * sampling_rate]`` for ``k = 0 .. sequence_length - 1``; its target is
    ``targets[s_j]``. Only whole windows inside ``[start_index, end_index)`` are made,
    and only those whose target exists.

    Parameters
    ----------
    data : array ``(L, ...)``
        The series, steps first (any array indexable by an integer array: an
        ``np.memmap`` keeps it on disk).
    targets : array ``(L', ...)`` or None
        One target per window start; None yields only the windows.
    sequence_length : int
        ``T``, steps per window.
    sequence_stride : int, default 1
        Steps between the starts of two windows.
    sampling_rate : int, default 1
        Steps between two entries of a window.
    batch_size : int or None, default 128
        Windows per batch (the last batch may be shorter); None: unbatched windows.
    shuffle : bool, default False
        Shuffle the windows once (with ``seed``).
    seed : int, optional
    start_index, end_index : int, optional
        The part of ``data`` to use (``end_index`` excluded).

    Returns
    -------
    TimeseriesDataset
        Batch ``i`` is ``(x (B, T, ...), y (B, ...))``, or ``x`` without targets.

    Examples
    --------
    >>> ds = timeseries_dataset_from_array(np.arange(10), None, sequence_length=3,
    ...                                    sequence_stride=3, batch_size=2)
    >>> [b.tolist() for b in ds]
    [[[0, 1, 2], [3, 4, 5]], [[6, 7, 8]]]
    """
    if not hasattr(data, "__getitem__") or not hasattr(data, "__len__"):
        raise ValueError(f"expected data to be an array (L, ...), got {type(data).__name__}")
    if not isinstance(data, np.ndarray):
        data = np.asarray(data)
    if data.ndim == 0:
        raise ValueError("expected data to be an array (L, ...) with a step axis first, "
                         "got a scalar")
    if targets is not None and not isinstance(targets, np.ndarray):
        targets = np.asarray(targets)
    sequence_length = _int("sequence_length", sequence_length, 1)
    sequence_stride = _int("sequence_stride", sequence_stride, 1)
    sampling_rate = _int("sampling_rate", sampling_rate, 1)
    batch_size = _int("batch_size", batch_size, 1, allow_none=True)
    if not isinstance(shuffle, (bool, np.bool_)):
        raise ValueError(f"expected shuffle to be True or False, got {shuffle!r}")
    n = len(data)
    start = _int("start_index", 0 if start_index is None else start_index, 0)
    end = _int("end_index", n if end_index is None else end_index, 0)
    if start_index is not None and start >= n:
        raise ValueError(f"expected start_index below the data's length {n}, got {start}")
    if end > n:
        raise ValueError(f"expected end_index <= the data's length {n}, got {end}")
    if end <= start:
        raise ValueError(f"expected end_index > start_index, got start_index={start}, "
                         f"end_index={end}")
    count = end - start - (sequence_length - 1) * sampling_rate
    if targets is not None:
        count = min(count, len(targets) - start)
    relative = np.arange(0, max(count, 0), sequence_stride, dtype=np.int64)
    if shuffle:
        if seed is not None and not isinstance(seed, numbers.Integral):
            raise ValueError(f"expected seed to be an int or None, got {seed!r}")
        np.random.default_rng(seed).shuffle(relative)
    return TimeseriesDataset(data, targets, start + relative, sequence_length,
                             sampling_rate, batch_size)
