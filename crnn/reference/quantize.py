"""Reduced-precision weights for inference steps: the specification of how a stepper
with ``precision="bfloat16"`` or ``"int8"`` stores its weights and what its step computes.

Only the two weight matrices are reduced (``W_x (D, G)``, ``W_h (H, G)``, Keras layout);
the bias, the inputs, the states and all arithmetic stay float32.

- **bfloat16**: each float32 weight rounded to the nearest bfloat16 (the upper 16 bits of
  its float32 pattern), ties to even; stored as ``uint16``. A NaN stays a (quiet) NaN;
  a float32 above bfloat16's largest finite value rounds to inf, as any rounding does.
  Converting back is exact (the 16 bits shifted up), so the step is the float32 step
  on the rounded weights.
- **int8**: per output column ``j`` of each matrix, symmetric: ``s_j = max_k |W[k, j]| /
  127`` (float32), ``q[k, j] = rint(W[k, j] / s_j)`` in ``[-127, 127]`` (ties to even,
  the division in float32); a column of zeros has ``s_j = 0`` and ``q = 0``. The step
  computes each product as ``(x @ q) * s``: the integer weights times the float32
  input, summed in float32, scaled once per column.

:func:`step_weights` gives the float32 matrices a reduced step multiplies by (the
rounded, or ``q * s``); a step of a reduced-precision stepper is the float32 step of
``crnn.reference.<family>_forward`` with those matrices, to float32 rounding (the
compiled int8 step scales after summing, which differs from summing ``x @ (q * s)`` in
the last bits only).

Notation: ``K`` rows (``D`` or ``H``), ``G`` columns (the gates' width).
"""
import numpy as np

__all__ = ["PRECISIONS", "bf16_round", "bf16_to_float32", "check_precision",
           "dequantize_int8", "quantize_int8", "reduce_weights", "step_weights"]

PRECISIONS = ("float32", "bfloat16", "int8")


def check_precision(precision):
    """``precision`` if it is one of :data:`PRECISIONS`, else ValueError."""
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(f"expected precision to be one of {list(PRECISIONS)}, got "
                         f"{precision!r}")
    return precision


def bf16_round(W):
    """float32 ``W`` rounded to bfloat16, ties to even: ``uint16`` of the same shape.

    .. math:: u = \\mathrm{bits}(W),\\quad
              b = (u + \\mathtt{0x7FFF} + ((u \\gg 16) \\,\\&\\, 1)) \\gg 16

    and a NaN keeps its sign and top fraction bits with the quiet bit set."""
    u = np.ascontiguousarray(W, dtype=np.float32).view(np.uint32)
    # round: add just under half an ulp of bfloat16, plus one if the kept part is odd
    rounded = (u + np.uint32(0x7FFF) + ((u >> 16) & np.uint32(1))) >> 16
    nan = np.isnan(u.view(np.float32))
    quiet = (u >> 16) | np.uint32(0x0040)
    return np.where(nan, quiet, rounded).astype(np.uint16)


def bf16_to_float32(Wb):
    """bfloat16 ``Wb`` (``uint16``) as float32, exactly: the bits shifted up by 16."""
    return (np.asarray(Wb, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def quantize_int8(W):
    """``(q, s)``: ``W (K, G)`` quantized per column, symmetric: ``q (K, G)`` int8 in
    ``[-127, 127]`` and ``s (G,)`` float32 with ``W ~ q * s``.

    .. math:: s_j = \\max_k |W_{kj}| / 127,\\qquad q_{kj} = \\mathrm{rint}(W_{kj} / s_j)
    """
    W = np.asarray(W, dtype=np.float32)
    if W.ndim != 2:
        raise ValueError(f"expected W of shape (K, G), got shape {W.shape}")
    if not np.isfinite(W).all():
        raise ValueError("expected finite weights to quantize to int8, got NaN or inf")
    amax = np.abs(W).max(axis=0) if W.shape[0] else np.zeros(W.shape[1], np.float32)
    s = (amax / np.float32(127)).astype(np.float32)
    safe = np.where(s > 0, s, np.float32(1))
    q = np.clip(np.rint(W / safe), -127, 127).astype(np.int8)
    return q, s


def dequantize_int8(q, s):
    """``q * s`` in float32: the weights an int8 step multiplies by."""
    return np.asarray(q, dtype=np.float32) * np.asarray(s, dtype=np.float32)


def reduce_weights(W, precision):
    """The stored form of ``W`` at ``precision``: ``W`` as float32, ``bf16_round(W)``,
    or ``quantize_int8(W)``'s ``(q, s)``."""
    check_precision(precision)
    if precision == "float32":
        return np.asarray(W, dtype=np.float32)
    if precision == "bfloat16":
        return bf16_round(W)
    return quantize_int8(W)


def step_weights(W, precision):
    """The float32 matrix a step at ``precision`` multiplies by in place of ``W``."""
    stored = reduce_weights(W, precision)
    if precision == "float32":
        return stored
    if precision == "bfloat16":
        return bf16_to_float32(stored)
    return dequantize_int8(*stored)
