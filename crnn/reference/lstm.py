"""LSTM (Keras's, gates i, f, c, o); see :mod:`crnn.reference`.

``G = 4`` gates; ``z_i, z_f, z_c, z_o`` are the four ``(B, H)`` blocks of ``z`` in that
order, ``ract`` the recurrent activation (default sigmoid), ``act`` the activation
(default tanh)::

    z   = x_t @ W_x + (h_{t-1} * m) @ W_h + b
    i, f, g, o = ract(z_i), ract(z_f), act(z_c), ract(z_o)
    c_t = f * c_{t-1} + i * g
    h_t = o * act(c_t)

With a mask of real steps ``mask (B, T)`` (nonzero: real, zero: padding), a padded step
leaves both states as they were (``h_t = h_{t-1}``, ``c_t = c_{t-1}``, its gates zero):
the states after a sequence's last real step are carried to ``hs[:, T-1]``,
``cs[:, T-1]``. Their gradients pass straight through to ``h_{t-1}``, ``c_{t-1}``, and
the step's input and the weights get nothing from it.
"""
import numpy as np

from crnn import _checks
from crnn.activations import FUNCTIONS, GRADIENTS, check as _check_activation


def lstm_forward(x, h0, c0, W_x, W_h, b, activation="tanh", recurrent_activation="sigmoid",
                 recurrent_mask=None, mask=None):
    """Run an LSTM from the states ``h0``, ``c0``.

    Shapes: ``x (B, T, D)``, ``h0 (B, H)``, ``c0 (B, H)``, ``W_x (D, 4H)``,
    ``W_h (H, 4H)``, ``b (4H,)``, ``recurrent_mask (B, H)`` or None, ``mask (B, T)``
    (bool or uint8) or None. Returns
    ``hs (B, T, H)`` and ``cs (B, T, H)``, every state, and ``gates (B, T, 4H)``, the
    activated gates ``i, f, g, o`` of every step (what backward needs).
    """
    B, T, D, H = _checks.lstm_forward(x, h0, c0, W_x, W_h, b, recurrent_mask)
    mask = _checks.step_mask(mask, B, T)
    act = FUNCTIONS[_check_activation(activation)]
    ract = FUNCTIONS[_check_activation(recurrent_activation)]
    hs = np.empty((B, T, H), dtype=x.dtype)
    cs = np.empty((B, T, H), dtype=x.dtype)
    gates = np.empty((B, T, 4 * H), dtype=x.dtype)
    h, c = h0, c0
    for t in range(T):
        hm = h if recurrent_mask is None else h * recurrent_mask   # 0. recurrent dropout
        z = x[:, t] @ W_x + hm @ W_h + b           # 1-2. input and recurrent projections
        i = ract(z[:, :H])                         # 3. input gate
        f = ract(z[:, H:2 * H])                    # 3. forget gate
        g = act(z[:, 2 * H:3 * H])                 # 3. candidate
        o = ract(z[:, 3 * H:])                     # 3. output gate
        c_new = f * c + i * g                      # 4. cell state
        h_new = o * act(c_new)                     # 5. hidden state
        gates_t = np.concatenate([i, f, g, o], axis=1)
        if mask is not None:
            real = mask[:, t, None] != 0           # 6. padding: the states pass through
            h_new, c_new = np.where(real, h_new, h), np.where(real, c_new, c)
            gates_t = np.where(real, gates_t, 0)
        h, c = h_new, c_new
        hs[:, t], cs[:, t] = h, c
        gates[:, t] = gates_t
    return hs, cs, gates


def lstm_inference(x, h0, c0, W_x, W_h, b, activation="tanh",
                   recurrent_activation="sigmoid", mask=None, return_sequences=True):
    """:func:`lstm_forward` when no backward pass follows (``crnn.no_grad``): returns
    ``hs (B, T, H)`` (None unless ``return_sequences``) and the final states
    ``h_last``, ``c_last (B, H)`` (``h0``, ``c0`` when ``T == 0``)."""
    hs, cs, _ = lstm_forward(x, h0, c0, W_x, W_h, b, activation, recurrent_activation,
                             None, mask)
    if hs.shape[1] == 0:
        h_last, c_last = np.array(h0, dtype=x.dtype), np.array(c0, dtype=x.dtype)
    else:
        h_last, c_last = hs[:, -1].copy(), cs[:, -1].copy()
    return (hs if return_sequences else None), h_last, c_last


def lstm_backward(x, h0, c0, W_x, W_h, hs, cs, gates, dhs, dh_last, dc_last,
                  activation="tanh", recurrent_activation="sigmoid", recurrent_mask=None,
                  mask=None):
    """Backpropagate through :func:`lstm_forward` (BPTT).

    ``hs``, ``cs``, ``gates`` are what the forward pass returned. ``dhs (B, T, H)`` is the
    gradient with respect to every ``h_t``; ``dh_last (B, H)`` and ``dc_last (B, H)`` the
    gradients with respect to the final ``h`` and ``c`` from elsewhere (each may be None).
    Returns ``dx (B, T, D)``, ``dh0 (B, H)``, ``dc0 (B, H)``, ``dW_x (D, 4H)``,
    ``dW_h (H, 4H)``, ``db (4H,)``.
    """
    B, T, D, H = _checks.lstm_backward(x, h0, c0, W_x, W_h, hs, cs, gates, dhs, dh_last,
                                       dc_last, recurrent_mask)
    mask = _checks.step_mask(mask, B, T)
    act = FUNCTIONS[_check_activation(activation)]
    act_grad = GRADIENTS[_check_activation(activation)]
    ract_grad = GRADIENTS[_check_activation(recurrent_activation)]
    dx = np.zeros_like(x)
    dW_x, dW_h = np.zeros_like(W_x), np.zeros_like(W_h)
    db = np.zeros(4 * H, dtype=x.dtype)
    dh_next = np.zeros_like(h0) if dh_last is None else dh_last.copy()
    dc_next = np.zeros_like(c0) if dc_last is None else dc_last.copy()
    for t in reversed(range(T)):
        i, f, g, o = np.split(gates[:, t], 4, axis=1)   # the gates of step t
        c_prev = cs[:, t - 1] if t > 0 else c0
        h_prev = hs[:, t - 1] if t > 0 else h0
        if recurrent_mask is not None:
            h_prev = h_prev * recurrent_mask       # 0. (the masked state fed step t)
        a = act(cs[:, t])                          # 5. act(c_t), recomputed
        dh = dh_next if dhs is None else dhs[:, t] + dh_next   # gradient reaching h_t
        do = dh * a                                # 5b. into the output gate ...
        dc = dc_next + dh * o * act_grad(a)        # 5b. ... and through act into c_t
        di = dc * g                                # 4b. into the input gate
        dg = dc * i                                # 4b. into the candidate
        df = dc * c_prev                           # 4b. into the forget gate
        dz = np.concatenate([di * ract_grad(i), df * ract_grad(f), dg * act_grad(g),
                             do * ract_grad(o)], axis=1)   # 3b. through the activations
        if mask is not None:
            real = mask[:, t, None] != 0
            dz = np.where(real, dz, 0)             # 6b. padding: nothing into the step,
            dc_next = np.where(real, dc * f, dc_next)   # c_{t-1} gets dc_t unchanged
        else:
            dc_next = dc * f                       # 4b. into c_{t-1}
        db += dz.sum(axis=0)                       # 3c. bias
        dW_h += h_prev.T @ dz                      # 2c. recurrent kernel
        dh_next = dz @ W_h.T                       # 2b. into h_{t-1} ...
        if recurrent_mask is not None:
            dh_next = dh_next * recurrent_mask     # ... through the dropout mask
        if mask is not None:
            dh_next = np.where(real, dh_next, dh)  # 6b. padding: straight to h_{t-1}
        dW_x += x[:, t].T @ dz                     # 1b. kernel
        dx[:, t] = dz @ W_x.T                      # 1b. input
    return dx, dh_next, dc_next, dW_x, dW_h, db
