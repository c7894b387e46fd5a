# The GRU's fused elementwise passes, one batch row of one step per call: the forward
# steps 3-5 (reset_after=True), 3 and 4-5 (reset_after=False) and the backward steps of
# _gru.pyx (whose docstring numbers the steps). Shared by the time loops of _gru.pyx and
# the streaming step of _step.pyx, which cimport it; there is no runtime module behind
# this file.
#
# float32 with the default activations (sigmoid gates, tanh candidate) goes to the
# vectorised rows of _gru_simd.h; everything else runs the generic loops here, which
# compute the same formulas in the same order (and call the same float32 tanh and exp).
# A row of g holds the three gate blocks z, r, n of n units each, at 0, n, 2n: on entry
# of a forward pass the input projection x_t @ W_x (no bias), on exit the activated gates.
from cython cimport floating

from crnn._activations cimport SIGMOID, TANH, activate, derivative


cdef extern from "_gru_simd.h" nogil:
    # The fused passes for float32 with sigmoid gates and a tanh candidate, vectorised
    # for AVX2 / AVX-512 (see _gru_simd.h), one batch row per call; each has a generic
    # twin below. Forward: steps 3-5 (reset_after=True), 3 and 4-5 (reset_after=False).
    void after_row_f32 "crnn_gru_after_row_f32"(
        float *g, const float *rec, const float *b_i, const float *b_r,
        const float *h_prev, float *hn, float *h, float *h_masked, const float *m,
        Py_ssize_t n)
    void gates_row_f32 "crnn_gru_gates_row_f32"(
        float *g, const float *rec, const float *b, const float *hm, float *q,
        Py_ssize_t n)
    void candidate_row_f32 "crnn_gru_candidate_row_f32"(
        const float *z, float *g_h, const float *rec_h, const float *b_h,
        const float *h_prev, float *h, float *h_masked, const float *m, Py_ssize_t n)
    # Backward: steps 5b-2c (reset_after=True); 5b-3b and 4b-3b (reset_after=False).
    void after_back_row_f32 "crnn_gru_after_back_row_f32"(
        float *dg, float *dxh_out, float *db_ih, float *db_r, float *dh_next,
        const float *dh_seq, const float *g, const float *hn, const float *h_prev,
        Py_ssize_t n)
    void before_back_row_f32 "crnn_gru_before_back_row_f32"(
        float *dg, float *db, float *dh_next, const float *dh_seq, const float *g,
        const float *h_prev, Py_ssize_t n)
    void before_reset_row_f32 "crnn_gru_before_reset_row_f32"(
        float *dg_r, float *db_r, float *dq, float *dh_next, const float *r,
        const float *h_prev, const float *m, Py_ssize_t n)


# -- forward ---------------------------------------------------------------------------

cdef inline void gru_after_row(floating *g, const floating *rec, const floating *b_i,
                               const floating *b_r, const floating *h_prev, floating *hn,
                               floating *h, floating *h_masked, const floating *m,
                               Py_ssize_t n, int act, int ract) noexcept nogil:
    """reset_after=True, steps 3-5 (and 0 of the next step where m is not NULL); rec is
    the row of hm @ W_h (no bias), hn gets hh = rec_h + b_r,h."""
    if floating is float:
        if act == TANH and ract == SIGMOID:
            after_row_f32(g, rec, b_i, b_r, h_prev, hn, h, h_masked, m, n)
            return
    cdef Py_ssize_t j
    cdef floating z, r, hh, c, ht
    for j in range(n):
        # 3. the gates
        z = activate((g[j] + b_i[j]) + (rec[j] + b_r[j]), ract)
        r = activate((g[n + j] + b_i[n + j]) + (rec[n + j] + b_r[n + j]), ract)
        # 4. the candidate, reset after the product
        hh = rec[2 * n + j] + b_r[2 * n + j]
        c = activate((g[2 * n + j] + b_i[2 * n + j]) + r * hh, act)
        # 5. h_t = z * h_{t-1} + (1 - z) * n
        ht = z * h_prev[j] + (1 - z) * c
        g[j], g[n + j], g[2 * n + j] = z, r, c
        hn[j] = hh
        h[j] = ht
        if m != NULL:
            # 0. (of the next step) hm = h_t * m
            h_masked[j] = ht * m[j]


cdef inline void gru_gates_row(floating *g, const floating *rec, const floating *b,
                               const floating *hm, floating *q, Py_ssize_t n, int act,
                               int ract) noexcept nogil:
    """reset_after=False, step 3 (z, r and q = r * hm)."""
    if floating is float:
        if act == TANH and ract == SIGMOID:
            gates_row_f32(g, rec, b, hm, q, n)
            return
    cdef Py_ssize_t j
    cdef floating z, r
    for j in range(n):
        z = activate((g[j] + b[j]) + rec[j], ract)
        r = activate((g[n + j] + b[n + j]) + rec[n + j], ract)
        g[j], g[n + j] = z, r
        q[j] = r * hm[j]


cdef inline void gru_candidate_row(const floating *z, floating *g_h, const floating *rec_h,
                                   const floating *b_h, const floating *h_prev,
                                   floating *h, floating *h_masked, const floating *m,
                                   Py_ssize_t n, int act, int ract) noexcept nogil:
    """reset_after=False, steps 4-5 (and 0 of the next step where m is not NULL) after
    the product q @ U_h."""
    if floating is float:
        if act == TANH and ract == SIGMOID:
            candidate_row_f32(z, g_h, rec_h, b_h, h_prev, h, h_masked, m, n)
            return
    cdef Py_ssize_t j
    cdef floating c, ht
    for j in range(n):
        c = activate((g_h[j] + b_h[j]) + rec_h[j], act)
        ht = z[j] * h_prev[j] + (1 - z[j]) * c
        g_h[j] = c
        h[j] = ht
        if m != NULL:
            h_masked[j] = ht * m[j]


# -- backward --------------------------------------------------------------------------

cdef inline void gru_after_back_row(floating *dg, floating *dxh_out, floating *db_i,
                                    floating *db_r, floating *dh_next,
                                    const floating *dh_seq, const floating *g,
                                    const floating *hn, const floating *h_prev,
                                    Py_ssize_t n, int act, int ract) noexcept nogil:
    """reset_after=True, steps 5b-2c for one row: dg = [dxz, dxr, dhh], dxh_out = dxh,
    the bias gradients (db_i (G,), of which the h block, and db_r (G,)), and dh_next
    (in: the gradient from step t+1; out: dh * z)."""
    if floating is float:
        if act == TANH and ract == SIGMOID:
            after_back_row_f32(dg, dxh_out, db_i + 2 * n, db_r, dh_next, dh_seq, g, hn,
                               h_prev, n)
            return
    cdef Py_ssize_t j
    cdef floating z, r, c, dh, dz, dn, dxh, dxz, dxr, dhh
    for j in range(n):
        z, r, c = g[j], g[n + j], g[2 * n + j]
        # 5b. through h_t = z * h_{t-1} + (1 - z) * n
        dh = dh_seq[j] + dh_next[j]
        dz = dh * (h_prev[j] - c)
        dn = dh * (1 - z)
        dh_next[j] = dh * z
        # 4b. through n = act(xh + r * hh)
        dxh = dn * derivative(c, act)
        dhh = dxh * r
        # 3b. through the gate activations
        dxz = dz * derivative(z, ract)
        dxr = (dxh * hn[j]) * derivative(r, ract)
        dg[j], dg[n + j], dg[2 * n + j] = dxz, dxr, dhh
        dxh_out[j] = dxh
        # 2c. db_r += [dxz, dxr, dhh]; 1b. db_i's h block += dxh (its z, r blocks equal
        # db_r's and are copied after the loop)
        db_r[j] += dxz
        db_r[n + j] += dxr
        db_r[2 * n + j] += dhh
        db_i[2 * n + j] += dxh


cdef inline void gru_before_back_row(floating *dg, floating *db, floating *dh_next,
                                     const floating *dh_seq, const floating *g,
                                     const floating *h_prev, Py_ssize_t n, int act,
                                     int ract) noexcept nogil:
    """reset_after=False, steps 5b, 4b (dxh), 3b (dxz) for one row; dh_next as in
    gru_after_back_row."""
    if floating is float:
        if act == TANH and ract == SIGMOID:
            before_back_row_f32(dg, db, dh_next, dh_seq, g, h_prev, n)
            return
    cdef Py_ssize_t j
    cdef floating z, c, dh, dxz, dxh
    for j in range(n):
        z, c = g[j], g[2 * n + j]
        # 5b.
        dh = dh_seq[j] + dh_next[j]
        dh_next[j] = dh * z
        # 4b. dxh = dn * act'(n);  3b. dxz = dz * ract'(z)
        dxh = (dh * (1 - z)) * derivative(c, act)
        dxz = (dh * (h_prev[j] - c)) * derivative(z, ract)
        dg[j], dg[2 * n + j] = dxz, dxh
        # 1b. db += ...
        db[j] += dxz
        db[2 * n + j] += dxh


cdef inline void gru_before_reset_row(floating *dg_r, floating *db_r, floating *dq,
                                      floating *dh_next, const floating *r,
                                      const floating *h_prev, const floating *m,
                                      Py_ssize_t n, int act, int ract) noexcept nogil:
    """reset_after=False, steps 4b (through q = r * hm) and 3b (dxr) for one row, dq
    holding dxh @ U_h^T. With a mask dq becomes dhm = dq * r (step 2b adds to it and
    applies m); without, dq * r goes straight into dh_next."""
    if floating is float:
        if act == TANH and ract == SIGMOID:
            before_reset_row_f32(dg_r, db_r, dq, dh_next, r, h_prev, m, n)
            return
    cdef Py_ssize_t j
    cdef floating hm, d, dxr
    for j in range(n):
        hm = h_prev[j] if m == NULL else h_prev[j] * m[j]
        d = dq[j]
        dxr = (d * hm) * derivative(r[j], ract)
        dg_r[j] = dxr
        db_r[j] += dxr
        if m == NULL:
            dh_next[j] += d * r[j]
        else:
            dq[j] = d * r[j]
