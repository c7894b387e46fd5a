"""The arrays of a run: ``x``, ``y`` and ``sample_weight`` checked to have one number of
samples and sliced together into batches, one entry per output, and cut along the time
axis into truncated BPTT's windows."""
import numpy as np

from crnn import engine

__all__ = ["Data", "is_array", "by_output", "time_steps", "time_window"]


def is_array(a):
    return isinstance(a, (np.ndarray, engine.Tensor))


def _as_data(data, what, allow_dict=False):
    """An array, a list of arrays, or (when ``allow_dict``) a dict of them; None stays
    None. A list whose entries are not all arrays is one array (a nested Python list)."""
    if data is None:
        return None
    if isinstance(data, dict):
        if not allow_dict:
            raise ValueError(f"expected {what} to be an array or a list of arrays, got a dict")
        return {k: _one_array(v, f"{what}[{k!r}]") for k, v in data.items()}
    if isinstance(data, (list, tuple)) and data and all(is_array(a) for a in data):
        return [_one_array(a, f"{what}[{i}]") for i, a in enumerate(data)]
    return _one_array(data, what)


def _one_array(a, what):
    a = np.asarray(engine.value_of(a))
    if a.dtype.kind == "c":    # casting would drop the imaginary part with a warning
        raise ValueError(f"expected {what} of real numbers, got complex values (dtype "
                         f"{a.dtype}); pass the real part or split real and imaginary "
                         f"parts into features")
    if a.ndim == 0:
        raise ValueError(f"expected {what} to have a batch axis first, got a scalar")
    return a


def _leaves(data):
    if data is None:
        return []
    if isinstance(data, dict):
        return list(data.values())
    return data if isinstance(data, list) else [data]


def _take(data, index):
    if data is None:
        return None
    if isinstance(data, dict):
        return {k: v[index] for k, v in data.items()}
    if isinstance(data, list):
        return [a[index] for a in data]
    return data[index]


class Data:
    """``x``, ``y`` and ``sample_weight`` of a run, checked to have one number of
    samples, sliced together."""

    def __init__(self, x, y=None, sample_weight=None, names=("x", "y", "sample_weight")):
        if x is None:
            raise ValueError("expected input data x, got None")
        self.x = _as_data(x, names[0])
        if isinstance(self.x, list) and len(self.x) == 1:
            self.x = self.x[0]        # one input given as a list of one array
        self.y = _as_data(y, names[1], allow_dict=True)
        self.sample_weight = _as_data(sample_weight, names[2], allow_dict=True)
        counts = {}
        for name, part in zip(names, (self.x, self.y, self.sample_weight)):
            sizes = {len(a) for a in _leaves(part)}
            if len(sizes) > 1:
                raise ValueError(f"expected every array of {name} to have the same number of "
                                 f"samples (first dimension), got {sorted(sizes)}")
            if sizes:
                counts[name] = sizes.pop()
        if len(set(counts.values())) > 1:
            got = ", ".join(f"{counts[k]} ({k})" for k in counts)
            raise ValueError(f"expected {', '.join(counts)} to have the same number of "
                             f"samples (first dimension), got {got}")
        self.n = counts[names[0]]

    def take(self, index):
        out = Data.__new__(Data)
        out.x, out.y = _take(self.x, index), _take(self.y, index)
        out.sample_weight = _take(self.sample_weight, index)
        out.n = len(index) if not isinstance(index, slice) else len(range(self.n)[index])
        return out

    def batches(self, batch_size, order=None):
        """``(step, batch)`` over the samples in ``order`` (all, in turn, by default)."""
        for step, start in enumerate(range(0, self.n, batch_size)):
            if order is None:
                yield step, self.take(slice(start, start + batch_size))
            else:
                yield step, self.take(order[start:start + batch_size])


def by_output(data, names, what):
    """``y`` or ``sample_weight`` as one entry per output (None where absent)."""
    n = len(names)
    if data is None:
        return [None] * n
    if isinstance(data, dict):
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ValueError(f"expected the keys of {what} to be output names {names}, got "
                             f"{unknown}")
        return [data.get(name) for name in names]
    if isinstance(data, list):
        if len(data) != n:
            raise ValueError(f"expected {what} to be a list of {n} arrays (one per output "
                             f"{names}), got {len(data)}")
        return list(data)
    if what == "sample_weight":
        return [data] * n          # one weighting for every output
    if n != 1:
        raise ValueError(f"expected {what} to be a list of {n} arrays (one per output "
                         f"{names}), got one array")
    return [data]


def time_steps(data):
    """The common length ``T`` of axis 1 of every input, target and per-step sample
    weight (truncated BPTT splits that axis); raises where one has none."""
    xs = _leaves(data.x)
    T = None
    for i, a in enumerate(xs):
        if a.ndim < 2:
            raise ValueError(f"expected every input to have a time axis (batch, time, ...) "
                             f"for truncated BPTT, got input {i} of shape {a.shape}")
        if T is None:
            T = a.shape[1]
        elif a.shape[1] != T:
            raise ValueError(f"expected every input to have a time axis with the same "
                             f"number of steps (axis 1) for truncated BPTT, got {T} and "
                             f"{a.shape[1]} (input {i} of shape {a.shape})")
    for i, a in enumerate(_leaves(data.y)):
        if a.ndim < 2 or a.shape[1] != T:
            raise ValueError(f"expected per-step targets (batch, time={T}, ...) for "
                             f"truncated BPTT (each window's loss is on its own steps), got "
                             f"targets of shape {a.shape}: a model with one target per "
                             f"sequence trains with tbptt=None")
    for a in _leaves(data.sample_weight):
        if a.ndim >= 2 and a.shape[1] != T:
            raise ValueError(f"expected sample_weight per sample (batch,) or per step "
                             f"(batch, time={T}) for truncated BPTT, got shape {a.shape}")
    return T


def time_window(data, start, stop):
    """``data`` cut to steps ``[start, stop)`` (a per-sample weight is kept whole)."""
    def cut(part, keep_1d=False):
        if part is None:
            return None
        def one(a):
            return a if (keep_1d and a.ndim < 2) else a[:, start:stop]
        if isinstance(part, dict):
            return {k: one(v) for k, v in part.items()}
        if isinstance(part, list):
            return [one(a) for a in part]
        return one(part)
    out = Data.__new__(Data)
    out.x, out.y = cut(data.x), cut(data.y)
    out.sample_weight = cut(data.sample_weight, keep_1d=True)
    out.n = data.n
    return out


def class_sample_weights(y, class_weight, kind):
    """``fit(class_weight=...)`` as sample weights (Keras's
    ``class_weight_to_sample_weights``): each target's class looked up in
    ``class_weight`` (1 for a class it does not name).

    The class of a target: ``kind`` ``"sparse"`` (sparse categorical cross-entropy) the
    index itself; ``"binary"`` the rounded value; otherwise the index of the largest
    entry along the last axis (one-hot targets), or the rounded value where that axis has
    one entry (Keras's rule). A trailing axis of one entry is dropped. Targets with a time
    axis give one weight a step, ``(N, T)``, which the losses take as they take a
    per-step ``sample_weight``.
    """
    if not isinstance(class_weight, dict) or not class_weight:
        raise ValueError(f"expected class_weight to be a non-empty dict {{class index: "
                         f"weight}}, got {class_weight!r}")
    table = {}
    for c, w in class_weight.items():
        if not isinstance(c, (int, np.integer)) or isinstance(c, bool) or c < 0:
            raise ValueError(f"expected class_weight's keys to be class indices (ints >= "
                             f"0), got {c!r}")
        if (not isinstance(w, (int, float, np.integer, np.floating)) or isinstance(w, bool)
                or not np.isfinite(w) or w < 0):
            raise ValueError(f"expected class_weight's weights to be finite numbers >= 0, "
                             f"got {w!r} for class {c}")
        table[int(c)] = float(w)
    y = np.asarray(y)
    if y.dtype.kind not in "biuf":
        raise ValueError(f"expected numeric targets for class_weight, got dtype {y.dtype}")
    if y.ndim > 1 and y.shape[-1] == 1:
        classes = y[..., 0]
    elif kind in ("sparse", "binary") or y.ndim < 2:
        classes = y
    else:
        classes = np.argmax(y, axis=-1)       # one-hot: the class of the largest entry
    classes = np.rint(classes).astype(np.int64)
    weights = np.ones(classes.shape, dtype=np.float64)
    for c, w in table.items():
        weights[classes == c] = w
    return weights
