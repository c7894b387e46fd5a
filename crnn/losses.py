"""Loss functions that return their value and its gradient, with Keras 3 semantics.

Every loss is a plain function

    ``fn(y_true, y_pred, sample_weight=None, **options) -> (loss, d_y_pred)``

where ``loss`` is a 0-d array of ``y_pred``'s dtype and ``d_y_pred`` is
:math:`\\partial\\,\\mathrm{loss} / \\partial\\,y_{pred}`, an array of ``y_pred``'s shape
and dtype, so the engine can put the loss on its tape as one node with a known gradient.

Notation: ``y_pred`` has shape ``(B, ..., C)`` (``(B, C)`` for one output per sample,
``(B, T, C)`` for sequences); ``C`` is the last ("class" or "feature") axis. Each loss
first reduces over ``C`` and leaves one value per sample (and per step), ``l`` of shape
``V = y_pred.shape[:-1]``; then, as Keras does with its default reduction
``"sum_over_batch_size"``, it weights and averages those values:

.. math::

    \\mathrm{loss} = \\frac{1}{|V|} \\sum_{v \\in V} w_v\\, l_v,

where ``w`` is ``sample_weight`` broadcast to ``V`` (ones when absent) and ``|V|`` is the
NUMBER of values (``B`` or ``B*T``), not the sum of the weights. ``sample_weight`` may be a
scalar, ``(B,)`` (per sample; expanded over steps), ``(B, T)`` (per step), or either with a
trailing axis of 1.

Shapes of ``y_true``: the shape of ``y_pred``; or, as Keras's
``squeeze_or_expand_to_same_rank`` allows, ``y_pred.shape[:-1]`` when ``C == 1`` (targets
``(B,)`` for predictions ``(B, 1)``), or ``y_pred.shape + (1,)``. The sparse loss takes
integer class indices of shape ``V`` or ``V + (1,)``.

Probability inputs are clipped to :math:`[\\epsilon, 1 - \\epsilon]` with
:math:`\\epsilon = 10^{-7}` as Keras does; the gradient is zero where the clip is active
(``p`` strictly outside the interval), as the gradient of a clip is. The ``from_logits``
versions never clip: they use log-sum-exp and softplus forms that stay finite for any
finite logits.
"""
import inspect

import numpy as np

from crnn import registry

EPSILON = 1e-7  # keras.backend.epsilon()

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


# -- argument checks ------------------------------------------------------------------------
def _check_pred(y_pred):
    """Check ``y_pred``: a float32/float64 array of rank >= 2 (batch first, classes last)."""
    y_pred = np.asarray(y_pred)
    if y_pred.dtype not in _FLOATS:
        raise ValueError(f"expected y_pred to have dtype float32 or float64, got {y_pred.dtype}")
    if y_pred.ndim < 2:
        raise ValueError(f"expected y_pred of rank >= 2, (batch, ..., features), got shape "
                         f"{y_pred.shape}")
    return y_pred


def _numeric(name, a):
    """``a`` as an ndarray of numbers (bool, int or float), else ValueError."""
    a = np.asarray(a)
    if not (a.dtype == np.bool_ or np.issubdtype(a.dtype, np.integer)
            or np.issubdtype(a.dtype, np.floating)):
        raise ValueError(f"expected {name} to hold numbers, got dtype {a.dtype}")
    return a


def _check_true(y_true, y_pred):
    """Cast ``y_true`` to ``y_pred``'s dtype and shape (Keras's squeeze-or-expand rule)."""
    y_true = _numeric("y_true", y_true).astype(y_pred.dtype, copy=False)
    if y_true.shape == y_pred.shape:
        return y_true
    if y_pred.shape[-1] == 1 and y_true.shape == y_pred.shape[:-1]:
        return y_true[..., None]
    if y_true.ndim == y_pred.ndim + 1 and y_true.shape == y_pred.shape + (1,):
        return y_true[..., 0]
    raise ValueError(f"expected y_true of shape {y_pred.shape} (the shape of y_pred), got "
                     f"{y_true.shape}")


def _check_sparse_true(y_true, y_pred):
    """Integer class indices in ``[0, C)`` of shape ``y_pred.shape[:-1]`` (or with a trailing
    axis of 1); returned as int64 of shape ``y_pred.shape[:-1]``."""
    y_true = _numeric("y_true", y_true)
    V, C = y_pred.shape[:-1], y_pred.shape[-1]
    if y_true.shape == V + (1,):
        y_true = y_true[..., 0]
    if y_true.shape != V:
        raise ValueError(f"expected y_true (class indices) of shape {V} or {V + (1,)} "
                         f"(y_pred.shape[:-1]), got {y_true.shape}")
    if y_true.dtype == np.bool_:
        raise ValueError("expected y_true to hold integer class indices, got dtype bool")
    if np.issubdtype(y_true.dtype, np.floating):
        # Keras casts float labels to int64; refuse those the cast would change.
        bad = ~np.isfinite(y_true) | (y_true != np.round(y_true))
        if np.any(bad):
            raise ValueError(f"expected y_true to hold integer class indices, got "
                             f"{y_true[bad].flat[0].item()!r}")
    if y_true.size:
        lo, hi = y_true.min(), y_true.max()
        if lo < 0 or hi >= C:
            raise ValueError(f"expected class indices in [0, {C}) (C = y_pred.shape[-1]), got "
                             f"{lo if lo < 0 else hi}")
    return y_true.astype(np.int64)


def _check_sample_weight(sample_weight, shape, dtype):
    """``sample_weight`` broadcast to the values' shape ``shape`` (ones when None).

    Follows Keras's ``squeeze_or_expand_to_same_rank``: a weight with one axis fewer than the
    values is expanded at the end (``(B,)`` over ``(B, T)``: per sample), one with a trailing
    axis of 1 more is squeezed.
    """
    if sample_weight is None:
        return None
    w = _numeric("sample_weight", sample_weight).astype(dtype, copy=False)
    if w.ndim == len(shape) + 1 and w.shape[-1] == 1:
        w = w[..., 0]
    elif w.ndim == len(shape) - 1 and w.ndim > 0:
        w = w[..., None]
    try:
        ok = np.broadcast_shapes(w.shape, shape) == shape
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"expected sample_weight broadcastable to {shape} (per sample "
                         f"{shape[:1]} or per value {shape}), got {np.shape(sample_weight)}")
    return np.broadcast_to(w, shape)


def _check_from_logits(from_logits):
    if not isinstance(from_logits, (bool, np.bool_)):
        raise ValueError(f"expected from_logits to be True or False, got {from_logits!r}")
    return bool(from_logits)


def _reduce(values, d_values, sample_weight):
    """Weight and average the per-value losses; scale their gradients to match.

    Parameters
    ----------
    values : ndarray of shape V
        Per sample (and step) losses :math:`l_v`.
    d_values : ndarray of shape V + (C,)
        :math:`\\partial l_v / \\partial y_{pred}[v, :]`.
    sample_weight : ndarray of shape V, or None

    Returns
    -------
    loss : 0-d ndarray
        :math:`\\frac{1}{|V|}\\sum_v w_v l_v` (0 for an empty batch, Keras's divide-no-NaN).
    d_y_pred : ndarray of shape V + (C,)
        :math:`w_v / |V| \\cdot \\partial l_v / \\partial y_{pred}[v, :]`.
    """
    dtype = d_values.dtype
    n = values.size
    scale = dtype.type(1.0 / n) if n else dtype.type(0.0)
    if sample_weight is not None:
        values = values * sample_weight                                 # w_v l_v
        d_values = d_values * (sample_weight[..., None] * scale)        # w_v / |V| dl_v
    else:
        d_values = d_values * scale                                     # 1 / |V| dl_v
    total = np.sum(values, dtype=dtype)
    loss = np.asarray(total / dtype.type(n) if n else total * 0, dtype=dtype)  # mean over V
    return loss, d_values


def _log_softmax(z):
    """``log softmax(z)`` over the last axis as ``(z - max) - log(sum(exp(z - max)))``:
    exact where one logit dominates, finite for any finite logits."""
    shifted = z - np.max(z, axis=-1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def _normalise_and_clip(p):
    """Keras's probability path: ``q = p / sum(p)``, ``c = clip(q, eps, 1 - eps)``.

    Returns ``q``, ``c``, the sums ``s`` and the mask where the clip passes the gradient."""
    lo, hi = p.dtype.type(EPSILON), p.dtype.type(1.0 - EPSILON)
    s = np.sum(p, axis=-1, keepdims=True)
    q = p / s
    c = np.clip(q, lo, hi)
    return q, c, s, (q >= lo) & (q <= hi)


def _backprop_normalise(g, q, s):
    """Backprop through ``q = p / s``: ``dp = (g - sum(g * q)) / s``."""
    return (g - np.sum(g * q, axis=-1, keepdims=True)) / s


def apply_mask(sample_weight, mask, shape, dtype):
    """Merge a mask of real steps into the sample weights, as Keras's ``apply_mask`` does
    for its default reduction: padded values weigh 0 and real ones ``|V| / n_real``, so
    that a loss's mean over ``V`` becomes the mean over the real values alone,

    .. math:: \\mathrm{loss} = \\frac{1}{n_{real}} \\sum_{v:\\ m_v} w_v\\, l_v

    (0 when nothing is real; Keras adds ``epsilon`` to ``n_real`` instead, which changes
    the value by a relative 1e-7).

    Parameters
    ----------
    sample_weight : array_like or None
        As the losses take it (scalar, ``(B,)``, ``V``, ...).
    mask : array_like of shape ``shape`` (bool: True for a real value) or None
    shape : tuple
        ``V = y_pred.shape[:-1]``.
    dtype : the losses' dtype

    Returns the weights ``(V)`` for the losses' ``sample_weight`` (``sample_weight``
    unchanged when ``mask`` is None).
    """
    if mask is None:
        return sample_weight
    mask = np.asarray(mask)
    if mask.shape != tuple(shape):
        raise ValueError(f"expected a mask of shape {tuple(shape)} (y_pred.shape[:-1]), "
                         f"got {mask.shape}")
    real = mask.astype(dtype)
    n_real = float(np.count_nonzero(mask))
    scale = real.size / n_real if n_real else 0.0
    w = real * np.asarray(scale, dtype=dtype)
    if sample_weight is not None:
        w = w * _check_sample_weight(sample_weight, tuple(shape), dtype)
    return w


# -- the losses -----------------------------------------------------------------------------
def mean_squared_error(y_true, y_pred, sample_weight=None):
    """Mean squared error over the last axis, averaged over samples (and steps).

    .. math::

        l_v = \\frac{1}{C} \\sum_c (p_{vc} - y_{vc})^2, \\qquad
        \\frac{\\partial\\,\\mathrm{loss}}{\\partial p_{vc}}
            = \\frac{w_v}{|V|} \\cdot \\frac{2 (p_{vc} - y_{vc})}{C}

    Parameters
    ----------
    y_true : array_like of shape (B, ..., C)
        Targets (or ``(B, ...)`` when ``C == 1``).
    y_pred : ndarray of shape (B, ..., C), float32 or float64
        Predictions.
    sample_weight : array_like of shape (B,) or (B, T), optional
        Weight of each sample (or step).

    Returns
    -------
    loss : 0-d ndarray of y_pred's dtype
    d_y_pred : ndarray of shape (B, ..., C)
    """
    y_pred = _check_pred(y_pred)
    y_true = _check_true(y_true, y_pred)
    w = _check_sample_weight(sample_weight, y_pred.shape[:-1], y_pred.dtype)
    C = y_pred.shape[-1]
    diff = y_pred - y_true                                   # p - y
    values = np.mean(diff * diff, axis=-1)                   # mean_c (p - y)^2
    d_values = diff * y_pred.dtype.type(2.0 / C)             # 2 (p - y) / C
    return _reduce(values, d_values, w)


def mean_absolute_error(y_true, y_pred, sample_weight=None):
    """Mean absolute error over the last axis, averaged over samples (and steps).

    .. math::

        l_v = \\frac{1}{C} \\sum_c |p_{vc} - y_{vc}|, \\qquad
        \\frac{\\partial\\,\\mathrm{loss}}{\\partial p_{vc}}
            = \\frac{w_v}{|V|} \\cdot \\frac{\\operatorname{sign}(p_{vc} - y_{vc})}{C}

    with :math:`\\operatorname{sign}(0) = 0`, the subgradient TensorFlow and PyTorch use.
    Arguments and returns as :func:`mean_squared_error`.
    """
    y_pred = _check_pred(y_pred)
    y_true = _check_true(y_true, y_pred)
    w = _check_sample_weight(sample_weight, y_pred.shape[:-1], y_pred.dtype)
    C = y_pred.shape[-1]
    diff = y_pred - y_true                                   # p - y
    values = np.mean(np.abs(diff), axis=-1)                  # mean_c |p - y|
    d_values = np.sign(diff) * y_pred.dtype.type(1.0 / C)    # sign(p - y) / C
    return _reduce(values, d_values, w)


def binary_crossentropy(y_true, y_pred, sample_weight=None, from_logits=False):
    """Binary cross-entropy of each output, averaged over the last axis and the samples.

    With probabilities, :math:`c = \\operatorname{clip}(p, \\epsilon, 1 - \\epsilon)`:

    .. math::

        l_v = -\\frac{1}{C} \\sum_c \\left[y_{vc} \\log c_{vc}
              + (1 - y_{vc}) \\log(1 - c_{vc})\\right], \\qquad
        \\frac{\\partial l_v}{\\partial p_{vc}} = \\frac{1}{C}
            \\frac{c_{vc} - y_{vc}}{c_{vc} (1 - c_{vc})}
            \\,[\\epsilon \\le p_{vc} \\le 1 - \\epsilon]

    With logits :math:`z` (the softplus form of TensorFlow's
    ``sigmoid_cross_entropy_with_logits``, finite for any finite :math:`z`):

    .. math::

        l_v = \\frac{1}{C} \\sum_c \\left[\\max(z_{vc}, 0) - z_{vc} y_{vc}
              + \\log\\left(1 + e^{-|z_{vc}|}\\right)\\right], \\qquad
        \\frac{\\partial l_v}{\\partial z_{vc}} = \\frac{\\sigma(z_{vc}) - y_{vc}}{C}

    The loss is then :math:`\\frac{1}{|V|}\\sum_v w_v l_v`.

    Parameters
    ----------
    y_true : array_like of shape (B, ..., C)
        Targets in [0, 1] (or ``(B, ...)`` when ``C == 1``).
    y_pred : ndarray of shape (B, ..., C), float32 or float64
        Probabilities, or logits when ``from_logits``.
    sample_weight : array_like of shape (B,) or (B, T), optional
    from_logits : bool, default False

    Returns
    -------
    loss : 0-d ndarray of y_pred's dtype
    d_y_pred : ndarray of shape (B, ..., C)
    """
    from_logits = _check_from_logits(from_logits)
    y_pred = _check_pred(y_pred)
    y_true = _check_true(y_true, y_pred)
    w = _check_sample_weight(sample_weight, y_pred.shape[:-1], y_pred.dtype)
    one, inv_C = y_pred.dtype.type(1.0), y_pred.dtype.type(1.0 / y_pred.shape[-1])
    if from_logits:
        z, y = y_pred, y_true
        e = np.exp(-np.abs(z))                                           # e^{-|z|} in (0, 1]
        elem = np.maximum(z, 0) - z * y + np.log1p(e)                    # softplus form
        sig = np.where(z >= 0, one / (one + e), e / (one + e))           # sigma(z), no overflow
        d_values = (sig - y) * inv_C                                     # (sigma(z) - y) / C
    else:
        p, y = y_pred, y_true
        lo, hi = p.dtype.type(EPSILON), p.dtype.type(1.0 - EPSILON)
        c = np.clip(p, lo, hi)                                           # clip to [eps, 1-eps]
        elem = -(y * np.log(c) + (one - y) * np.log(one - c))            # -[y log c + ...]
        inside = (p >= lo) & (p <= hi)                                   # clip passes grad
        d_values = np.where(inside, (c - y) / (c * (one - c)), 0) * inv_C
    values = np.mean(elem, axis=-1)
    return _reduce(values, d_values.astype(y_pred.dtype, copy=False), w)


def categorical_crossentropy(y_true, y_pred, sample_weight=None, from_logits=False):
    """Cross-entropy between target distributions and predictions over the last axis.

    With probabilities, Keras first rescales each row to sum to one, then clips:
    :math:`s_v = \\sum_c p_{vc}`, :math:`q = p / s`,
    :math:`c = \\operatorname{clip}(q, \\epsilon, 1 - \\epsilon)`, and

    .. math::

        l_v = -\\sum_c y_{vc} \\log c_{vc}, \\qquad
        g_{vc} = -\\frac{y_{vc}}{c_{vc}} [\\epsilon \\le q_{vc} \\le 1 - \\epsilon], \\qquad
        \\frac{\\partial l_v}{\\partial p_{vc}}
            = \\frac{g_{vc} - \\sum_k g_{vk} q_{vk}}{s_v}

    With logits (log-sum-exp, finite for any finite logits):

    .. math::

        l_v = -\\sum_c y_{vc} \\log \\operatorname{softmax}(z_v)_c, \\qquad
        \\frac{\\partial l_v}{\\partial z_{vc}}
            = \\operatorname{softmax}(z_v)_c \\sum_k y_{vk} - y_{vc}

    The loss is then :math:`\\frac{1}{|V|}\\sum_v w_v l_v`.

    Parameters
    ----------
    y_true : array_like of shape (B, ..., C)
        One-hot or probability targets.
    y_pred : ndarray of shape (B, ..., C), float32 or float64
        Probabilities, or logits when ``from_logits``.
    sample_weight : array_like of shape (B,) or (B, T), optional
    from_logits : bool, default False

    Returns
    -------
    loss : 0-d ndarray of y_pred's dtype
    d_y_pred : ndarray of shape (B, ..., C)
    """
    from_logits = _check_from_logits(from_logits)
    y_pred = _check_pred(y_pred)
    y_true = _check_true(y_true, y_pred)
    w = _check_sample_weight(sample_weight, y_pred.shape[:-1], y_pred.dtype)
    return _reduce(*_categorical(y_true, y_pred, from_logits), w)


def sparse_categorical_crossentropy(y_true, y_pred, sample_weight=None, from_logits=False):
    """Categorical cross-entropy with integer class targets.

    Same as :func:`categorical_crossentropy` with :math:`y` the one-hot encoding of the
    indices :math:`k_v`; with logits

    .. math::

        l_v = -\\log \\operatorname{softmax}(z_v)_{k_v}, \\qquad
        \\frac{\\partial l_v}{\\partial z_{vc}} = \\operatorname{softmax}(z_v)_c - [c = k_v]

    Parameters
    ----------
    y_true : array_like of int of shape (B, ...) or (B, ..., 1)
        Class indices in ``[0, C)``; floats are accepted when they are whole numbers.
    y_pred : ndarray of shape (B, ..., C), float32 or float64
        Probabilities, or logits when ``from_logits``.
    sample_weight : array_like of shape (B,) or (B, T), optional
    from_logits : bool, default False

    Returns
    -------
    loss : 0-d ndarray of y_pred's dtype
    d_y_pred : ndarray of shape (B, ..., C)
    """
    from_logits = _check_from_logits(from_logits)
    y_pred = _check_pred(y_pred)
    k = _check_sparse_true(y_true, y_pred)
    w = _check_sample_weight(sample_weight, y_pred.shape[:-1], y_pred.dtype)
    if not from_logits:
        return _reduce(*_sparse_categorical(k, y_pred), w)
    one_hot = np.zeros(y_pred.shape, dtype=y_pred.dtype)
    np.put_along_axis(one_hot, k[..., None], 1, axis=-1)
    return _reduce(*_categorical(one_hot, y_pred, from_logits), w)


def _sparse_categorical(k, p):
    """:func:`_categorical` of probabilities ``p`` with the one-hot ``y`` of indices ``k``,
    reading only the target class where ``y`` is zero elsewhere: the same values (the
    other classes' terms are zeros), without the one-hot and the dense log."""
    lo, hi = p.dtype.type(EPSILON), p.dtype.type(1.0 - EPSILON)
    s = np.sum(p, axis=-1, keepdims=True)
    q = p / s                                                            # 1. q = p/s
    q_k = np.take_along_axis(q, k[..., None], axis=-1)
    c_k = np.clip(q_k, lo, hi)                                           # 1. clip at k
    values = -np.log(c_k[..., 0])                                        # 2. -log c_k
    g_k = np.where((q_k >= lo) & (q_k <= hi), -1 / c_k, 0).astype(p.dtype, copy=False)
    t = g_k * q_k                                                        # 1b. sum(g q)
    d = np.negative(t) / s                                               # 1b. (g - .)/s
    d = np.broadcast_to(d, p.shape).copy()
    np.put_along_axis(d, k[..., None], (g_k - t) / s, axis=-1)           # ... at k
    return values, d


def _categorical(y, p, from_logits):
    """Per-value categorical cross-entropy and its gradient (see
    :func:`categorical_crossentropy`)."""
    if from_logits:
        log_sm = _log_softmax(p)                                         # log softmax(z)
        # where y == 0 the term is 0 even if log_sm under/overflowed to -inf
        values = -np.sum(np.where(y == 0, 0, y * log_sm), axis=-1)       # -sum y log softmax
        d_values = np.exp(log_sm) * np.sum(y, axis=-1, keepdims=True) - y  # softmax sum(y) - y
        return values, d_values
    q, c, s, inside = _normalise_and_clip(p)                             # 1. q = p/s, clip
    values = -np.sum(y * np.log(c), axis=-1)                             # 2. -sum y log c
    g = np.where(inside, -y / c, 0).astype(p.dtype, copy=False)          # 2b. dl/dq (clip)
    return values, _backprop_normalise(g, q, s)                          # 1b. dl/dp


# -- loss objects ---------------------------------------------------------------------------
class Loss:
    """A loss function with its options bound, as a Keras ``Loss`` object.

    ``loss(y_true, y_pred, sample_weight=None)`` returns ``(loss, d_y_pred)`` like the
    function it wraps.
    """

    fn = None
    default_name = None

    def __init__(self, name=None, **options):
        if name is not None and not isinstance(name, str):
            raise ValueError(f"expected name to be a string, got {name!r}")
        self.name = name or self.default_name
        self._options = options

    def __call__(self, y_true, y_pred, sample_weight=None):
        return type(self).fn(y_true, y_pred, sample_weight=sample_weight, **self._options)

    def get_config(self):
        """The constructor arguments: ``cls(**loss.get_config())`` is an equal loss."""
        return {"name": self.name, **self._options}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash((type(self), tuple(sorted(self.get_config().items()))))

    def __repr__(self):
        return _repr(self)


@registry.serializable("loss")
class MeanSquaredError(Loss):
    """:func:`mean_squared_error` as an object."""

    fn = staticmethod(mean_squared_error)
    default_name = "mean_squared_error"

    def __init__(self, name=None):
        super().__init__(name=name)


@registry.serializable("loss")
class MeanAbsoluteError(Loss):
    """:func:`mean_absolute_error` as an object."""

    fn = staticmethod(mean_absolute_error)
    default_name = "mean_absolute_error"

    def __init__(self, name=None):
        super().__init__(name=name)


@registry.serializable("loss")
class BinaryCrossentropy(Loss):
    """:func:`binary_crossentropy` as an object."""

    fn = staticmethod(binary_crossentropy)
    default_name = "binary_crossentropy"

    def __init__(self, from_logits=False, name=None):
        super().__init__(name=name, from_logits=_check_from_logits(from_logits))

    @property
    def from_logits(self):
        return self._options["from_logits"]


@registry.serializable("loss")
class CategoricalCrossentropy(BinaryCrossentropy):
    """:func:`categorical_crossentropy` as an object."""

    fn = staticmethod(categorical_crossentropy)
    default_name = "categorical_crossentropy"


@registry.serializable("loss")
class SparseCategoricalCrossentropy(BinaryCrossentropy):
    """:func:`sparse_categorical_crossentropy` as an object."""

    fn = staticmethod(sparse_categorical_crossentropy)
    default_name = "sparse_categorical_crossentropy"


def _repr(obj):
    """``Class(arg=value)`` with only the arguments that differ from their defaults."""
    params = inspect.signature(type(obj).__init__).parameters
    args = [f"{k}={v!r}" for k, v in obj.get_config().items()
            if k in params and params[k].default is not v and params[k].default != v
            and not (k == "name" and v == getattr(obj, "default_name", None))]
    return f"{type(obj).__name__}({', '.join(args)})"


# -- lookup and (de)serialisation -----------------------------------------------------------
_NAMES = {"mse": MeanSquaredError, "mean_squared_error": MeanSquaredError,
          "mae": MeanAbsoluteError, "mean_absolute_error": MeanAbsoluteError,
          "binary_crossentropy": BinaryCrossentropy,
          "categorical_crossentropy": CategoricalCrossentropy,
          "sparse_categorical_crossentropy": SparseCategoricalCrossentropy}
_FUNCTIONS = {registry.lookup(n, "loss").fn: registry.lookup(n, "loss")
              for n in registry.names("loss")}


def loss_class(identifier):
    """The loss class a name (``"mse"``, ``"MeanSquaredError"``, ...) or one of this
    module's loss functions stands for, or None."""
    if isinstance(identifier, str):
        return _NAMES.get(identifier) or registry.lookup(identifier, "loss")
    for fn, cls in _FUNCTIONS.items():
        if identifier is fn:
            return cls
    return None


def get(identifier):
    """Resolve a loss: a name, a loss object, a serialised dict or a callable.

    Parameters
    ----------
    identifier : str, Loss, dict or callable
        A name (``"mse"``, ``"mean_squared_error"``, ``"mae"``, ``"mean_absolute_error"``,
        ``"binary_crossentropy"``, ``"categorical_crossentropy"``,
        ``"sparse_categorical_crossentropy"``, or a class name such as
        ``"BinaryCrossentropy"``) gives a new loss object with default options; a loss
        object or any callable ``(y_true, y_pred, sample_weight) -> (loss, grad)`` is
        returned as it is; a dict from :func:`serialize` is deserialised.

    Returns
    -------
    Loss or callable
    """
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str):
        cls = loss_class(identifier)
        if cls is None:
            raise ValueError(f"expected a loss name, one of {sorted(_NAMES)}, got "
                             f"{identifier!r}")
        return cls()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if callable(identifier):
        return identifier
    raise ValueError(f"expected a loss name, a loss object or a callable "
                     f"(y_true, y_pred, sample_weight) -> (loss, grad), got {identifier!r}")


def serialize(loss):
    """``{"class_name": ..., "config": ...}`` for a loss object, a loss name or one of this
    module's loss functions; :func:`deserialize` rebuilds it."""
    if isinstance(loss, str):
        loss = get(loss)
    for fn, cls in _FUNCTIONS.items():
        if loss is fn:
            loss = cls()
    if not isinstance(loss, Loss) or registry.lookup(type(loss).__name__, "loss") is None:
        raise ValueError(f"expected one of crnn's losses ({registry.names('loss')}) to "
                         f"serialize, got {loss!r}")
    return registry.serialize(loss)


def deserialize(config):
    """Rebuild a loss from the output of :func:`serialize`."""
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(f"expected a dict with 'class_name' and 'config', got {config!r}")
    name = config["class_name"]
    cls = registry.lookup(name, "loss") or _NAMES.get(name)
    if cls is None:
        raise ValueError(f"expected class_name to be one of {registry.names('loss')}, got "
                         f"{name!r}")
    return cls.from_config(dict(config.get("config") or {}))
