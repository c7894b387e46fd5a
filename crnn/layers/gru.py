"""GRUCell (one step) and GRU (the time loop), with Keras's semantics and layout.

Gates in Keras's order z, r, h along the last axis of ``kernel (D, 3H)`` and
``recurrent_kernel (H, 3H)``. With ``reset_after=True`` (the default; what PyTorch and
cuDNN compute)::

    xz, xr, xh = x_t W + b_in          hz, hr, hh = h_{t-1} U + b_rec
    z = sigma(xz + hz)   r = sigma(xr + hr)   n = tanh(xh + r * hh)
    h_t = z * h_{t-1} + (1 - z) * n

with ``bias (2, 3H)``: row 0 ``b_in``, row 1 ``b_rec``. With ``reset_after=False`` the
reset gate acts before the matrix product, ``n = tanh(xh + (r * h_{t-1}) U_h)``, and the
bias is ``(3H,)``. (``sigma`` is ``recurrent_activation``, ``tanh`` is ``activation``.)

PyTorch's ``nn.GRU`` orders its gates r, z, n and stores the transposes:
:func:`weights_from_torch` / :func:`weights_to_torch` convert.
"""
import numpy as np

from crnn import activations, regularizers
from crnn.layers.recurrent import RNN, RNNCell


class GRUCell(RNNCell):
    """One step of a gated recurrent unit; states ``[h]``.

    Parameters
    ----------
    units : int
    activation : str
        For the candidate ``n`` (default ``"tanh"``).
    recurrent_activation : str
        For the gates z and r (default ``"sigmoid"``).
    reset_after : bool
        Apply the reset gate after the recurrent matrix product (default, PyTorch's and
        cuDNN's form, bias ``(2, 3H)``) or before it (bias ``(3H,)``).
    use_bias, kernel_initializer, recurrent_initializer, bias_initializer, dropout,
    recurrent_dropout, seed, dtype, backend
        As for :class:`crnn.SimpleRNNCell`.

    Examples
    --------
    >>> cell = GRUCell(4)
    >>> h, states = cell(np.zeros((2, 3), "float32"), [np.zeros((2, 4), "float32")])
    >>> h.shape
    (2, 4)
    """

    family = "gru"
    gates = 3
    state_names = ("h",)

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid",
                 use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros",
                 dropout=0.0, recurrent_dropout=0.0, reset_after=True, seed=None,
                 dtype="float32", backend="auto", name=None, *, kernel_regularizer=None,
                 recurrent_regularizer=None, bias_regularizer=None, kernel_constraint=None,
                 recurrent_constraint=None, bias_constraint=None):
        super().__init__(name=name, dtype=dtype)
        self._setup(units, activation, use_bias, kernel_initializer, recurrent_initializer,
                    bias_initializer, dropout, recurrent_dropout, seed, backend,
                    kernel_regularizer, recurrent_regularizer, bias_regularizer,
                    kernel_constraint, recurrent_constraint, bias_constraint)
        self.recurrent_activation = activations.check(recurrent_activation)
        self.reset_after = bool(reset_after)

    def bias_shape(self):
        GH = 3 * self.units
        return (2, GH) if self.reset_after else (GH,)

    def run(self, x, states, h_mask, mask=None):
        hs, gates, hn = self.kernels().gru_forward(
            x, states[0], self.kernel, self.recurrent_kernel, self.bias, self.reset_after,
            self.activation, self.recurrent_activation, h_mask, mask)
        return hs, (gates, hn)

    def final_states(self, hs, saved):
        return [hs[:, -1].copy()]

    def infer(self, x, states, mask=None, return_sequences=True):
        hs, h_last = self.kernels().gru_inference(
            x, states[0], self.kernel, self.recurrent_kernel, self.bias, self.reset_after,
            self.activation, self.recurrent_activation, mask, return_sequences)
        return hs, [h_last]

    def run_backward(self, x, states, h_mask, hs, saved, dhs, d_finals, mask=None):
        gates, hn = saved
        dx, dh0, dW_x, dW_h, db = self.kernels().gru_backward(
            x, states[0], self.kernel, self.recurrent_kernel, hs, gates, hn, dhs,
            d_finals[0], self.reset_after, self.activation, self.recurrent_activation,
            h_mask, mask)
        return dx, [dh0], dW_x, dW_h, db


class GRU(RNN):
    """Gated recurrent unit layer (Keras's ``GRU``).

    Parameters as for :class:`GRUCell` plus ``return_sequences``, ``return_state``,
    ``go_backwards``, ``stateful``, ``unroll`` and ``zero_output_for_mask`` as for
    :class:`crnn.SimpleRNN`.

    Examples
    --------
    >>> layer = GRU(4, return_sequences=True)
    >>> x = np.zeros((2, 5, 3), "float32")
    >>> layer(x, mask=np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)).shape
    (2, 5, 4)
    """

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid",
                 use_bias=True, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros",
                 dropout=0.0, recurrent_dropout=0.0, return_sequences=False,
                 return_state=False, go_backwards=False, reset_after=True, seed=None,
                 stateful=False, unroll=False, zero_output_for_mask=False,
                 dtype="float32", backend="auto", name=None, *,
                 kernel_regularizer=None, recurrent_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None,
                 recurrent_constraint=None, bias_constraint=None):
        cell = GRUCell(
            units, activation=activation, recurrent_activation=recurrent_activation,
            use_bias=use_bias, kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer, bias_initializer=bias_initializer,
            dropout=dropout, recurrent_dropout=recurrent_dropout, reset_after=reset_after,
            seed=seed, dtype=dtype, backend=backend,
            kernel_regularizer=kernel_regularizer,
            recurrent_regularizer=recurrent_regularizer, bias_regularizer=bias_regularizer,
            kernel_constraint=kernel_constraint, recurrent_constraint=recurrent_constraint,
            bias_constraint=bias_constraint)
        super().__init__(cell, return_sequences, return_state, go_backwards, stateful,
                         unroll, zero_output_for_mask, name=name, dtype=dtype)
        self.activity_regularizer = regularizers.get(activity_regularizer)


def _torch_order(H):
    """Column order taking Keras's z, r, h blocks to PyTorch's r, z, n."""
    return np.r_[H:2 * H, 0:H, 2 * H:3 * H]


def weights_to_torch(weights):
    """Keras/crnn GRU weights ``[kernel (D, 3H), recurrent_kernel (H, 3H), bias (2, 3H)]``
    (``reset_after=True``) as PyTorch's ``nn.GRU`` tensors, in NumPy: ``(weight_ih_l0
    (3H, D), weight_hh_l0 (3H, H), bias_ih_l0 (3H,), bias_hh_l0 (3H,))``."""
    kernel, recurrent_kernel, bias = (np.asarray(w) for w in weights)
    H = recurrent_kernel.shape[0]
    if (recurrent_kernel.shape != (H, 3 * H) or kernel.ndim != 2
            or kernel.shape[1] != 3 * H or bias.shape != (2, 3 * H)):
        raise ValueError(f"expected kernel (D, 3H), recurrent_kernel (H, 3H) and bias "
                         f"(2, 3H) (reset_after=True), got {kernel.shape}, "
                         f"{recurrent_kernel.shape}, {bias.shape}")
    p = _torch_order(H)
    return (np.ascontiguousarray(kernel[:, p].T), np.ascontiguousarray(recurrent_kernel[:, p].T),
            bias[0, p].copy(), bias[1, p].copy())


def weights_from_torch(weight_ih, weight_hh, bias_ih, bias_hh):
    """The inverse of :func:`weights_to_torch`: PyTorch ``nn.GRU`` arrays (NumPy) to
    ``[kernel, recurrent_kernel, bias]`` for a ``reset_after=True`` GRU."""
    weight_ih, weight_hh = np.asarray(weight_ih), np.asarray(weight_hh)
    bias_ih, bias_hh = np.asarray(bias_ih), np.asarray(bias_hh)
    H = weight_hh.shape[1] if weight_hh.ndim == 2 else -1
    if (weight_hh.shape != (3 * H, H) or weight_ih.ndim != 2
            or weight_ih.shape[0] != 3 * H or bias_ih.shape != (3 * H,)
            or bias_hh.shape != (3 * H,)):
        raise ValueError(f"expected weight_ih (3H, D), weight_hh (3H, H), bias_ih and "
                         f"bias_hh (3H,), got {weight_ih.shape}, {weight_hh.shape}, "
                         f"{bias_ih.shape}, {bias_hh.shape}")
    q = np.argsort(_torch_order(H))  # PyTorch r, z, n back to Keras z, r, h
    return [np.ascontiguousarray(weight_ih.T[:, q]), np.ascontiguousarray(weight_hh.T[:, q]),
            np.stack([bias_ih[q], bias_hh[q]])]
