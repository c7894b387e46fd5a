"""LSTM forward time loop and backpropagation through time, over BLAS.

Notation: ``B`` batch, ``T`` time steps, ``D`` input features, ``H`` units, ``G = 4H`` the
width of the four gate blocks i, f, g (Keras's "c"), o side by side, in Keras's order and
layout: ``W_x (D, G)``, ``W_h (H, G)``, ``b (G,)``. Arrays are batch-first and
C-contiguous: ``x (B, T, D)``, ``hs, cs (B, T, H)``, ``gates (B, T, G)``. One time step
``gates[:, t]`` is a ``(B, G)`` matrix whose rows lie ``T*G`` elements apart, which BLAS
takes as a leading dimension, so no time-major copy is ever made. ``act`` is the
activation (default tanh), ``ract`` the recurrent activation (default sigmoid).

Forward, for t = 0 .. T-1 (``h_{-1} = h0``, ``c_{-1} = c0``, ``m`` the optional
recurrent-dropout mask), the gates buffer holding ``z_t`` and then the gates::

    0. h_masked = h_{t-1} * m                       (fused into step 5 of step t-1)
    1. z_t = x_t @ W_x                              (all B*T rows at once, before the loop)
    2. z_t += h_masked @ W_h                        (one GEMM per step)
    3. i, f, g, o = ract(z_i + b_i), ract(z_f + b_f), act(z_c + b_c), ract(z_o + b_o)
    4. c_t = f * c_{t-1} + i * g
    5. h_t = o * act(c_t)                           (3-5: one fused pass per step)
    6. on a padded row (the optional mask of real steps ``real (B, T)`` zero at t):
       h_t = h_{t-1}, c_t = c_{t-1}, the gates zero (instead of 3-5)

Backward, for t = T-1 .. 0, ``dh_next`` and ``dc_next`` starting as the gradients of the
final ``h`` and ``c`` from outside (``dh_last``, ``dc_last``); ``a = act(c_t)`` is
recomputed from the stored ``c_t``, every derivative is taken from an output::

    5b. dh = dhs_t + dh_next;  do = dh * a;  dc = dc_next + dh * o * act'(a)
    4b. di = dc * g;  dg = dc * i;  df = dc * c_{t-1};  dc_next = dc * f
    3b. dz_t = [di * ract'(i), df * ract'(f), dg * act'(g), do * ract'(o)]
    3c. db += sum over the batch of dz_t            (5b-3c: one fused pass per step)
    2b. dh_next = (dz_t @ W_h^T) * m                (one GEMM per step; at t = 0, dh0)
    6b. on a padded row: dz_t = 0 and dc_next unchanged (instead of 5b-3c), and
        dh_next = dhs_t + dh_next, the gradient reaching h_t, kept aside before 2b and
        put back after it

and after the loop, each one GEMM over all B*T rows::

    1b. dW_x = x^T @ dz,    dx = dz @ W_x^T
    2c. dW_h = sum_t h_masked_{t-1}^T @ dz_t        (two GEMMs; see _backward)

Two implementations of these steps: the loop here, over BLAS (any dtype and activation;
its fused passes 3-5 and 5b-3c, one row per call, are in ``_lstm_rows.pxd``, which the
streaming step of ``_step.pyx`` shares), and, for float32 with the default activations
from a size on (``_packed_path``), the loops of ``_lstm_packed.h`` over the GEMM of
``_pgemm.h``: the weights packed once per call, steps 1 and 2 one GEMM per step, steps
3-5 (and 5b-3c) fused into that GEMM's tiles, everything on a pool of threads of its
own (work claiming, see ``_pgemm.h``) and no BLAS call. Both compute the same formulas;
results differ in the last bits (summation order). Both take the mask of real steps
(step 6 and 6b).

``lstm_forward`` / ``lstm_backward`` have the signatures of their twins in
``crnn.reference.lstm``, which define what they compute.
"""
from cython cimport floating
from libc.string cimport memcpy, memset

from crnn._activations cimport SIGMOID, TANH
from crnn._padding cimport hold_padded_row, pass_padded_rows
from crnn._blas cimport (BLAS_Trans, NoTrans, Trans, blas_gemm, gemm, set_gemm_splitter,
                         trans_b_faster, transpose)
from crnn._lstm_rows cimport lstm_backward_row, lstm_forward_row

import numpy as np

from crnn import _checks
from crnn.activations import CODES, check as _check_activation


cdef extern from "_lstm_packed.h" nogil:
    # The forward and backward over the packed GEMM, float32 with the default
    # activations: every step (0-5, 5b-1b, 2c) on the pool of _pgemm.h, no BLAS (see
    # _lstm_packed.h and _pgemm.h); the scratch sizes for nth threads.
    Py_ssize_t forward_scratch "crnn_lstm_forward_scratch"(Py_ssize_t B, Py_ssize_t D,
                                                           Py_ssize_t H, int nth,
                                                           Py_ssize_t *off)
    Py_ssize_t backward_scratch "crnn_lstm_backward_scratch"(Py_ssize_t D, Py_ssize_t H,
                                                             int nth, Py_ssize_t *off)
    void forward_packed_f32 "crnn_lstm_forward_packed_f32"(
        float *gates, float *hs, float *cs, const float *x, const float *h0,
        const float *c0, const float *W_x, const float *W_h, float *scratch,
        const float *b, const float *m, float *h_masked, const unsigned char *real,
        Py_ssize_t B, Py_ssize_t T, Py_ssize_t D, Py_ssize_t H, int h_all, int threads)
    void backward_packed_f32 "crnn_lstm_backward_packed_f32"(
        float *dx, float *dW_x, float *dW_h, float *dh_next, float *dc_next, float *db,
        float *dz, float *scratch, const float *x, const float *h0_m, const float *c0,
        const float *W_x, const float *W_h, const float *hs_m, const float *cs,
        const float *gates, const float *dhs, Py_ssize_t ld_dhs, const float *m,
        const unsigned char *real, float *dh_pad, Py_ssize_t B, Py_ssize_t T, Py_ssize_t D,
        Py_ssize_t H, int threads)
    int lp_split "crnn_lp_split"
    int pg_force_isa "crnn_pg_force_isa"(int isa)
    int pg_isa "crnn_pg_isa"()
    int pg_max_threads "crnn_pg_max_threads"()
    void pg_set_threads "crnn_pg_set_threads"(int n)
    void pg_set_local_threads "crnn_pg_set_local_threads"(int n)
    int pg_local_count "crnn_pg_local_count"()
    float *pg_align "crnn_pg_align"(float *p)
    ctypedef struct crnn_pg_work_t:
        Py_ssize_t (*items)(const crnn_pg_work_t *w, Py_ssize_t ph) noexcept nogil
        void (*run)(const crnn_pg_work_t *w, Py_ssize_t ph, Py_ssize_t i,
                    int slot) noexcept nogil
        Py_ssize_t nphases
    void pg_run "crnn_pg_run"(crnn_pg_work_t *w, int nth)
    void pg_gemm_steps "crnn_pg_gemm_steps"(
        const float *A, Py_ssize_t lda, const float *W, Py_ssize_t ldw, float *Wp,
        float *C, Py_ssize_t ldc, Py_ssize_t M, Py_ssize_t N, Py_ssize_t K,
        int accumulate, Py_ssize_t steps)


cdef void _forward(floating *gates, floating *hs, floating *cs, const floating *x,
                   const floating *h0, const floating *c0, const floating *W_x,
                   const floating *W_rec, BLAS_Trans t_rec, const floating *b,
                   const floating *mask, floating *h_masked, const unsigned char *real,
                   Py_ssize_t B, Py_ssize_t T, Py_ssize_t D, Py_ssize_t H,
                   int act, int ract) noexcept nogil:
    # W_rec is W_h (H, G) (t_rec NoTrans) or its stored transpose (G, H) (t_rec Trans):
    # op(W_rec) = W_h. real (B, T) or NULL: the mask of real steps (NULL: all real).
    cdef Py_ssize_t t, r
    cdef Py_ssize_t G = 4 * H
    cdef Py_ssize_t TG = T * G, TH = T * H
    cdef int ld_rec = <int> (G if t_rec == NoTrans else H)
    cdef const floating *h_prev
    cdef const floating *c_prev
    cdef const floating *h_last
    cdef Py_ssize_t ld_prev
    # 1. gates = x @ W_x, all B*T rows in one GEMM (the bias joins in step 3)
    gemm(NoTrans, NoTrans, <int> (B * T), <int> G, <int> D, <floating> 1.0,
         x, <int> D, W_x, <int> G, <floating> 0.0, gates, <int> G)
    if mask != NULL:
        # 0. h_masked = h0 * m (for later steps step 5 writes it)
        for r in range(B * H):
            h_masked[r] = h0[r] * mask[r]
    for t in range(T):
        if mask != NULL:
            h_prev, ld_prev = h_masked, H
        elif t == 0:
            h_prev, ld_prev = h0, H
        else:
            h_prev, ld_prev = hs + (t - 1) * H, TH
        # 2. gates[:, t] += (h_{t-1} * m) @ W_h
        gemm(NoTrans, t_rec, <int> B, <int> G, <int> H, <floating> 1.0,
             h_prev, <int> ld_prev, W_rec, ld_rec, <floating> 1.0, gates + t * G, <int> TG)
        # 3-5 (and 0 for step t+1). gates[:, t] = activated gates; cs[:, t], hs[:, t]
        for r in range(B):
            c_prev = c0 + r * H if t == 0 else cs + r * TH + (t - 1) * H
            if real == NULL or real[r * T + t]:
                lstm_forward_row(gates + r * TG + t * G, b, c_prev, cs + r * TH + t * H,
                                 hs + r * TH + t * H,
                                 h_masked + r * H if mask != NULL else NULL,
                                 mask + r * H if mask != NULL else NULL, H, act, ract)
            else:
                # 6. a padded row: the states pass through (h_masked keeps h_{t-1} * m)
                memcpy(cs + r * TH + t * H, c_prev, H * sizeof(floating))
                h_last = h0 + r * H if t == 0 else hs + r * TH + (t - 1) * H
                memcpy(hs + r * TH + t * H, h_last, H * sizeof(floating))
                memset(gates + r * TG + t * G, 0, G * sizeof(floating))


cdef void _backward(floating *dx, floating *dh_next, floating *dc_next, floating *dW_x,
                    floating *dW_h, floating *db, floating *dz,
                    const floating *x, const floating *h0_masked, const floating *c0,
                    const floating *W_x, const floating *W_rec, BLAS_Trans t_rec,
                    const floating *hs_masked, const floating *cs, const floating *gates,
                    const floating *dhs, bint dhs_given, const floating *mask,
                    const unsigned char *real, floating *dh_pad,
                    Py_ssize_t B, Py_ssize_t T, Py_ssize_t D, Py_ssize_t H,
                    int act, int ract) noexcept nogil:
    # dh_next / dc_next hold the gradients reaching the final h / c from outside on
    # entry, dh0 / dc0 on exit. db must come in zeroed; every other output is written
    # whole. hs_masked / h0_masked are hs * m and h0 * m (or hs and h0 without a mask).
    # W_rec is W_h (H, G) (t_rec Trans) or its stored transpose (G, H) (t_rec NoTrans):
    # op(W_rec) = W_h^T. real (B, T) or NULL: the mask of real steps; dh_pad (B, H)
    # scratch where real is not NULL.
    cdef Py_ssize_t t, r, padded
    cdef Py_ssize_t G = 4 * H
    cdef Py_ssize_t TG = T * G, TH = T * H
    cdef int ld_rec = <int> (G if t_rec == Trans else H)
    cdef const floating *c_prev
    # With no gradient on the sequence output, dhs points at one row of zeros that every
    # (b, t) reads: a stride of 0 instead of a second copy of the loop.
    cdef Py_ssize_t ld_dhs = H if dhs_given else 0
    for t in range(T - 1, -1, -1):
        # 5b-3c. dz[:, t] from dhs_t + dh_next and dc_next; dc_next = dc * f; db += dz_t
        padded = 0
        for r in range(B):
            if real == NULL or real[r * T + t]:
                c_prev = c0 + r * H if t == 0 else cs + r * TH + (t - 1) * H
                lstm_backward_row(dz + r * TG + t * G, db, dc_next + r * H,
                                  dh_next + r * H, dhs + (r * T + t) * ld_dhs,
                                  gates + r * TG + t * G, cs + r * TH + t * H, c_prev, H,
                                  act, ract)
            else:
                # 6b. a padded row: nothing into the step, dc_next unchanged;
                # dh_pad = dhs_t + dh_next
                padded += 1
                hold_padded_row(dz + r * TG + t * G, G, dh_pad + r * H, dh_next + r * H,
                                dhs + (r * T + t) * ld_dhs, H)
        # 2b. dh_next = dz[:, t] @ W_h^T
        gemm(NoTrans, t_rec, <int> B, <int> H, <int> G, <floating> 1.0,
             dz + t * G, <int> TG, W_rec, ld_rec, <floating> 0.0, dh_next, <int> H)
        if mask != NULL:
            # ... * m: recurrent dropout passed only the kept units of h_{t-1}
            for r in range(B * H):
                dh_next[r] *= mask[r]
        if padded:
            # 6b. a padded row passes its gradient straight to h_{t-1}
            pass_padded_rows(dh_next, dh_pad, real, B, T, t, H)
    # 1b. dW_x = x^T @ dz and dx = dz @ W_x^T, over all B*T rows
    gemm(Trans, NoTrans, <int> D, <int> G, <int> (B * T), <floating> 1.0,
         x, <int> D, dz, <int> G, <floating> 0.0, dW_x, <int> G)
    gemm(NoTrans, Trans, <int> (B * T), <int> D, <int> G, <floating> 1.0,
         dz, <int> G, W_x, <int> G, <floating> 0.0, dx, <int> D)
    # 2c. dW_h = sum over b, t of h_masked_{t-1}^T dz_t, in two GEMMs rather than T:
    #   the t = 0 terms:   dW_h = h0_masked^T @ dz[:, 0]
    gemm(Trans, NoTrans, <int> H, <int> G, <int> B, <floating> 1.0,
         h0_masked, <int> H, dz, <int> TG, <floating> 0.0, dW_h, <int> G)
    if T > 1:
        # the t >= 1 terms: in the flat (B*T, .) row order, row r of hs is h_t of sequence
        # b and row r + 1 of dz is dz_{t+1} of the same b, except where t = T-1: there
        # row r + 1 is dz_0 of sequence b + 1. dz is our scratch and every other use of
        # dz[:, 0] is done, so zero it: the B - 1 pairs that cross from one sequence to
        # the next then add nothing (where _simple_rnn subtracts them again, which can
        # cancel badly when h_{T-1} is large) ...
        for r in range(B):
            memset(dz + r * TG, 0, G * sizeof(floating))
        # ... and take every pair in one GEMM:
        # dW_h += hs_masked.reshape(B*T, H)[:-1]^T @ dz.reshape(B*T, G)[1:]
        gemm(Trans, NoTrans, <int> H, <int> G, <int> (B * T - 1), <floating> 1.0,
             hs_masked, <int> H, dz + G, <int> G, <floating> 1.0, dW_h, <int> G)


cdef void _forward_packed(float[:, :, ::1] gates, float[:, :, ::1] hs, float[:, :, ::1] cs,
                          const float[:, :, ::1] x, const float[:, ::1] h0,
                          const float[:, ::1] c0, const float[:, ::1] W_x,
                          const float[:, ::1] W_h, const float[::1] b,
                          const float[:, ::1] mask, float[:, :, ::1] h_masked,
                          const unsigned char[:, ::1] real, float[::1] scratch,
                          bint h_all, int threads):
    # The float32 default-activation forward over the packed GEMM (_lstm_packed.h), steps
    # 0-6 all on its threads; h_masked (2, B, H) with a mask, scratch
    # forward_scratch(B, D, H, pg_max_threads()) + 16 floats. gates None: no backward
    # follows (lstm_inference): cs (2, B, H) keeps the last two steps, and so does hs
    # unless h_all (then hs (B, T, H)).
    cdef Py_ssize_t B = x.shape[0], T = x.shape[1], D = x.shape[2], H = W_h.shape[0]
    cdef float *gates_p = NULL
    cdef const float *mask_p = NULL
    cdef float *h_masked_p = NULL
    cdef const unsigned char *real_p = NULL
    if gates is not None:
        gates_p = &gates[0, 0, 0]
    if mask is not None:
        mask_p, h_masked_p = &mask[0, 0], &h_masked[0, 0, 0]
    if real is not None:
        real_p = &real[0, 0]
    with nogil:
        forward_packed_f32(gates_p, &hs[0, 0, 0], &cs[0, 0, 0], &x[0, 0, 0],
                           &h0[0, 0], &c0[0, 0], &W_x[0, 0], &W_h[0, 0],
                           pg_align(&scratch[0]), &b[0], mask_p, h_masked_p, real_p,
                           B, T, D, H, h_all, threads)


cdef void _backward_packed(float[:, :, ::1] dx, float[:, ::1] dh_next,
                           float[:, ::1] dc_next, float[:, ::1] dW_x, float[:, ::1] dW_h,
                           float[::1] db, float[:, :, ::1] dz, const float[:, :, ::1] x,
                           const float[:, ::1] h0_masked, const float[:, ::1] c0,
                           const float[:, ::1] W_x, const float[:, ::1] W_h,
                           const float[:, :, ::1] hs_masked, const float[:, :, ::1] cs,
                           const float[:, :, ::1] gates, const float[:, :, ::1] dhs,
                           const float[:, ::1] mask, const unsigned char[:, ::1] real,
                           float[:, ::1] dh_pad, bint dhs_given, float[::1] scratch,
                           int threads):
    # The float32 default-activation backward over the packed GEMM (_lstm_packed.h), every
    # step (6b-1b, 2c) on its threads; scratch backward_scratch(D, H, pg_max_threads())
    # + 16 floats; dh_pad (B, H) with real.
    cdef Py_ssize_t B = x.shape[0], T = x.shape[1], D = x.shape[2], H = W_h.shape[0]
    cdef const float *mask_p = NULL
    cdef const unsigned char *real_p = NULL
    cdef float *dh_pad_p = NULL
    if mask is not None:
        mask_p = &mask[0, 0]
    if real is not None:
        real_p, dh_pad_p = &real[0, 0], &dh_pad[0, 0]
    with nogil:
        backward_packed_f32(&dx[0, 0, 0], &dW_x[0, 0], &dW_h[0, 0], &dh_next[0, 0],
                            &dc_next[0, 0], &db[0], &dz[0, 0, 0], pg_align(&scratch[0]),
                            &x[0, 0, 0], &h0_masked[0, 0], &c0[0, 0], &W_x[0, 0],
                            &W_h[0, 0], &hs_masked[0, 0, 0], &cs[0, 0, 0], &gates[0, 0, 0],
                            &dhs[0, 0, 0], H if dhs_given else 0, mask_p, real_p, dh_pad_p,
                            B, T, D, H, threads)


# Which time loop runs the float32 default-activation case: None chooses by shape
# (_packed_path), "packed" or "blas" force one (tests: _force_path).
cdef object _forced_path = None


def _force_path(path):
    """Test hook: force the float32 default-activation LSTM onto ``"packed"`` or
    ``"blas"``, or (None) back to choosing by shape; returns the previous setting."""
    global _forced_path
    if path not in (None, "packed", "blas"):
        raise ValueError(f"expected None, 'packed' or 'blas', got {path!r}")
    previous, _forced_path = _forced_path, path
    return previous


def _force_split(split):
    """Test hook: split the packed time loop over the threads by ``"rows"`` or by
    ``"units"`` (_lstm_packed.h, crnn_lp_by_rows), or (None) choose by shape; returns the
    previous setting."""
    global lp_split
    names = ("units", "rows")
    previous = _checks.split_setting(lp_split, names)
    lp_split = _checks.split_code(split, names)
    return previous


cdef Py_ssize_t _forward_scratch_size(Py_ssize_t B, Py_ssize_t D, Py_ssize_t H):
    cdef Py_ssize_t off[3]
    return forward_scratch(B, D, H, pg_max_threads(), off)


cdef Py_ssize_t _backward_scratch_size(Py_ssize_t D, Py_ssize_t H):
    cdef Py_ssize_t off[6]
    return backward_scratch(D, H, pg_max_threads(), off)


# The packed path from this many multiply-adds per step, B * 4H * (D + H); see
# _packed_path.
PACKED_MIN_WORK = 2 ** 19


def _packed_path(dtype, int act, int ract, Py_ssize_t B, Py_ssize_t D, Py_ssize_t H):
    """Whether the LSTM runs on the packed GEMM (_lstm_packed.h, no BLAS) rather than the
    BLAS loop: float32 with the default activations (tanh, sigmoid), from
    ``B * 4H * (D + H) >= PACKED_MIN_WORK`` multiply-adds per step.

    Measured on this project's machine (AMD EPYC Zen 4, 2 cores; forward and backward
    kernels, steady state, benchmarks/bench_step_gemm.py --kernels): from 2.6e5 a step
    (e.g. (32, 50, 32, 32), (8, 50, 64, 64)) the packed path was 5-45% faster, at the
    benchmark shapes 20-40%, at B = 1 with H = 256 2x; below, the two were within ~10%
    either way ((16, 50, 32, 32): BLAS 0.30 + 0.42 ms, packed 0.33 + 0.60). float64 and
    the other activations stay on the BLAS loop.

    The threshold was 2**22 while the packed path ran on OpenMP's threads with a barrier
    per step: one thread off its CPU stalled the loop (after a NumPy or SciPy matmul,
    whose OpenBLAS workers spin ~100 ms, the (32, 50, 32, 64) forward took ~7.5 ms
    instead of ~1.0 on the BLAS loop; after 0.05-0.15 s idle, 6-10 ms). On the work
    claiming pool of _pgemm.h (crnn_pg_run) the caller runs whatever its worker does not
    take; at (32, 50, 32, 64), medians, forward and backward, packed against the BLAS
    loop: quiet 0.58 and 1.25 ms against 0.93 and 1.67; right after a NumPy matmul 1.05-
    1.13 and 2.1-2.4 against 0.97 and 1.75; after a SciPy one 1.06 and 2.14 against 0.92
    and 1.62; the forward after 0.05-0.15 s idle 0.9 against 1.1-1.3. What is left is the
    backward beside a spinning OpenBLAS worker, 20-35% slower than the BLAS loop's (the
    packed backward on one thread is itself slower than the BLAS loop's at small shapes:
    1.9 ms against 1.4-1.7). It grows at smaller shapes, hence 2**19 and not the 2**18
    where the packed path starts to win in steady state: at (32, 50, 32, 32) and
    (8, 50, 64, 64) (2**18) after a SciPy matmul the packed backward took 0.8-1.1 ms
    against 0.5-0.6 (quiet: 0.45-0.65 against 0.72-1.02).
    """
    if dtype != np.float32 or act != TANH or ract != SIGMOID or H < 1 or D < 1:
        return False
    if _forced_path is not None:
        return _forced_path == "packed"
    return <double> B * 4 * H * (D + H) >= PACKED_MIN_WORK


def lstm_forward(x, h0, c0, W_x, W_h, b, activation="tanh", recurrent_activation="sigmoid",
                 recurrent_mask=None, mask=None):
    """Run an LSTM (Keras's: gates i, f, c, o) over a batch of sequences.

    .. math::
        z &= x_t W_x + (h_{t-1} \\odot m) W_h + b, \\quad
        i = \\rho(z_i),\\ f = \\rho(z_f),\\ g = \\alpha(z_c),\\ o = \\rho(z_o) \\\\
        c_t &= f \\odot c_{t-1} + i \\odot g, \\qquad h_t = o \\odot \\alpha(c_t)

    with :math:`\\alpha` the activation, :math:`\\rho` the recurrent activation,
    :math:`h_{-1} = h_0`, :math:`c_{-1} = c_0`.

    Parameters
    ----------
    x : ndarray (B, T, D), float32 or float64, C-contiguous
    h0, c0 : ndarray (B, H), the initial states
    W_x : ndarray (D, 4H), the kernel (gate blocks i, f, c, o)
    W_h : ndarray (H, 4H), the recurrent kernel
    b : ndarray (4H,), the bias
    activation, recurrent_activation : {"tanh", "relu", "sigmoid", "linear"}
        Defaults "tanh" and "sigmoid".
    recurrent_mask : ndarray (B, H) or None
        Recurrent-dropout mask ``m`` (already scaled by ``1 / (1 - rate)``), the same at
        every step; it scales only the ``h_{t-1}`` that enters the product with ``W_h``.
    mask : ndarray (B, T), bool or uint8, C-contiguous, or None
        The real steps (nonzero) and the padding (zero): at a padded step both states
        pass through unchanged and the step's gates are zero.

    Returns
    -------
    hs : ndarray (B, T, H), every hidden state ``h_0 .. h_{T-1}``.
    cs : ndarray (B, T, H), every cell state.
    gates : ndarray (B, T, 4H), the activated gates ``i, f, g, o`` of every step.
    """
    act = CODES[_check_activation(activation)]
    ract = CODES[_check_activation(recurrent_activation)]
    B, T, D, H = _checks.lstm_forward(x, h0, c0, W_x, W_h, b, recurrent_mask)
    real = _checks.real_steps(mask, B, T)
    dtype = x.dtype
    hs = np.empty((B, T, H), dtype=dtype)
    cs = np.empty((B, T, H), dtype=dtype)
    gates = np.empty((B, T, 4 * H), dtype=dtype)
    if B == 0 or T == 0:
        return hs, cs, gates
    if _packed_path(dtype, act, ract, B, D, H):
        h_masked = (None if recurrent_mask is None
                    else np.empty((2, B, H), dtype=dtype))
        scratch = np.empty(_forward_scratch_size(B, D, H) + 16, dtype=dtype)
        _forward_packed(gates, hs, cs, x, h0, c0, W_x, W_h, b, recurrent_mask, h_masked,
                        real, scratch, True, pg_max_threads())
        return hs, cs, gates
    h_masked = None if recurrent_mask is None else np.empty((B, H), dtype=dtype)
    # Step 2 multiplies by W_h, or by a transposed copy where BLAS is faster so.
    W_hT = np.empty((4 * H, H), dtype=dtype) if trans_b_faster(B, 4 * H, H) else None
    if dtype == np.float32:
        _forward_views[float](gates, hs, cs, x, h0, c0, W_x, W_h, W_hT, b, recurrent_mask,
                              h_masked, real, act, ract)
    else:
        _forward_views[double](gates, hs, cs, x, h0, c0, W_x, W_h, W_hT, b,
                               recurrent_mask, h_masked, real, act, ract)
    return hs, cs, gates


def lstm_inference(x, h0, c0, W_x, W_h, b, activation="tanh",
                   recurrent_activation="sigmoid", mask=None, return_sequences=True):
    """:func:`lstm_forward` for a call that no backward pass follows (``crnn.no_grad``,
    ``predict``): the same states, without the record that backward reads.

    Parameters as for :func:`lstm_forward` (no recurrent dropout: it is for training),
    and ``return_sequences``: whether to return every hidden state or only the last.

    Returns
    -------
    hs : ndarray (B, T, H) or None
        Every hidden state (None unless ``return_sequences``).
    h_last, c_last : ndarray (B, H)
        The states after the last step (after each sequence's last real step, with a
        mask); ``h0``, ``c0`` (copies) when ``T == 0``.

    On the packed path (``_packed_path``) the gates are never stored and only two steps
    of ``c`` (and of ``h`` without ``return_sequences``) are kept: at the
    (64, 100, 128, 256) benchmark shape the record is 39 MB written per call (measured:
    25.4 ms without it, 26.6 with it). On the BLAS loop the gates buffer is where each
    step's GEMM goes, so this runs :func:`lstm_forward` and keeps what it returns.
    """
    act = CODES[_check_activation(activation)]
    ract = CODES[_check_activation(recurrent_activation)]
    B, T, D, H = _checks.lstm_forward(x, h0, c0, W_x, W_h, b, None)
    real = _checks.real_steps(mask, B, T)
    dtype = x.dtype
    if B == 0 or T == 0:
        hs = np.empty((B, T, H), dtype=dtype) if return_sequences else None
        return hs, np.array(h0, dtype=dtype), np.array(c0, dtype=dtype)
    if not _packed_path(dtype, act, ract, B, D, H):
        hs, cs, _ = lstm_forward(x, h0, c0, W_x, W_h, b, activation, recurrent_activation,
                                 None, mask)
        return (hs if return_sequences else None), hs[:, -1].copy(), cs[:, -1].copy()
    hs = np.empty((B, T, H) if return_sequences else (2, B, H), dtype=dtype)
    cs = np.empty((2, B, H), dtype=dtype)
    scratch = np.empty(_forward_scratch_size(B, D, H) + 16, dtype=dtype)
    _forward_packed(None, hs, cs, x, h0, c0, W_x, W_h, b, None, None, real, scratch,
                    return_sequences, pg_max_threads())
    last = (T - 1) & 1
    if return_sequences:
        return hs, hs[:, -1].copy(), cs[last].copy()
    return None, hs[last].copy(), cs[last].copy()


cdef void _forward_views(floating[:, :, ::1] gates, floating[:, :, ::1] hs,
                         floating[:, :, ::1] cs, const floating[:, :, ::1] x,
                         const floating[:, ::1] h0, const floating[:, ::1] c0,
                         const floating[:, ::1] W_x, const floating[:, ::1] W_h,
                         floating[:, ::1] W_hT, const floating[::1] b,
                         const floating[:, ::1] mask, floating[:, ::1] h_masked,
                         const unsigned char[:, ::1] real, int act, int ract):
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
            # W_hT = W_h^T, (4H, H)
            transpose(<int> H, <int> (4 * H), &W_h[0, 0], <int> (4 * H), &W_hT[0, 0],
                      <int> H)
            W_rec, t_rec = &W_hT[0, 0], Trans
        _forward(&gates[0, 0, 0], &hs[0, 0, 0], &cs[0, 0, 0], &x[0, 0, 0], &h0[0, 0],
                 &c0[0, 0], &W_x[0, 0], W_rec, t_rec, &b[0], mask_p, h_masked_p, real_p,
                 B, T, D, H, act, ract)


def lstm_backward(x, h0, c0, W_x, W_h, hs, cs, gates, dhs, dh_last, dc_last,
                  activation="tanh", recurrent_activation="sigmoid", recurrent_mask=None,
                  mask=None):
    """Backpropagate through :func:`lstm_forward` (BPTT).

    Parameters
    ----------
    x, h0, c0, W_x, W_h, activation, recurrent_activation, recurrent_mask, mask
        As given to the forward pass.
    hs, cs : ndarray (B, T, H)
        The hidden and cell states the forward pass returned.
    gates : ndarray (B, T, 4H)
        The activated gates the forward pass returned (read, not modified).
    dhs : ndarray (B, T, H) or None
        Gradient of the loss with respect to every ``h_t`` (None: zero).
    dh_last, dc_last : ndarray (B, H) or None
        Gradients with respect to the final ``h`` and ``c`` coming from outside the
        sequence output, e.g. through ``return_state`` (None: zero).

    Returns
    -------
    dx : ndarray (B, T, D)
    dh0, dc0 : ndarray (B, H)
    dW_x : ndarray (D, 4H)
    dW_h : ndarray (H, 4H)
    db : ndarray (4H,)
    """
    act = CODES[_check_activation(activation)]
    ract = CODES[_check_activation(recurrent_activation)]
    B, T, D, H = _checks.lstm_backward(x, h0, c0, W_x, W_h, hs, cs, gates, dhs, dh_last,
                                       dc_last, recurrent_mask)
    real = _checks.real_steps(mask, B, T)
    dtype = x.dtype
    G = 4 * H
    dx = np.empty((B, T, D), dtype=dtype)
    dh0 = np.zeros((B, H), dtype=dtype) if dh_last is None else dh_last.copy()
    dc0 = np.zeros((B, H), dtype=dtype) if dc_last is None else dc_last.copy()
    dW_x = np.zeros((D, G), dtype=dtype)
    dW_h = np.zeros((H, G), dtype=dtype)
    db = np.zeros(G, dtype=dtype)
    if B == 0 or T == 0:
        dx.fill(0)
        return dx, dh0, dc0, dW_x, dW_h, db
    dz = np.empty((B, T, G), dtype=dtype)
    dhs_given = dhs is not None
    if not dhs_given:
        dhs = np.zeros((1, 1, H), dtype=dtype)  # read with row stride 0, see _backward
    if recurrent_mask is None:
        hs_masked, h0_masked = hs, h0
    else:
        hs_masked = hs * recurrent_mask[:, None, :]
        h0_masked = h0 * recurrent_mask
    dh_pad = None if real is None else np.empty((B, H), dtype=dtype)
    if _packed_path(dtype, act, ract, B, D, H):
        scratch = np.empty(_backward_scratch_size(D, H) + 16, dtype=dtype)
        _backward_packed(dx, dh0, dc0, dW_x, dW_h, db, dz, x, h0_masked, c0, W_x, W_h,
                         hs_masked, cs, gates, dhs, recurrent_mask, real, dh_pad,
                         dhs_given, scratch, pg_max_threads())
        return dx, dh0, dc0, dW_x, dW_h, db
    # Step 2b multiplies by W_h^T, as W_h with Trans or, where BLAS is faster so, as a
    # transposed copy without.
    W_hT = None if trans_b_faster(B, H, G) else np.empty((G, H), dtype=dtype)
    if dtype == np.float32:
        _backward_views[float](dx, dh0, dc0, dW_x, dW_h, db, dz, x, h0_masked, c0, W_x,
                               W_h, W_hT, hs_masked, cs, gates, dhs, recurrent_mask,
                               real, dh_pad, dhs_given, act, ract)
    else:
        _backward_views[double](dx, dh0, dc0, dW_x, dW_h, db, dz, x, h0_masked, c0, W_x,
                                W_h, W_hT, hs_masked, cs, gates, dhs, recurrent_mask,
                                real, dh_pad, dhs_given, act, ract)
    return dx, dh0, dc0, dW_x, dW_h, db


cdef void _backward_views(floating[:, :, ::1] dx, floating[:, ::1] dh_next,
                          floating[:, ::1] dc_next, floating[:, ::1] dW_x,
                          floating[:, ::1] dW_h, floating[::1] db, floating[:, :, ::1] dz,
                          const floating[:, :, ::1] x, const floating[:, ::1] h0_masked,
                          const floating[:, ::1] c0, const floating[:, ::1] W_x,
                          const floating[:, ::1] W_h, floating[:, ::1] W_hT,
                          const floating[:, :, ::1] hs_masked,
                          const floating[:, :, ::1] cs, const floating[:, :, ::1] gates,
                          const floating[:, :, ::1] dhs, const floating[:, ::1] mask,
                          const unsigned char[:, ::1] real, floating[:, ::1] dh_pad,
                          bint dhs_given, int act, int ract):
    cdef Py_ssize_t B = x.shape[0], T = x.shape[1], D = x.shape[2], H = W_h.shape[0]
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
            # W_hT = W_h^T, (4H, H)
            transpose(<int> H, <int> (4 * H), &W_h[0, 0], <int> (4 * H), &W_hT[0, 0],
                      <int> H)
            W_rec, t_rec = &W_hT[0, 0], NoTrans
        _backward(&dx[0, 0, 0], &dh_next[0, 0], &dc_next[0, 0], &dW_x[0, 0], &dW_h[0, 0],
                  &db[0], &dz[0, 0, 0], &x[0, 0, 0], &h0_masked[0, 0], &c0[0, 0],
                  &W_x[0, 0], W_rec, t_rec, &hs_masked[0, 0, 0], &cs[0, 0, 0],
                  &gates[0, 0, 0], &dhs[0, 0, 0], dhs_given, mask_p, real_p, dh_pad_p,
                  B, T, D, H, act, ract)


def _row_stride(a, name):
    if not isinstance(a, np.ndarray) or a.ndim != 2 or a.dtype != np.float32:
        raise ValueError(f"expected {name} to be a 2-D float32 ndarray, got "
                         f"{type(a).__name__} {getattr(a, 'dtype', '')}")
    if a.strides[1] != 4 or a.strides[0] % 4 or a.strides[0] < 4 * a.shape[1]:
        raise ValueError(f"expected {name} to have contiguous rows, got strides "
                         f"{a.strides}")
    return a.strides[0] // 4


cdef Py_ssize_t packed_size(Py_ssize_t K, Py_ssize_t N) noexcept nogil:
    """Floats of a (K, N) weight matrix packed for packed_product, plus 16 for
    packed_align."""
    return (N + 63) // 64 * K * 64 + 16


cdef float *packed_align(float *p) noexcept nogil:
    """p rounded up to 64 bytes (the packed panels' alignment)."""
    return pg_align(p)


cdef void packed_product(const float *A, Py_ssize_t lda, const float *W, Py_ssize_t ldw,
                         float *Wp, float *C, Py_ssize_t ldc, Py_ssize_t M, Py_ssize_t N,
                         Py_ssize_t K, bint accumulate, Py_ssize_t steps) noexcept nogil:
    """C (+)= A @ W, ``steps`` times, on this module's pool (_pgemm.h,
    crnn_pg_gemm_steps): W (K, N) is packed into Wp (aligned) first; W NULL: Wp holds it
    packed already; steps 0: only the packing."""
    pg_gemm_steps(A, lda, W, ldw, Wp, C, ldc, M, N, K, accumulate, steps)


def _step_gemm_packed(A, W, C, bint accumulate, Py_ssize_t steps=1):
    """Benchmark/test hook: ``C (+)= A @ W`` ``steps`` times with the packed GEMM (W packed
    once, then one product per phase on the pool, as the LSTM runs it).
    A (M, K), W (K, N), C (M, N): float32 with contiguous rows (any row stride)."""
    cdef Py_ssize_t lda = _row_stride(A, "A"), ldw = _row_stride(W, "W")
    cdef Py_ssize_t ldc = _row_stride(C, "C")
    cdef Py_ssize_t M = C.shape[0], N = C.shape[1], K = A.shape[1]
    if A.shape[0] != M or W.shape[0] != K or W.shape[1] != N or min(M, N, K) < 1:
        raise ValueError(f"expected A (M, K), W (K, N), C (M, N), all non-empty, got "
                         f"{A.shape}, {W.shape}, {C.shape}")
    np_ = (N + 63) // 64
    Wp = np.empty(np_ * K * 64 + 16, dtype=np.float32)
    cdef float[::1] Wp_v = Wp
    cdef float[:, :] A_v = A, C_v = C
    cdef const float[:, :] W_v = W
    with nogil:
        pg_gemm_steps(&A_v[0, 0], lda, &W_v[0, 0], ldw, pg_align(&Wp_v[0]), &C_v[0, 0], ldc,
                      M, N, K, accumulate, steps)
    return C


def _step_gemm_blas(A, W, str trans, C, float beta, Py_ssize_t steps=1):
    """Benchmark hook: ``C = A @ op(W) + beta * C`` ``steps`` times through BLAS."""
    cdef Py_ssize_t lda = _row_stride(A, "A"), ldw = _row_stride(W, "W")
    cdef Py_ssize_t ldc = _row_stride(C, "C")
    cdef int M = C.shape[0], N = C.shape[1], K = A.shape[1]
    cdef BLAS_Trans t = Trans if trans == "t" else NoTrans
    cdef float[:, :] A_v = A, C_v = C
    cdef const float[:, :] W_v = W
    cdef Py_ssize_t s
    with nogil:
        for s in range(steps):
            gemm(NoTrans, t, M, N, K, <float> 1.0, &A_v[0, 0], <int> lda, &W_v[0, 0],
                 <int> ldw, beta, &C_v[0, 0], <int> ldc)
    return C


def _packed_isa(isa=None):
    """The packed GEMM's variant (0 portable C, 1 AVX2+FMA, 2 AVX-512F); with ``isa``,
    force that one first (-1: automatic again). Raises ValueError if the CPU lacks it."""
    if isa is not None:
        if pg_force_isa(isa) != 0:
            raise ValueError(f"expected a kernel variant this CPU runs, got {isa}")
    return pg_isa()


def _packed_threads(n=None):
    """The pool's thread count (_pgemm.h, one setting for the process: crnn.cores
    sets and reads it; always 1 without OpenMP); with ``n``, set it first."""
    if n is not None:
        if n < 1:
            raise ValueError(f"expected a thread count >= 1, got {n}")
        pg_set_threads(n)
    return pg_max_threads()


def _local_threads(n=None):
    """The calling thread's own thread count (0: the process's), which the kernels it
    runs use instead of the process's while it is set (crnn.cores.concurrently); with
    ``n``, set it first (0 to unset)."""
    if n is not None:
        if n < 0:
            raise ValueError(f"expected a thread count >= 0, got {n}")
        pg_set_local_threads(n)
    return pg_local_count()


# -- any product on the pool -----------------------------------------------------------
# While crnn computes, the BLAS libraries run on one thread (crnn/cores.py) and
# crnn._blas.gemm hands every large product here: C is cut into as many blocks of rows
# (or of columns, whichever side is longer) as the pool has threads, and each block is
# one single-threaded BLAS call, claimed like any other work of the pool. Each element
# of C is computed by the same BLAS call shape along k as without the split.
cdef struct _split_job:
    crnn_pg_work_t w
    BLAS_Trans ta, tb
    int m, n, k, lda, ldb, ldc, block, nblocks
    bint by_rows, dbl
    double alpha, beta
    const void *A
    const void *B
    void *C


cdef Py_ssize_t _split_items(const crnn_pg_work_t *w, Py_ssize_t ph) noexcept nogil:
    return (<const _split_job *> w).nblocks


cdef void _split_block(const _split_job *j, floating *C, const floating *A,
                       const floating *B, Py_ssize_t i) noexcept nogil:
    # offsets in Py_ssize_t: a row index times a row stride can pass 2**31 elements
    cdef Py_ssize_t lo = i * j.block
    cdef Py_ssize_t hi = min(lo + j.block, <Py_ssize_t> (j.m if j.by_rows else j.n))
    if j.by_rows:   # rows lo:hi of C = rows lo:hi of op(A) @ op(B)
        blas_gemm(j.ta, j.tb, <int> (hi - lo), j.n, j.k, <floating> j.alpha,
                  A + (lo * j.lda if j.ta == NoTrans else lo), j.lda, B, j.ldb,
                  <floating> j.beta, C + lo * j.ldc, j.ldc)
    else:           # columns lo:hi of C = op(A) @ columns lo:hi of op(B)
        blas_gemm(j.ta, j.tb, j.m, <int> (hi - lo), j.k, <floating> j.alpha, A, j.lda,
                  B + (lo if j.tb == NoTrans else lo * j.ldb), j.ldb,
                  <floating> j.beta, C + lo, j.ldc)


cdef void _split_run(const crnn_pg_work_t *w, Py_ssize_t ph, Py_ssize_t i,
                     int slot) noexcept nogil:
    cdef const _split_job *j = <const _split_job *> w
    if j.dbl:
        _split_block(j, <double *> j.C, <const double *> j.A, <const double *> j.B, i)
    else:
        _split_block(j, <float *> j.C, <const float *> j.A, <const float *> j.B, i)


cdef bint _split_gemm(BLAS_Trans ta, BLAS_Trans tb, int m, int n, int k, double alpha,
                      const void *A, int lda, const void *B, int ldb, double beta,
                      void *C, int ldc, bint dbl) noexcept nogil:
    cdef int nth = pg_max_threads()
    cdef _split_job j
    cdef int dim = m if m >= n else n
    if nth < 2 or dim < 32:
        return False
    j.by_rows = m >= n
    j.block = ((dim + nth - 1) // nth + 7) // 8 * 8   # whole 8-row (column) blocks
    j.nblocks = (dim + j.block - 1) // j.block
    j.ta, j.tb, j.m, j.n, j.k = ta, tb, m, n, k
    j.lda, j.ldb, j.ldc = lda, ldb, ldc   # each >= 1: gemm splits only non-empty products
    j.alpha, j.beta, j.A, j.B, j.C, j.dbl = alpha, beta, A, B, C, dbl
    j.w.items = _split_items
    j.w.run = _split_run
    j.w.nphases = 1
    pg_run(&j.w, nth)
    return True


set_gemm_splitter(_split_gemm)


# -- any work on the pool, for other modules (_lstm.pxd) ---------------------------------
cdef struct _pool_job:
    crnn_pg_work_t w
    pool_items_f items
    pool_item_f run
    void *ctx


cdef Py_ssize_t _pool_job_items(const crnn_pg_work_t *w, Py_ssize_t ph) noexcept nogil:
    cdef const _pool_job *j = <const _pool_job *> w
    return j.items(j.ctx, ph)


cdef void _pool_job_run(const crnn_pg_work_t *w, Py_ssize_t ph, Py_ssize_t i,
                        int slot) noexcept nogil:
    cdef const _pool_job *j = <const _pool_job *> w
    j.run(j.ctx, ph, i)


cdef void pool_run(pool_items_f items, pool_item_f run, void *ctx, Py_ssize_t nphases,
                   int nth) noexcept nogil:
    """Phases of items on the pool (_lstm.pxd); one thread when nth is 1."""
    cdef _pool_job j
    j.w.items = _pool_job_items
    j.w.run = _pool_job_run
    j.w.nphases = nphases
    j.items, j.run, j.ctx = items, run, ctx
    pg_run(&j.w, nth)


cdef int pool_threads() noexcept nogil:
    """The pool's thread count (crnn.set_num_threads)."""
    return pg_max_threads()
