"""The layer base class: an :class:`crnn.engine.Operation` (the calling convention that
puts every call on the tape, weights by name, Keras-style weight exchange) configured by
its constructor's arguments, with what Keras's ``Layer`` adds to every layer: weights
made by :meth:`Layer.add_weight` with a regularizer and a constraint, ``trainable``
(freezing a layer and everything inside it), ``losses`` (weight penalties from the
current weights, activity penalties from the last call); and the helpers layers share
(input checks, whether a ``call`` takes ``training``/``mask``, layer (de)serialization
by class name)."""
import contextlib
import functools
import inspect
import threading

import numpy as np

from crnn import constraints, initializers, registry, regularizers
from crnn.engine import Operation, SymbolicTensor, flatten, is_symbolic, value_of


def check_real(name, a):
    """Raise ``ValueError`` for complex values (NumPy would drop the imaginary part with
    a warning when casting them to a real dtype)."""
    kind = np.asarray(a).dtype.kind if not hasattr(a, "dtype") else np.dtype(a.dtype).kind
    if kind == "c":
        raise ValueError(f"expected {name} of real numbers, got complex values (dtype "
                         f"{a.dtype}); pass the real part (x.real) or split real and "
                         f"imaginary parts into features")


def as_input(name, a, dtype, ndim, layout):
    """Convert ``a`` to a C-contiguous array of ``dtype`` and check its rank (complex
    values raise ``ValueError``)."""
    check_real(name, value_of(a))
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


# -- weights made with add_weight, and how a load checks them cheaply ----------------------
_local = threading.local()


@contextlib.contextmanager
def shapes_only():
    """Inside, :meth:`Layer.add_weight` makes no array: each weight is a read-only view
    of one zero, broadcast to its shape (no memory, no initializer run). What a load
    builds a model with to compare the weights it would have against a file's before
    allocating anything (:mod:`crnn.saving.files`)."""
    depth = getattr(_local, "shapes_only", 0)
    _local.shapes_only = depth + 1
    try:
        yield
    finally:
        _local.shapes_only = depth


def _config_value(value):
    """A constructor argument as ``get_config`` gives it: dtypes by name, regularizers
    and constraints serialized (as Keras's layers do)."""
    if isinstance(value, np.dtype):
        return value.name
    if isinstance(value, (regularizers.Regularizer, constraints.Constraint)):
        return registry.serialize(value)
    return value


# -- calls: the losses of the outermost call ------------------------------------------------
@contextlib.contextmanager
def call_context(layer):
    """Around a layer's call: the outermost call (not inside another layer's) first
    clears the activity losses of ``layer`` and every layer inside it, as Keras does, so
    that ``losses`` holds those of the last call."""
    depth = getattr(_local, "call_depth", 0)
    if depth == 0:
        for each in (layer, *sublayers(layer)):
            if each.__dict__.get("_activity_losses"):
                each._activity_losses = []
    _local.call_depth = depth + 1
    try:
        yield
    finally:
        _local.call_depth = depth


def add_activity_losses(layer, outputs):
    """Keras's activity regularization: ``activity_regularizer(y) / B`` for every output
    ``y`` of the call (``B`` its first dimension), kept in the layer's ``losses`` until
    the next outermost call."""
    reg = layer.__dict__.get("activity_regularizer")
    if reg is None:
        return
    found = layer.__dict__.setdefault("_activity_losses", [])
    for y in flatten(outputs):
        if y is None:
            continue
        shape = np.shape(value_of(y))
        loss = reg(y)
        found.append(loss / shape[0] if shape and shape[0] else loss)


def apply_constraints(layer, weights=None):
    """Project every weight of ``layer`` (and of the layers inside it) that has a
    constraint, in place; only those in ``weights`` (arrays) when given. What ``fit``
    does after each optimizer update (Keras applies them after ``optimizer.apply``)."""
    allowed = None if weights is None else {id(w) for w in weights}
    for each in (layer, *sublayers(layer)):
        for name, (_, constraint, _) in each.__dict__.get("_weight_options", {}).items():
            w = each.params.get(name)
            if constraint is None or w is None or (allowed is not None
                                                   and id(w) not in allowed):
                continue
            new = np.asarray(constraint(w))
            if new.shape != w.shape:
                raise ValueError(f"expected the constraint {constraint!r:.60} of "
                                 f"{each.name}/{name} to return shape {w.shape}, got "
                                 f"{new.shape}")
            w[...] = new


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

    Examples
    --------
    >>> class Scale(Layer):
    ...     def call(self, x):
    ...         return x * 2.0
    >>> Scale()(np.ones((1, 2))).tolist()
    [[2.0, 2.0]]
    """

    # A penalty on each output of the layer's calls (see crnn.regularizers); a layer
    # that takes it in its constructor sets it there, any layer may be given one.
    activity_regularizer = None

    # -- calling -----------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        if is_symbolic(args) or is_symbolic(kwargs):
            return super().__call__(*args, **kwargs)
        with call_context(self):
            outputs = super().__call__(*args, **kwargs)
        add_activity_losses(self, outputs)
        return outputs

    # -- weights -----------------------------------------------------------------------
    def add_weight(self, shape=None, initializer=None, dtype=None, trainable=True,
                   regularizer=None, constraint=None, name=None):
        """Make weight ``name`` of ``shape`` and keep it in ``params`` (Keras's
        ``add_weight``); returns the array.

        Parameters
        ----------
        shape : tuple of int
        initializer : str, callable or array
            A name of :mod:`crnn.initializers` (``"glorot_uniform"`` when None), a
            callable ``(shape, dtype, rng) -> array`` (drawing from the layer's ``_rng``
            when it has one), or the initial value itself.
        dtype : optional
            The layer's dtype by default.
        trainable : bool
            False: a weight that training leaves alone (not in ``trainable_weights``).
        regularizer : optional
            A penalty on the weight in ``losses`` (:func:`crnn.regularizers.get`).
        constraint : optional
            Applied after each update (:func:`crnn.constraints.get`).
        name : str
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"expected the weight's name as a non-empty string, got "
                             f"{name!r}")
        dtype = self.dtype if dtype is None else np.dtype(dtype)
        try:
            shape = tuple(int(d) for d in shape)
        except (TypeError, ValueError):
            raise ValueError(f"expected the shape of weight {name!r} as a tuple of ints, "
                             f"got {shape!r}") from None
        if any(d < 0 for d in shape):
            raise ValueError(f"expected non-negative dimensions for weight {name!r}, got "
                             f"{shape}")
        if getattr(_local, "shapes_only", 0):
            w = np.broadcast_to(np.zeros((), dtype=dtype), shape)   # no memory
        else:
            if isinstance(initializer, (np.ndarray, list, tuple)):
                value = np.asarray(initializer)
            else:
                rng = self.__dict__.get("_rng")
                if not isinstance(rng, np.random.Generator):
                    rng = np.random.default_rng()
                init = initializers.get("glorot_uniform" if initializer is None
                                        else initializer)
                value = init(shape, dtype, rng)
            check_real(f"the initial value of weight {name!r}", value)
            w = np.array(value, dtype=dtype, order="C", copy=True)
            if w.shape != shape:
                raise ValueError(f"expected weight {name!r} of shape {shape}, got an "
                                 f"initial value of shape {w.shape}")
        self.params[name] = w
        options = self.__dict__.setdefault("_weight_options", {})
        options[name] = (regularizers.get(regularizer), constraints.get(constraint),
                         bool(trainable))
        return w

    def _weight_trainable(self, name):
        options = self.__dict__.get("_weight_options", {})
        return options.get(name, (None, None, True))[2]

    @property
    def trainable(self):
        """Whether training updates this layer's weights (Keras's ``layer.trainable``).
        Setting it sets every layer inside too (a model, a wrapper's layer, a recurrent
        layer's cell); a frozen layer's weights leave ``trainable_weights`` for
        ``non_trainable_weights``, get no update from ``fit`` and no weight penalty in
        ``losses``. ``fit`` reads it at every step: no need to compile again."""
        return self.__dict__.get("_trainable", True)

    @trainable.setter
    def trainable(self, value):
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"expected trainable to be True or False, got {value!r}")
        for each in (self, *sublayers(self)):
            each._trainable = bool(value)

    @property
    def trainable_weights(self):
        """The weights training updates: none for a frozen layer."""
        if not self.trainable:
            return []
        return [w for name, w in self.params.items() if self._weight_trainable(name)]

    @property
    def non_trainable_weights(self):
        """The weights training leaves alone (all of a frozen layer's)."""
        trainable = {id(w) for w in self.trainable_weights}
        return [w for w in self.weights if id(w) not in trainable]

    # -- losses ------------------------------------------------------------------------
    def _weight_penalties(self):
        """This layer's own weight penalties, from the current weights (on the tape when
        one records); none for a frozen weight (Keras regularizes trainable weights)."""
        out = []
        if not self.trainable:
            return out
        for name, (reg, _, trainable) in self.__dict__.get("_weight_options", {}).items():
            if reg is not None and trainable and name in self.params:
                out.append(reg(regularizers.weight_tensor(self, name)))
        return out

    @property
    def losses(self):
        """Keras's ``layer.losses``: the activity penalties of the last call, then the
        weight penalties computed now from the current weights, of this layer and every
        layer inside it. Scalars: :class:`crnn.Tensor` objects when read while a tape
        records (training adds them to the loss and differentiates them), else 0-d
        arrays."""
        layers = [self, *sublayers(self)]
        out = []
        for layer in layers:
            out.extend(layer.__dict__.get("_activity_losses", ()))
        for layer in layers:
            if isinstance(layer, Layer):       # a model's graph may hold bare ops
                out.extend(layer._weight_penalties())
        return out

    def apply_constraints(self):
        """Project every constrained weight (this layer's and those inside it) in place;
        ``fit`` does it after each update, a custom training loop calls it after
        ``optimizer.apply``."""
        apply_constraints(self)

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
        this layer's configuration (not its weights); ``trainable`` is added for a frozen
        layer whose constructor does not take it."""
        config = {}
        for p in inspect.signature(type(self).__init__).parameters.values():
            if p.name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            config[p.name] = _config_value(getattr(self, p.name))
        if not self.trainable and "trainable" not in config:
            config["trainable"] = False
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        trainable = True
        if "trainable" in config and "trainable" not in inspect.signature(
                cls.__init__).parameters:
            trainable = config.pop("trainable")
        layer = cls(**config)
        if not trainable:
            layer.trainable = False
        return layer

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


class InnerWeights:
    """``params`` and ``grads`` of a layer that owns no weights of its own but shows its
    inner layers' (Bidirectional's two layers, StackedRNNCells' cells): views built on
    each access, ``{"<prefix>/<name>": array}``, of the inner layers' own dicts. A
    subclass lists its inner layers in :meth:`_inner`. ``Layer.__init__`` assigns empty
    dicts, which the setters accept; anything else raises (set weights with
    ``set_weights``)."""

    def _inner(self):
        """``[(prefix, layer)]``: the inner layers present so far."""
        raise NotImplementedError

    def _view(self, attr):
        return {f"{prefix}/{k}": v for prefix, layer in self._inner()
                for k, v in getattr(layer, attr).items()}

    @property
    def params(self):
        return self._view("params")

    @params.setter
    def params(self, value):
        if value:
            raise AttributeError(f"{type(self).__name__}'s params are its inner layers': "
                                 f"set weights with set_weights")

    @property
    def grads(self):
        return self._view("grads")

    @grads.setter
    def grads(self, value):
        if value:
            raise AttributeError(f"{type(self).__name__}'s grads are its inner layers'")
