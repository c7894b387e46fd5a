"""The layer base class: weights by name, Keras-style weight exchange, config and repr."""
import inspect

import numpy as np

_DTYPES = {"float32": np.float32, "float64": np.float64}


def as_dtype(dtype):
    """Normalise a dtype argument to ``np.float32`` or ``np.float64``."""
    key = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if key not in _DTYPES:
        raise ValueError(f"expected dtype 'float32' or 'float64', got {dtype!r}")
    return np.dtype(_DTYPES[key])


def as_input(name, a, dtype, ndim, layout):
    """Convert ``a`` to a C-contiguous array of ``dtype`` and check its rank."""
    try:
        arr = np.ascontiguousarray(a, dtype=dtype)
    except (TypeError, ValueError) as e:
        raise ValueError(f"expected {name} convertible to a {dtype} array of shape "
                         f"{layout}, got {type(a).__name__}: {e}") from None
    if arr.ndim != ndim:
        raise ValueError(f"expected {name} of shape {layout} ({ndim}-D), got shape "
                         f"{arr.shape}")
    return arr


class Layer:
    """Base of every crnn layer and cell.

    A layer owns its weights in ``params`` (a dict by name, in Keras's order) and, after a
    backward pass, their gradients in ``grads`` (same names and shapes). It is built lazily
    from the shape of its first input, or explicitly with :meth:`build`.
    """

    def __init__(self, name=None, dtype="float32"):
        self.dtype = as_dtype(dtype)
        self.name = name or type(self).__name__.lower()
        self.built = False
        self.params = {}
        self.grads = {}

    # -- building --------------------------------------------------------------------
    def build(self, input_shape):
        self.built = True

    def _maybe_build(self, input_shape):
        if not self.built:
            self.build(tuple(input_shape))

    def _check_built(self, what):
        if not self.built:
            raise ValueError(f"{type(self).__name__} has no weights yet: call it on an "
                             f"input or call build(input_shape) before {what}")

    # -- weights ---------------------------------------------------------------------
    @property
    def weights(self):
        """The weight arrays themselves (not copies), in Keras's order."""
        return list(self.params.values())

    def get_weights(self):
        """Copies of the weights, in Keras's order and layout."""
        return [w.copy() for w in self.params.values()]

    def set_weights(self, weights):
        """Set the weights from a list in Keras's order and layout (as ``get_weights``)."""
        self._check_built("set_weights")
        weights = list(weights)
        names = list(self.params)
        if len(weights) != len(names):
            raise ValueError(f"expected {len(names)} weight arrays {names}, got "
                             f"{len(weights)}")
        new = {}
        for name, w in zip(names, weights):
            w = np.asarray(w)
            if w.shape != self.params[name].shape:
                raise ValueError(f"expected {name} of shape {self.params[name].shape}, got "
                                 f"{w.shape}")
            new[name] = np.ascontiguousarray(w, dtype=self.dtype)
        for name, w in new.items():
            self.params[name][...] = w

    def get_gradients(self):
        """Gradients from the last backward pass, in the order of ``get_weights``."""
        if not self.grads:
            raise ValueError(f"{type(self).__name__} has no gradients: call backward first")
        return [self.grads[name] for name in self.params]

    def count_params(self):
        self._check_built("count_params")
        return int(sum(w.size for w in self.params.values()))

    # -- config and repr -------------------------------------------------------------
    def get_config(self):
        """The constructor arguments, such that ``type(self).from_config(config)`` copies
        this layer's configuration (not its weights)."""
        config = {}
        for p in inspect.signature(type(self).__init__).parameters.values():
            if p.name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            value = getattr(self, p.name)
            config[p.name] = value.name if isinstance(value, np.dtype) else value
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        params = inspect.signature(type(self).__init__).parameters
        config = self.get_config()
        parts = []
        for name, p in params.items():
            if name not in config:
                continue
            if p.default is inspect.Parameter.empty:
                parts.append(repr(config[name]))
            elif config[name] != p.default and name != "name":
                parts.append(f"{name}={config[name]!r}")
        return f"{type(self).__name__}({', '.join(parts)})"
