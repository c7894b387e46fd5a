/* The products of one streaming step (_step.pyx): y (+)= x @ W for a few rows x, where
 * W is float32 in the layer's own row-major layout, or a copy of it in bfloat16 or int8
 * packed in panels.
 *
 * Notation: K rows of W (D or H), N columns (the gates' width, or a part of it), B rows
 * of x (the batch, 1 when streaming). A step reads every weight once and does one
 * multiply-add per weight: it is bound by the bytes of W read from memory, so the
 * kernels make one sequential pass over them and keep y in registers or L1.
 *
 * float32 (crnn_sk_rows_f32): W row-major, row stride ld, as the layer stores it (a
 * stepper reads the live weights). The rows of W are taken four at a time over the
 * whole width, y[j] += a0 w0[j] + a1 w1[j] + a2 w2[j] + a3 w3[j]: four sequential
 * streams through the weights (which the hardware prefetchers follow; a block of y held
 * in registers against every row would stride through W a row length apart, across
 * pages at H = 1024) and one pass over y, which stays in L1, per four rows. A thread's
 * share is a block of columns (W + c0, N = its width, same ld): runs of N floats a row.
 *
 * bfloat16 and int8: a copy of W made once (crnn/reference/quantize.py defines the
 * rounding), packed in panels of CRNN_SK_NB = 64 columns, K x 64 contiguous, so that a
 * panel is one sequential stream and its 64 outputs stay in registers for all K rows.
 * Inside a panel's row (64 elements):
 *   bfloat16: two groups of 32 columns; in group g, element 2i is column 32g + i and
 *             element 2i + 1 column 32g + 16 + i (i < 16): a 32-bit word holds columns
 *             i (low half) and 16 + i (high half), so a shift by 16 and a mask make
 *             two float32 vectors of 16 columns each, in column order;
 *   int8:     the 64 columns in order; a scale per column (float32, panel-padded with
 *             zeros) multiplies the sum once at the end: y_j = s_j * sum_k x_k q_kj.
 * The arithmetic is float32 throughout (inputs, states, sums): AVX512_BF16's vdpbf16ps
 * and VNNI's vpdpbusd would need the inputs rounded to bfloat16 or int8 too, which the
 * specification does not allow; converting the weights is cheap beside reading them.
 *
 * Variants: AVX-512F (zmm), AVX2 + FMA (ymm) and portable C (which GCC vectorises for
 * the baseline), chosen at run time from the CPU (__builtin_cpu_supports) like the
 * packed GEMM's (_pgemm.h); crnn_sk_force_isa forces one for tests. Each variant sums
 * every column over k in order (AVX-512 bfloat16: even and odd k apart, then added), so
 * they differ in the last bits only. */
#ifndef CRNN_STEP_KERNELS_H
#define CRNN_STEP_KERNELS_H

#include <stdint.h>
#include <string.h>

#define CRNN_SK_NB 64

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#define CRNN_SK_X86 1
#include <immintrin.h>
#define CRNN_SK_T512 __attribute__((target("avx512f")))
#define CRNN_SK_T256 __attribute__((target("avx2,fma")))
/* The panel kernels fetch the cache line CRNN_SK_PF bytes ahead of the one they read (a
 * panel is one stream per thread, which the hardware prefetchers alone do not keep
 * far enough ahead of: measured at H = D = 1024, LSTM, 2 threads, load 9-12, fastest of
 * 40 steps: int8 190 -> 155-182 us, bfloat16 unchanged at ~300-315; 1, 2 and 4 KB
 * ahead within the noise of each other). Past the panel's end it touches the next
 * panel's lines or, at the last one, memory it never reads: a prefetch does not fault. */
#define CRNN_SK_PF 2048
#define CRNN_SK_PREFETCH(w, off) \
    _mm_prefetch((const char *)(w) + CRNN_SK_PF + (off), _MM_HINT_T0)
#else
#define CRNN_SK_X86 0
#endif

enum { CRNN_SK_GENERIC = 0, CRNN_SK_AVX2 = 1, CRNN_SK_AVX512 = 2 };

static int crnn_sk_forced = -1;  /* -1: by the CPU */

static int crnn_sk_best_isa(void)
{
#if CRNN_SK_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        return CRNN_SK_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return CRNN_SK_AVX2;
#endif
    return CRNN_SK_GENERIC;
}

static int crnn_sk_isa(void)
{
    static int best = -1;
    if (crnn_sk_forced >= 0)
        return crnn_sk_forced;
    if (best < 0)
        best = crnn_sk_best_isa();
    return best;
}

/* Force a variant (-1: by the CPU again); 0, or -1 where the CPU lacks it. */
static int crnn_sk_force_isa(int isa)
{
    if (isa > crnn_sk_best_isa() || isa < -1)
        return -1;
    crnn_sk_forced = isa;
    return 0;
}

/* ---- float32, row-major ------------------------------------------------------------ */
/* y[0:N] (=|+=) x[0:K] @ W[0:K, 0:N], row stride ld; init: y is overwritten. */
#define CRNN_SK_ROWS_BODY(T)                                                            \
    Py_ssize_t k = 0, j;                                                                \
    for (; k + 4 <= K; k += 4) {                                                        \
        const T a0 = x[k], a1 = x[k + 1], a2 = x[k + 2], a3 = x[k + 3];                 \
        const T *__restrict__ w0 = W + k * ld;                                          \
        const T *__restrict__ w1 = w0 + ld;                                             \
        const T *__restrict__ w2 = w1 + ld;                                             \
        const T *__restrict__ w3 = w2 + ld;                                             \
        if (init) {                                                                     \
            for (j = 0; j < N; j++)                                                     \
                y[j] = ((a0 * w0[j] + a1 * w1[j]) + a2 * w2[j]) + a3 * w3[j];           \
            init = 0;                                                                   \
        } else {                                                                        \
            for (j = 0; j < N; j++)                                                     \
                y[j] += ((a0 * w0[j] + a1 * w1[j]) + a2 * w2[j]) + a3 * w3[j];          \
        }                                                                               \
    }                                                                                   \
    for (; k < K; k++) {                                                                \
        const T a = x[k];                                                               \
        const T *__restrict__ w = W + k * ld;                                           \
        if (init) {                                                                     \
            for (j = 0; j < N; j++) y[j] = a * w[j];                                    \
            init = 0;                                                                   \
        } else {                                                                        \
            for (j = 0; j < N; j++) y[j] += a * w[j];                                   \
        }                                                                               \
    }                                                                                   \
    if (init)                                                                           \
        for (j = 0; j < N; j++) y[j] = 0;

#define CRNN_SK_ROWS_ARGS(T)                                                            \
    T *__restrict__ y, const T *__restrict__ x, const T *__restrict__ W, Py_ssize_t K,  \
    Py_ssize_t ld, Py_ssize_t N, int init

static void crnn_sk_rows_f32_generic(CRNN_SK_ROWS_ARGS(float)) { CRNN_SK_ROWS_BODY(float) }
#if CRNN_SK_X86
CRNN_SK_T512 static void crnn_sk_rows_f32_avx512(CRNN_SK_ROWS_ARGS(float))
{ CRNN_SK_ROWS_BODY(float) }
CRNN_SK_T256 static void crnn_sk_rows_f32_avx2(CRNN_SK_ROWS_ARGS(float))
{ CRNN_SK_ROWS_BODY(float) }
#endif

static inline void crnn_sk_rows_f32(int isa, CRNN_SK_ROWS_ARGS(float))
{
#if CRNN_SK_X86
    if (isa == CRNN_SK_AVX512) {
        crnn_sk_rows_f32_avx512(y, x, W, K, ld, N, init);
        return;
    }
    if (isa == CRNN_SK_AVX2) {
        crnn_sk_rows_f32_avx2(y, x, W, K, ld, N, init);
        return;
    }
#endif
    (void)isa;
    crnn_sk_rows_f32_generic(y, x, W, K, ld, N, init);
}

/* float64: the same loop, compiled for the baseline, AVX with FMA and AVX-512F and
 * chosen by the CPU (CRNN_CLONES, _simd.h); no forced variants. */
#include "_simd.h"
CRNN_CLONES static void crnn_sk_rows_f64(CRNN_SK_ROWS_ARGS(double))
{ CRNN_SK_ROWS_BODY(double) }

/* ---- panels: bfloat16 and int8 ----------------------------------------------------- */
/* For rows b < B of x (row stride ldx) and panels p0 <= p < p1 of P (each K x 64, the
 * columns 64p .. 64p + 63 of W, of which those below N exist):
 *     y[b, 64p + c] (=|+=) sum_k x[b, k] W[k, 64p + c]    (int8: times s[64p + c])
 * y's rows ldy apart; only columns below N are written. */
#define CRNN_SK_PANEL_ARGS(WT)                                                          \
    float *__restrict__ y, Py_ssize_t ldy, const float *__restrict__ x, Py_ssize_t ldx, \
    Py_ssize_t B, const WT *__restrict__ P, const float *__restrict__ s, Py_ssize_t K,   \
    Py_ssize_t N, Py_ssize_t p0, Py_ssize_t p1, int accumulate

/* store the 64 sums acc (column order) of panel p into y's row, scaled, only c < N */
static inline __attribute__((always_inline)) void
crnn_sk_store(float *__restrict__ yrow, const float *__restrict__ acc,
              const float *__restrict__ s, Py_ssize_t p, Py_ssize_t N, int accumulate)
{
    const Py_ssize_t c0 = p * CRNN_SK_NB;
    const Py_ssize_t n = N - c0 < CRNN_SK_NB ? N - c0 : CRNN_SK_NB;
    for (Py_ssize_t c = 0; c < n; c++) {
        const float v = s != NULL ? acc[c] * s[c0 + c] : acc[c];
        yrow[c0 + c] = accumulate ? yrow[c0 + c] + v : v;
    }
}

static inline __attribute__((always_inline)) float crnn_sk_bf16(uint16_t v)
{
    const uint32_t u = (uint32_t)v << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static void crnn_sk_panels_bf16_generic(CRNN_SK_PANEL_ARGS(uint16_t))
{
    float acc[CRNN_SK_NB];
    for (Py_ssize_t p = p0; p < p1; p++) {
        const uint16_t *panel = P + p * K * CRNN_SK_NB;
        for (Py_ssize_t b = 0; b < B; b++) {
            const float *xb = x + b * ldx;
            for (int c = 0; c < CRNN_SK_NB; c++)
                acc[c] = 0.0f;
            for (Py_ssize_t k = 0; k < K; k++) {
                const float a = xb[k];
                const uint16_t *w = panel + k * CRNN_SK_NB;
                for (int g = 0; g < 2; g++)
                    for (int i = 0; i < 16; i++) {
                        acc[32 * g + i] += a * crnn_sk_bf16(w[32 * g + 2 * i]);
                        acc[32 * g + 16 + i] += a * crnn_sk_bf16(w[32 * g + 2 * i + 1]);
                    }
            }
            crnn_sk_store(y + b * ldy, acc, NULL, p, N, accumulate);
        }
    }
}

static void crnn_sk_panels_i8_generic(CRNN_SK_PANEL_ARGS(int8_t))
{
    float acc[CRNN_SK_NB];
    for (Py_ssize_t p = p0; p < p1; p++) {
        const int8_t *panel = P + p * K * CRNN_SK_NB;
        for (Py_ssize_t b = 0; b < B; b++) {
            const float *xb = x + b * ldx;
            for (int c = 0; c < CRNN_SK_NB; c++)
                acc[c] = 0.0f;
            for (Py_ssize_t k = 0; k < K; k++) {
                const float a = xb[k];
                const int8_t *w = panel + k * CRNN_SK_NB;
                for (int c = 0; c < CRNN_SK_NB; c++)
                    acc[c] += a * (float)w[c];
            }
            crnn_sk_store(y + b * ldy, acc, s, p, N, accumulate);
        }
    }
}

#if CRNN_SK_X86
CRNN_SK_T512 static void crnn_sk_panels_bf16_avx512(CRNN_SK_PANEL_ARGS(uint16_t))
{
    const __m512i hi = _mm512_set1_epi32((int)0xFFFF0000u);
    float acc[CRNN_SK_NB] __attribute__((aligned(64)));
    for (Py_ssize_t p = p0; p < p1; p++) {
        const uint16_t *panel = P + p * K * CRNN_SK_NB;
        for (Py_ssize_t b = 0; b < B; b++) {
            const float *xb = x + b * ldx;
            __m512 e0 = _mm512_setzero_ps(), e1 = e0, e2 = e0, e3 = e0;  /* even k */
            __m512 o0 = e0, o1 = e0, o2 = e0, o3 = e0;                   /* odd k */
            Py_ssize_t k = 0;
            for (; k + 2 <= K; k += 2) {
                const uint16_t *w = panel + k * CRNN_SK_NB;
                CRNN_SK_PREFETCH(w, 0);
                CRNN_SK_PREFETCH(w, 64);
                CRNN_SK_PREFETCH(w, 128);
                CRNN_SK_PREFETCH(w, 192);
                const __m512 a = _mm512_set1_ps(xb[k]), c = _mm512_set1_ps(xb[k + 1]);
                const __m512i v0 = _mm512_loadu_si512((const void *)w);
                const __m512i v1 = _mm512_loadu_si512((const void *)(w + 32));
                const __m512i v2 = _mm512_loadu_si512((const void *)(w + 64));
                const __m512i v3 = _mm512_loadu_si512((const void *)(w + 96));
                e0 = _mm512_fmadd_ps(a, _mm512_castsi512_ps(_mm512_slli_epi32(v0, 16)), e0);
                e1 = _mm512_fmadd_ps(a, _mm512_castsi512_ps(_mm512_and_si512(v0, hi)), e1);
                e2 = _mm512_fmadd_ps(a, _mm512_castsi512_ps(_mm512_slli_epi32(v1, 16)), e2);
                e3 = _mm512_fmadd_ps(a, _mm512_castsi512_ps(_mm512_and_si512(v1, hi)), e3);
                o0 = _mm512_fmadd_ps(c, _mm512_castsi512_ps(_mm512_slli_epi32(v2, 16)), o0);
                o1 = _mm512_fmadd_ps(c, _mm512_castsi512_ps(_mm512_and_si512(v2, hi)), o1);
                o2 = _mm512_fmadd_ps(c, _mm512_castsi512_ps(_mm512_slli_epi32(v3, 16)), o2);
                o3 = _mm512_fmadd_ps(c, _mm512_castsi512_ps(_mm512_and_si512(v3, hi)), o3);
            }
            if (k < K) {
                const uint16_t *w = panel + k * CRNN_SK_NB;
                const __m512 a = _mm512_set1_ps(xb[k]);
                const __m512i v0 = _mm512_loadu_si512((const void *)w);
                const __m512i v1 = _mm512_loadu_si512((const void *)(w + 32));
                e0 = _mm512_fmadd_ps(a, _mm512_castsi512_ps(_mm512_slli_epi32(v0, 16)), e0);
                e1 = _mm512_fmadd_ps(a, _mm512_castsi512_ps(_mm512_and_si512(v0, hi)), e1);
                e2 = _mm512_fmadd_ps(a, _mm512_castsi512_ps(_mm512_slli_epi32(v1, 16)), e2);
                e3 = _mm512_fmadd_ps(a, _mm512_castsi512_ps(_mm512_and_si512(v1, hi)), e3);
            }
            _mm512_store_ps(acc, _mm512_add_ps(e0, o0));
            _mm512_store_ps(acc + 16, _mm512_add_ps(e1, o1));
            _mm512_store_ps(acc + 32, _mm512_add_ps(e2, o2));
            _mm512_store_ps(acc + 48, _mm512_add_ps(e3, o3));
            crnn_sk_store(y + b * ldy, acc, NULL, p, N, accumulate);
        }
    }
}

CRNN_SK_T512 static void crnn_sk_panels_i8_avx512(CRNN_SK_PANEL_ARGS(int8_t))
{
    float acc[CRNN_SK_NB] __attribute__((aligned(64)));
    for (Py_ssize_t p = p0; p < p1; p++) {
        const int8_t *panel = P + p * K * CRNN_SK_NB;
        for (Py_ssize_t b = 0; b < B; b++) {
            const float *xb = x + b * ldx;
            __m512 e0 = _mm512_setzero_ps(), e1 = e0, e2 = e0, e3 = e0;
            for (Py_ssize_t k = 0; k < K; k++) {
                const int8_t *w = panel + k * CRNN_SK_NB;
                CRNN_SK_PREFETCH(w, 0);
                const __m512 a = _mm512_set1_ps(xb[k]);
#define CRNN_SK_I8(q) _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(                          \
                          _mm_loadu_si128((const __m128i *)(w + 16 * (q)))))
                e0 = _mm512_fmadd_ps(a, CRNN_SK_I8(0), e0);
                e1 = _mm512_fmadd_ps(a, CRNN_SK_I8(1), e1);
                e2 = _mm512_fmadd_ps(a, CRNN_SK_I8(2), e2);
                e3 = _mm512_fmadd_ps(a, CRNN_SK_I8(3), e3);
#undef CRNN_SK_I8
            }
            _mm512_store_ps(acc, e0);
            _mm512_store_ps(acc + 16, e1);
            _mm512_store_ps(acc + 32, e2);
            _mm512_store_ps(acc + 48, e3);
            crnn_sk_store(y + b * ldy, acc, s, p, N, accumulate);
        }
    }
}

CRNN_SK_T256 static void crnn_sk_panels_bf16_avx2(CRNN_SK_PANEL_ARGS(uint16_t))
{
    const __m256i hi = _mm256_set1_epi32((int)0xFFFF0000u);
    float acc[CRNN_SK_NB] __attribute__((aligned(32)));
    for (Py_ssize_t p = p0; p < p1; p++) {
        const uint16_t *panel = P + p * K * CRNN_SK_NB;
        for (Py_ssize_t b = 0; b < B; b++) {
            const float *xb = x + b * ldx;
            /* per 32-column group g: words 0-7 hold columns 0-7 | 16-23, words 8-15
             * columns 8-15 | 24-31 */
            __m256 r[8];
            for (int q = 0; q < 8; q++)
                r[q] = _mm256_setzero_ps();
            for (Py_ssize_t k = 0; k < K; k++) {
                const uint16_t *w = panel + k * CRNN_SK_NB;
                CRNN_SK_PREFETCH(w, 0);
                CRNN_SK_PREFETCH(w, 64);
                const __m256 a = _mm256_set1_ps(xb[k]);
                for (int g = 0; g < 2; g++) {
                    const __m256i v0 = _mm256_loadu_si256((const __m256i *)(w + 32 * g));
                    const __m256i v1 =
                        _mm256_loadu_si256((const __m256i *)(w + 32 * g + 16));
                    r[4 * g] = _mm256_fmadd_ps(
                        a, _mm256_castsi256_ps(_mm256_slli_epi32(v0, 16)), r[4 * g]);
                    r[4 * g + 1] = _mm256_fmadd_ps(
                        a, _mm256_castsi256_ps(_mm256_slli_epi32(v1, 16)), r[4 * g + 1]);
                    r[4 * g + 2] = _mm256_fmadd_ps(
                        a, _mm256_castsi256_ps(_mm256_and_si256(v0, hi)), r[4 * g + 2]);
                    r[4 * g + 3] = _mm256_fmadd_ps(
                        a, _mm256_castsi256_ps(_mm256_and_si256(v1, hi)), r[4 * g + 3]);
                }
            }
            for (int q = 0; q < 8; q++)
                _mm256_store_ps(acc + 8 * q, r[q]);
            crnn_sk_store(y + b * ldy, acc, NULL, p, N, accumulate);
        }
    }
}

CRNN_SK_T256 static void crnn_sk_panels_i8_avx2(CRNN_SK_PANEL_ARGS(int8_t))
{
    float acc[CRNN_SK_NB] __attribute__((aligned(32)));
    for (Py_ssize_t p = p0; p < p1; p++) {
        const int8_t *panel = P + p * K * CRNN_SK_NB;
        for (Py_ssize_t b = 0; b < B; b++) {
            const float *xb = x + b * ldx;
            __m256 r[8];
            for (int q = 0; q < 8; q++)
                r[q] = _mm256_setzero_ps();
            for (Py_ssize_t k = 0; k < K; k++) {
                const int8_t *w = panel + k * CRNN_SK_NB;
                CRNN_SK_PREFETCH(w, 0);
                const __m256 a = _mm256_set1_ps(xb[k]);
                for (int q = 0; q < 8; q++) {
                    const __m256 v = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(
                        _mm_loadl_epi64((const __m128i *)(w + 8 * q))));
                    r[q] = _mm256_fmadd_ps(a, v, r[q]);
                }
            }
            for (int q = 0; q < 8; q++)
                _mm256_store_ps(acc + 8 * q, r[q]);
            crnn_sk_store(y + b * ldy, acc, s, p, N, accumulate);
        }
    }
}
#endif /* CRNN_SK_X86 */

static inline void crnn_sk_panels_bf16(int isa, CRNN_SK_PANEL_ARGS(uint16_t))
{
#if CRNN_SK_X86
    if (isa == CRNN_SK_AVX512) {
        crnn_sk_panels_bf16_avx512(y, ldy, x, ldx, B, P, s, K, N, p0, p1, accumulate);
        return;
    }
    if (isa == CRNN_SK_AVX2) {
        crnn_sk_panels_bf16_avx2(y, ldy, x, ldx, B, P, s, K, N, p0, p1, accumulate);
        return;
    }
#endif
    (void)isa;
    crnn_sk_panels_bf16_generic(y, ldy, x, ldx, B, P, s, K, N, p0, p1, accumulate);
}

static inline void crnn_sk_panels_i8(int isa, CRNN_SK_PANEL_ARGS(int8_t))
{
#if CRNN_SK_X86
    if (isa == CRNN_SK_AVX512) {
        crnn_sk_panels_i8_avx512(y, ldy, x, ldx, B, P, s, K, N, p0, p1, accumulate);
        return;
    }
    if (isa == CRNN_SK_AVX2) {
        crnn_sk_panels_i8_avx2(y, ldy, x, ldx, B, P, s, K, N, p0, p1, accumulate);
        return;
    }
#endif
    (void)isa;
    crnn_sk_panels_i8_generic(y, ldy, x, ldx, B, P, s, K, N, p0, p1, accumulate);
}

#endif /* CRNN_STEP_KERNELS_H */
