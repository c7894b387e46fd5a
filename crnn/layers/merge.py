"""Merge layers (Keras 3's ``keras.layers.merging``): several tensors in, one out.

``Concatenate(axis)`` joins along an axis; ``Add``, ``Subtract``, ``Multiply`` and
``Average`` combine element-wise, broadcasting as NumPy does (an input of lower rank is
aligned on the trailing axes, as Keras's merge layers do); ``Dot(axes)`` takes one dot
product per sample. Each is called on a list, ``Add()([a, b])``, and is a primitive on
the tape: ``_forward`` keeps what ``_backward`` needs, which mirrors it line by line.

Masks (Keras's rules): the element-wise layers pass on the logical AND of their inputs'
masks (None where none has one); ``Concatenate`` concatenates each input's mask broadcast
over its features (all True for an input without one) and keeps a step where any
feature is real (for ``axis=-1``: the OR of the masks; along the time axis: the masks
joined); ``Dot`` ends the mask.

Notation: ``B`` batch, ``n`` inputs ``x_i``, ``y`` the output, ``dy`` its gradient.
"""
import numpy as np

from crnn import engine
from crnn.layers.base import Layer

__all__ = ["Add", "Average", "Concatenate", "Dot", "Multiply", "Subtract", "add",
           "average", "concatenate", "dot", "multiply", "subtract"]


def _unbroadcast(g, shape):
    """``g`` summed over the axes an input of ``shape`` was broadcast along."""
    if g.shape == tuple(shape):
        return g
    g = g.sum(axis=tuple(range(g.ndim - len(shape)))) if g.ndim > len(shape) else g
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    return g.sum(axis=axes, keepdims=True) if axes else g


def _broadcast_shape(shapes, who):
    """The NumPy broadcast of shapes with ``None`` (unknown) entries; raises where two
    known sizes differ and neither is 1."""
    rank = max(len(s) for s in shapes)
    out = []
    for k in range(rank):
        dims = [s[k - rank + len(s)] for s in shapes if k - rank + len(s) >= 0]
        known = {d for d in dims if d is not None and d != 1}
        if len(known) > 1:
            raise ValueError(f"expected inputs of {who} with shapes that broadcast "
                             f"together, got shapes {[tuple(s) for s in shapes]}")
        if known:
            out.append(known.pop())
        elif any(d is None for d in dims):
            out.append(None)
        else:
            out.append(1)
    return tuple(out)


class _Merge(Layer, register=False):   # a base: no file names it
    """What the merge layers share: a list of inputs, their checks and masks."""

    min_inputs, max_inputs = 1, None

    def __init__(self, dtype="float32", name=None):
        super().__init__(name=name, dtype=dtype)
        self.built = True

    def _check_list(self, inputs, kind="inputs"):
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(f"expected {type(self).__name__} ({self.name!r}) to be called "
                             f"on a list of {kind}, got {type(inputs).__name__}")
        n = len(inputs)
        if n < self.min_inputs or (self.max_inputs is not None and n > self.max_inputs):
            want = (f"exactly {self.min_inputs}" if self.min_inputs == self.max_inputs
                    else f"at least {self.min_inputs}")
            raise ValueError(f"expected {type(self).__name__} ({self.name!r}) to be called "
                             f"on a list of {want} {kind}, got {n}")
        return list(inputs)

    def _arrays(self, inputs):
        """The inputs as arrays of the layer's dtype, checked to share a batch size."""
        xs = [np.asarray(a) for a in self._check_list(inputs)]
        for i, x in enumerate(xs):
            if x.ndim < 1:
                raise ValueError(f"expected input {i} of {type(self).__name__} "
                                 f"({self.name!r}) to have a batch axis, got a scalar")
        if len({x.shape[0] for x in xs}) > 1:
            raise ValueError(f"expected the inputs of {type(self).__name__} ({self.name!r}) "
                             f"to have one batch size, got shapes {[x.shape for x in xs]}")
        return [np.ascontiguousarray(x, dtype=self.dtype) for x in xs]

    def call(self, inputs, mask=None):
        self._check_list(inputs)
        return self._run(list(inputs))[0]

    def compute_output_spec(self, inputs, mask=None):
        shapes = [t.shape for t in self._check_list(inputs)]
        return engine.SymbolicTensor(self.compute_output_shape(shapes), self.dtype)

    def backward(self, grad):
        """The inputs' gradients for ``grad`` (the output's shape), through the last
        call, outside a tape."""
        return self._backward_last([np.asarray(grad, dtype=self.dtype)])

    def compute_mask(self, inputs, mask=None):
        """The AND of the inputs' masks (Keras's merge rule), or None."""
        if mask is None:
            return None
        if not isinstance(mask, (list, tuple)) or len(mask) != len(inputs):
            raise ValueError(f"expected one mask per input of {type(self).__name__} "
                             f"({self.name!r}), got {mask!r:.80}")
        given = [np.asarray(m, dtype=bool) for m in mask if m is not None]
        if not given:
            return None
        return np.logical_and.reduce(np.broadcast_arrays(*given))


class _Elementwise(_Merge, register=False):
    def compute_output_shape(self, input_shapes):
        shapes = [tuple(s) for s in self._check_list(input_shapes, "input shapes")]
        batches = {s[0] for s in shapes if s and s[0] is not None}
        if len(batches) > 1:
            raise ValueError(f"expected the inputs of {type(self).__name__} ({self.name!r}) "
                             f"to have one batch size, got shapes {shapes}")
        return _broadcast_shape(shapes, f"{type(self).__name__} ({self.name!r})")

    def _forward(self, inputs):
        xs = self._arrays(inputs)
        self.compute_output_shape([x.shape for x in xs])    # broadcasting checked
        return [self._combine(xs)], xs

    def _backward(self, xs, d_outputs):
        dy = d_outputs[0]
        if dy is None:
            return [None] * len(xs), None
        return [_unbroadcast(g, x.shape) for g, x in zip(self._grads(xs, dy), xs)], None


class Add(_Elementwise):
    """The sum of its inputs: ``Add()([x_1, ..., x_n])``.

    .. math:: y = \\sum_i x_i, \\qquad \\partial L / \\partial x_i = dy

    Parameters
    ----------
    dtype : {"float32", "float64"}
    name : str, optional

    Examples
    --------
    >>> Add()([np.ones((2, 3)), np.full((2, 3), 2.0)])[0].tolist()
    [3.0, 3.0, 3.0]
    """

    def _combine(self, xs):
        y = xs[0].copy()
        for x in xs[1:]:
            y = y + x                                       # 1. y = sum_i x_i
        return y

    def _grads(self, xs, dy):
        return [dy] * len(xs)                               # 1b. dx_i = dy


class Subtract(_Elementwise):
    """The difference of two inputs: ``Subtract()([a, b])`` is ``a - b``.

    .. math:: y = x_1 - x_2, \\qquad dx_1 = dy, \\quad dx_2 = -dy

    Examples
    --------
    >>> Subtract()([np.ones((1, 2)), np.full((1, 2), 3.0)]).tolist()
    [[-2.0, -2.0]]
    """

    min_inputs = max_inputs = 2

    def _combine(self, xs):
        return xs[0] - xs[1]                                # 1. y = x_1 - x_2

    def _grads(self, xs, dy):
        return [dy, -dy]                                    # 1b.


class Multiply(_Elementwise):
    """The element-wise product of its inputs.

    .. math:: y = \\prod_i x_i, \\qquad dx_i = dy \\prod_{j \\ne i} x_j

    Examples
    --------
    >>> Multiply()([np.full((1, 2), 2.0), np.full((1, 2), 3.0)]).tolist()
    [[6.0, 6.0]]
    """

    def _combine(self, xs):
        y = xs[0].copy()
        for x in xs[1:]:
            y = y * x                                       # 1. y = prod_i x_i
        return y

    def _grads(self, xs, dy):
        out = []
        for i in range(len(xs)):                            # 1b. dy * the others'
            g = dy                                          #     product (no division:
            for j, x in enumerate(xs):                      #     exact where x_i = 0)
                if j != i:
                    g = g * x
            out.append(g)
        return out


class Average(_Elementwise):
    """The element-wise mean of its inputs.

    .. math:: y = \\frac{1}{n} \\sum_i x_i, \\qquad dx_i = dy / n

    Examples
    --------
    >>> Average()([np.zeros((1, 2)), np.full((1, 2), 3.0)]).tolist()
    [[1.5, 1.5]]
    """

    def _combine(self, xs):
        y = xs[0].copy()
        for x in xs[1:]:
            y = y + x
        return y / len(xs)                                  # 1. y = sum_i x_i / n

    def _grads(self, xs, dy):
        return [dy / len(xs)] * len(xs)                     # 1b. dx_i = dy / n


class Concatenate(_Merge):
    """Join its inputs along ``axis`` (Keras's ``Concatenate``); every other dimension
    must agree.

    Parameters
    ----------
    axis : int, default -1
        Not the batch axis (0).
    dtype : {"float32", "float64"}
    name : str, optional

    Backward splits ``dy`` back into the inputs' pieces. The mask: see
    :mod:`crnn.layers.merge`.

    Examples
    --------
    >>> Concatenate()([np.zeros((2, 3)), np.ones((2, 1))]).shape
    (2, 4)
    """

    def __init__(self, axis=-1, dtype="float32", name=None):
        super().__init__(dtype=dtype, name=name)
        if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
            raise ValueError(f"expected axis to be an int, got {axis!r}")
        self.axis = int(axis)

    def _axis(self, rank):
        if not -rank <= self.axis < rank or self.axis % rank == 0:
            raise ValueError(f"expected the axis of Concatenate ({self.name!r}) to be a "
                             f"non-batch axis of inputs of rank {rank}, got axis="
                             f"{self.axis}")
        return self.axis % rank

    def compute_output_shape(self, input_shapes):
        shapes = [tuple(s) for s in self._check_list(input_shapes, "input shapes")]
        ranks = {len(s) for s in shapes}
        if len(ranks) > 1:
            raise ValueError(f"expected the inputs of Concatenate ({self.name!r}) to have "
                             f"one rank, got shapes {shapes}")
        axis = self._axis(ranks.pop())
        out = []
        for k, dims in enumerate(zip(*shapes)):
            if k == axis:
                out.append(None if any(d is None for d in dims) else sum(dims))
                continue
            known = {d for d in dims if d is not None}
            if len(known) > 1:
                raise ValueError(f"expected the inputs of Concatenate ({self.name!r}) to "
                                 f"match on every axis but {self.axis}, got shapes "
                                 f"{shapes}")
            out.append(known.pop() if known else None)
        return tuple(out)

    def _forward(self, inputs):
        xs = self._arrays(inputs)
        self.compute_output_shape([x.shape for x in xs])
        axis = self._axis(xs[0].ndim)
        y = np.concatenate(xs, axis=axis)                   # 1. y = [x_1 | ... | x_n]
        return [y], (axis, [x.shape[axis] for x in xs])

    def _backward(self, cache, d_outputs):
        axis, sizes = cache
        dy = d_outputs[0]
        if dy is None:
            return [None] * len(sizes), None
        return np.split(dy, np.cumsum(sizes)[:-1], axis=axis), None   # 1b. the pieces

    def compute_mask(self, inputs, mask=None):
        """Keras's rule: each input's mask broadcast over its features (all True
        without one), concatenated along ``axis``, then any over the last axis."""
        if mask is None:
            return None
        if not isinstance(mask, (list, tuple)) or len(mask) != len(inputs):
            raise ValueError(f"expected one mask per input of Concatenate ({self.name!r}), "
                             f"got {mask!r:.80}")
        if all(m is None for m in mask):
            return None
        full = []
        for x, m in zip(inputs, mask):
            shape = np.shape(engine.value_of(x))
            if m is None:
                full.append(np.ones(shape, dtype=bool))
                continue
            m = np.asarray(m, dtype=bool)
            while m.ndim < len(shape):
                m = m[..., None]
            full.append(np.broadcast_to(m, shape))
        joined = np.concatenate(full, axis=self._axis(len(full[0].shape)))
        return np.any(joined, axis=-1)


class Dot(_Merge):
    """One dot product per sample between two inputs (Keras's ``Dot``, its
    ``batch_dot``): ``axes`` names the axis of each input that is summed over.

    .. math:: y_b = \\sum_k a_{b, \\ldots, k, \\ldots} \\, c_{b, \\ldots, k, \\ldots}

    For ``a (B, P, K)`` and ``c (B, Q, K)`` with ``axes=2``: ``y (B, P, Q) = a c^T``; for
    ``a, c (B, K)`` with ``axes=1``: ``y (B, 1)``. In general ``y`` has ``a``'s axes
    without its summed one, then ``c``'s without the batch and its summed one (and a
    trailing 1 where only the batch is left).

    Parameters
    ----------
    axes : int or (int, int)
        The summed axis, for both inputs or for each; not 0 (the batch).
    normalize : bool, default False
        L2-normalise each input along its summed axis first (Keras's
        ``x / sqrt(max(sum(x^2), 1e-14))``): ``y`` is then a cosine similarity.
    dtype : {"float32", "float64"}
    name : str, optional

    Examples
    --------
    >>> Dot(axes=1)([np.ones((2, 3)), np.full((2, 3), 2.0)]).tolist()
    [[6.0], [6.0]]
    """

    min_inputs = max_inputs = 2
    _EPS = 1e-7      # Keras's epsilon: 1 / norm is at most 1e7

    def __init__(self, axes, normalize=False, dtype="float32", name=None):
        super().__init__(dtype=dtype, name=name)
        if isinstance(axes, (int, np.integer)) and not isinstance(axes, bool):
            self.axes = int(axes)
        elif (isinstance(axes, (list, tuple)) and len(axes) == 2
              and all(isinstance(a, (int, np.integer)) and not isinstance(a, bool)
                      for a in axes)):
            self.axes = (int(axes[0]), int(axes[1]))
        else:
            raise ValueError(f"expected axes to be an int or a pair of ints, got {axes!r}")
        self.normalize = bool(normalize)

    def get_config(self):
        config = super().get_config()
        config["axes"] = list(self.axes) if isinstance(self.axes, tuple) else self.axes
        return config

    def _both_axes(self, r1, r2):
        a1, a2 = (self.axes, self.axes) if isinstance(self.axes, int) else self.axes
        for a, r in ((a1, r1), (a2, r2)):
            if not -r <= a < r or a % r == 0:
                raise ValueError(f"expected the axes of Dot ({self.name!r}) to be non-batch "
                                 f"axes of its inputs (ranks {r1} and {r2}), got axes="
                                 f"{self.axes}")
        return a1 % r1, a2 % r2

    def compute_output_shape(self, input_shapes):
        s1, s2 = (list(s) for s in self._check_list(input_shapes, "input shapes"))
        a1, a2 = self._both_axes(len(s1), len(s2))
        if s1[a1] is not None and s2[a2] is not None and s1[a1] != s2[a2]:
            raise ValueError(f"expected the summed axes of Dot ({self.name!r}) to have one "
                             f"size, got shapes {tuple(s1)} (axis {a1}) and {tuple(s2)} "
                             f"(axis {a2})")
        out = s1[:a1] + s1[a1 + 1:] + s2[1:a2] + s2[a2 + 1:]
        return tuple(out + [1] if len(out) == 1 else out)

    def _normalize(self, x, axis):
        ss = np.sum(x * x, axis=axis, keepdims=True)
        with np.errstate(divide="ignore"):     # 1 / 0 = inf, then held at 1e7
            inv = np.minimum(1.0 / np.sqrt(ss), x.dtype.type(1.0 / self._EPS))
        return x * inv, inv

    def _forward(self, inputs):
        a, c = self._arrays(inputs)
        shape = self.compute_output_shape([a.shape, c.shape])
        a1, a2 = self._both_axes(a.ndim, c.ndim)
        na = nc = None
        if self.normalize:
            a0, c0 = a, c
            a, ia = self._normalize(a, a1)                    # 1. a = a / |a|
            c, ic = self._normalize(c, a2)                    #    c = c / |c|
            na, nc = (a0, a, ia), (c0, c, ic)
        am = np.moveaxis(a, a1, -1)                           # 2. a (B, P, K), c (B, K, Q)
        cm = np.moveaxis(c, a2, 1)
        A = am.reshape(a.shape[0], -1, a.shape[a1])
        C = cm.reshape(c.shape[0], c.shape[a2], -1)
        y = np.matmul(A, C)                                   # 3. y_b = A_b C_b
        return [y.reshape(shape)], (A, C, am.shape, cm.shape, a1, a2, na, nc)

    def _backward(self, cache, d_outputs):
        A, C, am_shape, cm_shape, a1, a2, na, nc = cache
        dy = d_outputs[0]
        if dy is None:
            return [None, None], None
        dY = dy.reshape(A.shape[0], A.shape[1], C.shape[2])
        dA = np.matmul(dY, np.swapaxes(C, 1, 2))              # 3b. dA = dY C^T
        dC = np.matmul(np.swapaxes(A, 1, 2), dY)              #     dC = A^T dY
        da = np.moveaxis(dA.reshape(am_shape), -1, a1)        # 2b. axes back
        dc = np.moveaxis(dC.reshape(cm_shape), 1, a2)
        if self.normalize:                                    # 1b. through x * inv
            da = self._normalize_backward(da, na, a1)
            dc = self._normalize_backward(dc, nc, a2)
        return [da, dc], None

    def _normalize_backward(self, dyn, cache, axis):
        x, yn, inv = cache
        clipped = inv >= 1.0 / self._EPS        # 1 / norm held at 1e7: a constant there
        proj = np.sum(dyn * yn, axis=axis, keepdims=True)
        return np.where(clipped, dyn * inv, (dyn - yn * proj) * inv)

    def compute_mask(self, inputs, mask=None):
        return None


# -- functional forms (keras.layers.add, ...) -----------------------------------------------
def add(inputs, **kwargs):
    """``Add(**kwargs)(inputs)``."""
    return Add(**kwargs)(inputs)


def subtract(inputs, **kwargs):
    """``Subtract(**kwargs)(inputs)``."""
    return Subtract(**kwargs)(inputs)


def multiply(inputs, **kwargs):
    """``Multiply(**kwargs)(inputs)``."""
    return Multiply(**kwargs)(inputs)


def average(inputs, **kwargs):
    """``Average(**kwargs)(inputs)``."""
    return Average(**kwargs)(inputs)


def concatenate(inputs, axis=-1, **kwargs):
    """``Concatenate(axis, **kwargs)(inputs)``."""
    return Concatenate(axis=axis, **kwargs)(inputs)


def dot(inputs, axes=-1, **kwargs):
    """``Dot(axes, **kwargs)(inputs)``."""
    return Dot(axes=axes, **kwargs)(inputs)
