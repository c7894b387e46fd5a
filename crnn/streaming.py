"""Streaming inference: recurrent layers and models advanced one time step at a time,
and text generation on top.

Two faces, for a recurrent layer (SimpleRNN, LSTM, GRU) and for a model made of them:

- **Keras-cell style**, stateless: ``h_t, states = layer.step(x_t, states)`` and
  ``y_t, states = model.step(x_t, states)``. ``states=None`` starts from zeros. Every call
  returns new arrays; the weights are read as they are at the call.
- **A stepper**, the state kept inside, for a loop that should cost no more than the
  arithmetic: ``s = layer.stepper(batch_size=1)``, then ``h_t = s.step(x_t)`` (or
  ``s.step(x_t, out=buf)``, which allocates nothing), ``s.states`` (copies),
  ``s.reset(states=None)``. ``model.stepper(batch_size)`` is the same for a model.

Semantics. A step computes what one step of the layer's forward pass computes, at
inference: dropout and recurrent dropout are off (as ``layer(x)`` without
``training=True``). Running ``T`` steps from a state gives the outputs and final states of
``layer(x, initial_state=...)`` (with ``return_sequences`` / ``return_state``) to rounding
(the products are summed in another order: float32 ~1e-6, float64 ~1e-15). The input
``x_t (B, D)`` is converted as a layer's call converts (``numpy.ascontiguousarray(x_t,
dtype)``: a float64 input to a float32 layer is cast, at the cost of a copy); a wrong
shape or something that does not convert raises ``ValueError`` saying what was expected
and what was got. NaN is not an error. A ``go_backwards`` layer's step is its cell's step:
feeding the sequence from its end reproduces the layer.

Weights. A stepper reads the layer's weight arrays at every step, so changes made in
place (``set_weights``, an optimizer's update, ``load_weights``) are seen at once.
``layer.step`` and ``model.step`` also notice a rebuilt layer (new arrays) and make a new
stepper; a stepper from ``layer.stepper()`` does not: make a new one after ``build``.

A model can step when every layer on the way from its inputs to its outputs works on
each time step alone: recurrent layers with ``return_sequences=True`` (not
``go_backwards``, no ``initial_state`` from the graph), ``Dense``,
``TimeDistributed(layer)`` (``layer`` applied to ``(B, F)``), ``Embedding`` (ids
``(B,)``), ``Activation``, ``Dropout`` (the identity at inference) and nested
``Sequential``/functional models of these. Anything else (``Bidirectional``, a many-to-one
recurrent layer, ``Flatten``, ``RepeatVector``, a subclassed model) raises ``ValueError``
naming the layer. Model states are a dict ``{recurrent layer name: [h] or [h, c]}``.
Masks of padded steps do not apply to steps: feed only the real ones.

Reduced precision. ``layer.stepper(batch_size, precision=...)``,
``model.stepper(batch_size, precision=...)`` and ``generate(..., precision=...)`` take
``"float32"`` (the default: the layer's own dtype and arrays), ``"bfloat16"`` or
``"int8"``: the recurrent layers' ``W_x`` and ``W_h`` are copied once, rounded to
bfloat16 (to nearest, ties to even) or quantized per output column to int8 (symmetric,
a float32 scale per column), as :mod:`crnn.reference.quantize` specifies; inputs,
states, biases and all arithmetic stay float32 (the stepper's dtype is float32), and the
other layers of a model compute as in a call. A batch-1 step reads every weight once, so
it is bound by the weights' bytes: half or a quarter of them make it up to 2x or 4x
faster at large sizes (the README's streaming section has the measurements and the
demo models' accuracy at each precision). Such a stepper does not see later changes to
the layer's weights (make a new one), refuses ``step(..., training=True)`` and steps
while a ``GradientTape`` records (``ValueError``: it has no gradient).

Threads. From ``crnn._step.SPLIT_MIN`` multiply-adds a step (LSTM and GRU from about
H = 256 at D = H) a stepper cuts its products into blocks of columns, one per thread of
crnn's pool (``crnn.set_num_threads``); smaller steps run on the calling thread.

Inference only: float32 steps are not recorded on a ``GradientTape``. A stepper (and so a layer's
or model's ``step``, which share one cached stepper per batch size) is for one thread at
a time: make one stepper per thread.

Generation: :func:`generate` warms a model up on a prompt and then feeds back what it
samples (greedy, or with a temperature).

A layer's steppers live in :mod:`crnn.layers.stepping`; this module steps models
(``model.step`` and ``model.stepper`` call :func:`step_model` and :func:`model_stepper`)
and imports nothing from :mod:`crnn.models`.
"""
import numpy as np

from crnn import activations, engine
from crnn.layers.base import architecture
from crnn.layers.basic import Activation, Dropout, Embedding, Flatten, RepeatVector
from crnn.layers.core import Dense
from crnn.layers.recurrent import RNN
from crnn.layers.stepping import ReferenceStepper, Stepper, make_stepper
from crnn.layers.wrappers import Bidirectional, TimeDistributed
from crnn.reference import quantize

__all__ = ["ModelStepper", "ReferenceStepper", "Stepper", "generate", "make_stepper",
           "model_stepper", "step_model"]


# -- a model -----------------------------------------------------------------------------

def _cannot_step(layer, why):
    return ValueError(f"{layer.name} ({type(layer).__name__}) cannot step: {why}; a model "
                      f"steps when every layer works on each time step alone (recurrent "
                      f"layers with return_sequences=True, Dense, TimeDistributed, "
                      f"Embedding, Activation, Dropout)")


class _Op:
    """One layer of a step plan: how to apply it to one time step."""

    def __init__(self, layer, batch_size, names, precision="float32"):
        self.layer, self.stepper, self.sub, self.kind = layer, None, None, "call"
        self.precision = precision
        if isinstance(layer, Bidirectional):
            raise _cannot_step(layer, "its backward direction reads the sequence from "
                                      "its end")
        if isinstance(layer, RNN):
            if not layer.return_sequences:
                raise _cannot_step(layer, "it is many-to-one (return_sequences=False): "
                                          "it returns only the last state")
            if layer.go_backwards:
                raise _cannot_step(layer, "it runs with go_backwards=True, from the end "
                                          "of the sequence")
            if not layer.cell.built:
                raise ValueError(f"{layer.name} has no weights yet: call the model once "
                                 f"(or build it) before stepping it")
            if layer.name in names:
                raise ValueError(f"two recurrent layers (or two calls of one) are named "
                                 f"{layer.name!r}: model states are keyed by layer name")
            names.add(layer.name)
            self.kind = "rnn"
            self.stepper = make_stepper(layer, batch_size, precision=precision)
        elif isinstance(layer, TimeDistributed):
            self.kind = "inner"
            self.sub = _Op(layer.layer, batch_size, names, precision)
        elif architecture(layer) is not None:
            self.kind = "model"
            self.sub = ModelStepper(layer, batch_size, precision=precision, _names=names)
        elif isinstance(layer, Dropout):
            self.kind = "identity"
        elif isinstance(layer, (Flatten, RepeatVector)):
            raise _cannot_step(layer, "it changes the time axis")
        elif isinstance(layer, Dense):
            self.kind = "dense"      # its formula, without a call's bookkeeping
        elif isinstance(layer, Embedding):
            self.kind = "embedding"
        elif not isinstance(layer, Activation):
            raise _cannot_step(layer, "it is not known to work on each time step alone")

    def __call__(self, x):
        kind = self.kind
        if kind == "rnn":
            cell = self.layer.cell
            if not self.stepper.uses(cell.kernel, cell.recurrent_kernel, cell.bias):
                states = self.stepper.states
                self.stepper = make_stepper(self.layer, self.stepper.batch_size, states,
                                            self.precision)
            h = self.stepper.step(x)
            if self.layer.return_state:
                return [h, *self.stepper.states]
            return h
        if kind == "dense":
            # y = act(x @ kernel + bias), as Dense._forward (x converted to the dtype)
            layer = self.layer
            if not layer.built:
                return layer(x)
            x = np.asarray(x)
            if x.dtype.kind == "c":
                return layer(x)      # its own error message (no complex values)
            x = np.asarray(x, dtype=layer.dtype)
            if x.ndim < 1 or x.shape[-1] != layer.input_dim:
                return layer(x)      # its own error message
            a = x @ layer.params["kernel"]
            if layer.use_bias:
                a += layer.params["bias"]
            return activations.apply(layer._act, a)
        if kind == "embedding":
            layer = self.layer
            if not layer.built:
                return layer(x)
            return layer.params["embeddings"][layer.check_ids(x)]
        if kind == "identity":
            return np.asarray(x)
        if kind == "inner":
            return self.sub(x)
        if kind == "model":
            return self.sub.step(x)
        return self.layer(x)

    def rnn_ops(self):
        if self.kind == "rnn":
            yield self
        elif self.kind == "inner":
            yield from self.sub.rnn_ops()
        elif self.kind == "model":
            for op in self.sub._ops:
                yield from op.rnn_ops()


class ModelStepper:
    """A Sequential or functional model advanced one time step at a time, the states
    of its recurrent layers kept inside (``model.stepper(batch_size)``).

    ``precision`` (``"float32"``, ``"bfloat16"``, ``"int8"``) is that of the recurrent
    layers' steppers (:meth:`crnn.layers.recurrent.RNN.stepper`); the other layers
    compute as in a call.

    ``step(x_t)`` takes the model's input at one time step (``(B, D)`` for an input of
    shape ``(T, D)``, ids ``(B,)`` for an Embedding's ``(T,)``; a list for several
    inputs) and returns the model's output at that step. ``states`` is a dict ``{layer
    name: [h] or [h, c]}`` of copies; ``reset(states=None)`` sets it (None: zeros; a dict
    may name only some layers, the others start from zeros).
    """

    def __init__(self, model, batch_size=1, precision="float32", _names=None):
        if (not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool)
                or batch_size < 1):
            raise ValueError(f"expected batch_size to be a positive int, got "
                             f"{batch_size!r}")
        self.model, self.batch_size = model, int(batch_size)
        self.precision = quantize.check_precision(precision)
        names = set() if _names is None else _names
        if architecture(model) == "sequential":
            self._sequential = True
            self._ops = [_Op(layer, self.batch_size, names, precision)
                         for layer in model.layers]
            self._layer_ids = [id(layer) for layer in model.layers]
        elif architecture(model) == "functional":
            self._sequential = False
            self._ops = []
            for node in model._nodes:
                extra = {k: v for k, v in node.kwargs.items() if k != "training"}
                if len(node.args) != 1:
                    extra["positional arguments after the input"] = None
                if extra:
                    raise _cannot_step(node.layer, f"it is called with "
                                                   f"{sorted(extra)} from the graph")
                self._ops.append(_Op(node.layer, self.batch_size, names, precision))
        else:
            raise ValueError(f"{model.name} ({type(model).__name__}) cannot step: only "
                             f"Sequential and functional models (Model(inputs, outputs)) "
                             f"have a graph to step through; a subclassed model's call "
                             f"is arbitrary Python")
        self._rnns = {op.layer.name: op for op in self._rnn_ops()}

    def _rnn_ops(self):
        for op in self._ops:
            yield from op.rnn_ops()

    @property
    def states(self):
        return {name: op.stepper.states for name, op in self._rnns.items()}

    def reset(self, states=None):
        if states is None:
            states = {}
        if not isinstance(states, dict):
            raise ValueError(f"expected states to be a dict {{layer name: list of "
                             f"arrays}} (names: {sorted(self._rnns)}), got "
                             f"{type(states).__name__}")
        unknown = set(states) - set(self._rnns)
        if unknown:
            raise ValueError(f"expected states for the recurrent layers "
                             f"{sorted(self._rnns)}, got unknown names {sorted(unknown)}")
        for name, op in self._rnns.items():
            op.stepper.reset(states.get(name))

    def step(self, x_t, training=False):
        """The model's output at one time step; advances every recurrent layer."""
        if training:
            raise ValueError(f"expected training=False: a stepper is for inference (no "
                             f"dropout, no gradient), got training={training!r}")
        model = self.model
        if self._sequential:
            if [id(layer) for layer in model.layers] != self._layer_ids:
                raise ValueError(f"the layers of {model.name} changed since this stepper "
                                 f"was made: make a new one")
            x = x_t
            for op in self._ops:
                x = op(x)
            return x
        flat_in = engine.flatten(model.inputs)
        given = (engine.flatten(x_t) if isinstance(model.inputs, (list, tuple))
                 else [x_t])
        if len(given) != len(flat_in):
            raise ValueError(f"expected {len(flat_in)} input arrays, got {len(given)}")
        values = {id(p): v for p, v in zip(flat_in, given)}

        for node, op in zip(model._nodes, self._ops):
            args = engine.substitute(node.args, values)
            out = op(*args)
            for sym, val in zip(node.outputs, engine.flatten(out)):
                values[id(sym)] = val
        return engine.substitute(model.outputs, values)


def _model_stepper(model, batch_size):
    cache = model.__dict__.setdefault("_steppers", {})
    s = cache.get(batch_size)
    if s is None or (s._sequential and [id(layer) for layer in model.layers]
                     != s._layer_ids):
        s = cache[batch_size] = ModelStepper(model, batch_size)
    return s


def model_stepper(model, batch_size=1, states=None, precision="float32"):
    """A new :class:`ModelStepper` for ``model`` (``model.stepper``)."""
    s = ModelStepper(model, batch_size, precision)
    s.reset(states)
    return s


def step_model(model, x_t, states=None):
    """One time step of ``model`` from ``states`` (``model.step``): ``(y_t, new_states)``,
    on the model's cached stepper for this batch size."""
    first = engine.flatten(x_t)[0] if isinstance(x_t, (list, tuple)) else x_t
    shape = np.shape(first)
    if len(shape) < 1 or shape[0] < 1:
        raise ValueError(f"expected x_t with a batch axis first, got shape "
                         f"{tuple(shape)}")
    s = _model_stepper(model, int(shape[0]))
    s.reset(states)
    y = s.step(x_t)
    return y, s.states


# -- generation --------------------------------------------------------------------------

def _last_activation(model):
    """The activation of the layer producing the model's (single) output, or None."""
    layer = None
    if architecture(model) == "sequential" and model.layers:
        layer = model.layers[-1]
    elif architecture(model) == "functional" and model._nodes:
        layer = model._nodes[-1].layer
    while isinstance(layer, TimeDistributed) or architecture(layer) == "sequential":
        layer = layer.layer if isinstance(layer, TimeDistributed) else layer.layers[-1]
    if isinstance(layer, (Dense, Activation)):
        return layer._act
    return None


def _takes_ids(model):
    if architecture(model) == "sequential":
        first = model.layers[0] if model.layers else None
        while architecture(first) == "sequential":
            first = first.layers[0]
        return isinstance(first, Embedding)
    inputs = {id(t) for t in engine.flatten(model.inputs)}
    return any(isinstance(node.layer, Embedding) for node in model._nodes
               if any(id(t) in inputs for t in node.inputs()))


def generate(model, prompt, steps, temperature=0.0, seed=None, from_logits=None,
             feed=None, precision="float32"):
    """Generate ids from a model trained to predict the next id at every step
    (``Embedding -> RNN(return_sequences=True) -> TimeDistributed(Dense(V,
    "softmax"))``, or one-hot inputs instead of the Embedding).

    The model first reads the prompt, one step per id, from zero states; then, ``steps``
    times, an id is chosen from its last output and fed back as the next input.

    Parameters
    ----------
    model : crnn.Model
        A Sequential or functional model that can step (see :mod:`crnn.streaming`),
        output ``(B, T, V)``.
    prompt : array-like of int, ``(T0,)`` or ``(B, T0)``, T0 >= 1
    steps : int
        How many ids to generate.
    temperature : float
        0: greedy (the most likely id). Above 0: sample from ``softmax(logits /
        temperature)`` (with probabilities ``p``: from ``p ** (1 / temperature)``,
        renormalised).
    seed : int or numpy.random.Generator, optional
        For sampling.
    from_logits : bool, optional
        Whether the output is logits; by default, probabilities when the last layer's
        activation is softmax, logits otherwise.
    feed : callable, optional
        ``feed(ids (B,)) -> x_t``, the model's input for these ids. By default the ids
        themselves when the first layer is an Embedding, else their one-hot rows
        ``(B, V)`` in the model's dtype.
    precision : {"float32", "bfloat16", "int8"}
        Of the recurrent layers' weights while generating (see :class:`ModelStepper`).

    Returns
    -------
    ndarray of int64, ``(steps,)`` for a 1-D prompt, else ``(B, steps)``.
    """
    ids = np.asarray(prompt)
    if ids.dtype.kind not in "iu" or ids.ndim not in (1, 2) or ids.shape[-1] < 1:
        raise ValueError(f"expected prompt to be integer ids of shape (T0,) or (B, T0) "
                         f"with T0 >= 1, got {ids.dtype} of shape {ids.shape}")
    if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or steps < 0:
        raise ValueError(f"expected steps to be a non-negative int, got {steps!r}")
    if not isinstance(temperature, (int, float)) or not temperature >= 0:
        raise ValueError(f"expected temperature >= 0, got {temperature!r}")
    one = ids.ndim == 1
    ids = ids.reshape(1, -1) if one else ids
    B = ids.shape[0]
    if from_logits is None:
        from_logits = _last_activation(model) != "softmax"
    if feed is None:
        if _takes_ids(model):
            def feed(i):
                return i
        else:
            eye = np.eye(_output_size(model), dtype=model.dtype)

            def feed(i):
                return eye[i]
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    s = ModelStepper(model, B, precision)
    for t in range(ids.shape[1]):
        y = s.step(feed(ids[:, t]))
    out = np.empty((B, steps), dtype=np.int64)
    for k in range(steps):
        out[:, k] = nxt = _choose(np.asarray(y, dtype=np.float64).reshape(B, -1),
                                  temperature, from_logits, rng)
        if k + 1 < steps:
            y = s.step(feed(nxt))
    return out[0] if one else out


def _output_size(model):
    outs = engine.flatten(model.outputs) if getattr(model, "_functional", False) else []
    if outs:
        return outs[0].shape[-1]
    last = model.layers[-1]
    last = last.layer if isinstance(last, TimeDistributed) else last
    if isinstance(last, Dense):
        return last.units
    raise ValueError("cannot tell the vocabulary size for one-hot inputs: pass feed=")


def _choose(y, temperature, from_logits, rng):
    """The next id per row of ``y (B, V)``: argmax, or a sample at ``temperature``."""
    if temperature == 0:
        return y.argmax(axis=1)
    with np.errstate(divide="ignore"):
        logits = y if from_logits else np.log(np.clip(y, 0, None))
    logits = logits / temperature
    logits = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    u = rng.random((y.shape[0], 1))
    return np.minimum((np.cumsum(p, axis=1) < u).sum(axis=1), y.shape[1] - 1)
