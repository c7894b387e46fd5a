/* The LSTM's fused elementwise passes for float32 with the default activations (sigmoid
 * gates, tanh candidate and cell output), one batch row of one step per call.
 *
 * Compiled for the baseline, AVX with FMA and AVX-512F and chosen when the module loads,
 * as the loops of _simd.h are (see there; CRNN_CLONES, crnn_tanh_f32 and crnn_exp_f32
 * come from it). Per unit the forward pass evaluates three sigmoids and two tanhs, the
 * backward pass one tanh: through libm that is a scalar call each, which on the
 * (128, 100, 512, 1024) benchmark shape costs as much as a third of the recurrent GEMMs.
 *
 * A row holds the four gate blocks i, f, g, o of n units each, at 0, n, 2n, 3n. Every
 * other activation pair, and float64, runs the generic loop in _lstm_rows.pxd instead;
 * the two compute the same formulas in the same order.
 */
#ifndef CRNN_LSTM_SIMD_H
#define CRNN_LSTM_SIMD_H

#include "_simd.h"

static inline __attribute__((always_inline)) float crnn_sigmoid_f32(float x)
{
    return 1.0f / (1.0f + crnn_exp_f32(-x));
}

/* Forward steps 3-5 for unit j: activate the gates z_in[g * s_in + j] + b[g * n + j]
 * into z[g * n + j] (z_in may be z, s_in n: in place; z NULL: the gates are not kept),
 * write c_t and h_t; returns h_t. */
static inline __attribute__((always_inline)) float
crnn_lstm_forward_unit_f32(const float *z_in, Py_ssize_t s_in, float *__restrict__ z,
                           const float *__restrict__ b, const float *__restrict__ c_prev,
                           float *__restrict__ c, float *__restrict__ h, Py_ssize_t n,
                           Py_ssize_t j)
{
    const float i = crnn_sigmoid_f32(z_in[j] + b[j]);
    const float f = crnn_sigmoid_f32(z_in[s_in + j] + b[n + j]);
    const float g = crnn_tanh_f32(z_in[2 * s_in + j] + b[2 * n + j]);
    const float o = crnn_sigmoid_f32(z_in[3 * s_in + j] + b[3 * n + j]);
    if (z != NULL) {
        z[j] = i;
        z[n + j] = f;
        z[2 * n + j] = g;
        z[3 * n + j] = o;
    }
    const float ct = f * c_prev[j] + i * g;
    c[j] = ct;
    const float ht = o * crnn_tanh_f32(ct);
    h[j] = ht;
    return ht;
}

/* Forward steps 3-5 for units [0, count) of one row, in one pass over the units:
 *     z = [i, f, g, o] = [sigmoid, sigmoid, tanh, sigmoid](z_in + b)
 *     c = f * c_prev + i * g,   h = o * tanh(c)
 * and, when m is not NULL, step 0 of the next step: h_masked = h * m. The four gate
 * blocks of z and b lie n apart, those of z_in s_in apart (count <= n, s_in; z_in is z
 * and s_in n for the pass in place); z NULL: the activated gates are not stored (a
 * forward without backward, crnn.no_grad). No other two pointers overlap (__restrict__).
 * Inlined into a caller compiled for AVX-512 or AVX2, it is vectorised for that. */
static inline __attribute__((always_inline)) void
crnn_lstm_forward_units_f32(const float *z_in, Py_ssize_t s_in, float *z,
                            const float *__restrict__ b, const float *__restrict__ c_prev,
                            float *__restrict__ c, float *__restrict__ h,
                            float *__restrict__ h_masked, const float *__restrict__ m,
                            Py_ssize_t n, Py_ssize_t count)
{
    /* ivdep: the four gate blocks of z (and of b) never meet for 0 <= j < count <= n, and
     * element j of z_in is read only by iteration j; see the backward pass below. The
     * four loops are the four cases of (z kept, m given), each vectorised on its own
     * (GCC would not unswitch the loop on both). */
#define CRNN_LSTM_UNITS_LOOP(Z, HM)                                                     \
    _Pragma("GCC ivdep")                                                                \
    for (Py_ssize_t j = 0; j < count; j++) {                                            \
        const float ht = crnn_lstm_forward_unit_f32(z_in, s_in, Z, b, c_prev, c, h, n, j); \
        if (HM)                                                                         \
            h_masked[j] = ht * m[j];                                                    \
    }
    if (z != NULL) {
        if (m == NULL) {
            CRNN_LSTM_UNITS_LOOP(z, 0)
        } else {
            CRNN_LSTM_UNITS_LOOP(z, 1)
        }
    } else {
        if (m == NULL) {
            CRNN_LSTM_UNITS_LOOP(NULL, 0)
        } else {
            CRNN_LSTM_UNITS_LOOP(NULL, 1)
        }
    }
#undef CRNN_LSTM_UNITS_LOOP
}

/* One whole row of forward steps 3-5 (all n units). */
CRNN_CLONES static void
crnn_lstm_forward_row_f32(float *__restrict__ z, const float *__restrict__ b,
                          const float *__restrict__ c_prev, float *__restrict__ c,
                          float *__restrict__ h, float *__restrict__ h_masked,
                          const float *__restrict__ m, Py_ssize_t n)
{
    crnn_lstm_forward_units_f32(z, n, z, b, c_prev, c, h, h_masked, m, n, n);
}

/* Backward steps 5b-3c for units [0, count) of one row whose gate blocks lie n apart
 * (count <= n), in one pass over the units (gates = [i, f, g, o] as the forward pass left
 * them, c = c_t, dc carries dc_next in and out):
 *     a = tanh(c),  dh = dh_a + dh_b
 *     do = dh * a,  dc += dh * o * (1 - a^2)                                   (5b)
 *     di = dc * g,  dg = dc * i,  df = dc * c_prev,  dc = dc * f               (4b)
 *     dz = [di i(1-i), df f(1-f), dg (1-g^2), do o(1-o)],  db += dz            (3b, 3c)
 * No two pointers may overlap (__restrict__: GCC then vectorises without run-time
 * overlap checks, of which eight arrays would need more than it is willing to emit). */
static inline __attribute__((always_inline)) void
crnn_lstm_backward_units_f32(float *__restrict__ dz, float *__restrict__ db,
                             float *__restrict__ dc, const float *__restrict__ dh_a,
                             const float *__restrict__ dh_b,
                             const float *__restrict__ gates, const float *__restrict__ c,
                             const float *__restrict__ c_prev, Py_ssize_t n,
                             Py_ssize_t count)
{
    /* dz[j], dz[n + j], ... (and db's) are four blocks of one array, which GCC cannot
     * tell apart without knowing n: it would give up after ten run-time overlap checks.
     * For 0 <= j < count <= n the four blocks never meet, so no iteration depends on
     * another. */
#pragma GCC ivdep
    for (Py_ssize_t j = 0; j < count; j++) {
        const float i = gates[j], f = gates[n + j], g = gates[2 * n + j],
                    o = gates[3 * n + j];
        const float a = crnn_tanh_f32(c[j]);
        const float dh = dh_a[j] + dh_b[j];
        const float d_o = dh * a;
        const float d_c = dc[j] + dh * o * (1.0f - a * a);
        const float d_i = d_c * g, d_g = d_c * i, d_f = d_c * c_prev[j];
        dc[j] = d_c * f;
        const float zi = d_i * (i * (1.0f - i)), zf = d_f * (f * (1.0f - f)),
                    zg = d_g * (1.0f - g * g), zo = d_o * (o * (1.0f - o));
        dz[j] = zi;
        dz[n + j] = zf;
        dz[2 * n + j] = zg;
        dz[3 * n + j] = zo;
        db[j] += zi;
        db[n + j] += zf;
        db[2 * n + j] += zg;
        db[3 * n + j] += zo;
    }
}

/* One whole row of backward steps 5b-3c (all n units). */
CRNN_CLONES static void
crnn_lstm_backward_row_f32(float *__restrict__ dz, float *__restrict__ db,
                           float *__restrict__ dc, const float *__restrict__ dh_a,
                           const float *__restrict__ dh_b, const float *__restrict__ gates,
                           const float *__restrict__ c, const float *__restrict__ c_prev,
                           Py_ssize_t n)
{
    crnn_lstm_backward_units_f32(dz, db, dc, dh_a, dh_b, gates, c, c_prev, n, n);
}

#endif
