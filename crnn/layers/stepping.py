"""One recurrent layer advanced one time step at a time: its steppers and the ``step`` /
``stepper`` methods of :class:`crnn.layers.recurrent.RNN`.

A stepper keeps the states inside and reads the layer's weight arrays at every step: a
:class:`crnn._step.Stepper` on the compiled kernels, or its NumPy twin
:class:`ReferenceStepper` for a layer on the ``"reference"`` backend. What a step computes,
and how models step, is described in :mod:`crnn.streaming`, which builds on this module.
"""
import numpy as np

from crnn import _checks, backend as _backend, engine, reference
from crnn._step import Stepper
from crnn.activations import check
from crnn.reference import quantize

__all__ = ["RecurrentStepMixin", "ReferenceStepper", "Stepper", "make_stepper"]


def _cell_args(cell):
    kw = {"activation": cell.activation}
    if cell.family != "simple_rnn":
        kw["recurrent_activation"] = cell.recurrent_activation
    if cell.family == "gru":
        kw["reset_after"] = cell.reset_after
    return kw


def make_stepper(layer, batch_size=1, states=None, precision="float32"):
    """A stepper for a recurrent layer or cell (built first if need be: ``build`` must
    have run, or the layer been called, so that the input size is known): a
    :class:`crnn._step.Stepper` on the compiled kernels, or a :class:`ReferenceStepper`
    where the layer's backend is ``"reference"``; ``precision`` of its weights
    (``"float32"``, ``"bfloat16"`` or ``"int8"``, see :mod:`crnn.reference.quantize`)."""
    quantize.check_precision(precision)
    cell = getattr(layer, "cell", layer)
    if getattr(cell, "family", None) not in ("simple_rnn", "lstm", "gru"):
        raise ValueError(f"expected a SimpleRNN, LSTM or GRU layer or cell to step, got "
                         f"{layer.name!r} with the cell {type(cell).__name__} (steppers "
                         f"run the built-in kernels; layer.step(x_t, states) runs any cell)")
    if not cell.built:
        raise ValueError(f"{layer.name} has no weights yet: call it on an input or call "
                         f"build(input_shape) before stepping it")
    backend = _backend.get_backend() if cell.backend == "auto" else cell.backend
    cls = ReferenceStepper if backend == "reference" else Stepper
    return cls(cell.family, cell.kernel, cell.recurrent_kernel, cell.bias, batch_size,
               states=states, precision=precision, **_cell_args(cell))


class ReferenceStepper:
    """The NumPy twin of :class:`crnn._step.Stepper` (same constructor and methods): each
    step is ``crnn.reference.<family>_forward`` on a sequence of one step, for a
    reduced ``precision`` with the float32 weights that
    :func:`crnn.reference.quantize.step_weights` gives (rounded to bfloat16, or ``q *
    s``), taken when the stepper is made. What a step must compute; used for layers on
    the ``"reference"`` backend."""

    def __init__(self, family, W_x, W_h, b, batch_size=1, activation="tanh",
                 recurrent_activation="sigmoid", reset_after=True, states=None,
                 precision="float32"):
        if family not in ("simple_rnn", "lstm", "gru"):
            raise ValueError(f"expected family to be one of ['gru', 'lstm', 'simple_rnn'], "
                             f"got {family!r}")
        self.family = family
        self.precision = quantize.check_precision(precision)
        self.kernel, self.recurrent_kernel, self.bias = W_x, W_h, b
        self.dtype = np.asarray(W_h).dtype
        self._weights = (W_x, W_h, b)
        if precision != "float32":
            self.dtype = np.dtype(np.float32)
            self._weights = (quantize.step_weights(W_x, precision),
                             quantize.step_weights(W_h, precision),
                             np.array(b, dtype=np.float32))
        self.batch_size = int(batch_size)
        self.input_dim, self.units = W_x.shape[0], W_h.shape[0]
        self.activation = check(activation)
        self.recurrent_activation = check(recurrent_activation)
        self.reset_after = bool(reset_after)
        self.state_names = ("h", "c") if family == "lstm" else ("h",)
        self._forward = getattr(reference, f"{family}_forward")
        self.reset(states)

    @property
    def states(self):
        return [s.copy() for s in self._states]

    def reset(self, states=None):
        shape = (self.batch_size, self.units)
        if states is None:
            self._states = [np.zeros(shape, self.dtype) for _ in self.state_names]
            return
        names = self.state_names
        self._states = [_checks.converted(f"state {name}", s, self.dtype, shape,
                                          contiguous=False).copy()
                        for name, s in zip(names, _checks.state_list(names, states))]

    def uses(self, W_x, W_h, b):
        return W_x is self.kernel and W_h is self.recurrent_kernel and b is self.bias

    def step(self, x_t, out=None, training=False):
        if training:
            raise ValueError(f"expected training=False: a stepper is for inference (no "
                             f"dropout, no gradient), got training={training!r}")
        if self.precision != "float32" and engine.recording():
            raise ValueError(f"a {self.precision} stepper has no gradient: its weights "
                             f"are a rounded copy; step outside the GradientTape (or use "
                             f"the layer's call for training)")
        x = _checks.converted("x_t", x_t, self.dtype, (self.batch_size, self.input_dim),
                              "(batch, features)")
        args = self._weights
        x = x[:, None]
        if self.family == "simple_rnn":
            hs = self._forward(x, self._states[0], *args, self.activation)
            self._states = [hs[:, 0]]
        elif self.family == "lstm":
            hs, cs, _ = self._forward(x, *self._states, *args, self.activation,
                                      self.recurrent_activation)
            self._states = [hs[:, 0], cs[:, 0]]
        else:
            hs, _, _ = self._forward(x, self._states[0], *args, self.reset_after,
                                     self.activation, self.recurrent_activation)
            self._states = [hs[:, 0]]
        if out is None:
            return hs[:, 0].copy()
        out[...] = hs[:, 0]
        return out


def _layer_stepper(layer, batch_size):
    """The layer's cached stepper for this batch size, made again if the layer's weight
    arrays, dtype or backend changed since."""
    cache = layer.__dict__.setdefault("_steppers", {})
    cell = layer.cell
    s = cache.get(batch_size)
    backend = _backend.get_backend() if cell.backend == "auto" else cell.backend
    want = ReferenceStepper if backend == "reference" else Stepper
    if (s is None or type(s) is not want
            or not s.uses(cell.kernel, cell.recurrent_kernel, cell.bias)):
        s = cache[batch_size] = make_stepper(layer, batch_size)
    return s


class RecurrentStepMixin:
    """``step`` and ``stepper`` for :class:`crnn.layers.recurrent.RNN` (SimpleRNN, LSTM,
    GRU); see :mod:`crnn.streaming` for what a step computes."""

    def stepper(self, batch_size=1, states=None, precision="float32"):
        """A new :class:`crnn._step.Stepper` for this layer: ``step(x_t, out=None) ->
        h_t``, ``states``, ``reset(states=None)``; it keeps the state. In
        ``precision="float32"`` it reads the layer's weight arrays at every step (make a
        new one after ``build``); ``"bfloat16"`` or ``"int8"`` keeps a copy of the
        weights rounded or quantized when it is made (inference only; inputs, states and
        arithmetic float32; see :mod:`crnn.streaming`)."""
        return make_stepper(self, batch_size, states, precision)

    def step(self, x_t, states=None):
        """One time step, Keras-cell style: ``x_t (B, D)`` and ``states`` (None for zeros;
        ``[h]`` or ``h``, ``[h, c]`` for the LSTM, each ``(B, H)``) give ``(h_t,
        new_states)`` with ``new_states[0] is h_t``. Equals step t of ``layer(x)``.

        It runs on a cached stepper per batch size; when ``x_t`` and the states are
        C-contiguous arrays of the layer's dtype (as the ``h_t`` and states it returns
        are), the last one takes them as they are, and a step costs the stepper's
        ``step(x_t)`` plus about a microsecond (the states copied in and out)."""
        cell = self.cell
        s = self.__dict__.get("_last_stepper")
        if s is not None and cell.built and (cell.backend if cell.backend != "auto"
                                             else _backend.get_backend()) != "reference":
            # the last batch size's compiled stepper, if x_t and states are arrays it
            # takes as they are and the weights are the ones it reads (None otherwise)
            r = s._step_states(x_t, states, cell.kernel, cell.recurrent_kernel, cell.bias)
            if r is not None:
                return r
        B = _batch_of(x_t, "x_t", "(batch, features)", 2)
        if not cell.built:
            D = np.shape(x_t)[1]
            self.build((B, None, D))
        s = _layer_stepper(self, B)
        if isinstance(s, Stepper):
            self._last_stepper = s
        s.reset(states)
        h = s.step(x_t)
        if self.cell.family == "lstm":
            return h, [h, s.states[1]]
        return h, [h]


def _batch_of(x, name, layout, ndim):
    shape = np.shape(x)
    if len(shape) != ndim:
        raise ValueError(f"expected {name} of shape {layout} ({ndim}-D), got shape "
                         f"{tuple(shape)}")
    if shape[0] < 1:
        raise ValueError(f"expected {name} with at least one row, got shape "
                         f"{tuple(shape)}")
    return int(shape[0])
