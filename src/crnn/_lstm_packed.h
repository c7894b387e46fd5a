/* The LSTM's forward and backward for float32 with the default activations over the
 * packed GEMM of _pgemm.h, on its pool of threads (crnn_pg_run), without BLAS (steps and
 * notation as in _lstm.pyx).
 *
 * No BLAS call at all, because an OpenBLAS call before or after the loop was the worst
 * contention measured: OpenBLAS's idle worker spins at full CPU for ~100 ms after every
 * call, so the loop's two threads ran beside a third busy one (with the input projection
 * through SciPy's OpenBLAS, the medium benchmark shape's forward took 70-114 ms instead
 * of 28, the small one's 7.7 ms instead of 0.7). So step 1 (x_t @ W_x) joins step 2 in
 * the per-step GEMM, and the backward's dx, dW_x, dW_h run on the same threads after
 * the loop, as later phases of the same job.
 *
 * Forward: W_x and W_h are packed once per call with the columns of each panel
 * interleaved by units: panel p holds, for the 16 units u0 = 16p .. u0 + 15, the columns
 * [i_u0..i_u0+15, f_.., g_.., o_..] (zero beyond H), so one 6 x 64 micro-tile of
 * z_t = x_t @ W_x + h_{t-1} @ W_h holds all four gates of those units, and the fused
 * elementwise pass (steps 3-5) runs on the tile right after its GEMM, while it is in L1:
 * no separate pass over the gate buffer, and both threads do the elementwise work. Each
 * step is one phase of crnn_pg_run whose items are the tiles (panel, row chunk): every
 * thread takes its own share first (the same at every step, so its weight panels stay
 * in its L2) and steals the rest of a late one's; step t+1 starts once every tile of
 * step t is done (it reads every unit of h_t). With a recurrent mask, h_t * m goes to
 * one of two buffers by parity of t: step t reads h_{t-1} * m while it writes h_t * m.
 *
 * Backward: W_h^T is packed into panels of 64 units (panel p: Wp[p][k][c] = W_h[64p+c][k],
 * k < 4H). A tile of dh_next = dz_t @ W_h^T covers rows x 64 units; right after it the
 * thread applies the mask and runs steps 5b-3c of step t-1 for those rows and units,
 * which need only dh_next and dc_next of the same units: again one phase per step (the
 * next GEMM reads dz_{t-1} of every unit). db is summed per row chunk (the tiles of one
 * unit, one per chunk, run in step order whichever thread runs them), added up at the
 * end: the result does not depend on which thread ran what. Then
 * dx = dz @ W_x^T (W_x^T packed like W_h^T) and [dW_x; dW_h] = [x | h_masked_prev]^T @ dz
 * over all B*T rows, both operands packed per K block.
 */
#ifndef CRNN_LSTM_PACKED_H
#define CRNN_LSTM_PACKED_H

#include "_pgemm.h"
#include "_lstm_simd.h"

#define CRNN_LP_FU 16   /* forward: units per panel (x 4 gates = CRNN_PG_NR columns) */
#define CRNN_LP_KCW 512 /* weight gradients: rows (b, t) per K block */
#define CRNN_LP_MCX 96  /* dx: rows per chunk ... */
#define CRNN_LP_KCX 512 /* ... and columns of dz per K block */

static inline Py_ssize_t crnn_lp_round16(Py_ssize_t n) { return (n + 15) / 16 * 16; }

/* How the time loop is split over the threads. Units: every step is a phase whose items
 * are tiles (panel of units, row chunk), and step t+1 waits for every tile of step t (it
 * reads every unit of h_t). Rows: each thread takes a chunk of the batch through all T
 * steps as one item, without a wait between steps, since a row's step t+1 reads only
 * that row's h_t; each thread then reads all of the packed weights (from its own L2 at
 * the benchmark shapes). Rows from CRNN_LP_ROWS_MIN rows a thread on (two micro-tiles
 * of 6 rows a step keep the micro-kernel busy); crnn_lp_split forces one (tests). The
 * results are the same either way except the backward's db, summed per row chunk. */
#define CRNN_LP_ROWS_MIN 12
static int crnn_lp_split = -1;  /* -1: by the rule above, 0: units, 1: rows */

static inline int crnn_lp_by_rows(Py_ssize_t B, int threads)
{
    if (threads < 2)
        return 0;
    if (crnn_lp_split >= 0)
        return crnn_lp_split;
    return B >= (Py_ssize_t)CRNN_LP_ROWS_MIN * threads;
}

/* Floats of the forward packing of a (K, 4H) weight matrix (W_x: K = D, W_h: K = H). */
static inline Py_ssize_t crnn_lstm_packed_size_fwd(Py_ssize_t K, Py_ssize_t H)
{
    return (H + CRNN_LP_FU - 1) / CRNN_LP_FU * K * CRNN_PG_NR;
}

/* Offsets (floats, multiples of 16) of the forward's scratch: 0 packed W_x, 1 packed W_h,
 * 2 the staging tiles of nth slots (B + 6 rows of 64 each); returns the total (the caller
 * adds 16 for alignment). */
static inline Py_ssize_t crnn_lstm_forward_scratch(Py_ssize_t B, Py_ssize_t D,
                                                  Py_ssize_t H, int nth, Py_ssize_t *off)
{
    off[0] = 0;
    off[1] = off[0] + crnn_lp_round16(crnn_lstm_packed_size_fwd(D, H));
    off[2] = off[1] + crnn_lp_round16(crnn_lstm_packed_size_fwd(H, H));
    return off[2] + (Py_ssize_t)nth * (B + CRNN_PG_MR) * CRNN_PG_NR;
}

/* Floats of the backward packing of the transpose of an (n, 4H) matrix. */
static inline Py_ssize_t crnn_lstm_packed_size_bwd(Py_ssize_t n, Py_ssize_t H)
{
    return (n + CRNN_PG_NR - 1) / CRNN_PG_NR * 4 * H * CRNN_PG_NR;
}

/* Offsets (floats, multiples of 16) of the backward's scratch: 0 packed W_h^T, 1 packed
 * W_x^T, 2 and 3 the packed K block of x^T and h^T, 4 the packed K block of dz, 5 the
 * row chunks' db (nth at most); returns the total (the caller adds 16 for alignment). */
static inline Py_ssize_t crnn_lstm_backward_scratch(Py_ssize_t D, Py_ssize_t H, int nth,
                                                   Py_ssize_t *off)
{
    const Py_ssize_t G = 4 * H;
    Py_ssize_t sizes[6];
    sizes[0] = crnn_lstm_packed_size_bwd(H, H);
    sizes[1] = crnn_lstm_packed_size_bwd(D, H);
    sizes[2] = (D + CRNN_PG_MR - 1) / CRNN_PG_MR * CRNN_PG_MR * CRNN_LP_KCW;
    sizes[3] = (H + CRNN_PG_MR - 1) / CRNN_PG_MR * CRNN_PG_MR * CRNN_LP_KCW;
    sizes[4] = (G + CRNN_PG_NR - 1) / CRNN_PG_NR * CRNN_LP_KCW * CRNN_PG_NR;
    sizes[5] = (Py_ssize_t)nth * G;
    Py_ssize_t total = 0;
    for (int i = 0; i < 6; i++) {
        off[i] = total;
        total += crnn_lp_round16(sizes[i]);
    }
    return total;
}

/* Panels [p0, p1) of the forward packing of W (K, 4H):
 * Wp[p][k][16g + u] = W[k][g*H + 16p + u]. */
static void crnn_lstm_pack_fwd(const float *W, Py_ssize_t K, Py_ssize_t H, float *Wp,
                               Py_ssize_t p0, Py_ssize_t p1)
{
    const Py_ssize_t G = 4 * H;
    for (Py_ssize_t p = p0; p < p1; p++) {
        const Py_ssize_t u0 = p * CRNN_LP_FU, nu = crnn_pg_min(CRNN_LP_FU, H - u0);
        float *dst = Wp + p * K * CRNN_PG_NR;
        for (Py_ssize_t k = 0; k < K; k++) {
            float *d = dst + k * CRNN_PG_NR;
            for (int g = 0; g < 4; g++) {
                const float *s = W + k * G + g * H + u0;
                for (Py_ssize_t u = 0; u < nu; u++)
                    d[CRNN_LP_FU * g + u] = s[u];
                for (Py_ssize_t u = nu; u < CRNN_LP_FU; u++)
                    d[CRNN_LP_FU * g + u] = 0.0f;
            }
        }
    }
}

/* Panels [p0, p1) of the backward packing of W^T, W (n, G): Wp[p][k][c] = W[64p + c][k],
 * k < G, in blocks of 16 k (the 4 KB block being written stays in L1 while 64 rows of W
 * are read). */
static void crnn_lstm_pack_bwd(const float *W, Py_ssize_t n, Py_ssize_t G, float *Wp,
                               Py_ssize_t p0, Py_ssize_t p1)
{
    for (Py_ssize_t p = p0; p < p1; p++) {
        const Py_ssize_t n0 = p * CRNN_PG_NR, nn = crnn_pg_min(CRNN_PG_NR, n - n0);
        float *dst = Wp + p * G * CRNN_PG_NR;
        for (Py_ssize_t k0 = 0; k0 < G; k0 += 16) {
            const Py_ssize_t k1 = crnn_pg_min(G, k0 + 16);
            for (Py_ssize_t c = 0; c < CRNN_PG_NR; c++) {
                if (c < nn) {
                    const float *s = W + (n0 + c) * G;
                    for (Py_ssize_t k = k0; k < k1; k++)
                        dst[k * CRNN_PG_NR + c] = s[k];
                } else {
                    for (Py_ssize_t k = k0; k < k1; k++)
                        dst[k * CRNN_PG_NR + c] = 0.0f;
                }
            }
        }
    }
}

/* Micro-panels [rb0, rb1) of the packed K block A = S^T[:, j0 : j0 + kc] of the weight
 * gradients, S (B*T, n) in flat (b, t) rows: Ap[rb][k][r] = row(j0 + k)[6 rb + r], zero
 * for 6 rb + r >= n. row(j) = S + (j - shift) * n, except, where first is not NULL, at
 * t = j % T = 0: first + (j / T) * n (h_{t-1} of the (b, t) row: hs shifted by one step,
 * h0 at t = 0). */
static void crnn_lstm_pack_at(const float *S, const float *first, Py_ssize_t shift,
                              Py_ssize_t n, Py_ssize_t T, Py_ssize_t j0, Py_ssize_t kc,
                              Py_ssize_t rb0, Py_ssize_t rb1, float *Ap)
{
    for (Py_ssize_t rb = rb0; rb < rb1; rb++) {
        const Py_ssize_t r0 = rb * CRNN_PG_MR, nr = crnn_pg_min(CRNN_PG_MR, n - r0);
        float *dst = Ap + r0 * kc;
        for (Py_ssize_t k = 0; k < kc; k++) {
            const Py_ssize_t j = j0 + k;
            const float *src = (first != NULL && j % T == 0) ? first + (j / T) * n
                                                             : S + (j - shift) * n;
            src += r0;
            float *d = dst + k * CRNN_PG_MR;
            Py_ssize_t r = 0;
            for (; r < nr; r++)
                d[r] = src[r];
            for (; r < CRNN_PG_MR; r++)
                d[r] = 0.0f;
        }
    }
}

/* Forward steps 3-5 for row r and `count` units from u0 of step t (arguments as for
 * crnn_lstm_forward_tile_f32 below). */
static inline __attribute__((always_inline)) void
crnn_lstm_forward_tile_row_f32(const float *zs, float *z, Py_ssize_t ldz, const float *b,
                               const float *c_prev, Py_ssize_t ldp, float *c,
                               Py_ssize_t ldc, float *h, Py_ssize_t ldh, float *h_masked,
                               const float *m, Py_ssize_t H, Py_ssize_t r, Py_ssize_t r0,
                               Py_ssize_t u0, Py_ssize_t count)
{
    crnn_lstm_forward_units_f32(zs + (r - r0) * CRNN_PG_NR, CRNN_LP_FU,
                                z == NULL ? NULL : z + r * ldz + u0, b + u0,
                                c_prev + r * ldp + u0, c + r * ldc + u0, h + r * ldh + u0,
                                m == NULL ? NULL : h_masked + r * H + u0,
                                m == NULL ? NULL : m + r * H + u0, H, count);
}

/* Forward steps 3-5 for rows [r0, r1) and units [u0, u0 + nu) of step t, from the
 * staged tile zs (rows of 64: i, f, g, o of 16 units; zs holds row r0 first) into the
 * gate buffer z_t (the tile's units at z + u0, rows ldz apart; z NULL: the gates are not
 * kept); c_t rows ldc apart, h_t rows ldh apart, c_prev rows ldp apart, h_prev (h_{t-1})
 * rows ldq apart, h_masked (step t+1's h * m), hm_prev (step t's) and m rows H apart.
 * real_t: the mask of real steps at step t, rows T apart (NULL: every row real); on a
 * padded row, step 6 instead: c_t and h_t (and h * m) are carried over and the gates are
 * zero. */
CRNN_CLONES static void
crnn_lstm_forward_tile_f32(const float *zs, float *z, Py_ssize_t ldz, const float *b,
                           const float *c_prev, Py_ssize_t ldp, float *c, Py_ssize_t ldc,
                           float *h, Py_ssize_t ldh, float *h_masked, const float *m,
                           Py_ssize_t H, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t u0,
                           Py_ssize_t nu, const unsigned char *real_t, Py_ssize_t T,
                           const float *h_prev, Py_ssize_t ldq, const float *hm_prev)
{
    if (nu == CRNN_LP_FU && real_t == NULL) {
        /* the common case, a whole panel of units and no padding: with the count a
         * constant, each row is one pass of whole vectors, and the constants of the
         * activations are set up once per tile, not once per row (measured: the pass
         * took 25% of the forward at (64, 100, 128, 256), now 8%) */
        for (Py_ssize_t r = r0; r < r1; r++)
            crnn_lstm_forward_tile_row_f32(zs, z, ldz, b, c_prev, ldp, c, ldc, h, ldh,
                                           h_masked, m, H, r, r0, u0, CRNN_LP_FU);
        return;
    }
    for (Py_ssize_t r = r0; r < r1; r++) {
        if (real_t != NULL && !real_t[r * T]) {
            /* 6. a padded row: the states pass through, the gates are zero */
            if (z != NULL)
                for (int g = 0; g < 4; g++)
                    memset(z + r * ldz + g * H + u0, 0, nu * sizeof(float));
            memcpy(c + r * ldc + u0, c_prev + r * ldp + u0, nu * sizeof(float));
            memcpy(h + r * ldh + u0, h_prev + r * ldq + u0, nu * sizeof(float));
            if (m != NULL)
                memcpy(h_masked + r * H + u0, hm_prev + r * H + u0, nu * sizeof(float));
            continue;
        }
        crnn_lstm_forward_tile_row_f32(zs, z, ldz, b, c_prev, ldp, c, ldc, h, ldh,
                                       h_masked, m, H, r, r0, u0, nu);
    }
}

/* Backward: dh_next *= m (when m is not NULL), then, when dz is not NULL, steps 5b-3c of
 * step s for rows [r0, r1) and units [u0, u0 + nu): dz_s, gates_s, c_s rows ldz / ldz /
 * ldh apart, c_prev rows ldp apart, dhs_s rows ld_dhs apart (0: one row of zeros),
 * dh_next, dc_next, m and dh_pad rows H apart. With a mask of real steps (real_t at step
 * t = s + 1 and real_s at step s, rows T apart; NULL: every row real), step 6b: a row
 * padded at t takes dh_pad (the gradient that reached h_t) as dh_next instead of the
 * product's zero, and a row padded at s gets dz_s = 0, keeps dc_next, and leaves
 * dh_next + dhs_s in dh_pad for the next call. */
CRNN_CLONES static void
crnn_lstm_backward_tile_f32(float *dz, Py_ssize_t ldz, float *db, float *dc_next,
                            float *dh_next, const float *m, const float *dhs_s,
                            Py_ssize_t ld_dhs, const float *gates_s, const float *c_s,
                            Py_ssize_t ldh, const float *c_prev, Py_ssize_t ldp,
                            Py_ssize_t H, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t u0,
                            Py_ssize_t nu, const unsigned char *real_t,
                            const unsigned char *real_s, Py_ssize_t T, float *dh_pad)
{
    for (Py_ssize_t r = r0; r < r1; r++) {
        float *dh = dh_next + r * H + u0;
        if (real_t != NULL && !real_t[r * T]) {
            memcpy(dh, dh_pad + r * H + u0, nu * sizeof(float));   /* 6b. (step t) */
        } else if (m != NULL) {
            const float *mr = m + r * H + u0;
            for (Py_ssize_t j = 0; j < nu; j++)
                dh[j] *= mr[j];
        }
        if (dz == NULL)
            continue;
        if (real_s != NULL && !real_s[r * T]) {
            /* 6b. (step s) nothing into the step; its gradient goes on to h_{s-1} */
            const float *ds = dhs_s + r * ld_dhs + u0;
            float *dp = dh_pad + r * H + u0;
            for (Py_ssize_t j = 0; j < nu; j++)
                dp[j] = dh[j] + ds[j];
            for (int g = 0; g < 4; g++)
                memset(dz + r * ldz + g * H + u0, 0, nu * sizeof(float));
            continue;
        }
        crnn_lstm_backward_units_f32(dz + r * ldz + u0, db + u0, dc_next + r * H + u0,
                                     dh, dhs_s + r * ld_dhs + u0,
                                     gates_s + r * ldz + u0, c_s + r * ldh + u0,
                                     c_prev + r * ldp + u0, H, nu);
    }
}

/* Forward steps 0-5 for t = 0 .. T-1: step 1 (x_t @ W_x) and step 2 are one GEMM per step
 * (two tile calls, K = D then H), so the whole loop runs on this module's threads and
 * never calls BLAS. A tile's GEMM goes to a contiguous staging buffer of the thread's
 * own, not into the gate buffer: rows of the gate buffer lie T*4H floats apart and its
 * gate blocks H apart, at H = 1024 and T = 100 multiples of 64 KB, which put the whole
 * tile in one L1 and one L2 set (measured: the step's elementwise pass at 19 ns a unit
 * instead of 2.5). scratch: laid out by crnn_lstm_forward_scratch for
 * crnn_pg_max_threads() threads, 64-byte aligned; h_masked 2 * B * H floats when m is
 * not NULL.
 *
 * gates NULL: a forward without backward (crnn.no_grad): the gates are not kept, cs is
 * (2, B, H) and holds only c of the last two steps, by parity of t (c_{T-1} ends in
 * cs[(T-1) & 1]), and so does hs unless h_all (then hs is (B, T, H), every h_t). */
typedef struct {
    float *p;        /* step 0 of row 0 */
    Py_ssize_t ld;   /* floats between rows */
    Py_ssize_t ts;   /* floats between steps */
    int wrap;        /* 1: two steps, by parity of t */
} crnn_lp_states_t;

static inline float *crnn_lp_at(const crnn_lp_states_t *s, Py_ssize_t t)
{
    return s->p + (s->wrap ? (t & 1) : t) * s->ts;
}


typedef struct {
    crnn_pg_work_t w;
    float *gates, *h_masked, *scratch, *Wxp, *Whp;
    const float *x, *h0, *c0, *W_x, *W_h, *b, *m;
    const unsigned char *real;
    crnn_lp_states_t hst, cst;
    Py_ssize_t B, T, D, H, np, nq, zs_off;
    int isa, by_rows;
} crnn_lp_fwd_t;

/* Phase 0: the packing (item p: panel p of W_x and W_h, and a share of the rows of
 * h_masked = h0 * m). Split by units (crnn_lp_by_rows), phase 1 + t: step t (item i:
 * tile (panel i / nq, row chunk i % nq)); by rows, phase 1: every step (item q: row
 * chunk q of nq, its tiles step by step). */
static Py_ssize_t crnn_lp_fwd_items(const crnn_pg_work_t *w, Py_ssize_t ph)
{
    const crnn_lp_fwd_t *f = (const crnn_lp_fwd_t *)w;
    return ph == 0 ? f->np : f->by_rows ? f->nq : f->np * f->nq;
}

static void crnn_lp_fwd_tile(const crnn_lp_fwd_t *f, Py_ssize_t t, Py_ssize_t p,
                             Py_ssize_t q, int slot);

static void crnn_lp_fwd_run(const crnn_pg_work_t *w, Py_ssize_t ph, Py_ssize_t i, int slot)
{
    const crnn_lp_fwd_t *f = (const crnn_lp_fwd_t *)w;
    const Py_ssize_t B = f->B, D = f->D, H = f->H;
    const float *m = f->m;
    float *h_masked = f->h_masked;
    if (ph == 0) {
        crnn_lstm_pack_fwd(f->W_x, D, H, f->Wxp, i, i + 1);
        crnn_lstm_pack_fwd(f->W_h, H, H, f->Whp, i, i + 1);
        if (m != NULL) {
            /* 0. h_masked = h0 * m, this item's share of the rows */
            for (Py_ssize_t r = i * B / f->np; r < (i + 1) * B / f->np; r++)
                for (Py_ssize_t j = 0; j < H; j++)
                    h_masked[r * H + j] = f->h0[r * H + j] * m[r * H + j];
        }
        return;
    }
    if (!f->by_rows) {
        crnn_lp_fwd_tile(f, ph - 1, i / f->nq, i % f->nq, slot);
        return;
    }
    for (Py_ssize_t t = 0; t < f->T; t++)
        for (Py_ssize_t p = 0; p < f->np; p++)
            crnn_lp_fwd_tile(f, t, p, i, slot);
}

/* Step t of tile (panel p, row chunk q), on the staging tile of thread `slot`. */
static void crnn_lp_fwd_tile(const crnn_lp_fwd_t *f, Py_ssize_t t, Py_ssize_t p,
                             Py_ssize_t q, int slot)
{
    const Py_ssize_t B = f->B, T = f->T, D = f->D, H = f->H, G = 4 * H, TG = T * G;
    const float *m = f->m;
    float *h_masked = f->h_masked;
    const crnn_lp_states_t *hst = &f->hst, *cst = &f->cst;
    /* the staging tile of the thread running the item */
    float *zs = f->scratch + f->zs_off + slot * (B + CRNN_PG_MR) * CRNN_PG_NR;
    const int cnt[4] = {16, 16, 16, 16};
    const float *A;
    Py_ssize_t lda;
    const float *c_prev = t == 0 ? f->c0 : crnn_lp_at(cst, t - 1);
    const float *h_prev = t == 0 ? f->h0 : crnn_lp_at(hst, t - 1);
    const Py_ssize_t ldp = t == 0 ? H : cst->ld, ldq = t == 0 ? H : hst->ld;
    if (m != NULL)
        A = h_masked + (t & 1) * B * H, lda = H;
    else
        A = h_prev, lda = ldq;
    const Py_ssize_t u0 = p * CRNN_LP_FU;
    const Py_ssize_t nu = crnn_pg_min(CRNN_LP_FU, H - u0);
    Py_ssize_t r0, r1;
    crnn_pg_chunk_rows(B, f->nq, q, &r0, &r1);
    if (r0 >= r1)
        return;
    /* 1. zs = x_t @ W_x, this tile's rows and units (the bias joins in 3) */
    crnn_pg_tile(f->isa, 0, r1 - r0, D, f->x + r0 * T * D + t * D, T * D,
                 f->Wxp + p * D * CRNN_PG_NR, zs, CRNN_PG_NR, CRNN_LP_FU, cnt, 0);
    /* 2. zs += (h_{t-1} * m) @ W_h */
    crnn_pg_tile(f->isa, 0, r1 - r0, H, A + r0 * lda, lda, f->Whp + p * H * CRNN_PG_NR,
                 zs, CRNN_PG_NR, CRNN_LP_FU, cnt, 1);
    /* 3-5 (and 0 for step t+1): gates[:, t], cs[:, t], hs[:, t] of the tile */
    crnn_lstm_forward_tile_f32(zs, f->gates == NULL ? NULL : f->gates + t * G, TG, f->b,
                               c_prev, ldp, crnn_lp_at(cst, t), cst->ld,
                               crnn_lp_at(hst, t), hst->ld,
                               m == NULL ? NULL : h_masked + ((t + 1) & 1) * B * H, m, H,
                               r0, r1, u0, nu, f->real == NULL ? NULL : f->real + t, T,
                               h_prev, ldq, m == NULL ? NULL : h_masked + (t & 1) * B * H);
}

static void
crnn_lstm_forward_packed_f32(float *gates, float *hs, float *cs, const float *x,
                             const float *h0, const float *c0, const float *W_x,
                             const float *W_h, float *scratch, const float *b,
                             const float *m, float *h_masked, const unsigned char *real,
                             Py_ssize_t B, Py_ssize_t T, Py_ssize_t D, Py_ssize_t H,
                             int h_all, int threads)
{
    const Py_ssize_t TH = T * H;
    const crnn_lp_states_t all_hs = {hs, TH, H, 0}, two_hs = {hs, H, B * H, 1};
    crnn_lp_fwd_t f;
    Py_ssize_t off[3];
    crnn_lstm_forward_scratch(B, D, H, crnn_pg_max_threads(), off);
    if (threads > crnn_pg_max_threads())
        threads = crnn_pg_max_threads();  /* the staging tiles are that many */
    f.gates = gates, f.h_masked = h_masked, f.scratch = scratch;
    f.Wxp = scratch + off[0], f.Whp = scratch + off[1], f.zs_off = off[2];
    f.x = x, f.h0 = h0, f.c0 = c0, f.W_x = W_x, f.W_h = W_h, f.b = b, f.m = m;
    f.real = real;
    f.hst = (gates != NULL || h_all) ? all_hs : two_hs;
    f.cst = gates != NULL ? (crnn_lp_states_t){cs, TH, H, 0}
                          : (crnn_lp_states_t){cs, H, B * H, 1};
    f.B = B, f.T = T, f.D = D, f.H = H;
    f.np = (H + CRNN_LP_FU - 1) / CRNN_LP_FU;
    f.by_rows = crnn_lp_by_rows(B, threads);
    f.nq = f.by_rows ? threads : crnn_pg_row_chunks(f.np, threads);
    f.isa = crnn_pg_isa();
    f.w.items = crnn_lp_fwd_items, f.w.run = crnn_lp_fwd_run;
    f.w.nphases = f.by_rows ? 2 : 1 + T;
    crnn_pg_run(&f.w, threads);
}

/* Backward: steps 5b-2b for t = T-1 .. 0, then 1b and 2c, all on this module's threads
 * (never BLAS). dh_next / dc_next: the gradients of the final h / c on entry, dh0 / dc0
 * on exit; db accumulated into; dx, dW_x, dW_h written whole; dz (B, T, 4H) scratch.
 * hs_m, h0_m: hs * m and h0 * m (hs and h0 without a mask). scratch: laid out by
 * crnn_lstm_backward_scratch for crnn_pg_max_threads() threads, 64-byte aligned. dhs
 * rows: dhs + (r*T + t) * ld_dhs (ld_dhs 0: one row of zeros). */
typedef struct {
    crnn_pg_work_t w;
    float *dx, *dW_x, *dW_h, *dh_next, *dc_next, *dz, *dh_pad;
    float *Whp, *Wxp, *Apx, *Aph, *Bpz, *db_chunks;
    const float *x, *h0_m, *c0, *W_x, *W_h, *hs_m, *cs, *gates, *dhs, *m;
    const unsigned char *real;
    Py_ssize_t ld_dhs, B, T, D, H;
    Py_ssize_t np, npx, npg, nbx, nbh, nq, nqw, nc;
    Py_ssize_t nrec;  /* the phases of the time loop: T + 1 by units, 1 by rows */
    int isa, by_rows;
} crnn_lp_bwd_t;

/* Phases: 0 the packing of W_h^T and W_x^T (an item a panel of either). Split by units
 * (crnn_lp_by_rows), 1: 5b-3c of step T-1; 2 + (T-1-t): step t (2b, then 5b-3c of step
 * t-1), items the tiles (panel i / nq of dh_next, row chunk i % nq); by rows, 1: all of
 * those (item q: row chunk q of nq, its tiles step by step). With R = nrec those
 * phases: R + 1: dx, an item a chunk of CRNN_LP_MCX rows; then per K block kb of the
 * weight gradients, R + 2 + 2kb: its packing (an item a micro-panel of [x | h]^T or a
 * panel of dz), R + 3 + 2kb: its tiles. */
static Py_ssize_t crnn_lp_bwd_items(const crnn_pg_work_t *w, Py_ssize_t ph)
{
    const crnn_lp_bwd_t *g = (const crnn_lp_bwd_t *)w;
    const Py_ssize_t R = g->nrec;
    if (ph == 0)
        return g->np + g->npx;
    if (ph <= R)
        return g->by_rows ? g->nq : g->np * g->nq;
    if (ph == R + 1)
        return g->nc;
    return (ph - R - 2) % 2 == 0 ? g->nbx + g->nbh + g->npg : g->npg * g->nqw;
}

static void crnn_lp_bwd_tile(const crnn_lp_bwd_t *g, Py_ssize_t ph, Py_ssize_t p,
                             Py_ssize_t q);

static void crnn_lp_bwd_run(const crnn_pg_work_t *w, Py_ssize_t ph, Py_ssize_t i, int slot)
{
    const crnn_lp_bwd_t *g = (const crnn_lp_bwd_t *)w;
    const Py_ssize_t B = g->B, T = g->T, D = g->D, H = g->H;
    const Py_ssize_t G = 4 * H, BT = B * T, R = g->nrec;
    (void)slot;
    if (ph == 0) {
        if (i < g->np)
            crnn_lstm_pack_bwd(g->W_h, H, G, g->Whp, i, i + 1);
        else
            crnn_lstm_pack_bwd(g->W_x, D, G, g->Wxp, i - g->np, i - g->np + 1);
        return;
    }
    if (ph <= R) {
        if (!g->by_rows) {
            crnn_lp_bwd_tile(g, ph, i / g->nq, i % g->nq);
            return;
        }
        for (Py_ssize_t step = 1; step <= T + 1; step++)
            for (Py_ssize_t p = 0; p < g->np; p++)
                crnn_lp_bwd_tile(g, step, p, i);
        return;
    }
    if (ph == R + 1) {
        /* 1b. dx = dz @ W_x^T over all B*T rows, as BLAS blocks it: an item a chunk of
         * CRNN_LP_MCX rows; per chunk, K blocks of CRNN_LP_KCX, and per K block every
         * panel of D, so that the chunk's block of dz (96 x 512, 192 KB) stays in L2
         * while the panels' blocks stream past it. (Panels outer and all rows inner, dz
         * went through memory once per panel: 140 GFLOP/s at the (128, 100, 512, 1024)
         * shape.) */
        const Py_ssize_t r0 = i * CRNN_LP_MCX, r1 = crnn_pg_min(BT, r0 + CRNN_LP_MCX);
        for (Py_ssize_t k0 = 0; k0 < G; k0 += CRNN_LP_KCX) {
            const Py_ssize_t kb = crnn_pg_min(CRNN_LP_KCX, G - k0);
            for (Py_ssize_t p = 0; p < g->npx; p++) {
                int cnt[4];
                crnn_pg_counts(D - p * CRNN_PG_NR, cnt);
                crnn_pg_tile(g->isa, r0, r1, kb, g->dz + k0, G,
                             g->Wxp + p * G * CRNN_PG_NR + k0 * CRNN_PG_NR,
                             g->dx + p * CRNN_PG_NR, D, 16, cnt, k0 > 0);
            }
        }
        return;
    }
    /* 1b. dW_x = x^T @ dz and 2c. dW_h = sum_t h_masked_{t-1}^T @ dz_t, as one product
     * [x | h_masked_prev]^T @ dz over the B*T rows (b, t), in K blocks of CRNN_LP_KCW
     * rows: both operands packed per block, then tiles (panel of 4H, chunk of the
     * D + H output rows). The (b, t) row of h_masked_prev is h_masked_{t-1}: hs_m one
     * row back, h0_m at t = 0. */
    const Py_ssize_t kb = (ph - R - 2) / 2, j0 = kb * CRNN_LP_KCW;
    const Py_ssize_t kc = crnn_pg_min(CRNN_LP_KCW, BT - j0);
    const Py_ssize_t nbx = g->nbx, nb = g->nbx + g->nbh;
    if ((ph - R - 2) % 2 == 0) {
        if (i < nbx)
            crnn_lstm_pack_at(g->x, NULL, 0, D, T, j0, kc, i, i + 1, g->Apx);
        else if (i < nb)
            crnn_lstm_pack_at(g->hs_m, g->h0_m, 1, H, T, j0, kc, i - nbx, i - nbx + 1,
                              g->Aph);
        else
            crnn_pg_pack_plain(g->dz + j0 * G, G, kc, G, g->Bpz, i - nb, i - nb + 1);
        return;
    }
    const Py_ssize_t p = i / g->nqw, q = i % g->nqw;
    const Py_ssize_t rb0 = q * nb / g->nqw, rb1 = (q + 1) * nb / g->nqw;
    int cnt[4];
    crnn_pg_counts(G - p * CRNN_PG_NR, cnt);
    const float *bp = g->Bpz + p * kc * CRNN_PG_NR;
    if (rb0 < nbx)
        crnn_pg_tile_packed(g->isa, D, rb0, crnn_pg_min(rb1, nbx), kc, g->Apx, bp,
                            g->dW_x + p * CRNN_PG_NR, G, 16, cnt, j0 > 0);
    if (rb1 > nbx)
        crnn_pg_tile_packed(g->isa, H, (rb0 > nbx ? rb0 : nbx) - nbx, rb1 - nbx, kc,
                            g->Aph, bp, g->dW_h + p * CRNN_PG_NR, G, 16, cnt, j0 > 0);
}

/* Phase ph (1 .. T + 1, as split by units) of tile (panel p of dh_next, row chunk q). */
static void crnn_lp_bwd_tile(const crnn_lp_bwd_t *g, Py_ssize_t ph, Py_ssize_t p,
                             Py_ssize_t q)
{
    const Py_ssize_t B = g->B, T = g->T, H = g->H;
    const Py_ssize_t G = 4 * H, TG = T * G, TH = T * H;
    const float *m = g->m, *cs = g->cs, *c0 = g->c0;
    const unsigned char *real = g->real;
    const Py_ssize_t u0 = p * CRNN_PG_NR, nu = crnn_pg_min(CRNN_PG_NR, H - u0);
    /* db: the row chunk's own sums (the tiles of one unit, one per chunk, run in step
     * order whoever runs them, so db does not depend on the threads) */
    float *dbq = g->db_chunks + q * G;
    Py_ssize_t r0, r1;
    crnn_pg_chunk_rows(B, g->nq, q, &r0, &r1);
    if (r0 >= r1)
        return;
    if (ph == 1) {
        /* 5b-3c of step T-1 (dh_next is dh_last: no mask) */
        const Py_ssize_t s = T - 1;
        crnn_lstm_backward_tile_f32(g->dz + s * G, TG, dbq, g->dc_next, g->dh_next,
                                    NULL, g->dhs + s * g->ld_dhs, T * g->ld_dhs,
                                    g->gates + s * G, cs + s * H, TH,
                                    s == 0 ? c0 : cs + (s - 1) * H, s == 0 ? H : TH,
                                    H, r0, r1, u0, nu, NULL,
                                    real == NULL ? NULL : real + s, T, g->dh_pad);
        return;
    }
    const Py_ssize_t t = T + 1 - ph, s = t - 1; /* s: the step whose 5b-3c follow */
    int cnt[4];
    crnn_pg_counts(nu, cnt);
    /* 2b. dh_next = dz[:, t] @ W_h^T, this tile's rows and units */
    crnn_pg_tile(g->isa, r0, r1, G, g->dz + t * G, TG, g->Whp + p * G * CRNN_PG_NR,
                 g->dh_next + u0, H, 16, cnt, 0);
    /* ... * m (or 6b); then 5b-3c of step t-1 on the same rows and units */
    const unsigned char *real_t = real == NULL ? NULL : real + t;
    if (s >= 0)
        crnn_lstm_backward_tile_f32(g->dz + s * G, TG, dbq, g->dc_next, g->dh_next, m,
                                    g->dhs + s * g->ld_dhs, T * g->ld_dhs,
                                    g->gates + s * G, cs + s * H, TH,
                                    s == 0 ? c0 : cs + (s - 1) * H, s == 0 ? H : TH,
                                    H, r0, r1, u0, nu, real_t,
                                    real == NULL ? NULL : real + s, T, g->dh_pad);
    else if (m != NULL || real != NULL)
        crnn_lstm_backward_tile_f32(NULL, TG, dbq, g->dc_next, g->dh_next, m, g->dhs, 0,
                                    g->gates, cs, TH, c0, H, H, r0, r1, u0, nu,
                                    real_t, NULL, T, g->dh_pad);
}

static void
crnn_lstm_backward_packed_f32(float *dx, float *dW_x, float *dW_h, float *dh_next,
                              float *dc_next, float *db, float *dz, float *scratch,
                              const float *x, const float *h0_m, const float *c0,
                              const float *W_x, const float *W_h, const float *hs_m,
                              const float *cs, const float *gates, const float *dhs,
                              Py_ssize_t ld_dhs, const float *m, const unsigned char *real,
                              float *dh_pad, Py_ssize_t B, Py_ssize_t T, Py_ssize_t D,
                              Py_ssize_t H, int threads)
{
    const Py_ssize_t G = 4 * H, BT = B * T;
    Py_ssize_t off[6];
    crnn_lstm_backward_scratch(D, H, crnn_pg_max_threads(), off);
    if (threads > crnn_pg_max_threads())
        threads = crnn_pg_max_threads();  /* the db sums are that many */
    crnn_lp_bwd_t g;
    g.dx = dx, g.dW_x = dW_x, g.dW_h = dW_h, g.dh_next = dh_next, g.dc_next = dc_next;
    g.dz = dz, g.dh_pad = dh_pad;
    g.Whp = scratch + off[0], g.Wxp = scratch + off[1];
    g.Apx = scratch + off[2], g.Aph = scratch + off[3], g.Bpz = scratch + off[4];
    g.db_chunks = scratch + off[5];
    g.x = x, g.h0_m = h0_m, g.c0 = c0, g.W_x = W_x, g.W_h = W_h, g.hs_m = hs_m;
    g.cs = cs, g.gates = gates, g.dhs = dhs, g.m = m, g.real = real;
    g.ld_dhs = ld_dhs, g.B = B, g.T = T, g.D = D, g.H = H;
    g.np = (H + CRNN_PG_NR - 1) / CRNN_PG_NR;  /* panels of dh_next */
    g.npx = (D + CRNN_PG_NR - 1) / CRNN_PG_NR; /* panels of dx */
    g.npg = (G + CRNN_PG_NR - 1) / CRNN_PG_NR; /* panels of dW */
    g.nbx = (D + CRNN_PG_MR - 1) / CRNN_PG_MR; /* micro-panels of dW_x */
    g.nbh = (H + CRNN_PG_MR - 1) / CRNN_PG_MR; /* ... of dW_h */
    g.by_rows = crnn_lp_by_rows(B, threads);
    g.nq = g.by_rows ? threads : crnn_pg_row_chunks(g.np, threads);
    g.nrec = g.by_rows ? 1 : T + 1;
    g.nqw = crnn_pg_row_chunks(g.npg, threads);
    g.nc = (BT + CRNN_LP_MCX - 1) / CRNN_LP_MCX;
    g.isa = crnn_pg_isa();
    memset(g.db_chunks, 0, g.nq * G * sizeof(float));
    g.w.items = crnn_lp_bwd_items, g.w.run = crnn_lp_bwd_run;
    g.w.nphases = g.nrec + 2 + 2 * ((BT + CRNN_LP_KCW - 1) / CRNN_LP_KCW);
    crnn_pg_run(&g.w, threads);
    /* 3c. db += the row chunks' sums */
    for (Py_ssize_t q = 0; q < g.nq; q++)
        for (Py_ssize_t j = 0; j < G; j++)
            db[j] += g.db_chunks[q * G + j];
}

#endif
