"""Embedding's backward pass: the output gradient scatter-added into the table's rows.

Notation: ``N`` looked-up positions (every id of the batch, flattened), ``V`` rows of the
table (``input_dim``), ``E`` its width (``output_dim``). Forward, ``y[i] = W[ids[i]]``;
backward::

    1b. dW = 0;  dW[ids[i]] += dy[i]   for i = 0 .. N-1 in order (repeated ids add up)

The rows are added in the order of ``ids``, as ``np.add.at`` adds them, so the result
equals the reference's bit for bit. ``embedding_backward`` has the signature of its twin
in ``crnn.reference.embedding``, which defines what it computes.
"""
from cython cimport floating
from libc.stdint cimport int64_t

import numpy as np


cdef void _scatter_add(floating *dW, const int64_t *ids, const floating *dy,
                       Py_ssize_t N, Py_ssize_t E) noexcept nogil:
    # 1b. dW[ids[i]] += dy[i], every id already checked to lie in [0, V)
    cdef Py_ssize_t i, j
    cdef floating *row
    cdef const floating *src
    for i in range(N):
        row = dW + ids[i] * E
        src = dy + i * E
        for j in range(E):
            row[j] += src[j]


def embedding_backward(ids, dy, input_dim):
    """``dW (V, E)``: zeros, then ``dW[ids[i]] += dy[i]`` for every position ``i``.

    Parameters
    ----------
    ids : ndarray of int, any shape ``S``
        The ids looked up, each in ``[0, input_dim)``.
    dy : ndarray, float32 or float64, shape ``S + (E,)``
        The gradient of the looked-up rows.
    input_dim : int
        ``V``, the rows of the table.
    """
    ids = np.asarray(ids)
    dy = np.asarray(dy)
    if ids.dtype.kind not in "iu":
        raise ValueError(f"expected integer ids, got dtype {ids.dtype}")
    if dy.dtype not in (np.float32, np.float64):
        raise ValueError(f"expected dy float32 or float64, got dtype {dy.dtype}")
    # (no negative indices here: the modules are built with wraparound=False, which
    # applies to Python sequences too)
    if dy.ndim != ids.ndim + 1 or dy.shape[:ids.ndim] != ids.shape:
        raise ValueError(f"expected dy of shape ids.shape + (E,) = {ids.shape} + (E,), "
                         f"got {dy.shape}")
    V = int(input_dim)
    if V < 1:
        raise ValueError(f"expected input_dim >= 1, got {input_dim}")
    flat = np.ascontiguousarray(ids.reshape(-1), dtype=np.int64)
    if flat.size and (flat.min() < 0 or flat.max() >= V):
        raise ValueError(f"expected ids in [0, {V}), got ids from {flat.min()} to "
                         f"{flat.max()}")
    E = dy.shape[ids.ndim]
    rows = np.ascontiguousarray(dy.reshape(-1, E))
    dW = np.zeros((V, E), dtype=dy.dtype)
    if flat.size == 0 or E == 0:
        return dW
    if dy.dtype == np.float32:
        _run[float](dW, flat, rows)
    else:
        _run[double](dW, flat, rows)
    return dW


cdef void _run(floating[:, ::1] dW, const int64_t[::1] ids,
               const floating[:, ::1] dy):
    with nogil:
        _scatter_add(&dW[0, 0], &ids[0], &dy[0, 0], ids.shape[0], dy.shape[1])
