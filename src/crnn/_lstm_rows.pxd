# The LSTM's fused elementwise passes, one batch row of one step per call: forward steps
# 3-5 and backward steps 5b-3c of _lstm.pyx (whose docstring numbers the steps). Shared
# by the time loops of _lstm.pyx and the streaming step of _step.pyx, which cimport it;
# there is no runtime module behind this file.
#
# float32 with the default activations (sigmoid gates, tanh) goes to the vectorised rows
# of _lstm_simd.h; everything else runs the generic loops here, which compute the same
# formulas in the same order (and call the same float32 tanh and exp).
from cython cimport floating

from crnn._activations cimport SIGMOID, TANH, activate, derivative


cdef extern from "_lstm_simd.h" nogil:
    # Steps 3-5 and 5b-3c for one batch row, float32, sigmoid gates and tanh activation,
    # vectorised for AVX2 / AVX-512 (see _lstm_simd.h).
    void lstm_forward_row_f32 "crnn_lstm_forward_row_f32"(
        float *z, const float *b, const float *c_prev, float *c, float *h,
        float *h_masked, const float *m, Py_ssize_t n)
    void lstm_backward_row_f32 "crnn_lstm_backward_row_f32"(
        float *dz, float *db, float *dc, const float *dh_a, const float *dh_b,
        const float *gates, const float *c, const float *c_prev, Py_ssize_t n)


cdef inline void lstm_forward_row(floating *z, const floating *b, const floating *c_prev,
                                  floating *c, floating *h, floating *h_masked,
                                  const floating *m, Py_ssize_t n, int act,
                                  int ract) noexcept nogil:
    """Steps 3-5 (and 0 of the next step where m is not NULL) for one batch row: z (4n)
    holds x_t @ W_x + h_masked @ W_h on entry, the activated gates i, f, g, o on exit.

    float32 with the default activations goes to the vectorised crnn_lstm_forward_row_f32
    (_lstm_simd.h); everything else runs the loop here, which computes the same.
    """
    if floating is float:
        if act == TANH and ract == SIGMOID:
            lstm_forward_row_f32(z, b, c_prev, c, h, h_masked, m, n)
            return
    cdef Py_ssize_t j
    cdef floating i, f, g, o, ct, ht
    for j in range(n):
        # 3. the gates, activated in place
        i = activate(z[j] + b[j], ract)
        f = activate(z[n + j] + b[n + j], ract)
        g = activate(z[2 * n + j] + b[2 * n + j], act)
        o = activate(z[3 * n + j] + b[3 * n + j], ract)
        z[j], z[n + j], z[2 * n + j], z[3 * n + j] = i, f, g, o
        # 4. c_t = f * c_{t-1} + i * g
        ct = f * c_prev[j] + i * g
        c[j] = ct
        # 5. h_t = o * act(c_t)
        ht = o * activate(ct, act)
        h[j] = ht
        if m != NULL:
            # 0. (of the next step) h_masked = h_t * m
            h_masked[j] = ht * m[j]


cdef inline void lstm_backward_row(floating *dz, floating *db, floating *dc,
                                   const floating *dh_a, const floating *dh_b,
                                   const floating *gates, const floating *c,
                                   const floating *c_prev, Py_ssize_t n, int act,
                                   int ract) noexcept nogil:
    """Steps 5b-3c for one batch row (dc carries dc_next in and out).

    float32 with the default activations goes to the vectorised
    crnn_lstm_backward_row_f32 (_lstm_simd.h); everything else runs the loop here.
    """
    if floating is float:
        if act == TANH and ract == SIGMOID:
            lstm_backward_row_f32(dz, db, dc, dh_a, dh_b, gates, c, c_prev, n)
            return
    cdef Py_ssize_t j
    cdef floating i, f, g, o, a, dh, d_o, d_c, zi, zf, zg, zo
    for j in range(n):
        i, f, g, o = gates[j], gates[n + j], gates[2 * n + j], gates[3 * n + j]
        a = activate(c[j], act)
        # 5b. into o, and through act into c_t
        dh = dh_a[j] + dh_b[j]
        d_o = dh * a
        d_c = dc[j] + dh * o * derivative(a, act)
        # 4b. into i, g, f and c_{t-1}; 3b. through the gate activations
        zi = d_c * g * derivative(i, ract)
        zf = d_c * c_prev[j] * derivative(f, ract)
        zg = d_c * i * derivative(g, act)
        zo = d_o * derivative(o, ract)
        dc[j] = d_c * f
        dz[j], dz[n + j], dz[2 * n + j], dz[3 * n + j] = zi, zf, zg, zo
        # 3c. db += dz
        db[j] += zi
        db[n + j] += zf
        db[2 * n + j] += zg
        db[3 * n + j] += zo
