"""The layer base class: weights by name, Keras-style weight exchange, config and repr,
and the calling convention that puts every call on the tape (:mod:`crnn.engine`)."""
import functools
import inspect
import itertools
from collections import defaultdict

import numpy as np

from crnn import cores, engine

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


@functools.lru_cache(maxsize=None)
def _parameters(call):
    """The parameters of ``call``'s signature, or None where it has none to read."""
    try:
        return inspect.signature(call).parameters
    except (TypeError, ValueError):
        return None


def accepts_training(call):
    """Whether a layer's ``call`` takes ``training=`` (by name or through ``**kwargs``)."""
    params = _parameters(call)
    return params is not None and ("training" in params or any(
        p.kind is p.VAR_KEYWORD for p in params.values()))


def accepts_mask(call):
    """Whether a layer's ``call`` takes ``mask=`` by name."""
    params = _parameters(call)
    return params is not None and "mask" in params


_name_counts = defaultdict(itertools.count)


def unique_name(base):
    """``base``, then ``base_1``, ``base_2``, ... (as Keras names layers)."""
    n = next(_name_counts[base])
    return base if n == 0 else f"{base}_{n}"


def snake_case(name):
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and (not name[i - 1].isupper()
                                   or (i + 1 < len(name) and name[i + 1].islower())):
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


_REGISTRY = {}


def serialize_layer(layer):
    """``{"class_name": ..., "config": ...}``: what :func:`deserialize_layer` rebuilds a
    layer of the same configuration from (JSON-compatible where the config is)."""
    return {"class_name": type(layer).__name__, "config": layer.get_config()}


def deserialize_layer(data):
    """A new layer from :func:`serialize_layer`'s output (any registered Layer class:
    every crnn subclass of :class:`Layer` registers itself by its class name)."""
    if not isinstance(data, dict) or "class_name" not in data:
        raise ValueError(f"expected a dict with 'class_name' and 'config', got "
                         f"{data!r:.80}")
    cls = _REGISTRY.get(data["class_name"])
    if cls is None:
        raise ValueError(f"unknown layer class {data['class_name']!r}; known: "
                         f"{sorted(_REGISTRY)}")
    return cls.from_config(dict(data.get("config", {})))


class Layer:
    """Base of every crnn layer and cell.

    A layer owns its weights in ``params`` (a dict by name, in Keras's order) and, after a
    backward pass, their gradients in ``grads`` (same names and shapes). It is built lazily
    from the shape of its first input, or explicitly with :meth:`build`.

    Calling a layer runs :meth:`call` on arrays (or on :class:`crnn.engine.Tensor` objects
    while a :class:`crnn.GradientTape` records), or, on :func:`crnn.Input` placeholders,
    adds a node to a functional graph. A primitive layer implements ``_forward(inputs,
    **options) -> (outputs, cache)`` and ``_backward(cache, d_outputs) -> (d_inputs,
    d_weights)`` over flat lists of arrays, and its :meth:`call` passes them to
    :meth:`_run`, which records the call on the tape.
    """

    # Whether the layer passes a mask of real steps on (Keras's ``supports_masking``):
    # the default :meth:`compute_mask` returns its input's mask where this is True and
    # None (the mask ends here) where it is False.
    supports_masking = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # crnn's own classes only: a user's class named like one of them must not
        # replace it (theirs come back through custom_objects)
        if cls.__module__.split(".")[0] == "crnn":
            _REGISTRY[cls.__name__] = cls

    def __init__(self, name=None, dtype="float32"):
        self.dtype = as_dtype(dtype)
        self.name = name or unique_name(snake_case(type(self).__name__))
        self.built = False
        self.params = {}
        self.grads = {}
        self._last_call = None

    # -- calling ---------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        if engine.is_symbolic(args) or engine.is_symbolic(kwargs):
            return engine.symbolic_call(self, args, kwargs)
        return self.call(*args, **kwargs)

    def call(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not implement call")

    @cores.computing()
    def _run(self, inputs, **options):
        """Run the primitive on the flat list ``inputs`` (arrays or Tensors; None for an
        absent optional input) and record it on the tape. Returns the flat outputs."""
        outputs, cache = self._forward([engine.value_of(a) for a in inputs], **options)
        if engine.grad_enabled():
            self._last_call = cache
            self._called = True
        else:
            self._last_call = None
            self._called = "no_grad"
        return engine.record(self, cache, inputs, outputs)

    def _check_last_call(self):
        """Raise unless the last call kept what :meth:`_backward_last` needs."""
        called = getattr(self, "_called", False)
        if called == "no_grad":
            raise ValueError(f"{type(self).__name__}.backward after a call inside "
                             f"crnn.no_grad() (or predict/evaluate), which keeps nothing "
                             f"to backpropagate through: call the layer outside no_grad "
                             f"first")
        if not called:
            raise ValueError(f"{type(self).__name__}.backward called before any forward "
                             f"call")

    def _forward(self, inputs, **options):
        raise NotImplementedError

    def _backward(self, cache, d_outputs):
        raise NotImplementedError

    @cores.computing()
    def _backward_last(self, d_outputs):
        """``_backward`` of the last call, outside any tape; sets ``grads``."""
        self._check_last_call()
        d_inputs, d_params = self._backward(self._last_call, d_outputs)
        self.grads.clear()  # in place: a wrapping layer may share the dict
        self.grads.update(d_params or {})
        return d_inputs

    def compute_output_spec(self, *args, **kwargs):
        """What a call with these arguments returns, as SymbolicTensors carrying shape and
        dtype (batch axis first, None where unknown). Builds the layer."""
        raise NotImplementedError(f"{type(self).__name__} cannot be called on crnn.Input "
                                  f"placeholders: it has no compute_output_spec")

    def compute_mask(self, inputs, mask=None):
        """The mask of real steps of this layer's output, for a call on ``inputs`` whose
        mask was ``mask`` (Keras's ``compute_mask``): ``mask`` itself for a layer that
        ``supports_masking`` (one that keeps the time axis), else None. The models pass
        it on to the next layer (:mod:`crnn.models`) and to the loss."""
        return mask if self.supports_masking else None

    @property
    def trainable_weights(self):
        return list(self.params.values())

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
