/* The GRU's fused elementwise passes for float32 with the default activations (sigmoid
 * gates, tanh candidate), one batch row of one step per call.
 *
 * Compiled for the baseline, AVX with FMA and AVX-512F and chosen when the module loads,
 * as the loops of _simd.h are (see there; CRNN_CLONES, crnn_tanh_f32 and crnn_exp_f32
 * come from it). Per unit a step evaluates two sigmoids and a tanh: through libm that is
 * a scalar call each. The backward passes evaluate no function (every derivative comes
 * from a stored output), but the generic Cython loops, which switch on the activation
 * per element and cannot rule out aliasing, are not vectorised at all: on the
 * (64, 100, 128, 256) benchmark shape they took as long as the recurrent GEMMs.
 *
 * A row of g holds the three gate blocks z, r, n of n units each, at 0, n, 2n: on entry
 * the input projection x_t @ W_x (no bias), on exit the activated gates. Every other
 * activation pair, and float64, runs the generic loops in _gru_rows.pxd instead; the two
 * compute the same formulas in the same order (and the generic float32 loops call the
 * same crnn_tanh_f32 and crnn_exp_f32).
 *
 * No two pointers of a call overlap (__restrict__). The blocks of g (and of rec, b_i,
 * b_r) are parts of one array, which GCC cannot tell apart without knowing n; for
 * 0 <= j < n they never meet, hence the ivdep pragmas.
 */
#ifndef CRNN_GRU_SIMD_H
#define CRNN_GRU_SIMD_H

#include "_simd.h"

static inline __attribute__((always_inline)) float crnn_gru_sigmoid_f32(float x)
{
    return 1.0f / (1.0f + crnn_exp_f32(-x));
}

/* reset_after=True, forward steps 3-5 (and 0 of the next step) for one row:
 *     z = sigmoid((g_z + b_i,z) + (rec_z + b_r,z))      r likewise
 *     hh = rec_h + b_r,h                                  (stored in hn)
 *     n = tanh((g_h + b_i,h) + r * hh)
 *     h = z * h_prev + (1 - z) * n,   h_masked = h * m    (when m is not NULL)
 * rec is the row of h_masked @ W_h (no bias). */
static inline __attribute__((always_inline)) float
crnn_gru_after_unit_f32(float *__restrict__ g, const float *__restrict__ rec,
                        const float *__restrict__ b_i, const float *__restrict__ b_r,
                        const float *__restrict__ h_prev, float *__restrict__ hn,
                        float *__restrict__ h, Py_ssize_t n, Py_ssize_t j)
{
    const float z = crnn_gru_sigmoid_f32((g[j] + b_i[j]) + (rec[j] + b_r[j]));
    const float r = crnn_gru_sigmoid_f32((g[n + j] + b_i[n + j])
                                         + (rec[n + j] + b_r[n + j]));
    const float hh = rec[2 * n + j] + b_r[2 * n + j];
    const float c = crnn_tanh_f32((g[2 * n + j] + b_i[2 * n + j]) + r * hh);
    const float ht = z * h_prev[j] + (1.0f - z) * c;
    g[j] = z;
    g[n + j] = r;
    g[2 * n + j] = c;
    hn[j] = hh;
    h[j] = ht;
    return ht;
}

CRNN_CLONES static void
crnn_gru_after_row_f32(float *__restrict__ g, const float *__restrict__ rec,
                       const float *__restrict__ b_i, const float *__restrict__ b_r,
                       const float *__restrict__ h_prev, float *__restrict__ hn,
                       float *__restrict__ h, float *__restrict__ h_masked,
                       const float *__restrict__ m, Py_ssize_t n)
{
    if (m == NULL) {
#pragma GCC ivdep
        for (Py_ssize_t j = 0; j < n; j++)
            crnn_gru_after_unit_f32(g, rec, b_i, b_r, h_prev, hn, h, n, j);
    } else {
#pragma GCC ivdep
        for (Py_ssize_t j = 0; j < n; j++)
            h_masked[j] = crnn_gru_after_unit_f32(g, rec, b_i, b_r, h_prev, hn, h, n, j)
                          * m[j];
    }
}

/* reset_after=False, forward step 3 and the first half of step 4 for one row:
 *     z = sigmoid((g_z + b_z) + rec_z),   r = sigmoid((g_r + b_r) + rec_r),   q = r * hm
 * rec holds the row of hm @ W_h[:, :2H]; q (the row of hn) is the left operand of the
 * product with W_h[:, 2H:]. */
CRNN_CLONES static void
crnn_gru_gates_row_f32(float *__restrict__ g, const float *__restrict__ rec,
                       const float *__restrict__ b, const float *__restrict__ hm,
                       float *__restrict__ q, Py_ssize_t n)
{
#pragma GCC ivdep
    for (Py_ssize_t j = 0; j < n; j++) {
        const float z = crnn_gru_sigmoid_f32((g[j] + b[j]) + rec[j]);
        const float r = crnn_gru_sigmoid_f32((g[n + j] + b[n + j]) + rec[n + j]);
        g[j] = z;
        g[n + j] = r;
        q[j] = r * hm[j];
    }
}

/* reset_after=False, the rest of forward step 4, step 5 (and 0 of the next step):
 *     n = tanh((g_h + b_h) + rec_h),   h = z * h_prev + (1 - z) * n,   h_masked = h * m
 * g_h = g + 2n, b_h = b + 2n and rec_h (the row of q @ W_h[:, 2H:]) are passed apart
 * from g, whose z block (already activated) is read. */
static inline __attribute__((always_inline)) float
crnn_gru_candidate_unit_f32(const float *__restrict__ z, float *__restrict__ g_h,
                            const float *__restrict__ rec_h, const float *__restrict__ b_h,
                            const float *__restrict__ h_prev, float *__restrict__ h,
                            Py_ssize_t j)
{
    const float c = crnn_tanh_f32((g_h[j] + b_h[j]) + rec_h[j]);
    const float ht = z[j] * h_prev[j] + (1.0f - z[j]) * c;
    g_h[j] = c;
    h[j] = ht;
    return ht;
}

CRNN_CLONES static void
crnn_gru_candidate_row_f32(const float *__restrict__ z, float *__restrict__ g_h,
                           const float *__restrict__ rec_h, const float *__restrict__ b_h,
                           const float *__restrict__ h_prev, float *__restrict__ h,
                           float *__restrict__ h_masked, const float *__restrict__ m,
                           Py_ssize_t n)
{
    if (m == NULL) {
        for (Py_ssize_t j = 0; j < n; j++)
            crnn_gru_candidate_unit_f32(z, g_h, rec_h, b_h, h_prev, h, j);
    } else {
        for (Py_ssize_t j = 0; j < n; j++)
            h_masked[j] = crnn_gru_candidate_unit_f32(z, g_h, rec_h, b_h, h_prev, h, j)
                          * m[j];
    }
}

/* reset_after=True, backward steps 5b-2c for one row (g = [z, r, n] and hn = hh as the
 * forward pass left them; dh_next carries the gradient from step t+1 in and dh * z out):
 *     dh = dh_seq + dh_next;  dz = dh (h_prev - n);  dn = dh (1 - z);  dh_next = dh z  (5b)
 *     dxh = dn (1 - n^2);  dhh = dxh r                                              (4b)
 *     dxz = dz z (1 - z);  dxr = dxh hh r (1 - r)                                   (3b)
 *     dg = [dxz, dxr, dhh],  dxh_out = dxh,  db_r += dg,  db_ih += dxh              (2c)
 * db_ih is the h block of the input bias's gradient. */
CRNN_CLONES static void
crnn_gru_after_back_row_f32(float *__restrict__ dg, float *__restrict__ dxh_out,
                            float *__restrict__ db_ih, float *__restrict__ db_r,
                            float *__restrict__ dh_next, const float *__restrict__ dh_seq,
                            const float *__restrict__ g, const float *__restrict__ hn,
                            const float *__restrict__ h_prev, Py_ssize_t n)
{
#pragma GCC ivdep
    for (Py_ssize_t j = 0; j < n; j++) {
        const float z = g[j], r = g[n + j], c = g[2 * n + j];
        const float dh = dh_seq[j] + dh_next[j];
        const float dz = dh * (h_prev[j] - c);
        const float dn = dh * (1.0f - z);
        dh_next[j] = dh * z;
        const float dxh = dn * (1.0f - c * c);
        const float dhh = dxh * r;
        const float dxz = dz * (z * (1.0f - z));
        const float dxr = (dxh * hn[j]) * (r * (1.0f - r));
        dg[j] = dxz;
        dg[n + j] = dxr;
        dg[2 * n + j] = dhh;
        dxh_out[j] = dxh;
        db_r[j] += dxz;
        db_r[n + j] += dxr;
        db_r[2 * n + j] += dhh;
        db_ih[j] += dxh;
    }
}

/* reset_after=False, backward steps 5b, 4b (dxh) and 3b (dxz) for one row:
 *     dh = dh_seq + dh_next;  dh_next = dh z;  dxh = dh (1 - z) (1 - n^2);
 *     dxz = dh (h_prev - n) z (1 - z);  dg[z], dg[h] = dxz, dxh;  db[z], db[h] += ... */
CRNN_CLONES static void
crnn_gru_before_back_row_f32(float *__restrict__ dg, float *__restrict__ db,
                             float *__restrict__ dh_next, const float *__restrict__ dh_seq,
                             const float *__restrict__ g, const float *__restrict__ h_prev,
                             Py_ssize_t n)
{
#pragma GCC ivdep
    for (Py_ssize_t j = 0; j < n; j++) {
        const float z = g[j], c = g[2 * n + j];
        const float dh = dh_seq[j] + dh_next[j];
        dh_next[j] = dh * z;
        const float dxh = (dh * (1.0f - z)) * (1.0f - c * c);
        const float dxz = (dh * (h_prev[j] - c)) * (z * (1.0f - z));
        dg[j] = dxz;
        dg[2 * n + j] = dxh;
        db[j] += dxz;
        db[2 * n + j] += dxh;
    }
}

/* reset_after=False, backward steps 4b (through q = r * hm) and 3b (dxr) for one row,
 * dq holding the row of dxh @ U_h^T:
 *     dxr = dq hm r (1 - r),  db_r += dxr;  without a mask dh_next += dq r, with one
 *     dq = dq r (hm = h_prev m). */
CRNN_CLONES static void
crnn_gru_before_reset_row_f32(float *__restrict__ dg_r, float *__restrict__ db_r,
                              float *__restrict__ dq, float *__restrict__ dh_next,
                              const float *__restrict__ r, const float *__restrict__ h_prev,
                              const float *__restrict__ m, Py_ssize_t n)
{
    if (m == NULL) {
        for (Py_ssize_t j = 0; j < n; j++) {
            const float d = dq[j];
            const float dxr = (d * h_prev[j]) * (r[j] * (1.0f - r[j]));
            dg_r[j] = dxr;
            db_r[j] += dxr;
            dh_next[j] += d * r[j];
        }
    } else {
        for (Py_ssize_t j = 0; j < n; j++) {
            const float d = dq[j];
            const float dxr = (d * (h_prev[j] * m[j])) * (r[j] * (1.0f - r[j]));
            dg_r[j] = dxr;
            db_r[j] += dxr;
            dq[j] = d * r[j];
        }
    }
}

#endif
