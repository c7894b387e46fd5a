"""GRU forward time loop and backpropagation through time, over BLAS.

Notation: ``B`` batch, ``T`` time steps, ``D`` input features, ``H`` units, ``G = 3H`` the
width of the three gate blocks z, r, h (the candidate, ``n`` below) side by side, in
Keras's order and layout: ``W_x (D, G)``, ``W_h (H, G)``; ``U_z, U_r, U_h`` the three
``(H, H)`` blocks of ``W_h``. Arrays are batch-first and C-contiguous: ``x (B, T, D)``,
``hs, hn (B, T, H)``, ``gates (B, T, G)``. One time step ``gates[:, t]`` is a ``(B, G)``
matrix whose rows lie ``T*G`` elements apart, which BLAS takes as a leading dimension, so
no time-major copy is ever made. ``act`` is the activation (default tanh), ``ract`` the
recurrent activation (default sigmoid), ``m`` the optional recurrent-dropout mask.

Forward, for t = 0 .. T-1 (``h_{-1} = h0``), the gates buffer holding ``x_t @ W_x`` and
then the activated gates ``z, r, n``. With ``reset_after=True``, ``b (2, G)`` = ``[b_i,
b_r]``::

    0. hm = h_{t-1} * m                          (fused into step 5 of step t-1)
    1. [xz, xr, xh] = x_t @ W_x                  (all B*T rows at once, before the loop)
    2. [hz, hr, hh] = hm @ W_h + b_r             (one GEMM per step, into rec (B, G))
    3. z = ract(xz + b_i,z + hz),  r = ract(xr + b_i,r + hr)
    4. n = act(xh + b_i,h + r * hh)              (hh kept in hn for 4b)
    5. h_t = z * h_{t-1} + (1 - z) * n           (3-5: one fused pass per step)

With ``reset_after=False``, ``b (G,)``::

    0. hm = h_{t-1} * m                          (fused into step 5 of step t-1)
    1. [xz, xr, xh] = x_t @ W_x                  (before the loop)
    2. [hz, hr] = hm @ [U_z, U_r]                (one GEMM per step)
    3. z = ract(xz + b_z + hz),  r = ract(xr + b_r + hr),  q = r * hm   (one pass;
                                                  q kept in hn for 4b and 4c)
    4. n = act(xh + b_h + q @ U_h)               (one GEMM per step, then one pass
    5. h_t = z * h_{t-1} + (1 - z) * n            for 4-5)

Either way, on a padded row (the optional mask of real steps ``real (B, T)`` zero at t)::

    6. h_t = h_{t-1}; the row's gates and hn zero (instead of 3-5; hm keeps h_{t-1} * m)

Backward, for t = T-1 .. 0, ``dh_next`` starting as the gradient of ``h_{T-1}`` from
outside (``dh_last``); every derivative is taken from an output. ``reset_after=True``::

    5b. dh = dhs_t + dh_next;  dz = dh * (h_{t-1} - n);  dn = dh * (1 - z);
        dh_next = dh * z
    4b. dxh = dn * act'(n);  dhh = dxh * r;  dr = dxh * hh
    3b. dxz = dz * ract'(z);  dxr = dr * ract'(r)
    2c. db_r += [dxz, dxr, dhh];  1b. db_i += [dxz, dxr, dxh]   (5b-1b: one pass)
    2b. dh_next += ([dxz, dxr, dhh] @ W_h^T) * m          (one GEMM per step)

and ``reset_after=False``::

    5b. as above;  4b. dxh = dn * act'(n);  3b. dxz = dz * ract'(z)       (one pass)
    4b. dq = dxh @ U_h^T                                  (one GEMM per step)
    4b. dr = dq * hm;  dhm = dq * r;  3b. dxr = dr * ract'(r)             (one pass)
    2b. dhm += [dxz, dxr] @ [U_z, U_r]^T;  dh_next += dhm * m   (one GEMM per step)
    1b. db += [dxz, dxr, dxh]                             (in the two passes)

and either way, on a padded row::

    6b. dh_next += dhs_t (all the gradient reaching h_t goes to h_{t-1}); the row's dg
        (and dxh) zero, so 2b adds nothing to it (instead of 5b-3b)

and after the loop, each over all B*T rows (``dg`` the buffer of ``[dxz, dxr, dhh]`` or
``[dxz, dxr, dxh]``)::

    1b. dW_x = x^T @ [dxz, dxr, dxh],   dx = [dxz, dxr, dxh] @ W_x^T
    2c. dW_h (reset_after=False: its z and r blocks) = sum_t hm_{t-1}^T @ dg_t
        (three GEMMs; see _shifted_grad)
    4c. (reset_after=False) dW_h's h block = q^T @ dxh    (one GEMM)

``gru_forward`` / ``gru_backward`` have the signatures of their twins in
``crnn.reference.gru``, which define what they compute.
"""
from cython cimport floating
from libc.string cimport memcpy, memset

from crnn._blas cimport (BLAS_Trans, NoTrans, Trans, gemm, splitting, trans_b_faster,
                         transpose)
from crnn._lstm cimport packed_align, packed_product, packed_size, pool_run, pool_threads
from crnn._gru_rows cimport (gru_after_back_row, gru_after_row, gru_before_back_row,
                             gru_before_reset_row, gru_candidate_row, gru_gates_row)

import numpy as np

from crnn import _checks
from crnn.activations import CODES, check as _check_activation


# -- padded rows (steps 6 and 6b); the fused passes are in _gru_rows.pxd ------------------

cdef inline void _pass_through(floating *h, const floating *h_prev, floating *g,
                               floating *hn, Py_ssize_t n) noexcept nogil:
    """Step 6 for one padded row: h_t = h_{t-1}, the row's gates and hn zero."""
    memcpy(h, h_prev, n * sizeof(floating))
    memset(g, 0, 3 * n * sizeof(floating))
    memset(hn, 0, n * sizeof(floating))


cdef inline void _pass_back(floating *dh_next, const floating *dh_seq, floating *dg,
                            floating *dxh, Py_ssize_t n) noexcept nogil:
    """Step 6b for one padded row: dh_next += dhs_t; the row's dg (and dxh, where not
    NULL) zero."""
    cdef Py_ssize_t j
    for j in range(n):
        dh_next[j] += dh_seq[j]
    memset(dg, 0, 3 * n * sizeof(floating))
    if dxh != NULL:
        memset(dxh, 0, n * sizeof(floating))


# -- the time loops ----------------------------------------------------------------------

cdef void _forward(floating *hs, floating *gates, floating *hn, const floating *x,
                   const floating *h0, const floating *W_x, const floating *W_rec,
                   BLAS_Trans t_rec, Py_ssize_t off_h, const floating *b,
                   const floating *mask, floating *h_masked, floating *rec,
                   const unsigned char *real,
                   bint reset_after, Py_ssize_t B, Py_ssize_t T, Py_ssize_t D,
                   Py_ssize_t H, int act, int ract, float *Wp) noexcept nogil:
    # W_rec is W_h (H, G) (t_rec NoTrans) or its stored transpose (G, H) (t_rec Trans):
    # op(W_rec) = W_h; W_rec + off_h is where U_h begins (2H or 2H*H). rec is (B, G).
    # real (B, T) or NULL: the mask of real steps (NULL: every step is real). Wp (float32
    # with reset_after only, else NULL): W_h packed for _lstm's packed_product, which
    # then makes step 2 instead of BLAS (see _packed_product).
    cdef Py_ssize_t t, i
    cdef Py_ssize_t G = 3 * H
    cdef Py_ssize_t TG = T * G, TH = T * H
    cdef int ld_rec = <int> (G if t_rec == NoTrans else H)
    cdef const floating *h_prev
    cdef const floating *hm
    cdef Py_ssize_t ld_prev, ld_hm
    cdef floating *g
    cdef floating *hm_next
    cdef const floating *m
    # 1. gates = x @ W_x, all B*T rows in one GEMM (the bias joins in steps 3-4)
    if floating is float and Wp != NULL:
        # on the pool as well: an OpenBLAS call here would leave its idle worker
        # spinning through the loop beside the pool's (_pgemm.h)
        packed_product(x, D, W_x, G, Wp + packed_size(H, G), gates, G, B * T, G, D, False,
                       1)
    else:
        gemm(NoTrans, NoTrans, <int> (B * T), <int> G, <int> D, <floating> 1.0,
             x, <int> D, W_x, <int> G, <floating> 0.0, gates, <int> G)
    if mask != NULL:
        # 0. hm = h0 * m (for later steps step 5 writes it)
        for i in range(B * H):
            h_masked[i] = h0[i] * mask[i]
    if reset_after:
        _after_loop(hs, gates, hn, h0, W_rec, t_rec, ld_rec, b, mask, h_masked, rec, real,
                    B, T, H, act, ract, Wp)
        return
    for t in range(T):
        if t == 0:
            h_prev, ld_prev = h0, H
        else:
            h_prev, ld_prev = hs + (t - 1) * H, TH
        if mask != NULL:
            hm, ld_hm = h_masked, H
        else:
            hm, ld_hm = h_prev, ld_prev
        # 2. rec[:, :2H] = hm @ W_h[:, :2H]   (reset_after False; True: _after_loop)
        gemm(NoTrans, t_rec, <int> B, <int> (2 * H), <int> H, <floating> 1.0,
             hm, <int> ld_hm, W_rec, ld_rec, <floating> 0.0, rec, <int> G)
        # 3. z, r; hn[:, t] = q = r * hm
        for i in range(B):
            g = gates + i * TG + t * G
            if real != NULL and not real[i * T + t]:
                # 6. a padded row (its q zero: 4's product gives it zero)
                _pass_through(hs + i * TH + t * H, h_prev + i * ld_prev, g,
                              hn + i * TH + t * H, H)
                continue
            gru_gates_row(g, rec + i * G, b, hm + i * ld_hm, hn + i * TH + t * H, H,
                          act, ract)
        # 4. rec[:, 2H:] = q @ U_h
        gemm(NoTrans, t_rec, <int> B, <int> H, <int> H, <floating> 1.0,
             hn + t * H, <int> TH, W_rec + off_h, ld_rec, <floating> 0.0,
             rec + 2 * H, <int> G)
        # 4-5 (and 0 for step t+1)
        for i in range(B):
            if real != NULL and not real[i * T + t]:
                continue  # 6. done in 3
            g = gates + i * TG + t * G
            hm_next = h_masked + i * H if mask != NULL else NULL
            m = mask + i * H if mask != NULL else NULL
            gru_candidate_row(g, g + 2 * H, rec + i * G + 2 * H, b + 2 * H,
                              h_prev + i * ld_prev, hs + i * TH + t * H, hm_next, m,
                              H, act, ract)


# The time loop with reset_after. On the packed path (float32) it is cut by rows over the
# threads from ROWS_MIN rows a thread and up to ROWS_MAX multiply-adds a step: each
# thread takes a chunk of the batch through every step (its rows' product, then their
# gate passes) without waiting for the others between steps (a row's step reads only
# that row's state); otherwise one product a step (on the pool when packed) and the gate
# passes on this thread.
cdef enum:
    ROWS_MIN = 8
    ROWS_MAX = 1 << 24
cdef int _split = -1   # -1: by the rule above; 0: never; 1: always (tests: _force_split)


def _force_split(split):
    """Test hook: cut the packed time loop by rows over the threads (True), never
    (False), or (None) by the rule of ROWS_MIN and ROWS_MAX; returns the previous
    setting."""
    global _split
    previous, _split = _checks.split_setting(_split), _checks.split_code(split)
    return previous


cdef struct _rows_job:
    float *hs
    float *gates
    float *hn
    float *h_masked
    float *rec
    const float *h0
    const float *b
    const float *mask
    const unsigned char *real
    float *Wp
    Py_ssize_t B, T, H, nq
    int act, ract


cdef Py_ssize_t _rows_items(void *ctx, Py_ssize_t ph) noexcept nogil:
    return (<_rows_job *> ctx).nq


cdef void _rows_item(void *ctx, Py_ssize_t ph, Py_ssize_t q) noexcept nogil:
    cdef const _rows_job *j = <const _rows_job *> ctx
    cdef Py_ssize_t r0 = q * j.B // j.nq, r1 = (q + 1) * j.B // j.nq
    cdef Py_ssize_t H = j.H, G = 3 * j.H, TH = j.T * j.H
    cdef const float *mask = NULL
    cdef float *h_masked = NULL
    cdef const unsigned char *real = NULL
    if r0 >= r1:
        return
    if j.mask != NULL:
        mask, h_masked = j.mask + r0 * H, j.h_masked + r0 * H
    if j.real != NULL:
        real = j.real + r0 * j.T
    _after_rows(j.hs + r0 * TH, j.gates + r0 * j.T * G, j.hn + r0 * TH, j.h0 + r0 * H,
                <const float *> NULL, NoTrans, 0, j.b, mask, h_masked, j.rec + r0 * G,
                real, r1 - r0, j.T, H, j.act, j.ract, j.Wp)


cdef void _after_loop(floating *hs, floating *gates, floating *hn, const floating *h0,
                      const floating *W_rec, BLAS_Trans t_rec, int ld_rec,
                      const floating *b, const floating *mask, floating *h_masked,
                      floating *rec, const unsigned char *real, Py_ssize_t B,
                      Py_ssize_t T, Py_ssize_t H, int act, int ract,
                      float *Wp) noexcept nogil:
    cdef int nth = pool_threads()
    cdef _rows_job j
    if (floating is double or Wp == NULL or nth < 2 or _split == 0
            or (_split == -1 and (B < ROWS_MIN * nth
                                  or <double> B * 3 * H * H > ROWS_MAX))):
        _after_rows(hs, gates, hn, h0, W_rec, t_rec, ld_rec, b, mask, h_masked, rec, real,
                    B, T, H, act, ract, Wp)
        return
    if floating is float:
        j.hs, j.gates, j.hn, j.h_masked, j.rec = hs, gates, hn, h_masked, rec
        j.h0, j.b, j.mask, j.real, j.Wp = h0, b, mask, real, Wp
        j.B, j.T, j.H, j.act, j.ract = B, T, H, act, ract
        j.nq = min(<Py_ssize_t> nth, B)
        pool_run(_rows_items, _rows_item, &j, 1, nth)


cdef void _after_rows(floating *hs, floating *gates, floating *hn, const floating *h0,
                      const floating *W_rec, BLAS_Trans t_rec, int ld_rec,
                      const floating *b, const floating *mask, floating *h_masked,
                      floating *rec, const unsigned char *real, Py_ssize_t B,
                      Py_ssize_t T, Py_ssize_t H, int act, int ract,
                      float *Wp) noexcept nogil:
    # Steps 2-5 with reset_after for B rows (the batch, or a chunk of it: every pointer at
    # its first row, row strides those of the whole arrays). Step 2 on the packed GEMM
    # where Wp is given (float32; inside a pool item it runs on this thread alone, the
    # pool being busy with the item's job), else through gemm.
    cdef Py_ssize_t t, i
    cdef Py_ssize_t G = 3 * H, TG = T * G, TH = T * H
    cdef const floating *h_prev
    cdef const floating *hm
    cdef Py_ssize_t ld_prev, ld_hm
    cdef floating *g
    cdef floating *hm_next
    cdef const floating *m
    for t in range(T):
        if t == 0:
            h_prev, ld_prev = h0, H
        else:
            h_prev, ld_prev = hs + (t - 1) * H, TH
        if mask != NULL:
            hm, ld_hm = h_masked, H
        else:
            hm, ld_hm = h_prev, ld_prev
        # 2. rec = hm @ W_h   (b_r joins in the pass)
        if floating is float and Wp != NULL:
            packed_product(hm, ld_hm, NULL, 0, Wp, rec, G, B, G, H, False, 1)
        else:
            gemm(NoTrans, t_rec, <int> B, <int> G, <int> H, <floating> 1.0,
                 hm, <int> ld_hm, W_rec, ld_rec, <floating> 0.0, rec, <int> G)
        # 3-5 (and 0 for step t+1)
        for i in range(B):
            g = gates + i * TG + t * G
            if real != NULL and not real[i * T + t]:
                _pass_through(hs + i * TH + t * H, h_prev + i * ld_prev, g,
                              hn + i * TH + t * H, H)
                continue
            hm_next = h_masked + i * H if mask != NULL else NULL
            m = mask + i * H if mask != NULL else NULL
            gru_after_row(g, rec + i * G, b, b + G, h_prev + i * ld_prev,
                          hn + i * TH + t * H, hs + i * TH + t * H, hm_next, m, H,
                          act, ract)


cdef void _shifted_grad(floating *dW, Py_ssize_t ld_dW, const floating *h0_masked,
                        const floating *hs_masked, const floating *dg, Py_ssize_t ld_dg,
                        Py_ssize_t n, Py_ssize_t B, Py_ssize_t T,
                        Py_ssize_t H) noexcept nogil:
    """dW[:, :n] = sum over b, t of hm_{t-1}^T @ dg_t[:, :n], in three GEMMs rather than T.

    ``dg`` is a (B, T, ld_dg) buffer, ``hs_masked`` (B, T, H) holds hs * m (hs without a
    mask), ``h0_masked`` (B, H) likewise. The product of the flat (B*T, H) rows of
    hs_masked with the flat rows of dg one further on pairs h_t of sequence b with
    dg_{t+1} of the same sequence, except where t = T-1.

    The B - 1 cross terms are added and then subtracted again, which costs precision
    where they dwarf the true sum: where states and gradients grow without bound
    (unbounded activations and a recurrence that does not contract), not with the
    default ones (tanh and a sigmoid-gated interpolation keep |h| <= max(|h0|, 1)).
    """
    cdef Py_ssize_t TH = T * H, TL = T * ld_dg
    # the t = 0 terms: dW = h0_masked^T @ dg[:, 0]
    gemm(Trans, NoTrans, <int> H, <int> n, <int> B, <floating> 1.0,
         h0_masked, <int> H, dg, <int> TL, <floating> 0.0, dW, <int> ld_dW)
    if T > 1:
        # the t >= 1 terms, every consecutive pair of flat rows in one GEMM ...
        # dW += hs_masked.reshape(B*T, H)[:-1]^T @ dg.reshape(B*T, -1)[1:, :n]
        gemm(Trans, NoTrans, <int> H, <int> n, <int> (B * T - 1), <floating> 1.0,
             hs_masked, <int> H, dg + ld_dg, <int> ld_dg, <floating> 1.0, dW, <int> ld_dW)
        # ... less the B - 1 pairs that cross from one sequence to the next:
        # dW -= hs_masked[:B-1, T-1]^T @ dg[1:, 0, :n]
        gemm(Trans, NoTrans, <int> H, <int> n, <int> (B - 1), <floating> -1.0,
             hs_masked + (T - 1) * H, <int> TH, dg + TL, <int> TL, <floating> 1.0,
             dW, <int> ld_dW)


cdef void _backward(floating *dx, floating *dh_next, floating *dW_x, floating *dW_h,
                    floating *db, floating *dg, floating *dxh, floating *dhm,
                    const floating *x, const floating *h0, const floating *h0_masked,
                    const floating *W_x, const floating *W_rec, BLAS_Trans t_rec,
                    Py_ssize_t off_h, const floating *hs, const floating *hs_masked,
                    const floating *gates, const floating *hn, const floating *dhs,
                    bint dhs_given, const floating *mask, const unsigned char *real,
                    bint reset_after, Py_ssize_t B, Py_ssize_t T, Py_ssize_t D,
                    Py_ssize_t H, int act, int ract, const float *Wp) noexcept nogil:
    # dh_next holds the gradient reaching h_{T-1} from outside on entry, dh0 on exit.
    # Wp (float32 with reset_after only, else NULL): W_h^T packed for _lstm's
    # packed_product, which then makes step 2b instead of BLAS (see _packed_product).
    # db (2G with reset_after, else G) must come in zeroed; every other output is written
    # whole. dg is (B, T, G); dxh (B, T, H) is used with reset_after only; dhm (B, H)
    # with a mask or without reset_after. W_rec is W_h (H, G) (t_rec Trans) or its stored
    # transpose (G, H) (t_rec NoTrans): op(W_rec) = W_h^T; W_rec + off_h is where U_h
    # (resp. U_h^T) begins. real (B, T) or NULL: the mask of real steps.
    cdef Py_ssize_t t, i, k
    cdef Py_ssize_t G = 3 * H
    cdef Py_ssize_t TG = T * G, TH = T * H
    cdef int ld_rec = <int> (G if t_rec == Trans else H)
    cdef const floating *h_prev
    cdef Py_ssize_t ld_prev
    cdef floating *target
    cdef const floating *m
    # With no gradient on the sequence output, dhs points at one row of zeros that every
    # (b, t) reads: a stride of 0 instead of a second copy of the loop.
    cdef Py_ssize_t ld_dhs = H if dhs_given else 0
    for t in range(T - 1, -1, -1):
        if t == 0:
            h_prev, ld_prev = h0, H
        else:
            h_prev, ld_prev = hs + (t - 1) * H, TH
        if reset_after:
            # 5b-2c. dg[:, t] = [dxz, dxr, dhh], dxh[:, t]; dh_next = dh * z; db
            for i in range(B):
                if real != NULL and not real[i * T + t]:
                    _pass_back(dh_next + i * H, dhs + (i * T + t) * ld_dhs,
                               dg + i * TG + t * G, dxh + i * TH + t * H, H)
                else:
                    gru_after_back_row(dg + i * TG + t * G, dxh + i * TH + t * H, db,
                                       db + G, dh_next + i * H, dhs + (i * T + t) * ld_dhs,
                                       gates + i * TG + t * G, hn + i * TH + t * H,
                                       h_prev + i * ld_prev, H, act, ract)
            # 2b. dh_next += dg[:, t] @ W_h^T, or with a mask dhm = dg[:, t] @ W_h^T and
            # dh_next += dhm * m
            target = dh_next if mask == NULL else dhm
            if floating is float and Wp != NULL:
                packed_product(dg + t * G, TG, NULL, 0, <float *> Wp, target, H, B, H, G,
                               mask == NULL, 1)
            else:
                gemm(NoTrans, t_rec, <int> B, <int> H, <int> G, <floating> 1.0,
                     dg + t * G, <int> TG, W_rec, ld_rec,
                     <floating> (1.0 if mask == NULL else 0.0), target, <int> H)
            if mask != NULL:
                for k in range(B * H):
                    dh_next[k] += dhm[k] * mask[k]
        else:
            # 5b, 4b, 3b. dg[:, t] = [dxz, ., dxh]; dh_next = dh * z; db
            for i in range(B):
                if real != NULL and not real[i * T + t]:
                    _pass_back(dh_next + i * H, dhs + (i * T + t) * ld_dhs,
                               dg + i * TG + t * G, NULL, H)
                else:
                    gru_before_back_row(dg + i * TG + t * G, db, dh_next + i * H,
                                        dhs + (i * T + t) * ld_dhs, gates + i * TG + t * G,
                                        h_prev + i * ld_prev, H, act, ract)
            # 4b. dq = dxh_t @ U_h^T   (into dhm)
            gemm(NoTrans, t_rec, <int> B, <int> H, <int> H, <floating> 1.0,
                 dg + t * G + 2 * H, <int> TG, W_rec + off_h, ld_rec, <floating> 0.0,
                 dhm, <int> H)
            # 4b, 3b. dxr = dq * hm * ract'(r); dq * r into dh_next (or into dhm)
            for i in range(B):
                if real != NULL and not real[i * T + t]:
                    continue  # 6b. (its dq is zero: nothing to add)
                m = mask + i * H if mask != NULL else NULL
                gru_before_reset_row(dg + i * TG + t * G + H, db + H, dhm + i * H,
                                     dh_next + i * H, gates + i * TG + t * G + H,
                                     h_prev + i * ld_prev, m, H, act, ract)
            # 2b. (dh_next or dhm) += [dxz, dxr] @ [U_z, U_r]^T
            target = dh_next if mask == NULL else dhm
            gemm(NoTrans, t_rec, <int> B, <int> H, <int> (2 * H), <floating> 1.0,
                 dg + t * G, <int> TG, W_rec, ld_rec, <floating> 1.0, target, <int> H)
            if mask != NULL:
                # ... dh_next += dhm * m
                for k in range(B * H):
                    dh_next[k] += dhm[k] * mask[k]
    if reset_after:
        # 1b. db_i's z and r blocks are db_r's
        for k in range(2 * H):
            db[k] = db[G + k]
        # 1b. dW_x = x^T @ [dxz, dxr, dxh], in two GEMMs:
        # dW_x[:, :2H] = x^T @ dg[..., :2H]
        gemm(Trans, NoTrans, <int> D, <int> (2 * H), <int> (B * T), <floating> 1.0,
             x, <int> D, dg, <int> G, <floating> 0.0, dW_x, <int> G)
        # dW_x[:, 2H:] = x^T @ dxh
        gemm(Trans, NoTrans, <int> D, <int> H, <int> (B * T), <floating> 1.0,
             x, <int> D, dxh, <int> H, <floating> 0.0, dW_x + 2 * H, <int> G)
        # 1b. dx = dg[..., :2H] @ W_x[:, :2H]^T + dxh @ W_x[:, 2H:]^T
        gemm(NoTrans, Trans, <int> (B * T), <int> D, <int> (2 * H), <floating> 1.0,
             dg, <int> G, W_x, <int> G, <floating> 0.0, dx, <int> D)
        gemm(NoTrans, Trans, <int> (B * T), <int> D, <int> H, <floating> 1.0,
             dxh, <int> H, W_x + 2 * H, <int> G, <floating> 1.0, dx, <int> D)
        # 2c. dW_h = sum_t hm_{t-1}^T @ [dxz, dxr, dhh]_t
        _shifted_grad(dW_h, G, h0_masked, hs_masked, dg, G, G, B, T, H)
    else:
        # 1b. dW_x = x^T @ dg,  dx = dg @ W_x^T
        gemm(Trans, NoTrans, <int> D, <int> G, <int> (B * T), <floating> 1.0,
             x, <int> D, dg, <int> G, <floating> 0.0, dW_x, <int> G)
        gemm(NoTrans, Trans, <int> (B * T), <int> D, <int> G, <floating> 1.0,
             dg, <int> G, W_x, <int> G, <floating> 0.0, dx, <int> D)
        # 2c. dW_h[:, :2H] = sum_t hm_{t-1}^T @ [dxz, dxr]_t
        _shifted_grad(dW_h, G, h0_masked, hs_masked, dg, G, 2 * H, B, T, H)
        # 4c. dW_h[:, 2H:] = q^T @ dxh, q = hn, over all B*T rows
        gemm(Trans, NoTrans, <int> H, <int> H, <int> (B * T), <floating> 1.0,
             hn, <int> H, dg + 2 * H, <int> G, <floating> 0.0, dW_h + 2 * H, <int> G)


# The products of the float32 inference forward (reset_after) run on the packed GEMM of
# _lstm (W_x and W_h packed once per call, the products on its thread pool; _pgemm.h)
# from this many multiply-adds a step, B * 3H * H (_packed_product); _forced_path None:
# by size, "packed" / "blas": forced, in gru_forward too (tests: _force_path).
PACKED_MIN_WORK = 2 ** 17
cdef object _forced_path = None


def _force_path(path):
    """Test hook: force the products of the float32 reset_after forward (gru_forward's
    and gru_inference's) onto ``"packed"`` or ``"blas"``, or (None) back to choosing
    (_packed_product); returns the previous setting."""
    global _forced_path
    if path not in (None, "packed", "blas"):
        raise ValueError(f"expected None, 'packed' or 'blas', got {path!r}")
    previous, _forced_path = _forced_path, path
    return previous


def _packed_product(Py_ssize_t B, Py_ssize_t H, bint inference):
    """Whether the float32 reset_after forward makes its products (``x @ W_x`` and, at
    every step, ``hm @ W_h``; in gru_backward, every step's ``dg_t @ W_h^T``) with
    _lstm's packed GEMM rather than OpenBLAS: from ``B * 3H * H >= PACKED_MIN_WORK``, in
    :func:`gru_inference`, and in training while crnn computes (crnn/cores.py: OpenBLAS
    on one thread, so that no idle OpenBLAS worker spins beside the pool; see
    gru_inference). OpenBLAS packs W_h again at every call (at (128, 100, 512,
    1024) its copy routine took 13% of the forward); the packed GEMM packs it once per
    call. The rest of the step (the fused pass) stays on the calling thread. Measured,
    inference, quiet machine, medians (packed / OpenBLAS, ms): (32, 50, 32, 64) 0.63 /
    1.49; (16, 50, 64, 256) 2.47 / 5.21; (64, 100, 128, 256) 22.7 / 28.1;
    (128, 100, 512, 1024) 628 / 745; below, (8, 50, 16, 32) 0.13 / 0.09 and
    (1, 100, 16, 32) 0.10 / 0.05."""
    if H < 1 or B < 1:
        return False
    if _forced_path is not None:
        return _forced_path == "packed"
    return (inference or splitting()) and <double> B * 3 * H * H >= PACKED_MIN_WORK


# -- the Python entry points -------------------------------------------------------------

def gru_forward(x, h0, W_x, W_h, b, reset_after=True, activation="tanh",
                recurrent_activation="sigmoid", recurrent_mask=None, mask=None):
    """Run a GRU (Keras's: gates z, r, h) over a batch of sequences.

    With ``reset_after=True``:

    .. math::
        [x_z, x_r, x_h] &= x_t W_x + b_i, \\quad
        [h_z, h_r, h_h] = (h_{t-1} \\odot m) W_h + b_r \\\\
        z &= \\rho(x_z + h_z),\\ r = \\rho(x_r + h_r),\\
        n = \\alpha(x_h + r \\odot h_h) \\\\
        h_t &= z \\odot h_{t-1} + (1 - z) \\odot n

    and with ``reset_after=False``, :math:`[x_z, x_r, x_h] = x_t W_x + b`,
    :math:`z = \\rho(x_z + \\tilde h U_z)`, :math:`r = \\rho(x_r + \\tilde h U_r)`,
    :math:`n = \\alpha(x_h + (r \\odot \\tilde h) U_h)`, :math:`\\tilde h = h_{t-1}
    \\odot m`; :math:`\\alpha` is the activation, :math:`\\rho` the recurrent
    activation, :math:`h_{-1} = h_0`.

    Parameters
    ----------
    x : ndarray (B, T, D), float32 or float64, C-contiguous
    h0 : ndarray (B, H), the initial state
    W_x : ndarray (D, 3H), the kernel (gate blocks z, r, h)
    W_h : ndarray (H, 3H), the recurrent kernel ``[U_z, U_r, U_h]``
    b : ndarray (2, 3H) (reset_after=True: rows b_i, b_r) or (3H,) (reset_after=False)
    reset_after : bool
        Apply the reset gate after the recurrent product (default) or before it.
    activation, recurrent_activation : {"tanh", "relu", "sigmoid", "linear"}
        Defaults "tanh" and "sigmoid".
    recurrent_mask : ndarray (B, H) or None
        Recurrent-dropout mask ``m`` (already scaled by ``1 / (1 - rate)``), the same at
        every step; it scales only the ``h_{t-1}`` that enters the products with ``W_h``.
    mask : ndarray (B, T), bool or uint8, C-contiguous, or None
        The real steps (nonzero) and the padding (zero): at a padded step the state
        passes through unchanged and the step's gates and ``hn`` are zero.

    Returns
    -------
    hs : ndarray (B, T, H), every state ``h_0 .. h_{T-1}``.
    gates : ndarray (B, T, 3H), the activated ``z, r, n`` of every step.
    hn : ndarray (B, T, H)
        reset_after=True: ``h_h``, the recurrent part of the candidate; reset_after=False:
        ``r * (h_{t-1} * m)``, the left operand of the product with ``U_h``.
    """
    return _run_forward(x, h0, W_x, W_h, b, reset_after, activation,
                        recurrent_activation, recurrent_mask, mask, False)


def gru_inference(x, h0, W_x, W_h, b, reset_after=True, activation="tanh",
                  recurrent_activation="sigmoid", mask=None, return_sequences=True):
    """:func:`gru_forward` for a call that no backward pass follows (``crnn.no_grad``,
    ``predict``): the same states (up to rounding, see below), without the record that
    backward reads (its buffers are made and dropped: the GRU's saving is the products).

    Parameters as for :func:`gru_forward` (no recurrent dropout: it is for training),
    and ``return_sequences``: whether to return every state or only the last.

    Returns
    -------
    hs : ndarray (B, T, H) or None
        Every state (None unless ``return_sequences``).
    h_last : ndarray (B, H)
        The state after the last step (after each sequence's last real step, with a
        mask); ``h0`` (a copy) when ``T == 0``.

    In float32 with ``reset_after`` from ``PACKED_MIN_WORK`` (``_packed_product``) both
    products, ``x @ W_x`` before the loop and ``hm @ W_h`` at every step, run on _lstm's
    packed GEMM and its thread pool instead of OpenBLAS. :func:`gru_forward` does so only
    while crnn computes (crnn/cores.py), with OpenBLAS on one thread: a multi-threaded
    OpenBLAS's idle workers spin for ~0.1 s after each call, and the pool's threads then
    compete with them (measured at (64, 100, 128, 256), right after a SciPy sgemm: packed
    38 ms, OpenBLAS 28; quiet: 23 and 28; right after a NumPy matmul, as beside a Dense
    layer: 40 and 54).
    """
    hs, _, _ = _run_forward(x, h0, W_x, W_h, b, reset_after, activation,
                            recurrent_activation, None, mask, True)
    h_last = np.array(h0, dtype=hs.dtype) if hs.shape[1] == 0 else hs[:, -1].copy()
    return (hs if return_sequences else None), h_last


def _run_forward(x, h0, W_x, W_h, b, reset_after, activation, recurrent_activation,
                 recurrent_mask, mask, bint inference):
    act = CODES[_check_activation(activation)]
    ract = CODES[_check_activation(recurrent_activation)]
    B, T, D, H = _checks.gru_forward(x, h0, W_x, W_h, b, reset_after, recurrent_mask)
    real = _checks.real_steps(mask, B, T)
    dtype = x.dtype
    G = 3 * H
    hs = np.empty((B, T, H), dtype=dtype)
    gates = np.empty((B, T, G), dtype=dtype)
    hn = np.empty((B, T, H), dtype=dtype)
    if B == 0 or T == 0:
        return hs, gates, hn
    reset_after = bool(reset_after)
    rec = np.empty((B, G), dtype=dtype)
    h_masked = None if recurrent_mask is None else np.empty((B, H), dtype=dtype)
    # The recurrent products multiply by W_h, or by a transposed copy where BLAS is faster
    # so (judged on the widest one: (B, H) @ (H, 3H), or (H, 2H) without reset_after).
    # (OpenBLAS computes the transposed product rec^T = W_h^T @ hm^T some 10% faster
    # still from (64, 256) up, but the pass would then read rec by columns; a tiled
    # transpose inside the pass cost more than the GEMM saved: measured, not kept.)
    n_rec = G if reset_after else 2 * H
    Wp = None
    if dtype == np.float32 and reset_after and _packed_product(B, H, inference):
        Wp = np.empty(packed_size(H, G) + packed_size(D, G), dtype=dtype)
    W_hT = (np.empty((G, H), dtype=dtype)
            if Wp is None and trans_b_faster(B, n_rec, H) else None)
    if dtype == np.float32:
        _forward_views[float](hs, gates, hn, x, h0, W_x, W_h, W_hT, b.reshape(-1),
                              recurrent_mask, h_masked, rec, real, reset_after, act, ract,
                              Wp)
    else:
        _forward_views[double](hs, gates, hn, x, h0, W_x, W_h, W_hT, b.reshape(-1),
                               recurrent_mask, h_masked, rec, real, reset_after, act,
                               ract, None)
    return hs, gates, hn


cdef void _forward_views(floating[:, :, ::1] hs, floating[:, :, ::1] gates,
                         floating[:, :, ::1] hn, const floating[:, :, ::1] x,
                         const floating[:, ::1] h0, const floating[:, ::1] W_x,
                         const floating[:, ::1] W_h, floating[:, ::1] W_hT,
                         const floating[::1] b, const floating[:, ::1] mask,
                         floating[:, ::1] h_masked, floating[:, ::1] rec,
                         const unsigned char[:, ::1] real, bint reset_after, int act,
                         int ract, float[::1] Wp):
    cdef Py_ssize_t B = x.shape[0], T = x.shape[1], D = x.shape[2], H = W_h.shape[0]
    cdef float *Wp_p = NULL
    cdef const unsigned char *real_p = NULL
    cdef const floating *mask_p = NULL
    cdef floating *h_masked_p = NULL
    cdef const floating *W_rec = &W_h[0, 0]
    cdef BLAS_Trans t_rec = NoTrans
    if real is not None:
        real_p = &real[0, 0]
    cdef Py_ssize_t off_h = 2 * H
    if mask is not None:
        mask_p, h_masked_p = &mask[0, 0], &h_masked[0, 0]
    with nogil:
        if W_hT is not None:
            # W_hT = W_h^T, (3H, H)
            transpose(<int> H, <int> (3 * H), &W_h[0, 0], <int> (3 * H), &W_hT[0, 0],
                      <int> H)
            W_rec, t_rec, off_h = &W_hT[0, 0], Trans, 2 * H * H
        if Wp is not None:
            # W_h packed once, on the pool (Wp_p: the aligned start)
            Wp_p = packed_align(&Wp[0])
            if floating is float:
                packed_product(NULL, 0, &W_h[0, 0], 3 * H, Wp_p, NULL, 0, B, 3 * H, H,
                               False, 0)
        _forward(&hs[0, 0, 0], &gates[0, 0, 0], &hn[0, 0, 0], &x[0, 0, 0], &h0[0, 0],
                 &W_x[0, 0], W_rec, t_rec, off_h, &b[0], mask_p, h_masked_p, &rec[0, 0],
                 real_p, reset_after, B, T, D, H, act, ract, Wp_p)


def gru_backward(x, h0, W_x, W_h, hs, gates, hn, dhs, dh_last, reset_after=True,
                 activation="tanh", recurrent_activation="sigmoid", recurrent_mask=None,
                 mask=None):
    """Backpropagate through :func:`gru_forward` (BPTT).

    Parameters
    ----------
    x, h0, W_x, W_h, reset_after, activation, recurrent_activation, recurrent_mask, mask
        As given to the forward pass.
    hs : ndarray (B, T, H)
    gates : ndarray (B, T, 3H)
    hn : ndarray (B, T, H)
        What the forward pass returned (read, not modified).
    dhs : ndarray (B, T, H) or None
        Gradient of the loss with respect to every state ``h_t`` (None: zero).
    dh_last : ndarray (B, H) or None
        Gradient with respect to the final state ``h_{T-1}`` coming from outside the
        sequence output, e.g. through ``return_state`` (None: zero).

    Returns
    -------
    dx : ndarray (B, T, D)
    dh0 : ndarray (B, H)
    dW_x : ndarray (D, 3H)
    dW_h : ndarray (H, 3H)
    db : ndarray (2, 3H) (reset_after=True) or (3H,) (reset_after=False)
    """
    act = CODES[_check_activation(activation)]
    ract = CODES[_check_activation(recurrent_activation)]
    B, T, D, H = _checks.gru_backward(x, h0, W_x, W_h, hs, gates, hn, dhs, dh_last,
                                      reset_after, recurrent_mask)
    real = _checks.real_steps(mask, B, T)
    dtype = x.dtype
    G = 3 * H
    reset_after = bool(reset_after)
    dx = np.empty((B, T, D), dtype=dtype)
    dh0 = np.zeros((B, H), dtype=dtype) if dh_last is None else dh_last.copy()
    dW_x = np.zeros((D, G), dtype=dtype)
    dW_h = np.zeros((H, G), dtype=dtype)
    db = np.zeros(_checks.gru_bias_shape(H, reset_after), dtype=dtype)
    if B == 0 or T == 0:
        dx.fill(0)
        return dx, dh0, dW_x, dW_h, db
    dg = np.empty((B, T, G), dtype=dtype)
    dxh = np.empty((B, T, H), dtype=dtype) if reset_after else None
    need_dhm = recurrent_mask is not None or not reset_after
    dhm = np.empty((B, H), dtype=dtype) if need_dhm else None
    dhs_given = dhs is not None
    if not dhs_given:
        dhs = np.zeros((1, 1, H), dtype=dtype)  # read with row stride 0, see _backward
    if recurrent_mask is None:
        hs_masked, h0_masked = hs, h0
    else:
        hs_masked = hs * recurrent_mask[:, None, :]
        h0_masked = h0 * recurrent_mask
    # Step 2b multiplies by W_h^T, as W_h with Trans or, where BLAS is faster so, as a
    # transposed copy without (judged on the widest product: (B, 3H) @ (3H, H), or (2H, H)
    # without reset_after).
    # On the packed path (float32, reset_after, as the forward's: _packed_product) W_h^T
    # is packed once (from the transposed copy) and every step's 2b runs on the pool.
    k_rec = G if reset_after else 2 * H
    Wp = None
    if dtype == np.float32 and reset_after and _packed_product(B, H, False):
        Wp = np.empty(packed_size(G, H), dtype=dtype)
    W_hT = (None if Wp is None and trans_b_faster(B, H, k_rec)
            else np.empty((G, H), dtype=dtype))
    if dtype == np.float32:
        _backward_views[float](dx, dh0, dW_x, dW_h, db.reshape(-1), dg, dxh, dhm, x, h0,
                               h0_masked, W_x, W_h, W_hT, hs, hs_masked, gates, hn, dhs,
                               recurrent_mask, real, dhs_given, reset_after, act, ract, Wp)
    else:
        _backward_views[double](dx, dh0, dW_x, dW_h, db.reshape(-1), dg, dxh, dhm, x, h0,
                                h0_masked, W_x, W_h, W_hT, hs, hs_masked, gates, hn, dhs,
                                recurrent_mask, real, dhs_given, reset_after, act, ract,
                                None)
    return dx, dh0, dW_x, dW_h, db


cdef void _backward_views(floating[:, :, ::1] dx, floating[:, ::1] dh_next,
                          floating[:, ::1] dW_x, floating[:, ::1] dW_h, floating[::1] db,
                          floating[:, :, ::1] dg, floating[:, :, ::1] dxh,
                          floating[:, ::1] dhm, const floating[:, :, ::1] x,
                          const floating[:, ::1] h0, const floating[:, ::1] h0_masked,
                          const floating[:, ::1] W_x, const floating[:, ::1] W_h,
                          floating[:, ::1] W_hT, const floating[:, :, ::1] hs,
                          const floating[:, :, ::1] hs_masked,
                          const floating[:, :, ::1] gates, const floating[:, :, ::1] hn,
                          const floating[:, :, ::1] dhs, const floating[:, ::1] mask,
                          const unsigned char[:, ::1] real, bint dhs_given,
                          bint reset_after, int act, int ract, float[::1] Wp):
    cdef Py_ssize_t B = x.shape[0], T = x.shape[1], D = x.shape[2], H = W_h.shape[0]
    cdef float *Wp_p = NULL
    cdef const unsigned char *real_p = NULL
    cdef const floating *mask_p = NULL
    cdef floating *dxh_p = NULL
    cdef floating *dhm_p = NULL
    cdef const floating *W_rec = &W_h[0, 0]
    cdef BLAS_Trans t_rec = Trans
    cdef Py_ssize_t off_h = 2 * H
    if mask is not None:
        mask_p = &mask[0, 0]
    if dxh is not None:
        dxh_p = &dxh[0, 0, 0]
    if dhm is not None:
        dhm_p = &dhm[0, 0]
    if real is not None:
        real_p = &real[0, 0]
    with nogil:
        if W_hT is not None:
            # W_hT = W_h^T, (3H, H)
            transpose(<int> H, <int> (3 * H), &W_h[0, 0], <int> (3 * H), &W_hT[0, 0],
                      <int> H)
            W_rec, t_rec, off_h = &W_hT[0, 0], NoTrans, 2 * H * H
            if Wp is not None:
                # W_h^T packed once, on the pool (Wp_p: the aligned start)
                Wp_p = packed_align(&Wp[0])
                if floating is float:
                    packed_product(NULL, 0, &W_hT[0, 0], H, Wp_p, NULL, 0, B, H, 3 * H,
                                   False, 0)
        _backward(&dx[0, 0, 0], &dh_next[0, 0], &dW_x[0, 0], &dW_h[0, 0], &db[0],
                  &dg[0, 0, 0], dxh_p, dhm_p, &x[0, 0, 0], &h0[0, 0], &h0_masked[0, 0],
                  &W_x[0, 0], W_rec, t_rec, off_h, &hs[0, 0, 0], &hs_masked[0, 0, 0],
                  &gates[0, 0, 0], &hn[0, 0, 0], &dhs[0, 0, 0], dhs_given, mask_p,
                  real_p, reset_after, B, T, D, H, act, ract, Wp_p)
