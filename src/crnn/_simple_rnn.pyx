"""SimpleRNN forward time loop and backpropagation through time, over BLAS.

Notation: ``B`` batch, ``T`` time steps, ``D`` input features, ``H`` units. Arrays are
batch-first and C-contiguous: ``x (B, T, D)``, ``hs (B, T, H)``. One time step
``hs[:, t]`` is a ``(B, H)`` matrix whose rows lie ``T*H`` elements apart, which BLAS takes
as a leading dimension, so no time-major copy is ever made.

Forward, for t = 0 .. T-1 (``h_{-1} = h0``, ``m`` the optional recurrent-dropout mask)::

    1. a_t = x_t @ W_x                     (all B*T rows at once, before the loop)
    2. a_t += (h_{t-1} * m) @ W_h          (one GEMM per step)
    3. h_t = act(a_t + b)                  (in place, one pass per step)
    4. h_t = h_{t-1} where step t of the row is padding (the optional mask of real
       steps ``real (B, T)``; same pass)

Backward, for t = T-1 .. 0, ``dh_next`` starting as the gradient of ``h_{T-1}`` from
outside (``dh_last``)::

    3b. da_t = (dhs_t + dh_next) * act'(h_t)    (derivative from the stored output)
    3c. db += sum over the batch of da_t
    2b. dh_next = (da_t @ W_h^T) * m            (one GEMM per step; at t = 0, dh0)
    4b. on padded rows: da_t = 0 (in 3b's pass), and dh_next = dhs_t + dh_next, the
        gradient reaching h_t, kept aside before 2b and put back after it

and after the loop, each one GEMM over all B*T rows::

    1b. dW_x = x^T @ da,    dx = da @ W_x^T
    2c. dW_h = sum_t (h_{t-1} * m)^T @ da_t

Threads: the GEMMs over all B*T rows are split over crnn's pool like any large product
(crnn._blas.gemm); the time loop, where a step's product is small, is cut by rows of the
batch instead, each thread a chunk through every step (``_row_chunks``).

``simple_rnn_forward`` / ``simple_rnn_backward`` have the signatures of their twins in
``crnn.reference``, which define what they compute.
"""
from cython cimport floating
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, memset

from crnn._activations cimport activation_grad_row, bias_activate_row
from crnn._padding cimport hold_padded_row, pass_padded_rows
from crnn._blas cimport (BLAS_Trans, NoTrans, Trans, blas_gemm, gemm, trans_b_faster,
                         transpose)
from crnn._lstm cimport pool_run, pool_threads

import numpy as np

from crnn import _checks
from crnn.activations import CODES, check as _check_activation


# The time loop over the threads, by rows: from ROWS_MIN rows a thread, and while a
# step's product is small (up to FORWARD_ROWS_MAX / BACKWARD_ROWS_MAX multiply-adds;
# above, a step's product is split over the pool like any large product,
# crnn._blas.gemm), each thread takes a chunk of the batch through every step, one BLAS
# call a step on that thread, without waiting for the others between steps (a row's step
# reads only that row's state). Measured on 2 threads (load ~8, so roughly), by rows
# against the product split: (32, 50, 32, 64) forward 1.25-1.44x and backward 1.19-1.26x
# faster; (64, 100, 128, 256) forward 1.08-1.25x faster, backward 0.82-0.89x (slower:
# hence the lower bound for the backward); (128, 100, 512, 1024) the same.
cdef enum:
    ROWS_MIN = 8
    FORWARD_ROWS_MAX = 1 << 24
    BACKWARD_ROWS_MAX = 1 << 20
cdef int _split = -1   # -1: by the rule above; 0: never; 1: always (tests: _force_split)


def _force_split(split):
    """Test hook: cut the time loop by rows over the threads (True), never (False), or
    (None) by the rule of ROWS_MIN and *_ROWS_MAX; returns the previous setting."""
    global _split
    previous, _split = _checks.split_setting(_split), _checks.split_code(split)
    return previous


cdef int _row_chunks(Py_ssize_t B, Py_ssize_t H, double rows_max) noexcept nogil:
    """The row chunks the time loop is cut into (1: not cut)."""
    cdef int nth = pool_threads()
    if nth < 2 or _split == 0:
        return 1
    if _split == 1:
        return <int> min(<Py_ssize_t> nth, B) if B > 0 else 1
    if B < ROWS_MIN * nth or <double> B * H * H > rows_max:
        return 1
    return nth


cdef struct _job:
    # the arguments of _forward_rows / _backward_rows, as untyped pointers, and the dtype
    void *out0
    void *out1
    void *out2
    void *out3
    const void *in0
    const void *in1
    const void *in2
    const void *in3
    const unsigned char *real
    BLAS_Trans t_rec
    Py_ssize_t B, T, H, nq
    int act
    bint dbl, dhs_given


cdef Py_ssize_t _job_items(void *ctx, Py_ssize_t ph) noexcept nogil:
    return (<_job *> ctx).nq


cdef inline void _chunk(const _job *j, Py_ssize_t q, Py_ssize_t *r0,
                        Py_ssize_t *r1) noexcept nogil:
    r0[0] = q * j.B // j.nq
    r1[0] = (q + 1) * j.B // j.nq


cdef void _forward(floating *hs, const floating *x, const floating *h0,
                   const floating *W_x, const floating *W_rec, BLAS_Trans t_rec,
                   const floating *b, const floating *mask, floating *h_masked,
                   const unsigned char *real,
                   Py_ssize_t B, Py_ssize_t T, Py_ssize_t D, Py_ssize_t H,
                   int act) noexcept nogil:
    # W_rec is W_h (t_rec NoTrans) or its stored transpose (t_rec Trans): op(W_rec) = W_h.
    # real (B, T) or NULL: the mask of real steps (NULL: every step is real).
    cdef _job j
    # 1. hs = x @ W_x, all B*T rows in one GEMM (the bias joins in step 3)
    gemm(NoTrans, NoTrans, <int> (B * T), <int> H, <int> D, <floating> 1.0,
         x, <int> D, W_x, <int> H, <floating> 0.0, hs, <int> H)
    j.nq = _row_chunks(B, H, FORWARD_ROWS_MAX)
    if j.nq == 1:
        _forward_rows(hs, h0, W_rec, t_rec, b, mask, h_masked, real, B, T, H, act, True)
        return
    j.out0, j.out1, j.in0, j.in1, j.in2, j.in3 = hs, h_masked, h0, W_rec, b, mask
    j.real, j.t_rec, j.B, j.T, j.H, j.act = real, t_rec, B, T, H, act
    j.dbl = floating is double
    pool_run(_job_items, _forward_item, &j, 1, <int> j.nq)


cdef void _forward_item(void *ctx, Py_ssize_t ph, Py_ssize_t q) noexcept nogil:
    if (<const _job *> ctx).dbl:
        _forward_chunk(<const _job *> ctx, q, <double> 0)
    else:
        _forward_chunk(<const _job *> ctx, q, <float> 0)


cdef void _forward_chunk(const _job *j, Py_ssize_t q, floating dtype) noexcept nogil:
    # _forward_rows for row chunk q of the job (dtype: its type, by the argument's)
    cdef Py_ssize_t r0, r1, TH = j.T * j.H
    cdef const unsigned char *real = NULL
    cdef const floating *mask = NULL
    cdef floating *h_masked = NULL
    _chunk(j, q, &r0, &r1)
    if r0 >= r1:
        return
    if j.real != NULL:
        real = j.real + r0 * j.T
    if j.in3 != NULL:
        mask, h_masked = <const floating *> j.in3 + r0 * j.H, <floating *> j.out1 + r0 * j.H
    _forward_rows(<floating *> j.out0 + r0 * TH, <const floating *> j.in0 + r0 * j.H,
                  <const floating *> j.in1, j.t_rec, <const floating *> j.in2, mask,
                  h_masked, real, r1 - r0, j.T, j.H, j.act, False)


cdef void _forward_rows(floating *hs, const floating *h0, const floating *W_rec,
                        BLAS_Trans t_rec, const floating *b, const floating *mask,
                        floating *h_masked, const unsigned char *real, Py_ssize_t B,
                        Py_ssize_t T, Py_ssize_t H, int act, bint split) noexcept nogil:
    # Steps 2-4 for B rows (a chunk of the batch: every pointer at its first row, row
    # strides those of the whole arrays); split: each step's product through gemm (split
    # over the pool when large), else one BLAS call on this thread.
    cdef Py_ssize_t t, i, j
    cdef Py_ssize_t TH = T * H
    cdef const floating *h_prev
    cdef const floating *h_last
    cdef Py_ssize_t ld_prev, ld_last
    for t in range(T):
        if t == 0:
            h_prev, ld_prev = h0, H
        else:
            h_prev, ld_prev = hs + (t - 1) * H, TH
        h_last, ld_last = h_prev, ld_prev
        if mask != NULL:
            # recurrent dropout: h_masked = h_prev * m
            for i in range(B):
                for j in range(H):
                    h_masked[i * H + j] = h_prev[i * ld_prev + j] * mask[i * H + j]
            h_prev, ld_prev = h_masked, H
        # 2. hs[:, t] += h_prev @ W_h
        if split:
            gemm(NoTrans, t_rec, <int> B, <int> H, <int> H, <floating> 1.0,
                 h_prev, <int> ld_prev, W_rec, <int> H, <floating> 1.0, hs + t * H,
                 <int> TH)
        else:
            blas_gemm(NoTrans, t_rec, <int> B, <int> H, <int> H, <floating> 1.0,
                      h_prev, <int> ld_prev, W_rec, <int> H, <floating> 1.0, hs + t * H,
                      <int> TH)
        # 3. hs[:, t] = act(hs[:, t] + b); 4. or h_{t-1} on a padded row
        for i in range(B):
            if real == NULL or real[i * T + t]:
                bias_activate_row(hs + i * TH + t * H, b, H, act)
            else:
                memcpy(hs + i * TH + t * H, h_last + i * ld_last, H * sizeof(floating))


cdef void _backward(floating *dx, floating *dh_next, floating *dW_x, floating *dW_h,
                    floating *db, floating *da,
                    const floating *x, const floating *h0, const floating *W_x,
                    const floating *W_rec, BLAS_Trans t_rec,
                    const floating *hs, const floating *dhs,
                    bint dhs_given, const floating *mask, const floating *hs_masked,
                    const floating *h0_masked, const unsigned char *real,
                    floating *dh_pad,
                    Py_ssize_t B, Py_ssize_t T, Py_ssize_t D, Py_ssize_t H,
                    int act) noexcept nogil:
    # dh_next holds the gradient reaching h_{T-1} from outside on entry, dh0 on exit.
    # db must come in zeroed; every other output is written whole.
    # hs_masked / h0_masked are hs * m and h0 * m (or hs and h0 when there is no mask).
    # W_rec is W_h (t_rec Trans) or its stored transpose (t_rec NoTrans):
    # op(W_rec) = W_h^T. real (B, T) or NULL: the mask of real steps; dh_pad (B, H)
    # scratch where real is not NULL.
    cdef Py_ssize_t q, k
    cdef Py_ssize_t TH = T * H
    cdef _job jb
    cdef floating *db_chunks
    jb.nq = _row_chunks(B, H, BACKWARD_ROWS_MAX)
    if jb.nq == 1:
        _backward_rows(dh_next, db, da, W_rec, t_rec, hs, dhs, dhs_given, mask, real,
                       dh_pad, B, T, H, act, True)
    else:
        # 3c's db summed per row chunk, then added up (in chunk order)
        db_chunks = <floating *> calloc(jb.nq * H, sizeof(floating))
        if db_chunks == NULL:
            # (no memory for H floats a thread: the loop on this thread alone)
            _backward_rows(dh_next, db, da, W_rec, t_rec, hs, dhs, dhs_given, mask, real,
                           dh_pad, B, T, H, act, True)
        else:
            jb.out0, jb.out1, jb.out2, jb.out3 = dh_next, db_chunks, da, dh_pad
            jb.in0, jb.in1, jb.in2, jb.in3 = W_rec, hs, dhs, mask
            jb.real, jb.t_rec, jb.B, jb.T, jb.H, jb.act = real, t_rec, B, T, H, act
            jb.dbl, jb.dhs_given = floating is double, dhs_given
            pool_run(_job_items, _backward_item, &jb, 1, <int> jb.nq)
            for q in range(jb.nq):
                for k in range(H):
                    db[k] += db_chunks[q * H + k]
            free(db_chunks)
    # 1b. dW_x = x^T @ da and dx = da @ W_x^T, over all B*T rows
    gemm(Trans, NoTrans, <int> D, <int> H, <int> (B * T), <floating> 1.0,
         x, <int> D, da, <int> H, <floating> 0.0, dW_x, <int> H)
    gemm(NoTrans, Trans, <int> (B * T), <int> D, <int> H, <floating> 1.0,
         da, <int> H, W_x, <int> H, <floating> 0.0, dx, <int> D)
    # 2c. dW_h = sum over b, t of h_{t-1}^T da_t, in three GEMMs rather than T:
    #   the t = 0 terms:   h0^T @ da[:, 0]
    gemm(Trans, NoTrans, <int> H, <int> H, <int> B, <floating> 1.0,
         h0_masked, <int> H, da, <int> TH, <floating> 0.0, dW_h, <int> H)
    if T > 1:
        # the t >= 1 terms: in the flat (B*T, H) row order, row r of hs is h_t of sequence
        # b and row r + 1 of da is da_{t+1} of the same b, except where t = T-1: there
        # row r + 1 is da_0 of sequence b + 1. Take every pair in one GEMM ...
        gemm(Trans, NoTrans, <int> H, <int> H, <int> (B * T - 1), <floating> 1.0,
             hs_masked, <int> H, da + H, <int> H, <floating> 1.0, dW_h, <int> H)
        # ... and remove the B - 1 pairs that cross from one sequence to the next:
        # dW_h -= hs[:B-1, T-1]^T @ da[1:, 0]
        gemm(Trans, NoTrans, <int> H, <int> H, <int> (B - 1), <floating> -1.0,
             hs_masked + (T - 1) * H, <int> TH, da + TH, <int> TH, <floating> 1.0,
             dW_h, <int> H)


cdef void _backward_item(void *ctx, Py_ssize_t ph, Py_ssize_t q) noexcept nogil:
    if (<const _job *> ctx).dbl:
        _backward_chunk(<const _job *> ctx, q, <double> 0)
    else:
        _backward_chunk(<const _job *> ctx, q, <float> 0)


cdef void _backward_chunk(const _job *j, Py_ssize_t q, floating dtype) noexcept nogil:
    # _backward_rows for row chunk q of the job (its db: the chunk's own row of out1;
    # dtype: its type, by the argument's)
    cdef Py_ssize_t r0, r1, TH = j.T * j.H
    cdef Py_ssize_t ld_dhs = j.H if j.dhs_given else 0
    cdef const unsigned char *real = NULL
    cdef const floating *mask = NULL
    cdef floating *dh_pad = NULL
    _chunk(j, q, &r0, &r1)
    if r0 >= r1:
        return
    if j.real != NULL:
        real, dh_pad = j.real + r0 * j.T, <floating *> j.out3 + r0 * j.H
    if j.in3 != NULL:
        mask = <const floating *> j.in3 + r0 * j.H
    _backward_rows(<floating *> j.out0 + r0 * j.H, <floating *> j.out1 + q * j.H,
                   <floating *> j.out2 + r0 * TH, <const floating *> j.in0, j.t_rec,
                   <const floating *> j.in1 + r0 * TH,
                   <const floating *> j.in2 + r0 * j.T * ld_dhs, j.dhs_given, mask, real,
                   dh_pad, r1 - r0, j.T, j.H, j.act, False)


cdef void _backward_rows(floating *dh_next, floating *db, floating *da,
                         const floating *W_rec, BLAS_Trans t_rec, const floating *hs,
                         const floating *dhs, bint dhs_given, const floating *mask,
                         const unsigned char *real, floating *dh_pad, Py_ssize_t B,
                         Py_ssize_t T, Py_ssize_t H, int act, bint split) noexcept nogil:
    # Steps 3b-2b for t = T-1 .. 0 for B rows (a chunk of the batch: every pointer at its
    # first row, row strides those of the whole arrays; db this chunk's own sums); split:
    # each step's product through gemm (split over the pool when large), else one BLAS
    # call on this thread.
    cdef Py_ssize_t t, i, padded
    cdef Py_ssize_t TH = T * H
    # With no gradient on the sequence output, dhs points at one row of zeros that every
    # (b, t) reads: a stride of 0 instead of a second copy of the loop.
    cdef Py_ssize_t ld_dhs = H if dhs_given else 0
    for t in range(T - 1, -1, -1):
        padded = 0
        for i in range(B):
            if real == NULL or real[i * T + t]:
                # 3b. da_t = (dhs_t + dh_next) * act'(h_t);  3c. db += da_t
                activation_grad_row(da + i * TH + t * H, db, dh_next + i * H,
                                    dhs + (i * T + t) * ld_dhs, hs + i * TH + t * H, H,
                                    act)
            else:
                # 4b. a padded row: nothing into the step; dh_pad = dhs_t + dh_next
                padded += 1
                hold_padded_row(da + i * TH + t * H, H, dh_pad + i * H, dh_next + i * H,
                                dhs + (i * T + t) * ld_dhs, H)
        # 2b. dh_next = da_t @ W_h^T
        if split:
            gemm(NoTrans, t_rec, <int> B, <int> H, <int> H, <floating> 1.0,
                 da + t * H, <int> TH, W_rec, <int> H, <floating> 0.0, dh_next, <int> H)
        else:
            blas_gemm(NoTrans, t_rec, <int> B, <int> H, <int> H, <floating> 1.0,
                      da + t * H, <int> TH, W_rec, <int> H, <floating> 0.0, dh_next,
                      <int> H)
        if mask != NULL:
            # ... * m: recurrent dropout passed only the kept units of h_{t-1}
            for i in range(B * H):
                dh_next[i] *= mask[i]
        if padded:
            # 4b. a padded row passes its gradient straight to h_{t-1}
            pass_padded_rows(dh_next, dh_pad, real, B, T, t, H)


def simple_rnn_forward(x, h0, W_x, W_h, b, activation="tanh", recurrent_mask=None,
                       mask=None):
    """Run a SimpleRNN over a batch of sequences.

    .. math:: h_t = \\mathrm{act}(x_t W_x + (h_{t-1} \\odot m) W_h + b), \\quad h_{-1} = h_0

    Parameters
    ----------
    x : ndarray (B, T, D), float32 or float64, C-contiguous
    h0 : ndarray (B, H), the initial state
    W_x : ndarray (D, H), the kernel
    W_h : ndarray (H, H), the recurrent kernel
    b : ndarray (H,), the bias
    activation : {"tanh", "relu", "sigmoid", "linear"}
    recurrent_mask : ndarray (B, H) or None
        Recurrent-dropout mask ``m`` (already scaled by ``1 / (1 - rate)``), the same at
        every step.
    mask : ndarray (B, T), bool or uint8, C-contiguous, or None
        The real steps (nonzero) and the padding (zero): at a padded step the state
        passes through unchanged, ``h_t = h_{t-1}``.

    Returns
    -------
    hs : ndarray (B, T, H), every state ``h_0 .. h_{T-1}``; what backward needs.
    """
    act = CODES[_check_activation(activation)]
    B, T, D, H = _checks.simple_rnn_forward(x, h0, W_x, W_h, b, recurrent_mask)
    real = _checks.real_steps(mask, B, T)
    hs = np.empty((B, T, H), dtype=x.dtype)
    if B == 0 or T == 0:
        return hs
    h_masked = None if recurrent_mask is None else np.empty((B, H), dtype=x.dtype)
    # Step 2 multiplies by W_h, or by a transposed copy where BLAS is faster so.
    W_hT = np.empty((H, H), dtype=x.dtype) if trans_b_faster(B, H, H) else None
    if x.dtype == np.float32:
        _forward_views[float](hs, x, h0, W_x, W_h, W_hT, b, recurrent_mask, h_masked,
                              real, act)
    else:
        _forward_views[double](hs, x, h0, W_x, W_h, W_hT, b, recurrent_mask, h_masked,
                               real, act)
    return hs


cdef void _forward_views(floating[:, :, ::1] hs, const floating[:, :, ::1] x,
                         const floating[:, ::1] h0, const floating[:, ::1] W_x,
                         const floating[:, ::1] W_h, floating[:, ::1] W_hT,
                         const floating[::1] b,
                         const floating[:, ::1] mask, floating[:, ::1] h_masked,
                         const unsigned char[:, ::1] real, int act):
    cdef Py_ssize_t B = x.shape[0], T = x.shape[1], D = x.shape[2], H = W_h.shape[0]
    cdef const floating *mask_p = NULL
    cdef floating *h_masked_p = NULL
    cdef const unsigned char *real_p = NULL
    if real is not None:
        real_p = &real[0, 0]
    cdef const floating *W_rec = &W_h[0, 0]
    cdef BLAS_Trans t_rec = NoTrans
    if mask is not None:
        mask_p, h_masked_p = &mask[0, 0], &h_masked[0, 0]
    with nogil:
        if W_hT is not None:
            transpose(<int> H, <int> H, &W_h[0, 0], <int> H, &W_hT[0, 0], <int> H)
            W_rec, t_rec = &W_hT[0, 0], Trans
        _forward(&hs[0, 0, 0], &x[0, 0, 0], &h0[0, 0], &W_x[0, 0], W_rec, t_rec, &b[0],
                 mask_p, h_masked_p, real_p, B, T, D, H, act)


def simple_rnn_backward(x, h0, W_x, W_h, hs, dhs, dh_last, activation="tanh",
                        recurrent_mask=None, mask=None):
    """Backpropagate through :func:`simple_rnn_forward` (BPTT).

    Parameters
    ----------
    x, h0, W_x, W_h, activation, recurrent_mask, mask
        As given to the forward pass.
    hs : ndarray (B, T, H)
        The states the forward pass returned.
    dhs : ndarray (B, T, H) or None
        Gradient of the loss with respect to every state ``h_t`` (None: zero).
    dh_last : ndarray (B, H) or None
        Gradient with respect to the final state ``h_{T-1}`` coming from outside the
        sequence output, e.g. through ``return_state`` (None: zero).

    Returns
    -------
    dx : ndarray (B, T, D)
    dh0 : ndarray (B, H)
    dW_x : ndarray (D, H)
    dW_h : ndarray (H, H)
    db : ndarray (H,)
    """
    act = CODES[_check_activation(activation)]
    B, T, D, H = _checks.simple_rnn_backward(x, h0, W_x, W_h, hs, dhs, dh_last,
                                             recurrent_mask)
    real = _checks.real_steps(mask, B, T)
    dtype = x.dtype
    dx = np.empty((B, T, D), dtype=dtype)
    dh0 = np.zeros((B, H), dtype=dtype) if dh_last is None else dh_last.copy()
    dW_x = np.zeros((D, H), dtype=dtype)
    dW_h = np.zeros((H, H), dtype=dtype)
    db = np.zeros(H, dtype=dtype)
    if B == 0 or T == 0:
        dx.fill(0)
        return dx, dh0, dW_x, dW_h, db
    da = np.empty((B, T, H), dtype=dtype)
    dh_pad = None if real is None else np.empty((B, H), dtype=dtype)
    dhs_given = dhs is not None
    if not dhs_given:
        dhs = np.zeros((1, 1, H), dtype=dtype)  # read with row stride 0, see _backward
    if recurrent_mask is None:
        hs_masked, h0_masked = hs, h0
    else:
        hs_masked = hs * recurrent_mask[:, None, :]
        h0_masked = h0 * recurrent_mask
    # Step 2b multiplies by W_h^T, as W_h with Trans or, where BLAS is faster so, as a
    # transposed copy without.
    W_hT = None if trans_b_faster(B, H, H) else np.empty((H, H), dtype=dtype)
    if dtype == np.float32:
        _backward_views[float](dx, dh0, dW_x, dW_h, db, da, x, h0, W_x, W_h, W_hT, hs,
                               dhs, recurrent_mask, hs_masked, h0_masked, real, dh_pad,
                               dhs_given, act)
    else:
        _backward_views[double](dx, dh0, dW_x, dW_h, db, da, x, h0, W_x, W_h, W_hT, hs,
                                dhs, recurrent_mask, hs_masked, h0_masked, real, dh_pad,
                                dhs_given, act)
    return dx, dh0, dW_x, dW_h, db


cdef void _backward_views(floating[:, :, ::1] dx, floating[:, ::1] dh_next,
                          floating[:, ::1] dW_x, floating[:, ::1] dW_h, floating[::1] db,
                          floating[:, :, ::1] da, const floating[:, :, ::1] x,
                          const floating[:, ::1] h0, const floating[:, ::1] W_x,
                          const floating[:, ::1] W_h, floating[:, ::1] W_hT,
                          const floating[:, :, ::1] hs,
                          const floating[:, :, ::1] dhs, const floating[:, ::1] mask,
                          const floating[:, :, ::1] hs_masked,
                          const floating[:, ::1] h0_masked,
                          const unsigned char[:, ::1] real, floating[:, ::1] dh_pad,
                          bint dhs_given, int act):
    cdef Py_ssize_t B = x.shape[0], T = x.shape[1], D = x.shape[2], H = W_h.shape[0]
    cdef const floating *dhs_p = &dhs[0, 0, 0]
    cdef const floating *mask_p = NULL
    cdef const unsigned char *real_p = NULL
    cdef floating *dh_pad_p = NULL
    if real is not None:
        real_p, dh_pad_p = &real[0, 0], &dh_pad[0, 0]
    cdef const floating *W_rec = &W_h[0, 0]
    cdef BLAS_Trans t_rec = Trans
    if mask is not None:
        mask_p = &mask[0, 0]
    with nogil:
        if W_hT is not None:
            transpose(<int> H, <int> H, &W_h[0, 0], <int> H, &W_hT[0, 0], <int> H)
            W_rec, t_rec = &W_hT[0, 0], NoTrans
        _backward(&dx[0, 0, 0], &dh_next[0, 0], &dW_x[0, 0], &dW_h[0, 0], &db[0],
                  &da[0, 0, 0], &x[0, 0, 0], &h0[0, 0], &W_x[0, 0], W_rec, t_rec,
                  &hs[0, 0, 0], dhs_p, dhs_given, mask_p, &hs_masked[0, 0, 0],
                  &h0_masked[0, 0], real_p, dh_pad_p,
                  B, T, D, H, act)

