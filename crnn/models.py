"""Models: the three ways to put layers together, all differentiated by one tape.

1. Functional: ``x = crnn.Input(shape=(T, D)); y = crnn.Dense(1)(crnn.SimpleRNN(100)(x));
   model = crnn.Model(x, y)``: any directed acyclic graph of layer calls, layers shared
   between branches, several inputs and outputs.
2. ``crnn.Sequential([layer, layer, ...])``.
3. Subclassing: ``class M(crnn.Model)`` with layers as attributes and a ``call(inputs,
   training=None)`` that may loop over time steps itself; backpropagation runs through
   every call in reverse (see :mod:`crnn.engine`).

Masks of real steps flow as in Keras through the first two: a layer's output mask is its
``compute_mask(inputs, mask)`` (``Embedding(mask_zero=True)`` and ``Masking`` make one,
layers that keep the time axis pass theirs on, others end it), and a layer whose
``call`` takes ``mask`` gets the mask of its first input unless the call names one. The
model's output mask (``output_mask`` after a call) reaches the loss, which then counts
only the real steps (:func:`crnn.losses.apply_mask`). A subclassed model passes
``mask=`` to its layers by hand; it may set ``self.output_mask`` in its ``call`` for the
loss.
"""
import threading

import numpy as np

from crnn import engine, export as _export, saving, streaming
from crnn.engine import Input, as_dtype
from crnn.layers.base import (Layer, accepts_mask, accepts_training, add_activity_losses,
                              call_context, sublayers)
from crnn.layers.recurrent import sequence_mask
from crnn.training import Trainer, note_inputs

_local = threading.local()


def call_layer(layer, args, kwargs, training, mask=None):
    """``layer(*args, **kwargs)``, passing ``training`` if its ``call`` takes it, and
    ``mask`` (the mask of real steps of its first input, or None) if its ``call`` takes
    it and no ``mask`` or ``lengths`` is named. Returns ``(outputs, output_mask)``, the
    latter from ``layer.compute_mask`` (a list for several outputs)."""
    if "training" not in kwargs and accepts_training(type(layer).call):
        kwargs = dict(kwargs, training=training)
    if (mask is not None and "mask" not in kwargs and "lengths" not in kwargs
            and accepts_mask(type(layer).call)):
        kwargs = dict(kwargs, mask=mask)
    out = layer(*args, **kwargs)
    if engine.is_symbolic(args):
        return out, None   # building a graph: masks exist only for arrays
    used = kwargs.get("mask", mask)
    if kwargs.get("lengths") is not None:          # the mask the layer read them as
        B, T = np.shape(engine.value_of(args[0]))[:2]
        used = sequence_mask(None, kwargs["lengths"], B, T)
    return out, layer.compute_mask(args[0] if args else None, used)


def _list_mask(first, masks):
    """For a layer called on a list of tensors (a merge, an attention): their masks as a
    list (None for one without), or None when none has one (Keras's convention)."""
    if not isinstance(first, (list, tuple)):
        return None
    found = [masks.get(id(t)) if isinstance(t, engine.SymbolicTensor) else None
             for t in first]
    return found if any(m is not None for m in found) else None


def _mask_list(mask, n):
    """A layer's output mask as one entry per output."""
    if isinstance(mask, (list, tuple)) and n > 1:
        return list(mask) + [None] * (n - len(mask))
    return [mask] + [None] * (n - 1)


def _tracked_layers(obj):
    """The layers among an object's attributes (and in lists, tuples and dicts of them),
    in the order they were assigned."""
    found = []

    def collect(v):
        if isinstance(v, Layer):
            found.append(v)
        elif isinstance(v, (list, tuple)):
            for item in v:
                collect(item)
        elif isinstance(v, dict):
            for item in v.values():
                collect(item)
    for name, value in vars(obj).items():
        if name not in ("params", "grads") and not name.startswith("_"):
            collect(value)
    return found


class Model(Trainer, Layer):
    """A model: functional (``Model(inputs, outputs)``) or subclassed (override
    :meth:`call`). Calling it runs the layers; it trains with ``compile``/``fit``.

    Parameters
    ----------
    inputs : SymbolicTensor or list of them, optional
        From :func:`crnn.Input`.
    outputs : SymbolicTensor or list of them, optional
        What calling layers on ``inputs`` returned.
    name : str, optional
    """

    # How the model is built, read by the modules below this one (saving, training,
    # streaming) through crnn.layers.base.architecture: "subclassed" (its own call),
    # "functional" (set by __init__ for Model(inputs, outputs)) or "sequential".
    _architecture = "subclassed"

    def __init__(self, inputs=None, outputs=None, name=None, dtype="float32"):
        Layer.__init__(self, name=name, dtype=dtype)
        self._functional = inputs is not None or outputs is not None
        if self._functional:
            if inputs is None or outputs is None:
                raise ValueError("expected both inputs and outputs for a functional Model")
            self._init_graph(inputs, outputs)
            self._architecture = "functional"
        self.built = True

    # -- the functional graph --------------------------------------------------------
    def _init_graph(self, inputs, outputs):
        flat_in = engine.flatten(inputs)
        for t in flat_in:
            if not isinstance(t, engine.SymbolicTensor) or t.node is not None:
                raise ValueError(f"expected the model's inputs to be crnn.Input "
                                 f"placeholders, got {t!r}")
        self.inputs, self.outputs = inputs, outputs
        self._nodes = engine.topological_nodes(outputs)
        known = {id(t) for t in flat_in}
        for node in self._nodes:
            for t in node.inputs():
                if t.node is None and id(t) not in known:
                    raise ValueError(f"the outputs depend on an input placeholder that is "
                                     f"not among the model's inputs: {t!r}")
        layers, seen = [], set()
        for node in self._nodes:
            if id(node.layer) not in seen:
                seen.add(id(node.layer))
                layers.append(node.layer)
        self._graph_layers = layers

    def _run_graph(self, inputs, training, mask=None):
        flat_in = engine.flatten(self.inputs)
        given = engine.flatten(inputs) if isinstance(self.inputs, (list, tuple)) \
            else [inputs]
        if len(given) != len(flat_in):
            raise ValueError(f"expected {len(flat_in)} input arrays, got {len(given)}")
        values = {}
        for placeholder, value in zip(flat_in, given):
            v = value if isinstance(value, engine.Tensor) else np.asarray(value)
            shape = placeholder.shape
            if (v.ndim != len(shape) or any(d is not None and d != n
                                            for d, n in zip(shape, v.shape))):
                raise ValueError(f"expected input {placeholder.name or ''} of shape "
                                 f"{shape} (None: any), got shape {v.shape}".replace(
                                     "input  ", "input "))
            values[id(placeholder)] = v
        masks = {}   # id(SymbolicTensor) -> its mask of real steps (absent: None)
        if mask is not None:
            for placeholder, m in zip(flat_in, _mask_list(mask, len(flat_in))):
                masks[id(placeholder)] = m

        for node in self._nodes:
            args = engine.substitute(node.args, values)
            kwargs = {k: engine.substitute(v, values) for k, v in node.kwargs.items()}
            first = node.args[0] if node.args else None
            in_mask = (masks.get(id(first)) if isinstance(first, engine.SymbolicTensor)
                       else _list_mask(first, masks))
            out, out_mask = call_layer(node.layer, args, kwargs, training, in_mask)
            leaves = engine.flatten(out)
            for sym, val, m in zip(node.outputs, leaves,
                                   _mask_list(out_mask, len(leaves))):
                values[id(sym)] = val
                if m is not None:
                    masks[id(sym)] = m
        flat_out = engine.flatten(self.outputs)
        out_masks = [masks.get(id(t)) for t in flat_out]
        self.output_mask = (out_masks if isinstance(self.outputs, (list, tuple))
                            else out_masks[0])
        return engine.substitute(self.outputs, values)

    # -- calling ---------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        if engine.is_symbolic(args) or engine.is_symbolic(kwargs):
            return engine.symbolic_call(self, args, kwargs)
        note_inputs(self, args, kwargs)
        depth = getattr(_local, "depth", 0)
        if depth == 0 and kwargs.get("training"):
            # dropout masks are per sequence: new ones for each outermost call
            for layer in self.layers_deep():
                for reset in ("reset_dropout_mask", "reset_recurrent_dropout_mask"):
                    if hasattr(type(layer), reset):
                        getattr(layer, reset)()
        _local.depth = depth + 1
        self.output_mask = None   # set by the call (functional, Sequential, or the user's)
        try:
            if "training" in kwargs and not accepts_training(type(self).call):
                kwargs = {k: v for k, v in kwargs.items() if k != "training"}
            with call_context(self):    # the outermost call clears the activity losses
                outputs = self.call(*args, **kwargs)
            add_activity_losses(self, outputs)
            return outputs
        finally:
            _local.depth = depth

    def call(self, inputs, training=False, mask=None):
        """Run the model on arrays; subclasses override this. ``mask``: the inputs' masks
        of real steps (one per input), passed on through the graph."""
        if self._functional:
            return self._run_graph(inputs, training, mask)
        raise NotImplementedError(f"{type(self).__name__} must implement call(inputs, "
                                  f"training=None), or be built as Model(inputs, outputs)")

    def compute_mask(self, inputs, mask=None):
        """The mask of real steps of the last call's output (see the module docstring)."""
        return getattr(self, "output_mask", None)

    def reset_state(self, states=None):
        """Keras 3's name for :meth:`reset_states` (the same method)."""
        self.reset_states(states)

    def compute_output_spec(self, *args, **kwargs):
        if self._functional:
            def spec(t):
                return engine.SymbolicTensor(t.shape, t.dtype)
            return engine.pack_like(self.outputs, [spec(t) for t in
                                                   engine.flatten(self.outputs)])
        # run the Python call on the placeholders: the layers answer with theirs
        return self.call(*args, **kwargs)

    # -- layers and weights ----------------------------------------------------------
    @property
    def layers(self):
        """The layers this model calls directly, each once."""
        if self._functional:
            return list(self._graph_layers)
        found, seen = [], set()
        for layer in _tracked_layers(self):
            if id(layer) not in seen:
                seen.add(id(layer))
                found.append(layer)
        return found

    def layers_deep(self):
        """Every layer inside this model, nested ones included."""
        return sublayers(self)

    def get_layer(self, name=None, index=None):
        """One of :attr:`layers`, by ``name`` or by ``index`` (Keras's ``get_layer``;
        give one of the two)."""
        if name is not None and index is not None:
            raise ValueError(f"expected a layer name or a layer index, not both, got "
                             f"name={name!r}, index={index!r}")
        layers = self.layers
        if index is not None:
            if (not isinstance(index, (int, np.integer)) or isinstance(index, bool)
                    or not -len(layers) <= index < len(layers)):
                raise ValueError(f"expected a layer index in [0, {len(layers)}) (the model "
                                 f"{self.name!r} has {len(layers)} layers), got {index!r}")
            return layers[index]
        if name is not None:
            for layer in layers:
                if layer.name == name:
                    return layer
            raise ValueError(f"no layer named {name!r} in the model {self.name!r}; its "
                             f"layers are {[layer.name for layer in layers]}")
        raise ValueError("expected a layer name or a layer index for get_layer, got "
                         "neither")


    def _collect(self, attr):
        out, seen = [], set()
        for layer in self.layers:
            for w in getattr(layer, attr):
                if id(w) not in seen:
                    seen.add(id(w))
                    out.append(w)
        return out

    @property
    def trainable_weights(self):
        """The weights ``fit`` updates: those of the layers that are ``trainable`` (none
        when the model itself is frozen)."""
        if not self.trainable:
            return []
        return self._collect("trainable_weights")

    @property
    def weights(self):
        """Every weight, layer by layer (Keras's order), frozen ones included."""
        return self._collect("weights")

    def get_weights(self):
        """Copies of every weight, layer by layer (Keras's order)."""
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        """Set every weight from a list in the order of :meth:`get_weights`."""
        current = self.weights
        weights = list(weights)
        if len(weights) != len(current):
            raise ValueError(f"expected {len(current)} weight arrays, got {len(weights)}")
        new = []
        for i, (w, cur) in enumerate(zip(weights, current)):
            w = np.asarray(w)
            if w.dtype.kind not in "biuf":
                raise ValueError(f"expected weight {i} of real numbers, got dtype {w.dtype}")
            if w.shape != cur.shape:
                raise ValueError(f"expected weight {i} of shape {cur.shape}, got {w.shape}")
            new.append(np.asarray(w, dtype=cur.dtype))
        for w, cur in zip(new, current):
            cur[...] = w

    def get_gradients(self):
        """The gradients of the last backward pass, in the order of :meth:`get_weights`."""
        out = []
        for layer in self.layers:
            if isinstance(layer, Model):
                out.extend(layer.get_gradients())
            elif layer.weights:
                out.extend(layer.get_gradients())
        return out

    def count_params(self):
        return int(sum(w.size for w in self.weights))

    # -- saving (crnn.saving) --------------------------------------------------------
    def save(self, path, include_optimizer=True, compressed=False):
        """Write the model to ``path``: see :func:`crnn.saving.save_model`."""
        saving.save_model(self, path, include_optimizer=include_optimizer,
                          compressed=compressed)

    def save_weights(self, path, compressed=False):
        """Write the weights to ``path``: see :func:`crnn.saving.save_weights`."""
        saving.save_weights(self, path, compressed=compressed)

    def load_weights(self, path):
        """Read weights from ``path``: see :func:`crnn.saving.load_weights`."""
        saving.load_weights(self, path)

    def export(self, filepath, format="onnx", dtype=None):
        """Write the model for serving without crnn (Keras 3's method): ``format="onnx"``
        writes an ONNX model of standard operators with a dynamic batch and sequence
        length (needs the ``onnx`` package, ``pip install 'crnn[onnx]'``); see
        :mod:`crnn.export.onnx` for what each layer becomes, what cannot be exported and
        ``dtype`` (the graph's float type; by default the layers')."""
        _export.export_model(self, filepath, format=format, dtype=dtype)

    def get_config(self):
        """A Sequential's or functional model's architecture as JSON-compatible data (see
        :func:`crnn.saving.get_model_config`); a subclassed model's constructor arguments,
        as a layer's."""
        if self._architecture == "subclassed":
            return super().get_config()
        return saving.get_model_config(self)["config"]

    def to_json(self, **kwargs):
        """A Sequential's or functional model's architecture as JSON text (no weights):
        see :func:`crnn.saving.model_to_json`; :func:`model_from_json` rebuilds it.
        ``kwargs`` go to ``json.dumps``."""
        return saving.model_to_json(self, **kwargs)

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """The model :meth:`get_config` describes, with new weights."""
        if isinstance(config, dict) and ("nodes" in config or (
                cls._architecture == "sequential" and "layers" in config)):
            return saving.from_model_config(cls, config, custom_objects)
        return super().from_config(config)

    # -- stepping (crnn.streaming) ---------------------------------------------------
    def stepper(self, batch_size=1, states=None, precision="float32"):
        """A new :class:`crnn.streaming.ModelStepper`: ``step(x_t) -> y_t``, ``states``,
        ``reset``; ``precision`` of its recurrent layers' weights (``"float32"``,
        ``"bfloat16"``, ``"int8"``: see :mod:`crnn.streaming`)."""
        return streaming.model_stepper(self, batch_size, states, precision)

    def step(self, x_t, states=None):
        """One time step: ``x_t`` the model's input at that step (``(B, D)``, or ids
        ``(B,)``) and ``states`` (None for zeros, or a dict ``{recurrent layer name:
        [h] or [h, c]}``) give ``(y_t, new_states)``. Equals step t of ``model(x)``."""
        return streaming.step_model(self, x_t, states)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r}, {len(self.layers)} layers>"


class Sequential(Model):
    """A plain stack of layers, each fed the previous one's output (``keras.Sequential``).

    ``layers`` may start with a :func:`crnn.Input` placeholder, which builds every layer
    at once; otherwise they are built by the first call.
    """

    _architecture = "sequential"

    def __init__(self, layers=None, name=None):
        super().__init__(name=name)
        self._layers = []
        self._input = None
        for layer in layers or []:
            self.add(layer)

    def add(self, layer):
        """Append a layer (or, first, an Input placeholder)."""
        if isinstance(layer, engine.SymbolicTensor):
            if self._layers or self._input is not None:
                raise ValueError("an Input placeholder can only come first in a Sequential")
            self._input = layer
            return
        if not isinstance(layer, Layer):
            raise ValueError(f"expected a crnn layer, got {type(layer).__name__}")
        self._layers.append(layer)
        if self._input is not None:
            out = self._input
            for each in self._layers:
                out = each(out)  # builds it from the placeholder's shape
                if isinstance(out, (list, tuple)):
                    raise ValueError(f"expected each layer of a Sequential to return one "
                                     f"tensor, {each.name} returns {len(out)}")

    def pop(self):
        return self._layers.pop()

    @property
    def layers(self):
        return list(self._layers)

    def call(self, inputs, training=False, mask=None):
        x = inputs
        for layer in self._layers:
            x, mask = call_layer(layer, (x,), {}, training, mask)
            if isinstance(x, (list, tuple)):
                raise ValueError(f"expected each layer of a Sequential to return one "
                                 f"tensor, {layer.name} returned {len(x)}")
        self.output_mask = mask
        return x

    def compute_output_spec(self, inputs, training=False):
        return self.call(inputs)


def model_from_json(json_string, custom_objects=None):
    """A model (with new weights) from :meth:`Model.to_json`'s text, read as data
    (nothing in it is imported or run): see :func:`crnn.saving.model_from_json`."""
    return saving.model_from_json(json_string, custom_objects)


__all__ = ["Input", "Model", "Sequential", "as_dtype", "model_from_json"]
