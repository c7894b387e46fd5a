"""Weight initialisers by Keras name.

Each takes ``(shape, dtype, rng)`` with ``rng`` a ``numpy.random.Generator`` and returns
a new array. Fan-in and fan-out follow Keras for 2-D kernels: ``fan_in, fan_out = shape``.
A callable with that signature may be passed wherever a name is accepted.
"""
import numpy as np


def zeros(shape, dtype, rng):
    return np.zeros(shape, dtype=dtype)


def ones(shape, dtype, rng):
    return np.ones(shape, dtype=dtype)


def _fans(shape):
    if len(shape) == 1:
        return shape[0], shape[0]
    return shape[0], shape[1]


def glorot_uniform(shape, dtype, rng):
    fan_in, fan_out = _fans(shape)
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape).astype(dtype)


def glorot_normal(shape, dtype, rng):
    fan_in, fan_out = _fans(shape)
    std = np.sqrt(2.0 / (fan_in + fan_out))
    return _truncated_normal(shape, std, rng).astype(dtype)


def he_uniform(shape, dtype, rng):
    fan_in, _ = _fans(shape)
    limit = np.sqrt(6.0 / fan_in)
    return rng.uniform(-limit, limit, size=shape).astype(dtype)


def he_normal(shape, dtype, rng):
    fan_in, _ = _fans(shape)
    return _truncated_normal(shape, np.sqrt(2.0 / fan_in), rng).astype(dtype)


def random_normal(shape, dtype, rng):
    return rng.normal(0.0, 0.05, size=shape).astype(dtype)


def random_uniform(shape, dtype, rng):
    return rng.uniform(-0.05, 0.05, size=shape).astype(dtype)


def orthogonal(shape, dtype, rng):
    """A (semi-)orthogonal matrix: QR of a Gaussian matrix, signs fixed by diag(R)."""
    rows, cols = shape[0], int(np.prod(shape[1:]))
    a = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return q.reshape(shape).astype(dtype)


def _truncated_normal(shape, std, rng):
    # Keras draws from a normal truncated at two standard deviations, then rescales the
    # spread (0.8796...) so that the result has the asked-for standard deviation.
    std = std / 0.87962566103423978
    out = rng.normal(0.0, std, size=shape)
    bad = np.abs(out) > 2 * std
    while bad.any():
        out[bad] = rng.normal(0.0, std, size=int(bad.sum()))
        bad = np.abs(out) > 2 * std
    return out


_BY_NAME = {f.__name__: f for f in (zeros, ones, glorot_uniform, glorot_normal, he_uniform,
                                     he_normal, random_normal, random_uniform, orthogonal)}


def get(initializer):
    """Return the initialiser function for a name (or a callable, unchanged)."""
    if callable(initializer):
        return initializer
    if isinstance(initializer, str) and initializer in _BY_NAME:
        return _BY_NAME[initializer]
    raise ValueError(f"expected an initializer name in {sorted(_BY_NAME)} or a callable "
                     f"(shape, dtype, rng) -> array, got {initializer!r}")
