"""The layer base class: an :class:`crnn.engine.Operation` (the calling convention that
puts every call on the tape, weights by name, Keras-style weight exchange) configured by
its constructor's arguments; and the helpers layers share (input checks, whether a
``call`` takes ``training``/``mask``, layer (de)serialization by class name)."""
import functools
import inspect

import numpy as np

from crnn import registry
from crnn.engine import Operation, SymbolicTensor


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


def serialize_layer(layer):
    """``{"class_name": ..., "config": ...}``: what :func:`deserialize_layer` rebuilds a
    layer of the same configuration from (JSON-compatible where the config is)."""
    return registry.serialize(layer)


def deserialize_layer(data):
    """A new layer from :func:`serialize_layer`'s output (any registered class: every
    crnn subclass of :class:`crnn.engine.Operation` registers itself by its class name
    in :mod:`crnn.registry`)."""
    if not isinstance(data, dict) or "class_name" not in data:
        raise ValueError(f"expected a dict with 'class_name' and 'config', got "
                         f"{data!r:.80}")
    cls = registry.lookup(data["class_name"])
    if cls is None:
        raise ValueError(f"unknown layer class {data['class_name']!r}; known: "
                         f"{registry.names()}")
    return cls.from_config(dict(data.get("config", {})))


def architecture(layer):
    """How a model is built: ``"sequential"``, ``"functional"`` or ``"subclassed"`` for a
    :class:`crnn.Model` instance or class (a class answers for how its instances are
    built unless they are made from a graph), None for any other layer. The modules below
    :mod:`crnn.models` (saving, training, streaming) tell models apart by this."""
    return getattr(layer, "_architecture", None)


def sublayers(layer):
    """Every layer inside ``layer`` (itself excluded), each once, in order."""
    out, seen = [], set()

    def visit(obj):
        for sub in getattr(obj, "layers", ()):
            if id(sub) not in seen:
                seen.add(id(sub))
                out.append(sub)
                visit(sub)
        for name in ("cell", "layer", "forward_layer", "backward_layer"):
            sub = obj.__dict__.get(name) if hasattr(obj, "__dict__") else None
            if isinstance(sub, Layer) and id(sub) not in seen:
                seen.add(id(sub))
                out.append(sub)
                visit(sub)
    visit(layer)
    return out


def _is_shape(shape):
    return isinstance(shape, (tuple, list)) and all(
        d is None or (isinstance(d, (int, np.integer)) and not isinstance(d, bool))
        for d in shape)


def _placeholders(input_shape, dtype):
    """SymbolicTensors for a shape, or (nested) lists of shapes."""
    if _is_shape(input_shape):
        return SymbolicTensor(tuple(input_shape), dtype)
    if isinstance(input_shape, (tuple, list)) and input_shape:
        return [_placeholders(s, dtype) for s in input_shape]
    raise ValueError(f"expected input_shape to be a tuple of ints or None (batch axis "
                     f"first), or a list of them, got {input_shape!r:.80}")


def _shapes(specs):
    if isinstance(specs, (list, tuple)):
        return [_shapes(s) for s in specs]
    return tuple(specs.shape)


class Layer(Operation, register=False):   # a base: no file names it
    """Base of every crnn layer and cell: an :class:`crnn.engine.Operation` (the calling
    convention, weights by name in ``params`` and their gradients in ``grads``) whose
    configuration is its constructor's arguments.

    A layer is built lazily from the shape of its first input, or explicitly with
    :meth:`build`. A primitive layer implements ``_forward(inputs, **options) ->
    (outputs, cache)`` and ``_backward(cache, d_outputs) -> (d_inputs, d_weights)`` over
    flat lists of arrays, and its :meth:`call` passes them to :meth:`_run`, which records
    the call on the tape (:mod:`crnn.engine`).
    """

    # -- shapes ----------------------------------------------------------------------
    def compute_output_shape(self, input_shape):
        """The shape of the output of a call on an input of ``input_shape`` (Keras's
        ``compute_output_shape``): a tuple, batch axis first, None where unknown; a list
        of them where the layer returns several outputs; ``input_shape`` a list of shapes
        for a layer of several inputs. Here from :meth:`compute_output_spec` on
        placeholders (which may build the layer); crnn's layers answer without
        building."""
        return _shapes(self.compute_output_spec(_placeholders(input_shape, self.dtype)))

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
