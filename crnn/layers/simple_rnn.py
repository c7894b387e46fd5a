"""SimpleRNNCell (one step) and SimpleRNN (the time loop), with Keras's semantics.

.. math:: h_t = \\mathrm{act}(x_t W_x + h_{t-1} W_h + b)

Weights are stored in Keras's layout and order, ``kernel (D, H)``, ``recurrent_kernel
(H, H)``, ``bias (H,)``, so ``get_weights``/``set_weights`` exchange them with Keras
unchanged. The arithmetic runs in the kernels of the selected backend (see
:mod:`crnn.backend`): the Cython loop by default, the NumPy reference on request.
"""
from crnn import regularizers
from crnn.layers.recurrent import RNN, RNNCell


class SimpleRNNCell(RNNCell):
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

    Examples
    --------
    >>> cell = SimpleRNNCell(4)
    >>> h, states = cell(np.zeros((2, 3), "float32"), [np.zeros((2, 4), "float32")])
    >>> h.shape, len(states)
    ((2, 4), 1)
    """

    family = "simple_rnn"
    gates = 1
    state_names = ("h",)

    def __init__(self, units, activation="tanh", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", dropout=0.0, recurrent_dropout=0.0, seed=None,
                 dtype="float32", backend="auto", name=None, *, kernel_regularizer=None,
                 recurrent_regularizer=None, bias_regularizer=None, kernel_constraint=None,
                 recurrent_constraint=None, bias_constraint=None):
        super().__init__(name=name, dtype=dtype)
        self._setup(units, activation, use_bias, kernel_initializer, recurrent_initializer,
                    bias_initializer, dropout, recurrent_dropout, seed, backend,
                    kernel_regularizer, recurrent_regularizer, bias_regularizer,
                    kernel_constraint, recurrent_constraint, bias_constraint)

    def run(self, x, states, h_mask, mask=None):
        hs = self.kernels().simple_rnn_forward(x, states[0], self.kernel,
                                               self.recurrent_kernel, self.bias,
                                               self.activation, h_mask, mask)
        return hs, None

    def final_states(self, hs, saved):
        return [hs[:, -1].copy()]

    def run_backward(self, x, states, h_mask, hs, saved, dhs, d_finals, mask=None):
        dx, dh0, dW_x, dW_h, db = self.kernels().simple_rnn_backward(
            x, states[0], self.kernel, self.recurrent_kernel, hs, dhs, d_finals[0],
            self.activation, h_mask, mask)
        return dx, [dh0], dW_x, dW_h, db


class SimpleRNN(RNN):
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
    stateful : bool
        Start each call from the states the previous call ended with (Keras's
        ``stateful``; see :class:`crnn.layers.recurrent.RNN` and :meth:`reset_states`).
    unroll : bool
        Accepted for Keras compatibility; it changes nothing.
    zero_output_for_mask : bool
        With a mask, output zeros at the padded steps of a returned sequence instead of
        repeating the previous output (Keras's default, False); see
        :class:`crnn.layers.recurrent.RNN`.

    Calling and backward: see :class:`crnn.layers.recurrent.RNN`. With ``return_state``
    the gradient is ``[d_output, d_h_last]``; ``initial_state_grad`` is ``[dh0]``.

    Examples
    --------
    >>> layer = SimpleRNN(4, return_sequences=True)
    >>> layer(np.zeros((2, 5, 3), "float32")).shape
    (2, 5, 4)
    >>> out, h = SimpleRNN(4, return_state=True)(np.zeros((2, 5, 3), "float32"))
    >>> out.shape, h.shape
    ((2, 4), (2, 4))
    """

    def __init__(self, units, activation="tanh", use_bias=True, return_sequences=False,
                 return_state=False, go_backwards=False, dropout=0.0,
                 recurrent_dropout=0.0, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros", seed=None,
                 stateful=False, unroll=False, zero_output_for_mask=False,
                 dtype="float32", backend="auto", name=None, *,
                 kernel_regularizer=None, recurrent_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None,
                 recurrent_constraint=None, bias_constraint=None):
        cell = SimpleRNNCell(
            units, activation=activation, use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer,
            dropout=dropout, recurrent_dropout=recurrent_dropout, seed=seed, dtype=dtype,
            backend=backend,
            kernel_regularizer=kernel_regularizer,
            recurrent_regularizer=recurrent_regularizer, bias_regularizer=bias_regularizer,
            kernel_constraint=kernel_constraint, recurrent_constraint=recurrent_constraint,
            bias_constraint=bias_constraint)
        super().__init__(cell, return_sequences, return_state, go_backwards, stateful,
                         unroll, zero_output_for_mask, name=name, dtype=dtype)
        self.activity_regularizer = regularizers.get(activity_regularizer)
