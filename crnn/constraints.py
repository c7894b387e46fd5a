"""Constraints: projections applied to a weight after each optimizer update (Keras's
``keras.constraints``), given to a layer as ``kernel_constraint``,
``recurrent_constraint``, ``bias_constraint`` or ``embeddings_constraint``.

With ``n = sqrt(sum(w**2, axis, keepdims=True))`` (the norm of each slice along
``axis``; ``axis=0`` by default: each column of a ``(D, units)`` kernel, the weights into
one unit) and Keras's ``epsilon = 1e-7``:

.. math::
    \\mathrm{MaxNorm}:\\ w \\frac{\\min(n, m)}{\\epsilon + n}, \\quad
    \\mathrm{NonNeg}:\\ \\max(w, 0), \\quad
    \\mathrm{UnitNorm}:\\ \\frac{w}{\\epsilon + n}, \\quad
    \\mathrm{MinMaxNorm}:\\ w \\frac{r\\,\\mathrm{clip}(n, a, b) + (1 - r)\\, n}
    {\\epsilon + n}

``fit`` and ``train_on_batch`` apply them to the weights they updated, in place, after
each update (as Keras's optimizer does after ``apply``); ``model.apply_constraints()``
does it in a custom training loop.
"""
import numbers

import numpy as np

from crnn import registry

__all__ = ["Constraint", "MaxNorm", "MinMaxNorm", "NonNeg", "UnitNorm", "deserialize",
           "get", "serialize"]

EPSILON = 1e-7   # keras.backend.epsilon()


def _number(name, value, low=0.0):
    if (not isinstance(value, numbers.Real) or isinstance(value, bool)
            or not np.isfinite(value) or value < low):
        raise ValueError(f"expected {name} to be a finite number >= {low}, got {value!r}")
    return value


def _axis(axis):
    if isinstance(axis, (list, tuple)):
        if not axis or not all(isinstance(a, (int, np.integer)) and not isinstance(a, bool)
                               for a in axis):
            raise ValueError(f"expected axis to be an int or a list of ints, got {axis!r}")
        return [int(a) for a in axis]
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise ValueError(f"expected axis to be an int or a list of ints, got {axis!r}")
    return int(axis)


def _norms(w, axis):
    axes = tuple(axis) if isinstance(axis, list) else axis
    try:
        return np.sqrt(np.sum(np.square(w), axis=axes, keepdims=True))
    except (ValueError, IndexError):   # numpy's AxisError is both
        raise ValueError(f"expected a constraint axis within the weight's {w.ndim} "
                         f"dimensions (shape {w.shape}), got axis={axis!r}") from None


class Constraint:
    """Base of the constraints: ``constraint(w)`` returns the projected array (of
    ``w``'s shape and dtype)."""

    def __call__(self, w):
        return w

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


@registry.serializable("constraint")
class MaxNorm(Constraint):
    """Scale each slice along ``axis`` down to a norm of at most ``max_value``."""

    def __init__(self, max_value=2, axis=0):
        self.max_value = _number("max_value", max_value)
        self.axis = _axis(axis)

    def __call__(self, w):
        w = np.asarray(w)
        n = _norms(w, self.axis)
        desired = np.clip(n, 0, self.max_value)
        return (w * (desired / (EPSILON + n))).astype(w.dtype, copy=False)

    def get_config(self):
        return {"max_value": self.max_value, "axis": self.axis}


@registry.serializable("constraint")
class NonNeg(Constraint):
    """``max(w, 0)``."""

    def __call__(self, w):
        w = np.asarray(w)
        return np.maximum(w, 0).astype(w.dtype, copy=False)


@registry.serializable("constraint")
class UnitNorm(Constraint):
    """Each slice along ``axis`` scaled to unit norm."""

    def __init__(self, axis=0):
        self.axis = _axis(axis)

    def __call__(self, w):
        w = np.asarray(w)
        return (w / (EPSILON + _norms(w, self.axis))).astype(w.dtype, copy=False)

    def get_config(self):
        return {"axis": self.axis}


@registry.serializable("constraint")
class MinMaxNorm(Constraint):
    """Each slice's norm moved ``rate`` of the way into ``[min_value, max_value]``."""

    def __init__(self, min_value=0.0, max_value=1.0, rate=1.0, axis=0):
        self.min_value = _number("min_value", min_value)
        self.max_value = _number("max_value", max_value)
        if self.max_value < self.min_value:
            raise ValueError(f"expected min_value <= max_value, got {min_value!r} > "
                             f"{max_value!r}")
        self.rate = _number("rate", rate)
        self.axis = _axis(axis)

    def __call__(self, w):
        w = np.asarray(w)
        n = _norms(w, self.axis)
        desired = (self.rate * np.clip(n, self.min_value, self.max_value)
                   + (1 - self.rate) * n)
        return (w * (desired / (EPSILON + n))).astype(w.dtype, copy=False)

    def get_config(self):
        return {"min_value": self.min_value, "max_value": self.max_value,
                "rate": self.rate, "axis": self.axis}


_STRINGS = {"max_norm": MaxNorm, "non_neg": NonNeg, "unit_norm": UnitNorm,
            "min_max_norm": MinMaxNorm, "MaxNorm": MaxNorm, "NonNeg": NonNeg,
            "UnitNorm": UnitNorm, "MinMaxNorm": MinMaxNorm}


def serialize(constraint):
    """``{"class_name", "config"}`` of a constraint object (None for None)."""
    if constraint is None:
        return None
    if not hasattr(constraint, "get_config") or isinstance(constraint, type):
        raise ValueError(f"expected a constraint object with get_config to save, got "
                         f"{constraint!r:.60} (a function cannot be saved with the model)")
    return registry.serialize(constraint)


def deserialize(config, custom_objects=None):
    """The constraint :func:`serialize` wrote."""
    return registry.deserialize(config, "constraint", custom_objects)


def get(identifier):
    """A constraint from a name, a dict, an object or a callable ``w -> w``; None for
    None."""
    if identifier is None:
        return None
    if isinstance(identifier, str):
        cls = _STRINGS.get(identifier)
        if cls is None:
            raise ValueError(f"expected a constraint name among {sorted(_STRINGS)}, got "
                             f"{identifier!r}")
        return cls()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, type) and issubclass(identifier, Constraint):
        return identifier()
    if callable(identifier):
        return identifier
    raise ValueError(f"expected a constraint (a name, a Constraint, a dict or a "
                     f"callable), got {identifier!r:.60}")
