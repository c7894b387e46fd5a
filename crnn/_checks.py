"""Argument checks shared by the Cython kernels and their NumPy reference twins.

The fast kernels hand raw pointers to BLAS inside ``nogil`` code, so everything that could
make them read or write out of bounds is checked here first: types, dtypes, contiguity,
every shape, and sizes that must fit BLAS's 32-bit integers. The reference runs the same
checks so that both backends accept and refuse exactly the same calls.
"""
import numpy as np

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_INT_MAX = 2**31 - 1


def array(name, a, shape, dtype=None, optional=False):
    """Check that ``a`` is a C-contiguous float32/float64 ndarray of ``shape``.

    ``shape`` holds ints or ``None`` (any size). Returns ``a`` (or None when optional and
    absent).
    """
    if a is None:
        if optional:
            return None
        raise ValueError(f"expected {name} to be an array of shape {_fmt(shape)}, got None")
    if not isinstance(a, np.ndarray):
        raise ValueError(f"expected {name} to be a numpy.ndarray, got {type(a).__name__}")
    if a.dtype not in _FLOATS:
        raise ValueError(f"expected {name} to have dtype float32 or float64, got {a.dtype}")
    if dtype is not None and a.dtype != dtype:
        raise ValueError(f"expected {name} to have dtype {dtype} (the dtype of x), "
                         f"got {a.dtype}")
    if a.ndim != len(shape) or any(s is not None and s != n for s, n in zip(shape, a.shape)):
        raise ValueError(f"expected {name} of shape {_fmt(shape)}, got {a.shape}")
    if not a.flags.c_contiguous:
        raise ValueError(f"expected {name} to be C-contiguous, got a strided array "
                         f"(use numpy.ascontiguousarray)")
    return a


def _fmt(shape):
    return "(" + ", ".join("?" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def step_mask(mask, B, T):
    """Check a mask of real steps, ``(B, T)`` bool or uint8, C-contiguous (nonzero: the
    step is real; zero: padding, where the state passes through unchanged). Returns it as
    uint8 (a view of a bool array, no copy), or None when ``mask`` is None."""
    if mask is None:
        return None
    if not isinstance(mask, np.ndarray):
        raise ValueError(f"expected mask to be a numpy.ndarray, got {type(mask).__name__}")
    if mask.dtype not in (np.dtype(np.bool_), np.dtype(np.uint8)):
        raise ValueError(f"expected mask to have dtype bool or uint8, got {mask.dtype}")
    if mask.shape != (B, T):
        raise ValueError(f"expected mask of shape (B, T) = {(B, T)}, got {mask.shape}")
    if not mask.flags.c_contiguous:
        raise ValueError("expected mask to be C-contiguous, got a strided array "
                         "(use numpy.ascontiguousarray)")
    return mask.view(np.uint8)


def real_steps(mask, B, T):
    """:func:`step_mask` for the compiled kernels: the mask as uint8 ``(B, T)``, or None
    where there is none or where every step is real (then a kernel runs exactly as it
    does without a mask, on its fastest path)."""
    real = step_mask(mask, B, T)
    if real is None or real.all():
        return None
    return real


def blas_sizes(**sizes):
    """Refuse sizes whose products overflow the 32-bit ints that BLAS takes."""
    B, T, D, H = sizes["B"], sizes["T"], sizes["D"], sizes["H"]
    if D < 1 or H < 1:
        raise ValueError(f"expected at least one input feature and one unit, got D={D}, H={H}")
    for what, n in (("B*T", B * T), ("T*H", T * H), ("T*D", T * D),
                    ("B*T*H", B * T * H), ("B*T*D", B * T * D)):
        if n > _INT_MAX:
            raise ValueError(f"expected {what} <= {_INT_MAX} (32-bit BLAS), got {n}")


def simple_rnn(x, h0, W_x, W_h, recurrent_mask=None):
    """Check the arguments common to both SimpleRNN kernels; return ``(B, T, D, H)``."""
    array("x", x, (None, None, None))
    B, T, D = x.shape
    array("W_h", W_h, (None, None), x.dtype)
    H = W_h.shape[0]
    if W_h.shape != (H, H):
        raise ValueError(f"expected W_h (recurrent kernel) of shape (H, H), got {W_h.shape}")
    array("W_x", W_x, (D, H), x.dtype)
    array("h0", h0, (B, H), x.dtype)
    array("recurrent_mask", recurrent_mask, (B, H), x.dtype, optional=True)
    blas_sizes(B=B, T=T, D=D, H=H)
    return B, T, D, H


def simple_rnn_forward(x, h0, W_x, W_h, b, recurrent_mask=None):
    """Check the arguments of ``simple_rnn_forward``; return ``(B, T, D, H)``."""
    B, T, D, H = simple_rnn(x, h0, W_x, W_h, recurrent_mask)
    array("b", b, (H,), x.dtype)
    return B, T, D, H


def simple_rnn_backward(x, h0, W_x, W_h, hs, dhs, dh_last, recurrent_mask=None):
    """Check the arguments of ``simple_rnn_backward``; return ``(B, T, D, H)``."""
    B, T, D, H = simple_rnn(x, h0, W_x, W_h, recurrent_mask)
    array("hs", hs, (B, T, H), x.dtype)
    array("dhs", dhs, (B, T, H), x.dtype, optional=True)
    array("dh_last", dh_last, (B, H), x.dtype, optional=True)
    return B, T, D, H


def gated_rnn(x, h0, W_x, W_h, G, recurrent_mask=None):
    """Check the arguments common to the gated kernels (LSTM ``G = 4``, GRU ``G = 3``):
    ``x (B, T, D)``, ``h0 (B, H)``, ``W_x (D, G*H)``, ``W_h (H, G*H)``, the mask ``(B, H)``.
    Returns ``(B, T, D, H)``."""
    array("x", x, (None, None, None))
    B, T, D = x.shape
    array("W_h", W_h, (None, None), x.dtype)
    H = W_h.shape[0]
    if W_h.shape != (H, G * H):
        raise ValueError(f"expected W_h (recurrent kernel) of shape (H, {G}*H), got "
                         f"{W_h.shape}")
    array("W_x", W_x, (D, G * H), x.dtype)
    array("h0", h0, (B, H), x.dtype)
    array("recurrent_mask", recurrent_mask, (B, H), x.dtype, optional=True)
    blas_sizes(B=B, T=T, D=D, H=G * H)
    return B, T, D, H


# -- LSTM
def lstm_forward(x, h0, c0, W_x, W_h, b, recurrent_mask=None):
    """Check the arguments of ``lstm_forward``; return ``(B, T, D, H)``."""
    B, T, D, H = gated_rnn(x, h0, W_x, W_h, 4, recurrent_mask)
    array("c0", c0, (B, H), x.dtype)
    array("b", b, (4 * H,), x.dtype)
    return B, T, D, H


def lstm_backward(x, h0, c0, W_x, W_h, hs, cs, gates, dhs, dh_last, dc_last,
                  recurrent_mask=None):
    """Check the arguments of ``lstm_backward``; return ``(B, T, D, H)``."""
    B, T, D, H = gated_rnn(x, h0, W_x, W_h, 4, recurrent_mask)
    array("c0", c0, (B, H), x.dtype)
    array("hs", hs, (B, T, H), x.dtype)
    array("cs", cs, (B, T, H), x.dtype)
    array("gates", gates, (B, T, 4 * H), x.dtype)
    array("dhs", dhs, (B, T, H), x.dtype, optional=True)
    array("dh_last", dh_last, (B, H), x.dtype, optional=True)
    array("dc_last", dc_last, (B, H), x.dtype, optional=True)
    return B, T, D, H


# -- GRU
def gru_bias_shape(H, reset_after):
    """The shape of a GRU's bias: ``(2, 3H)`` with ``reset_after`` (input and recurrent
    rows), else ``(3H,)``."""
    return (2, 3 * H) if reset_after else (3 * H,)


def gru_reset_after(reset_after):
    """Refuse a ``reset_after`` that is not a boolean (a string "False" would be true)."""
    if not isinstance(reset_after, (bool, np.bool_)):
        raise ValueError(f"expected reset_after to be True or False, got {reset_after!r}")


def gru_forward(x, h0, W_x, W_h, b, reset_after=True, recurrent_mask=None):
    """Check the arguments of ``gru_forward``; return ``(B, T, D, H)``."""
    gru_reset_after(reset_after)
    B, T, D, H = gated_rnn(x, h0, W_x, W_h, 3, recurrent_mask)
    shape = gru_bias_shape(H, reset_after)
    if isinstance(b, np.ndarray) and b.shape != shape:
        raise ValueError(f"expected b of shape {_fmt(shape)} "
                         f"(reset_after={bool(reset_after)}), got {b.shape}")
    array("b", b, shape, x.dtype)
    return B, T, D, H


def gru_backward(x, h0, W_x, W_h, hs, gates, hn, dhs, dh_last, reset_after=True,
                 recurrent_mask=None):
    """Check the arguments of ``gru_backward``; return ``(B, T, D, H)``."""
    gru_reset_after(reset_after)
    B, T, D, H = gated_rnn(x, h0, W_x, W_h, 3, recurrent_mask)
    array("hs", hs, (B, T, H), x.dtype)
    array("gates", gates, (B, T, 3 * H), x.dtype)
    array("hn", hn, (B, T, H), x.dtype)
    array("dhs", dhs, (B, T, H), x.dtype, optional=True)
    array("dh_last", dh_last, (B, H), x.dtype, optional=True)
    return B, T, D, H


# -- the steppers (crnn._step.Stepper, crnn.streaming.ReferenceStepper)
def state_list(names, states):
    """``states`` as a list of one state per name in ``names``: a list or tuple of that
    length, or one array alone for a one-state cell (``names == ("h",)``)."""
    if not isinstance(states, (list, tuple)):
        if len(names) != 1:
            raise ValueError(f"expected states to be a list of {len(names)} arrays "
                             f"{list(names)}, got {type(states).__name__}")
        states = [states]
    if len(states) != len(names):
        raise ValueError(f"expected states to be a list of {len(names)} arrays "
                         f"{list(names)}, got {len(states)}")
    return list(states)


def converted(name, a, dtype, shape, layout=None, contiguous=True):
    """``a`` converted as a layer's call converts it (``numpy.ascontiguousarray(a,
    dtype)``, or ``numpy.asarray`` where not ``contiguous``), refused with ``ValueError``
    where that fails or the result is not of ``shape``.

    ``layout`` names the axes in the messages: ``"(batch, features)"`` gives "expected
    x_t of shape (batch, features) = (2, 3), got shape (2, 4)"; without, "expected
    state h of shape (2, 3), got (2, 4)".
    """
    want = f"{layout} = {shape}" if layout else f"{shape}"
    kind = np.dtype(a.dtype).kind if hasattr(a, "dtype") else np.asarray(a).dtype.kind
    if kind == "c":      # the cast would drop the imaginary part with a warning
        raise ValueError(f"expected {name} of real numbers, got complex values (dtype "
                         f"{a.dtype if hasattr(a, 'dtype') else 'complex'})")
    try:
        arr = (np.ascontiguousarray if contiguous else np.asarray)(a, dtype=dtype)
    except (TypeError, ValueError) as e:
        raise ValueError(f"expected {name} convertible to a {dtype} array of shape "
                         f"{want}, got {type(a).__name__}: {e}") from None
    if arr.shape != shape:
        got = f"shape {arr.shape}" if layout else f"{arr.shape}"
        raise ValueError(f"expected {name} of shape {want}, got {got}")
    return arr


# The kernels' test hooks that force a time loop's split (_force_split): the setting
# (None: by the kernel's own rule; True / False, or "rows" / "units" for the LSTM) and
# the int a kernel keeps (-1 by rule, 0 or 1).
def split_code(split, names=(False, True)):
    """The kernel's int for ``split`` (None, or one of ``names``)."""
    codes = {None: -1, names[0]: 0, names[1]: 1}
    if split not in codes:
        raise ValueError(f"expected None, {names[0]!r} or {names[1]!r}, got {split!r}")
    return codes[split]


def split_setting(code, names=(False, True)):
    """:func:`split_code` undone."""
    return None if code < 0 else names[code]
