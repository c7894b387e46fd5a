"""What every recurrent cell and layer shares: weights, dropout, states, the time loop's
bookkeeping (``return_sequences``, ``return_state``, ``go_backwards``) and its backward.

A cell type (SimpleRNN, LSTM, GRU) says only what is its own, in a subclass of
:class:`RNNCell`: the shapes of its weights, its states, and how it calls its
``<family>_forward`` / ``<family>_backward`` kernels (:meth:`RNNCell.run` and
:meth:`RNNCell.run_backward`). The layer around it, :class:`RNN`, is the same for all
three, as in Keras, where ``keras.layers.RNN`` runs any cell.
"""
import numpy as np

from crnn import (_checks, activations, backend as _backend, constraints, engine,
                  initializers, regularizers)
from crnn.engine import as_dtype
from crnn.layers.base import Layer, accepts_training, as_input
from crnn.layers.cells import (StackedRNNCells, check_cell, initial_states, output_size,
                               pack_states, reset_dropout_masks, run_loop, state_sizes)
from crnn.layers.stepping import RecurrentStepMixin


def check_rate(name, rate):
    if not (isinstance(rate, (int, float)) and not isinstance(rate, bool)
            and 0.0 <= rate < 1.0):
        raise ValueError(f"expected {name} in [0, 1), got {rate!r}")
    return float(rate)


def sequence_mask(mask, lengths, batch_size, steps):
    """The mask of real steps ``(B, T)``, bool and C-contiguous, from a layer call's
    ``mask=`` (bool or integer ``(B, T)``, nonzero: a real step) or ``lengths=`` (one int
    per sequence in ``[0, T]``: the first ``lengths[b]`` steps of row ``b`` are real, the
    rest padding). None when neither is given or when every step is real."""
    B, T = batch_size, steps
    if mask is not None and lengths is not None:
        raise ValueError("expected mask or lengths, not both")
    if lengths is not None:
        lengths = np.asarray(engine.value_of(lengths))
        if lengths.shape != (B,) or not (lengths.dtype.kind in "iu" or lengths.size == 0):
            raise ValueError(f"expected lengths to be {B} ints (one per sequence), got "
                             f"{lengths.dtype} of shape {lengths.shape}")
        if lengths.size and (lengths.min() < 0 or lengths.max() > T):
            raise ValueError(f"expected lengths in [0, {T}] (the number of steps), got "
                             f"{lengths.min()} .. {lengths.max()}")
        mask = np.arange(T)[None, :] < lengths[:, None]
    elif mask is not None:
        mask = np.asarray(engine.value_of(mask))
        if mask.dtype.kind not in "biu":
            raise ValueError(f"expected mask to have dtype bool (or an integer dtype), "
                             f"got {mask.dtype}")
        if mask.shape != (B, T):
            raise ValueError(f"expected mask of shape (batch, time) = {(B, T)}, got "
                             f"{mask.shape}")
        mask = np.ascontiguousarray(mask if mask.dtype == bool else mask != 0)
    if mask is None or mask.all():
        return None
    return mask


def reset_rows(states, batch_size):
    """The rows ``reset_states(states)`` zeros: an index array from a bool mask ``(B,)``
    or ints, or None when ``states`` are state values (float arrays, or a list of
    them). ``batch_size`` is the stored states' ``B`` (None when none are stored)."""
    if isinstance(states, (list, tuple)) and states and all(
            np.ndim(s) == 2 for s in states):
        return None
    a = np.asarray(engine.value_of(states))
    if a.ndim == 2 and a.dtype.kind == "f":
        return None
    if a.ndim != 1 or not (a.dtype.kind in "biu" or a.size == 0):
        raise ValueError(f"expected reset_states(states) to be None, a bool mask (batch,), "
                         f"ints (row indices) or state arrays (batch, units), got "
                         f"{a.dtype} of shape {a.shape}")
    if a.dtype.kind == "b":
        if batch_size is not None and a.shape != (batch_size,):
            raise ValueError(f"expected a reset mask of shape ({batch_size},) (one per "
                             f"sequence of the stored states), got shape {a.shape}")
        return np.flatnonzero(a)
    a = a.astype(np.intp)
    if batch_size is not None and a.size and (a.min() < -batch_size
                                              or a.max() >= batch_size):
        raise ValueError(f"expected row indices in [0, {batch_size}) (the stored states "
                         f"hold {batch_size} sequences), got {a.min()} .. {a.max()}")
    return a


def dropout_mask(rng, shape, rate, dtype):
    """Keras's dropout mask: 0 with probability ``rate``, else ``1 / (1 - rate)``."""
    return ((rng.random(shape) >= rate) / (1.0 - rate)).astype(dtype)


class RNNCell(Layer):
    """Base of the cells. Subclasses set ``family`` (the kernels' name), ``gates`` (``G``:
    the kernel is ``(D, G*H)``) and ``state_names``, and implement :meth:`run` and
    :meth:`run_backward`; they may override :meth:`bias_shape` and :meth:`init_bias`.

    Calling ``cell(x_t, states, training=False)`` with ``x_t (B, D)`` and ``states`` a list
    of ``(B, H)`` arrays (one per name in ``state_names``) returns ``(h_new, new_states)``.
    ``cell.backward(d_output, d_states=None)`` backpropagates through the last call.

    Examples
    --------
    >>> cell = SimpleRNNCell(4)   # a built-in RNNCell
    >>> cell.state_size, cell.units
    (4, 4)
    """

    family = None
    gates = 1
    state_names = ("h",)

    def _setup(self, units, activation, use_bias, kernel_initializer,
               recurrent_initializer, bias_initializer, dropout, recurrent_dropout, seed,
               backend, kernel_regularizer=None, recurrent_regularizer=None,
               bias_regularizer=None, kernel_constraint=None, recurrent_constraint=None,
               bias_constraint=None):
        if not isinstance(units, (int, np.integer)) or isinstance(units, bool) or units < 1:
            raise ValueError(f"expected units to be a positive int, got {units!r}")
        self.units = int(units)
        self.activation = activations.check(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer
        self.recurrent_initializer = recurrent_initializer
        self.bias_initializer = bias_initializer
        for init in (kernel_initializer, recurrent_initializer, bias_initializer):
            initializers.get(init)
        self.dropout = check_rate("dropout", dropout)
        self.recurrent_dropout = check_rate("recurrent_dropout", recurrent_dropout)
        self.seed = seed
        self.backend = _backend.check(backend)
        self._rng = np.random.default_rng(seed)
        self._dropout_mask = None
        self._recurrent_dropout_mask = None
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = regularizers.get(recurrent_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.recurrent_constraint = constraints.get(recurrent_constraint)
        self.bias_constraint = constraints.get(bias_constraint)

    @property
    def state_size(self):
        """``units`` for a one-state cell, else a list with one ``units`` per state."""
        n = len(self.state_names)
        return self.units if n == 1 else [self.units] * n

    @property
    def output_size(self):
        return self.units

    # -- weights ---------------------------------------------------------------------
    def bias_shape(self):
        return (self.gates * self.units,)

    def init_bias(self, shape, dtype, rng):
        return initializers.get(self.bias_initializer)(shape, dtype, rng)

    def build(self, input_shape):
        D, GH = int(input_shape[-1]), self.gates * self.units
        if D < 1:
            raise ValueError(f"expected at least one input feature, got input shape "
                             f"{tuple(input_shape)}")
        self.params.clear()  # updated in place: a wrapping layer shares this dict
        self.add_weight(name="kernel", shape=(D, GH), initializer=self.kernel_initializer,
                        regularizer=self.kernel_regularizer,
                        constraint=self.kernel_constraint)
        self.add_weight(name="recurrent_kernel", shape=(self.units, GH),
                        initializer=self.recurrent_initializer,
                        regularizer=self.recurrent_regularizer,
                        constraint=self.recurrent_constraint)
        if self.use_bias:
            self.add_weight(name="bias", shape=self.bias_shape(), initializer=self.init_bias,
                            regularizer=self.bias_regularizer,
                            constraint=self.bias_constraint)
        self.input_dim = D
        self.built = True

    @property
    def kernel(self):
        return self.params["kernel"]

    @property
    def recurrent_kernel(self):
        return self.params["recurrent_kernel"]

    @property
    def bias(self):
        """The bias, or zeros when ``use_bias=False`` (what the kernels add)."""
        if self.use_bias:
            return self.params["bias"]
        shape = self.bias_shape()
        zero = getattr(self, "_zero_bias", None)
        if zero is None or zero.dtype != self.dtype or zero.shape != shape:
            self._zero_bias = np.zeros(shape, dtype=self.dtype)
        return self._zero_bias

    def weight_grads(self, d_kernel, d_recurrent_kernel, d_bias):
        """The weight gradients by name (no bias gradient without ``use_bias``)."""
        grads = {"kernel": d_kernel, "recurrent_kernel": d_recurrent_kernel}
        if self.use_bias:
            grads["bias"] = d_bias
        return grads

    def kernels(self):
        """The kernel module of this cell's backend."""
        return _backend.kernels(self.family, self.backend)

    # -- states ----------------------------------------------------------------------
    def get_initial_state(self, batch_size):
        return [np.zeros((int(batch_size), self.units), dtype=self.dtype)
                for _ in self.state_names]

    def state_list(self, states):
        """``states`` as a list: one array alone is accepted for a one-state cell."""
        if isinstance(states, (list, tuple)):
            return list(states)
        if len(self.state_names) != 1:
            raise ValueError(f"expected states to be a list of {len(self.state_names)} "
                             f"arrays {list(self.state_names)}, got {type(states).__name__}")
        return [states]

    def check_states(self, states, batch_size):
        """``states`` (None, one array for a one-state cell, or a list) as a list of
        ``(B, H)`` arrays of this cell's dtype."""
        if states is None:
            return self.get_initial_state(batch_size)
        names = self.state_names
        out = []
        for name, s in zip(names, _checks.state_list(names, states)):
            s = as_input(f"state {name}", s, self.dtype, 2, "(batch, units)")
            if s.shape != (batch_size, self.units):
                raise ValueError(f"expected state {name} of shape "
                                 f"{(batch_size, self.units)}, got {s.shape}")
            out.append(s)
        return out

    # -- dropout ---------------------------------------------------------------------
    def get_dropout_mask(self, batch_size):
        """The input mask ``(B, D)`` for this sequence (drawn once, then reused)."""
        if self.dropout == 0:
            return None
        shape = (batch_size, self.input_dim)
        if self._dropout_mask is None or self._dropout_mask.shape != shape:
            self._dropout_mask = dropout_mask(self._rng, shape, self.dropout, self.dtype)
        return self._dropout_mask

    def get_recurrent_dropout_mask(self, batch_size):
        """The state mask ``(B, H)`` for this sequence (drawn once, then reused)."""
        if self.recurrent_dropout == 0:
            return None
        shape = (batch_size, self.units)
        if (self._recurrent_dropout_mask is None
                or self._recurrent_dropout_mask.shape != shape):
            self._recurrent_dropout_mask = dropout_mask(self._rng, shape,
                                                        self.recurrent_dropout, self.dtype)
        return self._recurrent_dropout_mask

    def reset_dropout_mask(self):
        self._dropout_mask = None

    def reset_recurrent_dropout_mask(self):
        self._recurrent_dropout_mask = None

    # -- the kernels, per cell type --------------------------------------------------
    def run(self, x, states, h_mask, mask=None):
        """Run the forward kernel over ``x (B, T, D)`` from ``states``; ``mask (B, T)``
        bool or None, the real steps (at the others the states pass through unchanged).

        Returns ``(hs (B, T, H), saved)``: every state and what :meth:`run_backward`
        needs besides ``x``, ``states`` and the masks.
        """
        raise NotImplementedError

    def final_states(self, hs, saved):
        """The states after the last step (T >= 1), as new arrays."""
        raise NotImplementedError

    def infer(self, x, states, mask=None, return_sequences=True):
        """:meth:`run` when no backward pass follows (:class:`crnn.no_grad`): returns
        ``(hs (B, T, H) or None, final states)``, ``hs`` only with ``return_sequences``.
        A cell whose kernels have an inference twin (LSTM, GRU) overrides this; here,
        the training kernel runs and its record is dropped."""
        hs, saved = self.run(x, states, None, mask)
        finals = (self.final_states(hs, saved) if x.shape[1] > 0
                  else [s.copy() for s in states])
        return (hs if return_sequences else None), finals

    def run_backward(self, x, states, h_mask, hs, saved, dhs, d_finals, mask=None):
        """Run the backward kernel: ``dhs (B, T, H)`` or None is the gradient on every
        state, ``d_finals`` one gradient (or None) per final state, ``mask`` as given to
        :meth:`run`. Returns ``(dx, d_states, d_kernel, d_recurrent_kernel, d_bias)``."""
        raise NotImplementedError

    # -- one step --------------------------------------------------------------------
    def call(self, inputs, states=None, training=False):
        """One step: ``inputs (B, D)`` and ``states`` (a list of ``(B, H)`` arrays, one
        per name in ``state_names``; or None for zeros) give ``(h_new, new_states)``,
        where ``new_states[0]`` is ``h_new`` itself (as in Keras)."""
        n = len(self.state_names)
        state_list = [None] * n if states is None else self.state_list(states)
        outs = self._run([inputs, *state_list], training=training,
                         states_given=states is not None)
        return outs[0], list(outs)

    def compute_output_shape(self, input_shape):
        """``((B, H), [(B, H) per state])`` for ``(B, D)``: what a call returns (without
        building)."""
        input_shape = tuple(input_shape)
        if len(input_shape) != 2:
            raise ValueError(f"expected input shape (batch, features), got {input_shape}")
        B = input_shape[0]
        return (B, self.units), [(B, self.units) for _ in self.state_names]

    def compute_output_spec(self, inputs, states=None, training=False):
        self._maybe_build(inputs.shape)
        h = engine.SymbolicTensor((inputs.shape[0], self.units), self.dtype)
        others = [engine.SymbolicTensor((inputs.shape[0], self.units), self.dtype)
                  for _ in self.state_names[1:]]
        return h, [h, *others]

    def _forward(self, inputs, training=False, states_given=True):
        x = as_input("x_t", inputs[0], self.dtype, 2, "(batch, features)")
        self._maybe_build(x.shape)
        B = x.shape[0]
        states = self.check_states(inputs[1:] if states_given else None, B)
        if x.shape[1] != self.input_dim:
            raise ValueError(f"expected x_t with {self.input_dim} features (the built input "
                             f"size), got shape {x.shape}")
        x_mask = self.get_dropout_mask(B) if training else None
        h_mask = self.get_recurrent_dropout_mask(B) if training else None
        x_in = (x if x_mask is None else x * x_mask)[:, None, :]
        hs, saved = self.run(x_in, states, h_mask)
        return self.final_states(hs, saved), (x_in, states, h_mask, hs, saved, x_mask)

    def _backward(self, cache, d_outputs):
        x_in, states, h_mask, hs, saved, x_mask = cache
        B, H = states[0].shape
        d_finals = [check_grad(f"d_states[{i}]", g, (B, H), self.dtype)
                    for i, g in enumerate(d_outputs)]
        dx, d_prev, dW_x, dW_h, db = self.run_backward(x_in, states, h_mask, hs, saved,
                                                       None, d_finals)
        dx = dx[:, 0]
        if x_mask is not None:
            dx = dx * x_mask
        return [dx, *d_prev], self.weight_grads(dW_x, dW_h, db)

    def backward(self, d_output, d_states=None):
        """Backpropagate through the last call, outside a tape.

        ``d_output (B, H)`` is the gradient on the output and ``d_states`` (a list like
        the states, entries may be None; or None) the gradient on the new states; the
        output is the new ``h``, so the two gradients on it add. Returns
        ``(dx_t, d_prev_states)`` and sets ``grads``.
        """
        self._check_last_call()
        B, H = self._last_call[1][0].shape
        n = len(self.state_names)
        if d_states is None:
            d_states = [None] * n
        if not isinstance(d_states, (list, tuple)) or len(d_states) != n:
            raise ValueError(f"expected d_states to be a list of {n} arrays or None, got "
                             f"{d_states!r:.60}")
        d_finals = [check_grad(f"d_states[{i}]", g, (B, H), self.dtype)
                    for i, g in enumerate(d_states)]
        d_out = check_grad("d_output", d_output, (B, H), self.dtype)
        if d_out is not None:
            d_finals[0] = d_out if d_finals[0] is None else d_finals[0] + d_out
        d_inputs = self._backward_last(d_finals)
        return d_inputs[0], d_inputs[1:]


def check_grad(name, g, shape, dtype):
    if g is None:
        return None
    g = as_input(name, g, dtype, len(shape), str(shape))
    if g.shape != shape:
        raise ValueError(f"expected {name} of shape {shape}, got {g.shape}")
    return g


class RNN(RecurrentStepMixin, Layer):
    """The time loop around a cell (Keras's ``RNN``); SimpleRNN, LSTM and GRU are this
    layer around their cells.

    Parameters
    ----------
    cell : cell or list of cells
        A built-in cell (:class:`crnn.SimpleRNNCell`, :class:`crnn.LSTMCell`,
        :class:`crnn.GRUCell`: the layer runs its fused kernels, and equals the matching
        layer), a user-defined cell (any crnn layer with ``state_size`` and
        ``call(inputs, states, training=None) -> (output, new_states)``; see
        :mod:`crnn.layers.cells`), or a list of cells, stacked
        (:class:`crnn.layers.StackedRNNCells`: built-in cells then run layer after layer
        on their kernels, which equals the stacked layers).
    return_sequences : bool
        Return the output at every step ``(B, T, O)`` rather than the last ``(B, O)``.
    return_state : bool
        Also return the final states: ``[output, *final_states]`` (a stacked cell's
        states flat, one cell after the other).
    go_backwards : bool
        Process the sequence from its end; a returned sequence is in that (reversed)
        order, as in Keras.
    stateful : bool
        Start each call from the states the previous call ended with (see below).
    unroll : bool
        Accepted for Keras compatibility; it changes nothing (the kernels run a compiled
        loop, a user's cell a Python loop through the tape, either way).
    zero_output_for_mask : bool
        With a mask and ``return_sequences``, output zeros at the padded steps; by
        default (False, Keras's default) a padded step repeats the previous step's output
        (zeros before a sequence's first real step). :class:`crnn.Bidirectional` sets it
        to ``return_sequences`` on its layers, as Keras does.
    name : str, optional
    dtype : "float32" or "float64", optional
        The cell's (the default); another raises ``ValueError``.

    Calling ``layer(x, initial_state=None, training=False, mask=None, lengths=None)``
    with ``x (B, T, D)`` returns ``(B, T, O)`` with ``return_sequences`` else ``(B, O)``
    (``O``: the cell's ``output_size``, ``units`` for the built-in cells), and with
    ``return_state`` the list ``[output, *final_states]``. With a built-in cell the call
    keeps what backward needs (after any call, not only training ones, except inside
    :class:`crnn.no_grad`, where it keeps nothing and the cell runs its inference kernel,
    :meth:`RNNCell.infer`). ``state_size`` is the flat list of the states' sizes.

    Variable-length sequences: ``mask (B, T)`` (bool; True for a real step, False for
    padding, as Keras's masks) or ``lengths (B,)`` (ints, PyTorch's style for
    right-padded batches: the first ``lengths[b]`` steps of row ``b`` are real). At a
    padded step the states pass through unchanged (Keras's semantics), so the final
    states are each sequence's states after its last real step, and so is the last
    output without ``return_sequences`` (zeros for a sequence with no real step, as in
    Keras). With ``return_sequences`` a padded step repeats the previous output
    (``zero_output_for_mask=False``) or outputs zeros (True, as PyTorch's
    ``pad_packed_sequence``). A padded step takes nothing from its input: ``dx`` is zero
    there; the gradient of a repeated output goes to the step it repeats. With
    ``go_backwards`` the mask is reversed along with the sequence (as Keras does), so a
    right-padded sequence is read from its own last real step.

    Backward: through :class:`crnn.GradientTape` for every cell; with a built-in cell
    also ``layer.backward(grad)`` outside a tape, which takes the gradient of the output
    (a list of the same structure with ``return_state``, entries may be None), returns
    ``dx (B, T, D)``, sets ``grads`` and ``initial_state_grad`` (one array per state).
    Dropout is active only when ``training=True``, with one mask per sequence reused at
    every step. Do not modify a returned array in place before calling backward: it may
    be the buffer backward reads.

    Long streams: with ``stateful=True`` (Keras's semantics) a call without
    ``initial_state`` starts from the states the previous call ended with (zeros at
    first and after :meth:`reset_states`), and every call stores its final states (with a
    mask: each sequence's states after its last real step), so that row ``b`` of batch
    ``i + 1`` continues row ``b`` of batch ``i``. An explicit ``initial_state`` overrides
    the stored states (and the call's final states are stored all the same). The stored
    states are plain arrays, outside any tape: no gradient flows from one call into the
    previous one (truncated backpropagation). The batch size is fixed by the first call
    after construction or after a full ``reset_states()``; a call with another batch size
    raises ``ValueError``. ``states`` holds the stored states (None before the first
    call). The stored states are not saved with the model (a loaded model starts from
    zeros).

    Examples
    --------
    >>> layer = RNN(LSTMCell(4), return_sequences=True)   # the LSTM's fused kernels
    >>> layer(np.zeros((2, 5, 3), "float32")).shape
    (2, 5, 4)
    >>> RNN([GRUCell(4), GRUCell(2)])(np.zeros((2, 5, 3), "float32")).shape   # stacked
    (2, 2)
    """

    def __init__(self, cell, return_sequences=False, return_state=False, go_backwards=False,
                 stateful=False, unroll=False, zero_output_for_mask=False, name=None,
                 dtype=None):
        if isinstance(cell, (list, tuple)):
            cell = StackedRNNCells(cell)
        check_cell(cell)
        if dtype is not None and as_dtype(dtype) != cell.dtype:
            raise ValueError(f"expected dtype to be the cell's ({cell.dtype.name}) or None, "
                             f"got {dtype!r}")
        super().__init__(name=name, dtype=cell.dtype)
        self._setup(cell, return_sequences, return_state, go_backwards, stateful, unroll,
                    zero_output_for_mask)

    def get_config(self):
        config = super().get_config()
        if type(self).__init__ is RNN.__init__:
            config["dtype"] = None   # the cell's, which its own config holds
        return config

    def _setup(self, cell, return_sequences, return_state, go_backwards, stateful=False,
               unroll=False, zero_output_for_mask=False):
        self.cell = cell
        for flag, value in (("return_sequences", return_sequences),
                            ("return_state", return_state), ("go_backwards", go_backwards),
                            ("stateful", stateful), ("unroll", unroll),
                            ("zero_output_for_mask", zero_output_for_mask)):
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"expected {flag} to be True or False, got {value!r}")
            setattr(self, flag, bool(value))
        # a built-in cell runs its fused kernels; any other cell the loop of
        # crnn.layers.cells, step by step through the tape
        self._fused = isinstance(cell, RNNCell) and cell.family is not None
        self._states = None      # the stored states of a stateful layer: list of (B, H)
        self._tbptt = False      # set by fit(tbptt=...): states must come from the carry
        self.initial_state_grad = None

    # The cell owns the weights; the layer shows the same dicts.
    @property
    def params(self):
        cell = self.__dict__.get("cell")
        return {} if cell is None else cell.params

    @params.setter
    def params(self, value):
        if value:
            raise AttributeError("an RNN layer's params are its cell's: set weights with "
                                 "set_weights")

    @property
    def grads(self):
        cell = self.__dict__.get("cell")
        return {} if cell is None else cell.grads

    @grads.setter
    def grads(self, value):
        if value:
            raise AttributeError("an RNN layer's grads are its cell's")

    @property
    def trainable_weights(self):
        return self.cell.trainable_weights

    def __getattr__(self, name):
        # The cell's arguments and weights, read through (get_config and repr of
        # SimpleRNN, LSTM and GRU use them). Only reached when normal lookup fails.
        cell = self.__dict__.get("cell")
        if cell is None or name.startswith("_"):
            raise AttributeError(name)
        return getattr(cell, name)

    @property
    def state_size(self):
        """The size of every state, a flat list (a stacked cell's, cell after cell)."""
        return state_sizes(self.cell)

    def _n_states(self):
        return len(state_sizes(self.cell))

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"expected input shape (batch, time, features), got "
                             f"{tuple(input_shape)}")
        # a cell built before the layer keeps its weights (as in Keras); building a built
        # layer again builds its cell again (new weight arrays, as other layers do)
        if not self.cell.built or self.built:
            self.cell.build((input_shape[0], input_shape[2]))
        self.built = True

    # -- stored states (stateful=True) ----------------------------------------------
    @property
    def states(self):
        """The stored states of a stateful layer (copies; a list of ``(B, H)`` arrays, one
        per state), or None before its first call or after a full
        :meth:`reset_states`."""
        if self._states is None:
            return None
        return [s.copy() for s in self._states]

    def reset_states(self, states=None):
        """Reset the stored states of a stateful layer.

        Parameters
        ----------
        states : None, array_like of bool ``(B,)``, array_like of int ``(k,)``, or arrays
            None: forget the stored states (the next call starts from zeros and may use
            any batch size). A bool mask ``(B,)``: zero the states of the rows where it is
            True (a new sequence starts in that row of the next batch), keep the others.
            Ints: zero the states of those rows. Arrays (Keras's form): set the states to
            these values, a list with one ``(B, H)`` array per state (one array alone for a
            one-state cell); this fixes the batch size to ``B``.

        A per-row reset of a layer with no stored states does nothing (its next call
        starts from zeros in every row).
        """
        if not self.stateful:
            raise ValueError(f"expected a stateful layer for reset_states, got "
                             f"{self.name!r} with stateful=False (construct it with "
                             f"stateful=True)")
        if states is None:
            self._states = None
            return
        rows = reset_rows(states, None if self._states is None
                           else self._states[0].shape[0])
        if rows is None:       # values
            values = states if isinstance(states, (list, tuple)) else [states]
            n = self._n_states()
            if len(values) != n:
                raise ValueError(f"expected reset_states(states) to be a bool mask (batch,), "
                                 f"ints (row indices) or a list of {n} arrays "
                                 f"{self._state_names()} (batch, units), got "
                                 f"{len(values)} arrays")
            B = np.shape(values[0])[0] if np.ndim(values[0]) == 2 else None
            if B is None:
                raise ValueError(f"expected reset_states(states) to be a bool mask (batch,), "
                                 f"ints (row indices) or arrays of shape (batch, "
                                 f"{self.state_size[0]}), got shape {np.shape(values[0])}")
            self._states = [np.array(s, copy=True)
                            for s in self._check_states(list(values), B)]
            return
        if self._states is None:
            return             # every row already starts from zeros
        new = [s.copy() for s in self._states]   # never in place: a cache may hold them
        for s in new:
            s[rows] = 0
        self._states = new

    def reset_state(self, states=None):
        """Keras 3's name for :meth:`reset_states` (the same method)."""
        self.reset_states(states)

    def _state_names(self):
        names = getattr(self.cell, "state_names", None)
        if names is not None and len(names) == self._n_states():
            return list(names)
        return [f"state {i}" for i in range(self._n_states())]

    def _check_states(self, states, B):
        """``states`` (a list, nested for a stacked cell; one array alone for a one-state
        cell) as a flat list of ``(B, size)`` arrays of this layer's dtype (Tensors stay
        Tensors, checked)."""
        if self._fused:
            return self.cell.check_states(states, B)
        states = engine.flatten(list(states) if isinstance(states, (list, tuple))
                                else [states])
        sizes = self.state_size
        if len(states) != len(sizes):
            raise ValueError(f"expected {len(sizes)} states {self._state_names()} of shapes "
                             f"{[(B, s) for s in sizes]}, got {len(states)}")
        out = []
        for i, (s, size) in enumerate(zip(states, sizes)):
            if not isinstance(s, engine.Tensor):
                s = as_input(f"state {i}", s, self.dtype, 2, "(batch, units)")
            if tuple(s.shape) != (B, size):
                raise ValueError(f"expected state {i} of shape {(B, size)}, got "
                                 f"{tuple(s.shape)}")
            out.append(s)
        return out

    def _initial_states(self, B):
        """The stored states for a batch of ``B`` (None: zeros), checked."""
        if self._states is None:
            return None
        stored = self._states[0].shape[0]
        if B != stored:
            raise ValueError(f"expected a batch of {stored} sequences (the stateful layer "
                             f"{self.name!r} holds states for {stored}), got {B}; call "
                             f"reset_states() (or model.reset_states()) to start again with "
                             f"another batch size")
        return self._states

    def _explicit_state_error(self):
        return ValueError(f"expected the recurrent layers to start each window from their "
                          f"carried states for truncated BPTT, got {self.name!r} called "
                          f"with an explicit initial_state (it would restart every window): "
                          f"train this model with tbptt=None")

    # -- one step --------------------------------------------------------------------
    def step(self, x_t, states=None):
        """One time step, Keras-cell style: ``x_t (B, D)`` and ``states`` (None for the
        initial states; else a list) give ``(output, new_states)``. Equals step t of
        ``layer(x)``; runs outside any tape."""
        if self._fused:
            return super().step(x_t, states)
        x_t = as_input("x_t", x_t, self.dtype, 2, "(batch, features)")
        B = x_t.shape[0]
        if not self.built:
            self.build((B, None, x_t.shape[1]))
        with engine.no_grad():
            flat = (initial_states(self.cell, B, self.dtype) if states is None
                    else self._check_states(states, B))
            if accepts_training(type(self.cell).call):
                out, new = self.cell(x_t, pack_states(self.cell, flat), training=False)
            else:
                out, new = self.cell(x_t, pack_states(self.cell, flat))
        return out, engine.flatten(new)

    # -- forward ---------------------------------------------------------------------
    def call(self, inputs, initial_state=None, training=False, mask=None, lengths=None):
        """Run the cell over ``inputs (B, T, D)`` from ``initial_state`` (zeros when None;
        a list, one ``(B, size)`` per state), honouring ``mask (B, T)`` or ``lengths
        (B,)``: ``(B, T, H)`` with ``return_sequences``, else ``(B, H)``, and the final
        states after it with ``return_state``."""
        if not self._fused:
            return self._call_cells(inputs, initial_state, training, mask, lengths)
        _, flat, options = self._primitive_call(inputs, initial_state, training, mask,
                                                lengths)
        return self._call_result(self._run(flat, **options))

    def _primitive_call(self, inputs, initial_state=None, training=False, mask=None,
                        lengths=None):
        """What :meth:`call` passes to ``_run``, as ``(self, inputs, options)`` (the form
        of :func:`crnn.engine.run_concurrently`'s calls)."""
        names = self.cell.state_names
        states = ([None] * len(names) if initial_state is None
                  else self.cell.state_list(initial_state))
        return self, [inputs, *states], dict(training=training,
                                             states_given=initial_state is not None,
                                             mask=mask, lengths=lengths)

    def _call_result(self, outs):
        """:meth:`call`'s result from the primitive's flat outputs."""
        return list(outs) if self.return_state else outs[0]

    def compute_mask(self, inputs, mask=None):
        """The output's mask (Keras's): the input's with ``return_sequences`` (reversed
        with ``go_backwards``, like the output), else None; with ``return_state`` a list,
        None for each state."""
        out = None
        if self.return_sequences and mask is not None:
            out = np.asarray(engine.value_of(mask))
            if self.go_backwards:
                out = out[:, ::-1]
        if self.return_state:
            return [out] + [None] * self._n_states()
        return out

    def compute_output_shape(self, input_shape, initial_state_shape=None):
        """The output's shape for an input of ``input_shape`` ``(B, T, D)`` (None where
        unknown), with ``return_state`` a list with each state's ``(B, size)``."""
        input_shape = tuple(input_shape)
        if len(input_shape) != 3:
            raise ValueError(f"expected input shape (batch, time, features), got "
                             f"{input_shape}")
        B, T = input_shape[0], input_shape[1]
        O = output_size(self.cell)
        out = (B, T, O) if self.return_sequences else (B, O)
        if not self.return_state:
            return out
        return [out] + [(B, s) for s in self.state_size]

    def compute_output_spec(self, inputs, initial_state=None, training=False, mask=None,
                            lengths=None):
        if len(inputs.shape) != 3:
            raise ValueError(f"expected input shape (batch, time, features), got "
                             f"{inputs.shape}")
        self._maybe_build(inputs.shape)
        shapes = self.compute_output_shape(inputs.shape)
        if not self.return_state:
            return engine.SymbolicTensor(shapes, self.dtype)
        return [engine.SymbolicTensor(s, self.dtype) for s in shapes]

    def _call_cells(self, inputs, initial_state, training, mask, lengths):
        """A call with a cell that is not one built-in cell: a stack of built-in cells (each
        a fused layer) or the step loop of :func:`crnn.layers.cells.run_loop`, both
        recorded on the tape op by op."""
        x = inputs
        if not isinstance(x, engine.Tensor):
            x = as_input("input", x, self.dtype, 3, "(batch, time, features)")
        elif x.ndim != 3:
            raise ValueError(f"expected input of shape (batch, time, features) (3-D), got "
                             f"shape {x.shape}")
        self._maybe_build(x.shape)
        B, T = x.shape[0], x.shape[1]
        if initial_state is not None:
            if self._tbptt:
                raise self._explicit_state_error()
            states = self._check_states(initial_state, B)
        else:
            stored = self._initial_states(B) if self.stateful else None
            states = self._check_states(
                stored if stored is not None
                else initial_states(self.cell, B, self.dtype), B)
        real = sequence_mask(mask, lengths, B, T)   # (B, T) bool, or None: all real
        reset_dropout_masks(self.cell)              # new masks for every call
        if self._fused_stack():
            output, finals = self._run_stack(x, states, real, training)
        else:
            output, finals = run_loop(self.cell, x, states, real, self.go_backwards,
                                      training, self.return_sequences,
                                      self.zero_output_for_mask, self.dtype)
        if self.stateful:
            # detached copies: the next call starts here, no gradient flows back into this
            self._states = [np.array(engine.value_of(f), dtype=self.dtype, copy=True)
                            for f in finals]
        return [output, *finals] if self.return_state else output

    def _fused_stack(self):
        return (isinstance(self.cell, StackedRNNCells)
                and all(isinstance(c, RNNCell) and c.family is not None
                        for c in self.cell.cells))

    def _run_stack(self, x, states, real, training):
        """Built-in cells stacked: each runs over the whole sequence on its kernels (a
        layer around it, with return_sequences), the next reading its outputs; what a
        step-by-step stack computes, and what stacked layers compute."""
        cells = self.cell.cells
        y, finals, i = x, [], 0
        for k, cell in enumerate(cells):
            n = len(cell.state_names)
            last = k == len(cells) - 1
            # the first reverses the sequence (and the mask) with go_backwards; the others
            # read its outputs, already in processing order
            layer = RNN(cell, return_sequences=self.return_sequences or not last,
                        return_state=True, go_backwards=self.go_backwards and k == 0,
                        zero_output_for_mask=self.zero_output_for_mask if last else True,
                        name=f"{self.name}/cells/{k}")
            mask = real
            if k > 0 and self.go_backwards and real is not None:
                mask = np.ascontiguousarray(real[:, ::-1])
            out = layer(y, initial_state=states[i:i + n], training=training, mask=mask)
            y = out[0]
            finals += list(out[1:])
            i += n
        return y, finals

    def _forward(self, inputs, training=False, states_given=True, mask=None,
                 lengths=None):
        x = as_input("input", inputs[0], self.dtype, 3, "(batch, time, features)")
        self._maybe_build(x.shape)
        B, T, D = x.shape
        cell = self.cell
        if D != cell.input_dim:
            raise ValueError(f"expected input with {cell.input_dim} features (the built "
                             f"input size), got shape {x.shape}")
        if states_given:
            if self._tbptt:
                raise self._explicit_state_error()
            states = cell.check_states(inputs[1:], B)
        else:
            stored = self._initial_states(B) if self.stateful else None
            # stored states are read, never written in place by the kernels: no copy
            states = cell.check_states(stored, B)
        real = sequence_mask(mask, lengths, B, T)   # (B, T) bool, or None: all real
        if self.go_backwards:
            x = np.ascontiguousarray(x[:, ::-1])
            if real is not None:
                real = np.ascontiguousarray(real[:, ::-1])
        x_mask = h_mask = None
        if training:
            cell.reset_dropout_mask()
            cell.reset_recurrent_dropout_mask()
            x_mask = cell.get_dropout_mask(B)
            h_mask = cell.get_recurrent_dropout_mask(B)
        if x_mask is not None:
            x = x * x_mask[:, None, :]
        # with a mask, hs[:, t] at a padded step holds the states of the sequence's last
        # real step before t (its initial states before the first), hs[:, T-1] the final
        infer = not engine.grad_enabled() and h_mask is None
        if infer:
            # crnn.no_grad: no backward follows, so no record of the steps is kept
            hs, finals = cell.infer(x, states, real, self.return_sequences)
        else:
            hs, saved = cell.run(x, states, h_mask, real)
            finals = cell.final_states(hs, saved) if T > 0 else [s.copy() for s in states]
        if self.stateful:
            # detached copies: the next call starts here, no gradient flows back into this
            self._states = [np.array(f, dtype=self.dtype, copy=True) for f in finals]
        # which outputs are hs itself (the others are zeros), in processing order: every
        # step without a mask; with one, the real steps, and the padded steps after a real
        # one unless zero_output_for_mask (they repeat the last real step's output, which
        # is the state the kernels carried there)
        keep = output_mask(real, self.zero_output_for_mask)
        if self.return_sequences:
            output = hs if keep is None else np.where(keep[:, :, None], hs, 0)
        else:
            output = finals[0]
            if real is not None and T > 0:
                output = np.where(real.any(axis=1)[:, None], output, 0)
        if self.return_state:
            if output is finals[0]:
                finals[0] = finals[0].copy()  # the output and h_last: two arrays
            outputs = [output, *finals]
        else:
            outputs = [output]
        if infer:
            return outputs, None
        return outputs, (x, states, h_mask, hs, saved, x_mask, real)

    # -- backward --------------------------------------------------------------------
    def _backward(self, cache, d_outputs):
        x, states, h_mask, hs, saved, x_mask, real = cache
        B, T, _ = x.shape
        H = self.cell.units
        names = self.cell.state_names
        d_out = d_outputs[0]
        d_finals = list(d_outputs[1:]) if self.return_state else [None] * len(names)
        out_shape = (B, T, H) if self.return_sequences else (B, H)
        d_out = check_grad("d_output", d_out, out_shape, self.dtype)
        d_finals = [check_grad(f"d_{s}_last", g, (B, H), self.dtype)
                    for s, g in zip(names, d_finals)]
        dhs = d_out if self.return_sequences else None
        keep = output_mask(real, self.zero_output_for_mask)
        if dhs is not None and keep is not None:
            # a zero output is a constant; a repeated one is the carried state, whose
            # gradient the kernels hand back to the step it repeats
            dhs = np.where(keep[:, :, None], dhs, 0)
        if not self.return_sequences and d_out is not None:
            if real is not None and T > 0:
                d_out = np.where(real.any(axis=1)[:, None], d_out, 0)
            d_finals[0] = d_out if d_finals[0] is None else d_finals[0] + d_out
        dx, d_states, dW_x, dW_h, db = self.cell.run_backward(x, states, h_mask, hs,
                                                              saved, dhs, d_finals, real)
        if x_mask is not None:
            dx *= x_mask[:, None, :]
        if self.go_backwards:
            dx = np.ascontiguousarray(dx[:, ::-1])
        return [dx, *d_states], self.cell.weight_grads(dW_x, dW_h, db)

    def backward(self, grad):
        """Backpropagate through the last call, outside a tape; see the class
        docstring."""
        if not self._fused:
            raise ValueError(f"{self.name!r} runs the cell {type(self.cell).__name__} step "
                             f"by step through the tape, so it has no backward outside a "
                             f"tape: compute gradients with crnn.GradientTape")
        self._check_last_call()
        names = self.cell.state_names
        if self.return_state:
            n = 1 + len(names)
            if not isinstance(grad, (list, tuple)) or len(grad) != n:
                what = ", ".join(["d_output"] + [f"d_{s}_last" for s in names])
                raise ValueError(f"expected grad to be a list [{what}] (the layer has "
                                 f"return_state=True), got {type(grad).__name__}"
                                 + (f" of length {len(grad)}"
                                    if isinstance(grad, (list, tuple)) else ""))
            d_outputs = list(grad)
        else:
            d_outputs = [grad]
        d_inputs = self._backward_last(d_outputs)
        self.initial_state_grad = list(d_inputs[1:])
        return d_inputs[0]


def output_mask(real, zero_output_for_mask):
    """The steps ``(B, T)`` at which a layer outputs the kernels' ``hs`` (elsewhere it
    outputs zeros), or None for every step: the real steps with
    ``zero_output_for_mask``, else every step from a sequence's first real step on (a
    padded step after it repeats the last real step's output, which is the state the
    kernels carried there)."""
    if real is None:
        return None
    if zero_output_for_mask:
        return real
    return np.logical_or.accumulate(real, axis=1)
