"""GRU (Keras's, gates z, r, h); see :mod:`crnn.reference`.

``G = 3`` gates; ``xz, xr, xh`` and ``hz, hr, hh`` are the three ``(B, H)`` blocks of the
input and recurrent projections in that order, ``hm = h_{t-1} * m`` the state as recurrent
dropout lets it into the products (the interpolation uses ``h_{t-1}`` itself), ``ract``
the recurrent activation (default sigmoid), ``act`` the activation (default tanh).

``reset_after=True`` (Keras's default; PyTorch's and cuDNN's form), ``b (2, 3H)``::

    xz, xr, xh = x_t @ W_x + b[0]          hz, hr, hh = hm @ W_h + b[1]
    z = ract(xz + hz)    r = ract(xr + hr)    n = act(xh + r * hh)
    h_t = z * h_{t-1} + (1 - z) * n

``reset_after=False``, ``b (3H,)``: the reset gate acts before the product with the third
block ``U_h = W_h[:, 2H:]`` (``U_z``, ``U_r`` the first two)::

    xz, xr, xh = x_t @ W_x + b
    z = ract(xz + hm @ U_z)    r = ract(xr + hm @ U_r)    n = act(xh + (r * hm) @ U_h)
    h_t = z * h_{t-1} + (1 - z) * n

With a mask of real steps ``mask (B, T)`` (nonzero: real, zero: padding), a padded step
leaves the state as it was (``h_t = h_{t-1}``; its ``gates`` and ``hn`` zero): the state
after a sequence's last real step is carried to ``hs[:, T-1]``. Its gradient passes
straight through to ``h_{t-1}``, and the step's input and the weights get nothing from it.
"""
import numpy as np

from crnn import _checks
from crnn.activations import FUNCTIONS, GRADIENTS, check as _check_activation


def gru_forward(x, h0, W_x, W_h, b, reset_after=True, activation="tanh",
                recurrent_activation="sigmoid", recurrent_mask=None, mask=None):
    """Run a GRU from the state ``h0``.

    Shapes: ``x (B, T, D)``, ``h0 (B, H)``, ``W_x (D, 3H)``, ``W_h (H, 3H)``, ``b (2, 3H)``
    (``reset_after=True``) or ``(3H,)`` (``reset_after=False``), ``recurrent_mask (B, H)``
    or None, ``mask (B, T)`` (bool or uint8) or None. Returns ``hs (B, T, H)``, every
    state; ``gates (B, T, 3H)``, the activated ``z, r, n`` of every step; ``hn (B, T,
    H)``, what backward needs besides: ``hh`` (the recurrent part of the candidate) with
    ``reset_after=True``, ``r * hm`` (the input of the product with ``U_h``) with
    ``reset_after=False``.
    """
    B, T, D, H = _checks.gru_forward(x, h0, W_x, W_h, b, reset_after, recurrent_mask)
    mask = _checks.step_mask(mask, B, T)
    act = FUNCTIONS[_check_activation(activation)]
    ract = FUNCTIONS[_check_activation(recurrent_activation)]
    hs = np.empty((B, T, H), dtype=x.dtype)
    gates = np.empty((B, T, 3 * H), dtype=x.dtype)
    hn = np.empty((B, T, H), dtype=x.dtype)
    h = h0
    for t in range(T):
        hm = h if recurrent_mask is None else h * recurrent_mask   # 0. recurrent dropout
        if reset_after:
            xz, xr, xh = np.split(x[:, t] @ W_x + b[0], 3, axis=1)  # 1. input projection
            hz, hr, hh = np.split(hm @ W_h + b[1], 3, axis=1)       # 2. recurrent proj.
            z = ract(xz + hz)                      # 3. update gate
            r = ract(xr + hr)                      # 3. reset gate
            n = act(xh + r * hh)                   # 4. candidate, reset after the product
            hn_t = hh
        else:
            xz, xr, xh = np.split(x[:, t] @ W_x + b, 3, axis=1)     # 1. input projection
            z = ract(xz + hm @ W_h[:, :H])         # 2-3. update gate
            r = ract(xr + hm @ W_h[:, H:2 * H])    # 2-3. reset gate
            q = r * hm                             # 4. reset before the product ...
            n = act(xh + q @ W_h[:, 2 * H:])       # 4. ... candidate
            hn_t = q
        h_new = z * h + (1 - z) * n                # 5. interpolation, unmasked h_{t-1}
        gates_t = np.concatenate([z, r, n], axis=1)
        if mask is not None:
            real = mask[:, t, None] != 0           # 6. padding: the state passes through
            h_new = np.where(real, h_new, h)
            gates_t, hn_t = np.where(real, gates_t, 0), np.where(real, hn_t, 0)
        h = h_new
        hs[:, t], gates[:, t], hn[:, t] = h, gates_t, hn_t
    return hs, gates, hn


def gru_inference(x, h0, W_x, W_h, b, reset_after=True, activation="tanh",
                  recurrent_activation="sigmoid", mask=None, return_sequences=True):
    """:func:`gru_forward` when no backward pass follows (``crnn.no_grad``): returns
    ``hs (B, T, H)`` (None unless ``return_sequences``) and the final state
    ``h_last (B, H)`` (``h0`` when ``T == 0``)."""
    hs, _, _ = gru_forward(x, h0, W_x, W_h, b, reset_after, activation,
                           recurrent_activation, None, mask)
    h_last = np.array(h0, dtype=x.dtype) if hs.shape[1] == 0 else hs[:, -1].copy()
    return (hs if return_sequences else None), h_last


def gru_backward(x, h0, W_x, W_h, hs, gates, hn, dhs, dh_last, reset_after=True,
                 activation="tanh", recurrent_activation="sigmoid", recurrent_mask=None,
                 mask=None):
    """Backpropagate through :func:`gru_forward` (BPTT).

    ``hs``, ``gates``, ``hn`` are what the forward pass returned. ``dhs (B, T, H)`` is the
    gradient with respect to every state and ``dh_last (B, H)`` the gradient with respect
    to the final state from elsewhere (either may be None). Returns ``dx (B, T, D)``,
    ``dh0 (B, H)``, ``dW_x (D, 3H)``, ``dW_h (H, 3H)`` and ``db``, the shape of ``b``.
    """
    B, T, D, H = _checks.gru_backward(x, h0, W_x, W_h, hs, gates, hn, dhs, dh_last,
                                      reset_after, recurrent_mask)
    mask = _checks.step_mask(mask, B, T)
    act_grad = GRADIENTS[_check_activation(activation)]
    ract_grad = GRADIENTS[_check_activation(recurrent_activation)]
    dx = np.zeros_like(x)
    dW_x, dW_h = np.zeros_like(W_x), np.zeros_like(W_h)
    db = np.zeros((2, 3 * H) if reset_after else 3 * H, dtype=x.dtype)
    dh_next = np.zeros_like(h0) if dh_last is None else dh_last.copy()
    for t in reversed(range(T)):
        z, r, n = np.split(gates[:, t], 3, axis=1)   # the gates of step t
        h_prev = hs[:, t - 1] if t > 0 else h0
        hm = h_prev if recurrent_mask is None else h_prev * recurrent_mask   # 0. (step t's)
        dh = dh_next if dhs is None else dhs[:, t] + dh_next   # gradient reaching h_t
        if mask is not None:
            real = mask[:, t, None] != 0
            dh_pad = np.where(real, 0, dh)         # 6b. padding: straight to h_{t-1} ...
            dh = np.where(real, dh, 0)             # ... and nothing into the step
        dz = dh * (h_prev - n)                     # 5b. into the update gate
        dn = dh * (1 - z)                          # 5b. into the candidate
        dh_next = dh * z                           # 5b. into h_{t-1}, directly
        dxh = dn * act_grad(n)                     # 4b. through act
        dxz = dz * ract_grad(z)                    # 3b. through ract (update gate)
        if reset_after:
            dhh = dxh * r                          # 4b. into hh
            dr = dxh * hn[:, t]                    # 4b. into the reset gate
            dxr = dr * ract_grad(r)                # 3b. through ract (reset gate)
            dgh = np.concatenate([dxz, dxr, dhh], axis=1)  # gradient of hm @ W_h + b[1]
            db[1] += dgh.sum(axis=0)               # 2c. recurrent bias
            dW_h += hm.T @ dgh                     # 2c. recurrent kernel
            dhm = dgh @ W_h.T                      # 2b. into hm
        else:
            dq = dxh @ W_h[:, 2 * H:].T            # 4b. into r * hm
            dW_h[:, 2 * H:] += hn[:, t].T @ dxh    # 4c. recurrent kernel, block h
            dr = dq * hm                           # 4b. into the reset gate
            dhm = dq * r                           # 4b. into hm, through r * hm
            dxr = dr * ract_grad(r)                # 3b. through ract (reset gate)
            dgh = np.concatenate([dxz, dxr], axis=1)   # gradient of hm @ W_h[:, :2H]
            dW_h[:, :2 * H] += hm.T @ dgh          # 2c. recurrent kernel, blocks z, r
            dhm = dhm + dgh @ W_h[:, :2 * H].T     # 2b. into hm
        if recurrent_mask is not None:
            dhm = dhm * recurrent_mask             # 2b. ... through the dropout mask
        dh_next = dh_next + dhm                    # 2b. into h_{t-1}, through hm
        if mask is not None:
            dh_next = dh_next + dh_pad             # 6b. (the padded rows' gradient)
        dgx = np.concatenate([dxz, dxr, dxh], axis=1)  # gradient of x_t @ W_x + b(_i)
        if reset_after:
            db[0] += dgx.sum(axis=0)               # 1b. input bias
        else:
            db += dgx.sum(axis=0)                  # 1b. bias
        dW_x += x[:, t].T @ dgx                    # 1b. kernel
        dx[:, t] = dgx @ W_x.T                     # 1b. input
    return dx, dh_next, dW_x, dW_h, db
