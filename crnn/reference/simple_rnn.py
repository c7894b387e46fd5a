"""SimpleRNN: ``h_t = act(x_t @ W_x + (h_{t-1} * m) @ W_h + b)``; see :mod:`crnn.reference`.

With a mask of real steps ``mask (B, T)`` (nonzero: real, zero: padding), a padded step
leaves the state as it was (``h_t = h_{t-1}``): the state after a sequence's last real
step is carried to ``hs[:, T-1]``. Its gradient passes straight through to ``h_{t-1}``,
and the step's input and the weights get nothing from it.
"""
import numpy as np

from crnn import _checks
from crnn.activations import FUNCTIONS, GRADIENTS, check as _check_activation


def simple_rnn_forward(x, h0, W_x, W_h, b, activation="tanh", recurrent_mask=None,
                       mask=None):
    """Run a SimpleRNN: ``h_t = act(x_t @ W_x + (h_{t-1} * m) @ W_h + b)``.

    Shapes: ``x (B, T, D)``, ``h0 (B, H)``, ``W_x (D, H)``, ``W_h (H, H)``, ``b (H,)``,
    ``recurrent_mask (B, H)`` or None, ``mask (B, T)`` (bool or uint8) or None. Returns
    ``hs (B, T, H)``, every state (at a padded step, the state carried through).
    """
    B, T, D, H = _checks.simple_rnn_forward(x, h0, W_x, W_h, b, recurrent_mask)
    mask = _checks.step_mask(mask, B, T)
    act = FUNCTIONS[_check_activation(activation)]
    hs = np.empty((B, T, H), dtype=x.dtype)
    h = h0
    for t in range(T):
        hm = h if recurrent_mask is None else h * recurrent_mask   # 0. recurrent dropout
        a = x[:, t] @ W_x + hm @ W_h + b           # 1-2. input and recurrent projections
        h_new = act(a)                             # 3. activation
        if mask is not None:
            real = mask[:, t, None] != 0
            h_new = np.where(real, h_new, h)       # 4. padding: the state passes through
        h = h_new
        hs[:, t] = h
    return hs


def simple_rnn_backward(x, h0, W_x, W_h, hs, dhs, dh_last, activation="tanh",
                        recurrent_mask=None, mask=None):
    """Backpropagate through :func:`simple_rnn_forward` (BPTT).

    ``dhs (B, T, H)`` is the gradient with respect to every state and ``dh_last (B, H)``
    the gradient with respect to the final state from elsewhere (either may be None).
    Returns ``dx (B, T, D)``, ``dh0 (B, H)``, ``dW_x (D, H)``, ``dW_h (H, H)``, ``db (H,)``.
    """
    B, T, D, H = _checks.simple_rnn_backward(x, h0, W_x, W_h, hs, dhs, dh_last,
                                             recurrent_mask)
    mask = _checks.step_mask(mask, B, T)
    act_grad = GRADIENTS[_check_activation(activation)]
    dx = np.zeros_like(x)
    dW_x, dW_h = np.zeros_like(W_x), np.zeros_like(W_h)
    db = np.zeros(H, dtype=x.dtype)
    dh_next = np.zeros_like(h0) if dh_last is None else dh_last.copy()
    for t in reversed(range(T)):
        h_prev = hs[:, t - 1] if t > 0 else h0
        if recurrent_mask is not None:
            h_prev = h_prev * recurrent_mask       # 0. (the masked state fed step t)
        dh = dh_next if dhs is None else dhs[:, t] + dh_next   # gradient reaching h_t
        da = dh * act_grad(hs[:, t])               # 3b. backprop through the activation
        if mask is not None:
            real = mask[:, t, None] != 0
            da = np.where(real, da, 0)             # 4b. padding: nothing into the step
        db += da.sum(axis=0)                       # 3c. bias
        dW_h += h_prev.T @ da                      # 2c. recurrent kernel
        dh_next = da @ W_h.T                       # 2b. into h_{t-1} ...
        if recurrent_mask is not None:
            dh_next = dh_next * recurrent_mask     # ... through the dropout mask
        if mask is not None:
            dh_next = np.where(real, dh_next, dh)  # 4b. padding: straight to h_{t-1}
        dW_x += x[:, t].T @ da                     # 1b. kernel
        dx[:, t] = da @ W_x.T                      # 1b. input
    return dx, dh_next, dW_x, dW_h, db
