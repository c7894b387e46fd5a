"""Activation functions by name, each with its derivative taken from its output.

The kernels recompute ``act'(a)`` from the stored output ``h = act(a)`` rather than
storing the pre-activation ``a``, which halves what backward keeps. Every activation
offered here must allow that: its derivative has to be a function of its output.
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
