"""LSTMCell (one step) and LSTM (the time loop), with Keras's semantics and layout.

.. math::
    z &= x_t W + h_{t-1} U + b, \\quad
    i = \\sigma(z_i),\\ f = \\sigma(z_f),\\ g = \\tanh(z_c),\\ o = \\sigma(z_o) \\\\
    c_t &= f \\odot c_{t-1} + i \\odot g, \\qquad h_t = o \\odot \\tanh(c_t)

(``\\sigma`` is ``recurrent_activation``, ``\\tanh`` is ``activation``.) Gates in Keras's
order i, f, c, o along the last axis of ``kernel (D, 4H)``, ``recurrent_kernel (H, 4H)``
and ``bias (4H,)``, so weights move between Keras and crnn unchanged; PyTorch's
``nn.LSTM`` has the same gate order with transposed matrices and two biases
(``weight_ih_l0 = kernel.T``, ``weight_hh_l0 = recurrent_kernel.T``, ``bias_ih_l0 +
bias_hh_l0 = bias``).
"""
import numpy as np

from crnn import activations, initializers, regularizers
from crnn.layers.recurrent import RNN, RNNCell


class LSTMCell(RNNCell):
    """One step of a long short-term memory cell; states ``[h, c]``.

    Parameters
    ----------
    units : int
        ``H``, the size of both states and of the output.
    activation : str
        For the candidate ``g`` and for ``tanh(c_t)`` (default ``"tanh"``).
    recurrent_activation : str
        For the gates i, f, o (default ``"sigmoid"``).
    unit_forget_bias : bool
        Initialise the forget gate's bias to one (Keras's default, Jozefowicz et al.
        2015); only with ``use_bias``.
    use_bias, kernel_initializer, recurrent_initializer, bias_initializer, dropout,
    recurrent_dropout, seed, dtype, backend
        As for :class:`crnn.SimpleRNNCell`.

    ``cell(x_t, [h, c], training=False)`` returns ``(h_new, [h_new, c_new])``;
    ``cell.backward(d_output, [dh, dc])`` returns ``(dx_t, [dh_prev, dc_prev])``.

    Examples
    --------
    >>> cell = LSTMCell(4)
    >>> h, (h2, c) = cell(np.zeros((2, 3), "float32"), [np.zeros((2, 4), "float32")] * 2)
    >>> h.shape, c.shape
    ((2, 4), (2, 4))
    """

    family = "lstm"
    gates = 4
    state_names = ("h", "c")

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid",
                 use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros",
                 unit_forget_bias=True, dropout=0.0, recurrent_dropout=0.0, seed=None,
                 dtype="float32", backend="auto", name=None, *, kernel_regularizer=None,
                 recurrent_regularizer=None, bias_regularizer=None, kernel_constraint=None,
                 recurrent_constraint=None, bias_constraint=None):
        super().__init__(name=name, dtype=dtype)
        self._setup(units, activation, use_bias, kernel_initializer, recurrent_initializer,
                    bias_initializer, dropout, recurrent_dropout, seed, backend,
                    kernel_regularizer, recurrent_regularizer, bias_regularizer,
                    kernel_constraint, recurrent_constraint, bias_constraint)
        self.recurrent_activation = activations.check(recurrent_activation)
        self.unit_forget_bias = bool(unit_forget_bias)

    def init_bias(self, shape, dtype, rng):
        b = initializers.get(self.bias_initializer)(shape, dtype, rng)
        if self.unit_forget_bias:
            b = np.array(b, dtype=dtype)
            b[self.units:2 * self.units] = 1
        return b

    def run(self, x, states, h_mask, mask=None):
        hs, cs, gates = self.kernels().lstm_forward(
            x, states[0], states[1], self.kernel, self.recurrent_kernel, self.bias,
            self.activation, self.recurrent_activation, h_mask, mask)
        return hs, (cs, gates)

    def final_states(self, hs, saved):
        cs, _ = saved
        return [hs[:, -1].copy(), cs[:, -1].copy()]

    def infer(self, x, states, mask=None, return_sequences=True):
        hs, h_last, c_last = self.kernels().lstm_inference(
            x, states[0], states[1], self.kernel, self.recurrent_kernel, self.bias,
            self.activation, self.recurrent_activation, mask, return_sequences)
        return hs, [h_last, c_last]

    def run_backward(self, x, states, h_mask, hs, saved, dhs, d_finals, mask=None):
        cs, gates = saved
        dx, dh0, dc0, dW_x, dW_h, db = self.kernels().lstm_backward(
            x, states[0], states[1], self.kernel, self.recurrent_kernel, hs, cs, gates,
            dhs, d_finals[0], d_finals[1], self.activation, self.recurrent_activation,
            h_mask, mask)
        return dx, [dh0, dc0], dW_x, dW_h, db


class LSTM(RNN):
    """Long short-term memory layer (Keras's ``LSTM``).

    Parameters as for :class:`LSTMCell` plus ``return_sequences``, ``return_state``,
    ``go_backwards``, ``stateful``, ``unroll`` and ``zero_output_for_mask`` as for
    :class:`crnn.SimpleRNN`. With ``return_state=True`` a call returns ``[output, h_last,
    c_last]`` and backward takes ``[d_output, d_h_last, d_c_last]`` (entries may be
    None); ``initial_state`` is ``[h0, c0]`` and ``initial_state_grad`` is ``[dh0,
    dc0]``.

    Examples
    --------
    >>> layer = LSTM(4, return_state=True)
    >>> out, h, c = layer(np.zeros((2, 5, 3), "float32"))
    >>> out.shape, h.shape, c.shape
    ((2, 4), (2, 4), (2, 4))
    """

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid",
                 use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros",
                 unit_forget_bias=True, return_sequences=False, return_state=False,
                 go_backwards=False, dropout=0.0, recurrent_dropout=0.0, seed=None,
                 stateful=False, unroll=False, zero_output_for_mask=False,
                 dtype="float32", backend="auto", name=None, *,
                 kernel_regularizer=None, recurrent_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None,
                 recurrent_constraint=None, bias_constraint=None):
        cell = LSTMCell(
            units, activation=activation, recurrent_activation=recurrent_activation,
            use_bias=use_bias, kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer,
            unit_forget_bias=unit_forget_bias, dropout=dropout,
            recurrent_dropout=recurrent_dropout, seed=seed, dtype=dtype, backend=backend,
            kernel_regularizer=kernel_regularizer,
            recurrent_regularizer=recurrent_regularizer, bias_regularizer=bias_regularizer,
            kernel_constraint=kernel_constraint, recurrent_constraint=recurrent_constraint,
            bias_constraint=bias_constraint)
        super().__init__(cell, return_sequences, return_state, go_backwards, stateful,
                         unroll, zero_output_for_mask, name=name, dtype=dtype)
        self.activity_regularizer = regularizers.get(activity_regularizer)
