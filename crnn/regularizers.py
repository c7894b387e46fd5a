"""Regularizers: penalties on weights and on layer outputs that training adds to the loss
(Keras's ``keras.regularizers``).

.. math::
    \\mathrm{L1}(x) = \\ell_1 \\sum |x|, \\qquad
    \\mathrm{L2}(x) = \\ell_2 \\sum x^2, \\qquad
    \\mathrm{L1L2}(x) = \\ell_1 \\sum |x| + \\ell_2 \\sum x^2

A layer takes them as ``kernel_regularizer``, ``recurrent_regularizer``,
``bias_regularizer``, ``embeddings_regularizer`` (a penalty on that weight, computed from
its current value whenever ``layer.losses`` is read) and ``activity_regularizer`` (a
penalty on each output of the layer's last call, divided by the batch size, as Keras 3
does). ``fit``, ``train_on_batch`` and ``evaluate`` add ``model.losses`` to the compiled
loss, and the tape differentiates them: a regularizer called on a :class:`crnn.Tensor` is
an op on the tape (:class:`Penalty`), and :func:`weight_tensor` puts a weight on the tape
so that the penalty's gradient reaches the layer's ``grads``.

A regularizer is one of the classes here, a string (``"l1"``, ``"l2"``: factor 0.01, as
Keras; ``"l1_l2"``: both factors 0.01, as Keras documents it), a dict from
:func:`serialize`, or any callable ``f(x) -> scalar`` (written with :mod:`crnn.ops` it
is differentiated by the tape; a function cannot be saved with the model). A subclass of
:class:`Regularizer` saves with the model when it has ``get_config`` and is registered
with :func:`crnn.saving.register_serializable` (or passed in ``custom_objects``).
"""
import math
import numbers

import numpy as np

from crnn import registry
from crnn.engine import Op

__all__ = ["L1", "L1L2", "L2", "Penalty", "Regularizer", "deserialize", "get", "l1",
           "l1_l2", "l2", "serialize", "weight_tensor"]


def _factor(name, value):
    """Keras's ``validate_float_arg``: a finite number >= 0."""
    if (not isinstance(value, numbers.Real) or isinstance(value, bool)
            or not math.isfinite(value) or value < 0):
        raise ValueError(f"expected {name} to be a finite number >= 0, got {value!r}")
    return float(value)


class Penalty(Op, register=False):   # made by a regularizer, never named in a file
    """``y = scale * regularizer.penalty(x)`` as a primitive of the tape, with
    ``dx = dy * scale * regularizer.penalty_gradient(x)``."""

    def __init__(self, regularizer, scale=1.0):
        super().__init__(name="penalty")
        self.regularizer = regularizer
        self.scale = scale

    def _forward(self, inputs):
        x = np.asarray(inputs[0])
        dtype = x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)
        x = x.astype(dtype, copy=False)
        y = np.asarray(self.regularizer.penalty(x) * self.scale, dtype=dtype)
        return [y.reshape(())], x

    def _backward(self, x, d_outputs):
        dy = d_outputs[0]
        return [dy * self.scale * self.regularizer.penalty_gradient(x)], None


class _Weight(Op, register=False):    # a weight read onto the tape
    """A layer's weight ``name`` as the output of a primitive, so that a penalty on it
    is differentiated into that layer's ``grads`` (the op shows the layer's ``params``
    and ``grads``, which the tape keys weight gradients by)."""

    def __init__(self, layer, name):
        super().__init__(name="weight")
        self.params = layer.params
        self.grads = layer.grads
        self.weight = name

    def _forward(self, inputs):
        return [self.params[self.weight]], None

    def _backward(self, cache, d_outputs):
        return [], {self.weight: d_outputs[0]}


def weight_tensor(layer, name):
    """``layer.params[name]``, as a :class:`crnn.Tensor` while a tape records (its
    gradient then goes to ``layer.grads[name]``), else the array itself."""
    return _Weight(layer, name)._run([])[0]


class Regularizer:
    """Base of the regularizers: ``regularizer(x)`` is a scalar penalty (a 0-d array, or
    a :class:`crnn.Tensor` on the tape when ``x`` is one).

    A built-in one defines :meth:`penalty` and :meth:`penalty_gradient` on arrays; a
    user's subclass may instead override ``__call__`` with :mod:`crnn.ops`, which the
    tape differentiates.
    """

    def __call__(self, x):
        return Penalty(self)._apply([x])

    def penalty(self, x):
        """The penalty of the array ``x`` (a scalar)."""
        return 0.0

    def penalty_gradient(self, x):
        """``d penalty / d x``, of ``x``'s shape."""
        return np.zeros_like(x)

    def get_config(self):
        raise NotImplementedError(f"{type(self).__name__} does not implement get_config")

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        try:
            args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        except NotImplementedError:
            args = ""
        return f"{type(self).__name__}({args})"


@registry.serializable("regularizer")
class L1L2(Regularizer):
    """``l1 * sum(|x|) + l2 * sum(x**2)``; both factors 0 by default (Keras's class)."""

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = _factor("l1", 0.0 if l1 is None else l1)
        self.l2 = _factor("l2", 0.0 if l2 is None else l2)

    def penalty(self, x):
        dt = x.dtype.type
        out = dt(0)
        if self.l1:
            out = out + dt(self.l1) * np.sum(np.abs(x))          # l1 sum |x|
        if self.l2:
            out = out + dt(self.l2) * np.sum(np.square(x))       # l2 sum x^2
        return out

    def penalty_gradient(self, x):
        dt = x.dtype.type
        g = np.zeros_like(x)
        if self.l1:
            g += dt(self.l1) * np.sign(x)                        # d|x| = sign(x), 0 at 0
        if self.l2:
            g += dt(2 * self.l2) * x                             # d x^2 = 2x
        return g

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


@registry.serializable("regularizer")
class L1(L1L2):
    """``l1 * sum(|x|)`` (default factor 0.01, as Keras)."""

    def __init__(self, l1=0.01):
        super().__init__(l1=0.01 if l1 is None else l1)

    def get_config(self):
        return {"l1": self.l1}


@registry.serializable("regularizer")
class L2(L1L2):
    """``l2 * sum(x**2)`` (default factor 0.01, as Keras)."""

    def __init__(self, l2=0.01):
        super().__init__(l2=0.01 if l2 is None else l2)

    def get_config(self):
        return {"l2": self.l2}


def l1(l1=0.01):
    return L1(l1)


def l2(l2=0.01):
    return L2(l2)


def l1_l2(l1=0.01, l2=0.01):
    """Both penalties, 0.01 each by default (Keras 2's ``l1_l2`` and Keras 3's
    documented string ``"l1_l2"``)."""
    return L1L2(l1=l1, l2=l2)


_STRINGS = {"l1": L1, "l2": L2, "l1_l2": l1_l2, "l1l2": L1L2,
            "L1": L1, "L2": L2, "L1L2": L1L2}


def serialize(regularizer):
    """``{"class_name", "config"}`` of a regularizer object (None for None). A plain
    function cannot be written: ``ValueError``."""
    if regularizer is None:
        return None
    if not hasattr(regularizer, "get_config") or isinstance(regularizer, type):
        raise ValueError(f"expected a regularizer object with get_config to save, got "
                         f"{regularizer!r:.60} (a function cannot be saved with the model; "
                         f"write it as a Regularizer subclass with get_config)")
    return registry.serialize(regularizer)


def deserialize(config, custom_objects=None):
    """The regularizer :func:`serialize` wrote."""
    return registry.deserialize(config, "regularizer", custom_objects)


def get(identifier):
    """A regularizer from a name, a dict (:func:`serialize`), an object or a callable;
    None for None."""
    if identifier is None:
        return None
    if isinstance(identifier, str):
        make = _STRINGS.get(identifier)
        if make is None:
            raise ValueError(f"expected a regularizer name among {sorted(_STRINGS)}, got "
                             f"{identifier!r}")
        return make()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, type) and issubclass(identifier, Regularizer):
        return identifier()
    if callable(identifier):
        return identifier
    raise ValueError(f"expected a regularizer (a name, a Regularizer, a dict or a "
                     f"callable), got {identifier!r:.60}")
