"""Activation functions by name, each with its derivative taken from its output: the one
home of every activation formula (the reference kernels, the ops in :mod:`crnn.ops`,
``Dense``, ``Activation`` and the model stepper call these).

The kernels recompute ``act'(a)`` from the stored output ``h = act(a)`` rather than
storing the pre-activation ``a``, which halves what backward keeps. Every activation
offered here must allow that: its derivative has to be a function of its output.
Softmax, for the layers around a recurrence only, is taken back through by its
Jacobian-vector product, also from its output.
"""
import numpy as np

# Integer codes shared with the Cython kernels (src/crnn/_activations.pxd).
CODES = {"tanh": 0, "relu": 1, "sigmoid": 2, "linear": 3}


def tanh(a):
    return np.tanh(a)


def relu(a):
    # np.where keeps NaN a NaN (np.maximum would too; a comparison mask would not).
    return np.where(a < 0, np.zeros_like(a), a)


def sigmoid(a):
    # exp of -a overflows to inf for very negative a, which gives the right limit 0.
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-a))


def linear(a):
    return a


def tanh_grad(h):
    return 1 - h * h


def relu_grad(h):
    return (h > 0).astype(h.dtype)


def sigmoid_grad(h):
    return h * (1 - h)


def linear_grad(h):
    return np.ones_like(h)


FUNCTIONS = {"tanh": tanh, "relu": relu, "sigmoid": sigmoid, "linear": linear}
GRADIENTS = {"tanh": tanh_grad, "relu": relu_grad, "sigmoid": sigmoid_grad,
             "linear": linear_grad}


def check(name):
    """Return ``name`` if it is a known activation, else raise ``ValueError``.

    ``None`` means ``"linear"``, as in Keras.
    """
    if name is None:
        return "linear"
    if not isinstance(name, str) or name not in CODES:
        raise ValueError(f"expected activation to be one of {sorted(CODES)}, got {name!r}")
    return name


# -- for the layers around a recurrence (Dense, Activation), softmax too ----------------
def softmax(a, axis=-1):
    """``exp(a) / sum(exp(a), axis)``, shifted by the maximum so that nothing overflows."""
    e = np.exp(a - _max(a, axis))
    return e / e.sum(axis=axis, keepdims=True)


def _max(a, axis):
    """``a.max(axis, keepdims=True)``. Over a short last axis (a softmax over 10 classes)
    NumPy's reduction costs ~60 ns a row (157 us for 2560 rows of 10, six times the
    exp); a maximum of its few columns, taken column by column, the same values."""
    if a.ndim == 0 or axis not in (-1, a.ndim - 1) or not 1 <= a.shape[-1] <= 16:
        return a.max(axis=axis, keepdims=True)
    m = a[..., :1].copy()
    for j in range(1, a.shape[-1]):
        np.maximum(m, a[..., j:j + 1], out=m)
    return m


def softmax_backward(y, dy, axis=-1):
    """``dy`` taken back through softmax from its output ``y``: the Jacobian-vector
    product ``y * (dy - <dy, y>)``."""
    return y * (dy - (dy * y).sum(axis=axis, keepdims=True))


OUTPUT_ACTIVATIONS = sorted(CODES) + ["softmax"]


def check_output(name):
    """A name from :data:`OUTPUT_ACTIVATIONS` (None means linear)."""
    if name is None:
        return "linear"
    if name == "softmax":
        return name
    if not isinstance(name, str) or name not in CODES:
        raise ValueError(f"expected activation to be one of {OUTPUT_ACTIVATIONS} or None, "
                         f"got {name!r}")
    return name


def apply(name, a):
    """``name(a)`` for a name from :data:`OUTPUT_ACTIVATIONS` (softmax over the last
    axis)."""
    if name == "softmax":
        return softmax(a)
    return FUNCTIONS[name](a)


def backward(name, y, dy):
    """``dy`` taken back through the activation ``name``, from its output ``y``."""
    if name == "softmax":
        return softmax_backward(y, dy)
    if name == "linear":
        return dy
    return dy * GRADIENTS[name](y)
