"""SimpleRNNCell (one step) and SimpleRNN (the time loop), with Keras's semantics.

.. math:: h_t = \\mathrm{act}(x_t W_x + h_{t-1} W_h + b)

Weights are stored in Keras's layout and order, ``kernel (D, H)``, ``recurrent_kernel
(H, H)``, ``bias (H,)``, so ``get_weights``/``set_weights`` exchange them with Keras
unchanged. The arithmetic runs in the kernels of the selected backend (see
:mod:`crnn.backend`): the Cython loop by default, the NumPy reference on request.
"""
import numpy as np

from crnn import activations, backend as _backend, initializers
from crnn.layers.base import Layer, as_input


def _check_rate(name, rate):
    if not (isinstance(rate, (int, float)) and 0.0 <= rate < 1.0):
        raise ValueError(f"expected {name} in [0, 1), got {rate!r}")
    return float(rate)


def dropout_mask(rng, shape, rate, dtype):
    """Keras's dropout mask: 0 with probability ``rate``, else ``1 / (1 - rate)``."""
    return ((rng.random(shape) >= rate) / (1.0 - rate)).astype(dtype)


class SimpleRNNCell(Layer):
    """One step of a fully connected RNN: ``h_t = act(x_t @ kernel + h_{t-1} @ recurrent_kernel + bias)``.

    Parameters
    ----------
    units : int
        ``H``, the size of the state and of the output.
    activation : {"tanh", "relu", "sigmoid", "linear"} or None
    use_bias : bool
    kernel_initializer, recurrent_initializer, bias_initializer : str or callable
        Keras names (``"glorot_uniform"``, ``"orthogonal"``, ``"zeros"``, ...) or a
        callable ``(shape, dtype, rng) -> array``.
    dropout, recurrent_dropout : float in [0, 1)
        Fraction of the input (resp. state) units dropped when ``training=True``. As in
        Keras one mask is drawn and reused at every step until
        :meth:`reset_dropout_mask` / :meth:`reset_recurrent_dropout_mask`.
    seed : int or None
        Seeds the weight initialisation and the dropout masks.
    dtype : "float32" or "float64"
    backend : "auto", "cython" or "reference"

    Calling ``cell(x_t, states, training=False)`` with ``x_t (B, D)`` and ``states`` a list
    ``[h (B, H)]`` returns ``(output, [h_new])``, where ``output is h_new``.
    """

    def __init__(self, units, activation="tanh", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", dropout=0.0, recurrent_dropout=0.0, seed=None,
                 dtype="float32", backend="auto", name=None):
        super().__init__(name=name, dtype=dtype)
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
        self.dropout = _check_rate("dropout", dropout)
        self.recurrent_dropout = _check_rate("recurrent_dropout", recurrent_dropout)
        self.seed = seed
        self.backend = _backend.check(backend)
        self._rng = np.random.default_rng(seed)
        self._dropout_mask = None
        self._recurrent_dropout_mask = None
        self._cache = None

    @property
    def state_size(self):
        return self.units

    @property
    def output_size(self):
        return self.units

    # -- weights ---------------------------------------------------------------------
    def build(self, input_shape):
        D, H = int(input_shape[-1]), self.units
        if D < 1:
            raise ValueError(f"expected at least one input feature, got input shape "
                             f"{tuple(input_shape)}")
        rng, dtype = self._rng, self.dtype
        shapes = {"kernel": ((D, H), self.kernel_initializer),
                  "recurrent_kernel": ((H, H), self.recurrent_initializer)}
        if self.use_bias:
            shapes["bias"] = ((H,), self.bias_initializer)
        self.params.clear()  # updated in place: a wrapping layer shares this dict
        for name, (shape, init) in shapes.items():
            self.params[name] = np.ascontiguousarray(initializers.get(init)(shape, dtype, rng),
                                                     dtype=dtype)
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
        if getattr(self, "_zero_bias", None) is None or self._zero_bias.dtype != self.dtype:
            self._zero_bias = np.zeros(self.units, dtype=self.dtype)
        return self._zero_bias

    def kernels(self):
        """The kernel module of this cell's backend."""
        return _backend.kernels("simple_rnn", self.backend)

    def get_initial_state(self, batch_size):
        return [np.zeros((int(batch_size), self.units), dtype=self.dtype)]

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

    # -- one step --------------------------------------------------------------------
    def __call__(self, inputs, states=None, training=False):
        x = as_input("x_t", inputs, self.dtype, 2, "(batch, features)")
        self._maybe_build(x.shape)
        B = x.shape[0]
        h = self._check_state(states, B)
        if x.shape[1] != self.input_dim:
            raise ValueError(f"expected x_t with {self.input_dim} features (the built input "
                             f"size), got shape {x.shape}")
        x_mask = self.get_dropout_mask(B) if training else None
        h_mask = self.get_recurrent_dropout_mask(B) if training else None
        x_in = x if x_mask is None else x * x_mask
        k = self.kernels()
        hs = k.simple_rnn_forward(x_in[:, None, :], h, self.kernel, self.recurrent_kernel,
                                  self.bias, self.activation, h_mask)
        self._cache = (x_in, h, hs, x_mask, h_mask)
        h_new = hs[:, 0]
        return h_new, [h_new]

    def _check_state(self, states, batch_size):
        if states is None:
            return self.get_initial_state(batch_size)[0]
        if isinstance(states, (list, tuple)):
            if len(states) != 1:
                raise ValueError(f"expected states to be a list of 1 array [h], got "
                                 f"{len(states)}")
            states = states[0]
        h = as_input("state h", states, self.dtype, 2, "(batch, units)")
        if h.shape != (batch_size, self.units):
            raise ValueError(f"expected state h of shape {(batch_size, self.units)}, got "
                             f"{h.shape}")
        return h

    def backward(self, d_output, d_states=None):
        """Backpropagate through the last call.

        ``d_output (B, H)`` is the gradient on the output and ``d_states`` (``[dh]`` or
        None) the gradient on the new state; both land on the same ``h_new``. Returns
        ``(dx_t, [dh_prev])`` and sets ``grads``.
        """
        if self._cache is None:
            raise ValueError("SimpleRNNCell.backward called before any forward call")
        x_in, h, hs, x_mask, h_mask = self._cache
        B, H = h.shape
        dh = np.zeros((B, H), dtype=self.dtype)
        for name, g in (("d_output", d_output),
                        ("d_states[0]", d_states[0] if d_states is not None else None)):
            if g is not None:
                g = as_input(name, g, self.dtype, 2, "(batch, units)")
                if g.shape != (B, H):
                    raise ValueError(f"expected {name} of shape {(B, H)}, got {g.shape}")
                dh += g
        dx, dh0, dW_x, dW_h, db = self.kernels().simple_rnn_backward(
            x_in[:, None, :], h, self.kernel, self.recurrent_kernel, hs, None, dh,
            self.activation, h_mask)
        self._set_grads(dW_x, dW_h, db)
        dx = dx[:, 0]
        return (dx if x_mask is None else dx * x_mask), [dh0]

    def _set_grads(self, dW_x, dW_h, db):
        self.grads.clear()  # updated in place: a wrapping layer shares this dict
        self.grads.update(kernel=dW_x, recurrent_kernel=dW_h)
        if self.use_bias:
            self.grads["bias"] = db


class SimpleRNN(Layer):
    """Fully connected RNN over a batch of sequences (Keras's ``SimpleRNN``).

    .. math:: h_t = \\mathrm{act}(x_t W_x + h_{t-1} W_h + b), \\quad t = 1 \\ldots T

    Parameters
    ----------
    units, activation, use_bias, kernel_initializer, recurrent_initializer,
    bias_initializer, dropout, recurrent_dropout, seed, dtype, backend
        As for :class:`SimpleRNNCell` (the layer keeps one in ``self.cell``).
    return_sequences : bool
        Return every state ``(B, T, H)`` rather than the last ``(B, H)``.
    return_state : bool
        Also return the last state: ``[output, h_last]``.
    go_backwards : bool
        Process the sequence from its end; as in Keras, a returned sequence is then in
        the reversed (processing) order.

    Calling ``layer(x, initial_state=None, training=False)`` with ``x (B, T, D)`` runs the
    forward pass and keeps what backward needs (after any call, not only training ones).
    ``layer.backward(grad)`` then takes the gradient of the output (``[d_output,
    d_h_last]`` with ``return_state``; either may be None), returns ``dx (B, T, D)``, sets
    ``grads`` and ``initial_state_grad`` (``[dh0]``). Dropout is active only when
    ``training=True``, with one mask per sequence reused at every step. Do not modify a
    returned array in place before calling backward: it is the buffer backward reads.
    """

    def __init__(self, units, activation="tanh", use_bias=True, return_sequences=False,
                 return_state=False, go_backwards=False, dropout=0.0,
                 recurrent_dropout=0.0, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros", seed=None,
                 dtype="float32", backend="auto", name=None):
        super().__init__(name=name, dtype=dtype)
        self.cell = SimpleRNNCell(
            units, activation=activation, use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer,
            dropout=dropout, recurrent_dropout=recurrent_dropout, seed=seed, dtype=dtype,
            backend=backend)
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        # The cell owns the weights; the layer shows the same dicts.
        self.params = self.cell.params
        self.grads = self.cell.grads
        self._cache = None
        self.initial_state_grad = None

    # The cell's arguments, read through (get_config and repr use them).
    units = property(lambda self: self.cell.units)
    activation = property(lambda self: self.cell.activation)
    use_bias = property(lambda self: self.cell.use_bias)
    dropout = property(lambda self: self.cell.dropout)
    recurrent_dropout = property(lambda self: self.cell.recurrent_dropout)
    kernel_initializer = property(lambda self: self.cell.kernel_initializer)
    recurrent_initializer = property(lambda self: self.cell.recurrent_initializer)
    bias_initializer = property(lambda self: self.cell.bias_initializer)
    seed = property(lambda self: self.cell.seed)
    backend = property(lambda self: self.cell.backend)
    kernel = property(lambda self: self.cell.kernel)
    recurrent_kernel = property(lambda self: self.cell.recurrent_kernel)
    bias = property(lambda self: self.cell.bias)

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"expected input shape (batch, time, features), got "
                             f"{tuple(input_shape)}")
        self.cell.build(input_shape)
        self.built = True

    # -- forward ---------------------------------------------------------------------
    def __call__(self, inputs, initial_state=None, training=False):
        x = as_input("input", inputs, self.dtype, 3, "(batch, time, features)")
        self._maybe_build(x.shape)
        B, T, D = x.shape
        cell = self.cell
        if D != cell.input_dim:
            raise ValueError(f"expected input with {cell.input_dim} features (the built "
                             f"input size), got shape {x.shape}")
        h0 = cell._check_state(initial_state, B)
        if self.go_backwards:
            x = np.ascontiguousarray(x[:, ::-1])
        x_mask = h_mask = None
        if training:
            cell.reset_dropout_mask()
            cell.reset_recurrent_dropout_mask()
            x_mask = cell.get_dropout_mask(B)
            h_mask = cell.get_recurrent_dropout_mask(B)
        if x_mask is not None:
            x = x * x_mask[:, None, :]
        hs = cell.kernels().simple_rnn_forward(x, h0, cell.kernel, cell.recurrent_kernel,
                                               cell.bias, cell.activation, h_mask)
        self._cache = (x, h0, hs, x_mask, h_mask)
        h_last = hs[:, -1].copy() if T > 0 else h0.copy()
        output = hs if self.return_sequences else h_last
        if self.return_state:
            return [output, h_last if self.return_sequences else h_last.copy()]
        return output

    # -- backward --------------------------------------------------------------------
    def backward(self, grad):
        """Backpropagate through the last call; see the class docstring."""
        if self._cache is None:
            raise ValueError("SimpleRNN.backward called before any forward call")
        x, h0, hs, x_mask, h_mask = self._cache
        B, T, _ = x.shape
        H = self.units
        if self.return_state:
            if not isinstance(grad, (list, tuple)) or len(grad) != 2:
                raise ValueError("expected grad to be a list [d_output, d_h_last] (the "
                                 "layer has return_state=True), got "
                                 f"{type(grad).__name__}")
            d_out, d_last = grad
        else:
            d_out, d_last = grad, None
        out_shape = (B, T, H) if self.return_sequences else (B, H)
        d_out = self._check_grad("d_output", d_out, out_shape)
        d_last = self._check_grad("d_h_last", d_last, (B, H))
        dhs = d_out if self.return_sequences else None
        if not self.return_sequences and d_out is not None:
            d_last = d_out if d_last is None else d_last + d_out
        dx, dh0, dW_x, dW_h, db = self.cell.kernels().simple_rnn_backward(
            x, h0, self.cell.kernel, self.cell.recurrent_kernel, hs, dhs, d_last,
            self.activation, h_mask)
        self.cell._set_grads(dW_x, dW_h, db)
        self.initial_state_grad = [dh0]
        if x_mask is not None:
            dx *= x_mask[:, None, :]
        if self.go_backwards:
            dx = np.ascontiguousarray(dx[:, ::-1])
        return dx

    def _check_grad(self, name, g, shape):
        if g is None:
            return None
        g = as_input(name, g, self.dtype, len(shape), str(shape))
        if g.shape != shape:
            raise ValueError(f"expected {name} of shape {shape}, got {g.shape}")
        return g
