/* A float32 GEMM against a weight matrix packed once, for the recurrent products.
 *
 *     C[r0:r1, cols of panel p] (+)= A[r0:r1, :K] @ Wp[p]
 *
 * The recurrent GEMM of an RNN multiplies a small, fresh left operand (h_{t-1}, B x H) by
 * the same weight matrix at every step. BLAS re-packs that matrix at every call (W_h is
 * 1 MB at H = 256, 16 MB at H = 1024) and wakes and joins its threads; here it is packed
 * once per kernel call, BLIS-style, into panels of CRNN_PG_NR = 64 columns, K-major and
 * zero-padded: panel p holds Wp[p][k][c] for k < K, c < 64, 64-byte aligned, each k-row
 * one cache line of four 16-float vectors. Which 64 columns a panel holds is the
 * caller's choice (the LSTM forward interleaves the four gates of 16 units, so that one
 * tile holds i, f, g, o of the same units; see _lstm_packed.h); the kernel only needs to
 * know where each of the four 16-column vectors goes in C: vector j of row r is stored at
 * C + r*ldc + j*cs, its first cnt[j] columns (0..16) valid.
 *
 * The micro-kernel computes a CRNN_PG_MR x 64 tile (6 rows, 24 accumulators; BLIS's
 * shape for Zen 4) over a K block: per k, four vector loads of the panel and six
 * broadcasts of A for 24 FMAs. A is read where it lies, element (r, k) at
 * A[r * rs + k * ks]: rows of a time step (rs = lda, ks = 1: crnn_pg_tile, which walks K
 * in blocks of CRNN_PG_KC so that a 64 KB block of the panel stays in L2 while the row
 * blocks pass over it), or a K block packed into micro-panels of 6 rows (rs = 1, ks = 6:
 * crnn_pg_tile_packed, for the weight gradients, whose A is a transpose). Three
 * variants, chosen at run time (__builtin_cpu_supports): AVX-512F (zmm), AVX2+FMA (the
 * 64 columns as four passes of 6 x 16 in ymm) and portable C; GCC or Clang on x86-64,
 * elsewhere only the portable one is compiled. Results differ in the last bits from
 * BLAS's (another summation order) and between variants (FMA or not).
 *
 * Measured on this project's machine (AMD EPYC Zen 4, 2 cores, AVX-512 double-pumped,
 * SGEMM peak ~205 GFLOP/s with OpenBLAS; benchmarks/bench_step_gemm.py, medians of
 * interleaved calls of 50-100 steps, packing included), per step, forward (B, 4H, H) and
 * backward (B, H, 4H) products, 2 threads, packed vs OpenBLAS 0.3.30 sgemm (the better of
 * W and W^T): (32, 256, 64) 7.2 us vs 10.0; (32, 64, 256) 6.6 vs 9.1; (64, 1024, 256)
 * 155 us = 216 GFLOP/s vs 237; (64, 256, 1024) 154 vs 230; (128, 4096, 1024) 5.10 ms =
 * 211 GFLOP/s vs 6.90; (128, 1024, 4096) 5.05 vs 7.30. CRNN_PG_KC 128 or 256 made no
 * difference beyond noise at the larger shapes; 64 was slower.
 *
 * The threads of a time loop meet at crnn_pg_barrier once a step; see there for why it
 * is not OpenMP's.
 */
#ifndef CRNN_PGEMM_H
#define CRNN_PGEMM_H

#include <stdint.h>
#include <string.h>

#define CRNN_PG_NR 64   /* columns of a packed panel: four 16-float vectors */
#define CRNN_PG_MR 6    /* rows of a micro-tile */
#define CRNN_PG_KC 256  /* K block: 256 x 64 floats = 64 KB of panel (L2) */

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#define CRNN_PG_X86 1
#include <immintrin.h>
#else
#define CRNN_PG_X86 0
#endif

#define CRNN_PG_INLINE static inline __attribute__((always_inline))

enum { CRNN_PG_GENERIC = 0, CRNN_PG_AVX2 = 1, CRNN_PG_AVX512 = 2 };

/* -1: choose by the CPU; else forced (tests run every variant the CPU can). */
static int crnn_pg_forced_isa = -1;

/* The widest variant this CPU runs. */
static int crnn_pg_best_isa(void)
{
#if CRNN_PG_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        return CRNN_PG_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return CRNN_PG_AVX2;
#endif
    return CRNN_PG_GENERIC;
}

static int crnn_pg_isa(void)
{
    static int best = -1;
    if (crnn_pg_forced_isa >= 0)
        return crnn_pg_forced_isa;
    if (best < 0)
        best = crnn_pg_best_isa();
    return best;
}

/* Force a variant (-1: back to automatic); returns 0, or -1 where the CPU lacks it. */
static int crnn_pg_force_isa(int isa)
{
    if (isa > crnn_pg_best_isa())
        return -1;
    crnn_pg_forced_isa = isa;
    return 0;
}

/* A pointer p rounded up to 64 bytes (the caller allocated 16 floats more). */
static inline float *crnn_pg_align(float *p)
{
    return (float *)(((uintptr_t)p + 63) & ~(uintptr_t)63);
}

static inline Py_ssize_t crnn_pg_min(Py_ssize_t a, Py_ssize_t b) { return a < b ? a : b; }

/* ------------------------------------------------------------------------------------ */
/* Micro-kernels: C tile (mr x 64) = (accumulate ? C : 0) + A[:mr, :kc] @ B[:kc, :64].   */
/* mr is a constant after inlining into the switch of the tile driver.                 */

CRNN_PG_INLINE void
crnn_pg_ukernel_generic(const int mr, const Py_ssize_t kc, const float *A,
                        const Py_ssize_t rs, const Py_ssize_t ks, const float *Bp, float *C,
                        const Py_ssize_t ldc, const Py_ssize_t cs, const int *cnt,
                        const int accumulate)
{
    float acc[CRNN_PG_MR][CRNN_PG_NR];
    memset(acc, 0, sizeof acc);
    for (Py_ssize_t k = 0; k < kc; k++) {
        const float *b = Bp + k * CRNN_PG_NR;
        for (int r = 0; r < mr; r++) {
            const float a = A[r * rs + k * ks];
            for (int c = 0; c < CRNN_PG_NR; c++)
                acc[r][c] += a * b[c];
        }
    }
    for (int r = 0; r < mr; r++)
        for (int j = 0; j < 4; j++) {
            float *c = C + r * ldc + j * cs;
            for (int u = 0; u < cnt[j]; u++)
                c[u] = accumulate ? c[u] + acc[r][16 * j + u] : acc[r][16 * j + u];
        }
}

#if CRNN_PG_X86

#define CRNN_PG_T512 __attribute__((target("avx512f")))
#define CRNN_PG_T256 __attribute__((target("avx2,fma")))

CRNN_PG_INLINE CRNN_PG_T512 void
crnn_pg_ukernel_avx512(const int mr, const Py_ssize_t kc, const float *A,
                       const Py_ssize_t rs, const Py_ssize_t ks, const float *Bp, float *C,
                       const Py_ssize_t ldc, const Py_ssize_t cs, const int *cnt,
                       const int accumulate)
{
    __m512 acc[CRNN_PG_MR][4];
#pragma GCC unroll 6
    for (int r = 0; r < CRNN_PG_MR; r++)
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++)
            acc[r][j] = _mm512_setzero_ps();
    const float *a0 = A, *a1 = A + rs, *a2 = A + 2 * rs;
    const float *a3 = A + 3 * rs, *a4 = A + 4 * rs, *a5 = A + 5 * rs;
#define CRNN_PG_ROW512(r)                                                   \
    if (mr > r) {                                                           \
        const __m512 a = _mm512_set1_ps(a##r[k * ks]);                      \
        acc[r][0] = _mm512_fmadd_ps(a, b0, acc[r][0]);                      \
        acc[r][1] = _mm512_fmadd_ps(a, b1, acc[r][1]);                      \
        acc[r][2] = _mm512_fmadd_ps(a, b2, acc[r][2]);                      \
        acc[r][3] = _mm512_fmadd_ps(a, b3, acc[r][3]);                      \
    }
#pragma GCC unroll 2
    for (Py_ssize_t k = 0; k < kc; k++) {
        const float *b = Bp + k * CRNN_PG_NR;
        const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
        const __m512 b2 = _mm512_load_ps(b + 32), b3 = _mm512_load_ps(b + 48);
        CRNN_PG_ROW512(0) CRNN_PG_ROW512(1) CRNN_PG_ROW512(2)
        CRNN_PG_ROW512(3) CRNN_PG_ROW512(4) CRNN_PG_ROW512(5)
    }
#undef CRNN_PG_ROW512
    __mmask16 mask[4];
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++)
        mask[j] = cnt[j] >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << cnt[j]) - 1u);
#pragma GCC unroll 6
    for (int r = 0; r < CRNN_PG_MR; r++) {
        if (r >= mr)
            break;
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            if (mask[j] == 0)
                continue;
            float *c = C + r * ldc + j * cs;
            __m512 v = acc[r][j];
            if (accumulate)
                v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask[j], c));
            _mm512_mask_storeu_ps(c, mask[j], v);
        }
    }
}

/* AVX2: the 64 columns as four 16-column passes of a 6 x 16 tile (12 accumulators). */
CRNN_PG_INLINE CRNN_PG_T256 void
crnn_pg_ukernel_avx2(const int mr, const Py_ssize_t kc, const float *A,
                     const Py_ssize_t rs, const Py_ssize_t ks, const float *Bp, float *C,
                     const Py_ssize_t ldc, const Py_ssize_t cs, const int *cnt,
                     const int accumulate)
{
    for (int j = 0; j < 4; j++) {
        if (cnt[j] == 0)
            continue;
        __m256 acc[CRNN_PG_MR][2];
#pragma GCC unroll 6
        for (int r = 0; r < CRNN_PG_MR; r++)
            acc[r][0] = acc[r][1] = _mm256_setzero_ps();
        const float *b = Bp + 16 * j;
        for (Py_ssize_t k = 0; k < kc; k++, b += CRNN_PG_NR) {
            const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 6
            for (int r = 0; r < CRNN_PG_MR; r++) {
                if (r >= mr)
                    break;
                const __m256 a = _mm256_broadcast_ss(A + r * rs + k * ks);
                acc[r][0] = _mm256_fmadd_ps(a, b0, acc[r][0]);
                acc[r][1] = _mm256_fmadd_ps(a, b1, acc[r][1]);
            }
        }
        for (int r = 0; r < mr; r++) {
            float *c = C + r * ldc + j * cs;
            if (cnt[j] == 16) {
                __m256 v0 = acc[r][0], v1 = acc[r][1];
                if (accumulate) {
                    v0 = _mm256_add_ps(v0, _mm256_loadu_ps(c));
                    v1 = _mm256_add_ps(v1, _mm256_loadu_ps(c + 8));
                }
                _mm256_storeu_ps(c, v0);
                _mm256_storeu_ps(c + 8, v1);
            } else {
                float tmp[16];
                _mm256_storeu_ps(tmp, acc[r][0]);
                _mm256_storeu_ps(tmp + 8, acc[r][1]);
                for (int u = 0; u < cnt[j]; u++)
                    c[u] = accumulate ? c[u] + tmp[u] : tmp[u];
            }
        }
    }
}

#endif /* CRNN_PG_X86 */

/* ------------------------------------------------------------------------------------ */
/* Tile drivers: rows [r0, r1) of one panel, all of K, in K blocks of CRNN_PG_KC (the   */
/* first block accumulates onto C only if `accumulate`).                               */

#define CRNN_PG_SWITCH_MR(UKERNEL, MR, ...)                                             \
    switch (MR) {                                                                        \
    case 6: UKERNEL(6, __VA_ARGS__); break;                                              \
    case 5: UKERNEL(5, __VA_ARGS__); break;                                              \
    case 4: UKERNEL(4, __VA_ARGS__); break;                                              \
    case 3: UKERNEL(3, __VA_ARGS__); break;                                              \
    case 2: UKERNEL(2, __VA_ARGS__); break;                                              \
    default: UKERNEL(1, __VA_ARGS__); break;                                             \
    }

/* NAME: A read in place, rows lda apart, all of K in blocks of CRNN_PG_KC.
 * NAME##_packed: one K block of kc, A packed into micro-panels of CRNN_PG_MR rows,
 * k-major (row r of the block at Ap[(r / MR) * MR * kc + k * MR + r % MR]; see
 * crnn_pg_pack_a), rows [rb0 * MR, min(M, rb1 * MR)). */
#define CRNN_PG_DEFINE_TILE(NAME, TARGET, UKERNEL)                                      \
    TARGET static void NAME(Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t K, const float *A,  \
                            Py_ssize_t lda, const float *Bp, float *C, Py_ssize_t ldc,   \
                            Py_ssize_t cs, const int *cnt, int accumulate)               \
    {                                                                                    \
        for (Py_ssize_t k0 = 0; k0 < K; k0 += CRNN_PG_KC) {                              \
            const Py_ssize_t kc = crnn_pg_min(CRNN_PG_KC, K - k0);                       \
            const int acc = accumulate || k0 > 0;                                        \
            const float *b = Bp + k0 * CRNN_PG_NR;                                       \
            for (Py_ssize_t r = r0; r < r1; r += CRNN_PG_MR) {                           \
                const float *a = A + r * lda + k0;                                       \
                float *c = C + r * ldc;                                                  \
                CRNN_PG_SWITCH_MR(UKERNEL, crnn_pg_min(CRNN_PG_MR, r1 - r),              \
                                  kc, a, lda, 1, b, c, ldc, cs, cnt, acc)                \
            }                                                                            \
        }                                                                                \
    }                                                                                    \
    TARGET static void NAME##_packed(Py_ssize_t M, Py_ssize_t rb0, Py_ssize_t rb1,       \
                                     Py_ssize_t kc, const float *Ap, const float *Bp,    \
                                     float *C, Py_ssize_t ldc, Py_ssize_t cs,            \
                                     const int *cnt, int accumulate)                     \
    {                                                                                    \
        for (Py_ssize_t rb = rb0; rb < rb1; rb++) {                                      \
            const Py_ssize_t r = rb * CRNN_PG_MR;                                        \
            if (r >= M)                                                                  \
                break;                                                                   \
            const float *a = Ap + r * kc;                                                \
            float *c = C + r * ldc;                                                      \
            CRNN_PG_SWITCH_MR(UKERNEL, crnn_pg_min(CRNN_PG_MR, M - r),                   \
                              kc, a, 1, CRNN_PG_MR, Bp, c, ldc, cs, cnt, accumulate)     \
        }                                                                                \
    }

CRNN_PG_DEFINE_TILE(crnn_pg_tile_generic, , crnn_pg_ukernel_generic)
#if CRNN_PG_X86
CRNN_PG_DEFINE_TILE(crnn_pg_tile_avx512, CRNN_PG_T512, crnn_pg_ukernel_avx512)
CRNN_PG_DEFINE_TILE(crnn_pg_tile_avx2, CRNN_PG_T256, crnn_pg_ukernel_avx2)
#endif

/* C[r0:r1, the panel's columns] (+)= A[r0:r1, :K] @ Bp (one panel, K x 64), with the
 * variant `isa`; vector j of row r at C + r*ldc + j*cs, cnt[j] columns of it valid. */
static inline void
crnn_pg_tile(int isa, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t K, const float *A,
             Py_ssize_t lda, const float *Bp, float *C, Py_ssize_t ldc, Py_ssize_t cs,
             const int *cnt, int accumulate)
{
#if CRNN_PG_X86
    if (isa == CRNN_PG_AVX512) {
        crnn_pg_tile_avx512(r0, r1, K, A, lda, Bp, C, ldc, cs, cnt, accumulate);
        return;
    }
    if (isa == CRNN_PG_AVX2) {
        crnn_pg_tile_avx2(r0, r1, K, A, lda, Bp, C, ldc, cs, cnt, accumulate);
        return;
    }
#endif
    crnn_pg_tile_generic(r0, r1, K, A, lda, Bp, C, ldc, cs, cnt, accumulate);
}

/* The same for one K block of a packed A (micro-panels rb0 .. rb1-1 of an M-row block). */
static inline void
crnn_pg_tile_packed(int isa, Py_ssize_t M, Py_ssize_t rb0, Py_ssize_t rb1, Py_ssize_t kc,
                    const float *Ap, const float *Bp, float *C, Py_ssize_t ldc,
                    Py_ssize_t cs, const int *cnt, int accumulate)
{
#if CRNN_PG_X86
    if (isa == CRNN_PG_AVX512) {
        crnn_pg_tile_avx512_packed(M, rb0, rb1, kc, Ap, Bp, C, ldc, cs, cnt, accumulate);
        return;
    }
    if (isa == CRNN_PG_AVX2) {
        crnn_pg_tile_avx2_packed(M, rb0, rb1, kc, Ap, Bp, C, ldc, cs, cnt, accumulate);
        return;
    }
#endif
    crnn_pg_tile_generic_packed(M, rb0, rb1, kc, Ap, Bp, C, ldc, cs, cnt, accumulate);
}

/* cnt[] of a panel whose 64 columns are contiguous in C, n of them valid (n may be
 * negative or above 64). */
static inline void crnn_pg_counts(Py_ssize_t n, int *cnt)
{
    for (int j = 0; j < 4; j++) {
        const Py_ssize_t v = n - 16 * j;
        cnt[j] = v < 0 ? 0 : v > 16 ? 16 : (int)v;
    }
}

/* ------------------------------------------------------------------------------------ */
/* Work split: the tiles (panel p, row chunk q) of one product, numbered p-major, in    */
/* contiguous ranges per thread. Rows are split into `nq` chunks (whole micro-tiles)     */
/* only when there are too few panels to give every thread an equal share.             */

static inline Py_ssize_t crnn_pg_row_chunks(Py_ssize_t np, int nth)
{
    return (np % nth == 0 || np >= 4 * nth) ? 1 : nth;
}

/* Thread tid's share (of nth) of the tiles of a product with np panels: the rows are
 * split into *nq chunks, and the thread takes tiles [*i0, *i1), numbered p-major. */
static inline void crnn_pg_thread_tiles(Py_ssize_t np, int tid, int nth, Py_ssize_t *nq,
                                        Py_ssize_t *i0, Py_ssize_t *i1)
{
    *nq = crnn_pg_row_chunks(np, nth);
    *i0 = tid * (np * *nq) / nth;
    *i1 = (tid + 1) * (np * *nq) / nth;
}

/* Rows [*r0, *r1) of chunk q of nq over M rows. */
static inline void crnn_pg_chunk_rows(Py_ssize_t M, Py_ssize_t nq, Py_ssize_t q,
                                      Py_ssize_t *r0, Py_ssize_t *r1)
{
    const Py_ssize_t nb = (M + CRNN_PG_MR - 1) / CRNN_PG_MR;
    *r0 = crnn_pg_min(M, (q * nb / nq) * CRNN_PG_MR);
    *r1 = crnn_pg_min(M, ((q + 1) * nb / nq) * CRNN_PG_MR);
}

/* ------------------------------------------------------------------------------------ */
/* OpenMP, where the extension was built with it (setup.py), else one thread.           */

#ifdef _OPENMP
#include <omp.h>
static inline int crnn_pg_max_threads(void) { return omp_get_max_threads(); }
/* OpenMP's thread count for later parallel regions of the calling thread (tests). */
static inline void crnn_pg_set_threads(int n) { omp_set_num_threads(n); }
static inline int crnn_pg_thread(void) { return omp_get_thread_num(); }
static inline int crnn_pg_threads(void) { return omp_get_num_threads(); }
#else
static inline int crnn_pg_max_threads(void) { return 1; }
static inline void crnn_pg_set_threads(int n) { (void)n; }
static inline int crnn_pg_thread(void) { return 0; }
static inline int crnn_pg_threads(void) { return 1; }
#endif

/* The barrier between the steps of a time loop.
 *
 * A centralised sense-reversing barrier. A waiter (1) spins CRNN_PG_SPINS pauses, (2)
 * spins on for up to CRNN_PG_WAIT_SECONDS unless the thread it waits for was last seen
 * on its own CPU, (3) then sleeps on a futex (Linux; elsewhere it yields the CPU in a
 * loop), woken by the last to arrive.
 *
 * Why not OpenMP's barrier: a step's barrier waits for the slower thread, and when that
 * one is off its CPU, for a time slice (ms) where a step takes microseconds. On this
 * project's machine (2 vCPUs of a VM, Linux 6.18) that happened (a) after an idle spell,
 * when both threads could wake on one CPU: the first forward call after a 0.2 s sleep
 * took 10-12 ms on the small benchmark shape instead of 0.65 with libgomp's barrier;
 * (b) beside a busy thread of another pool: OpenBLAS's idle workers (SciPy's, or
 * NumPy's after any NumPy matmul, e.g. a Dense layer) spin at full CPU for ~100 ms after
 * each call, and the medium shape's forward then took 93 ms instead of 28. What each
 * phase is for, measured: spinning alone handles the quiet case (a step's wait is a few
 * us); sleeping early costs ~100 us a wake here (a halted vCPU): sleeping after ~20 us
 * made the small shape 4x slower after an idle spell, and after 200 us of spinning the
 * same case cost 11-19 ms, because the waiter spun on the CPU its partner needed (hence
 * the check of the partner's CPU); yielding instead of sleeping handed the CPU to the
 * stranger's spinning thread (medium shape 111 ms after a NumPy matmul). With this
 * barrier: after an idle spell ~1-4 ms for the first small call; after a NumPy matmul
 * the medium forward 61-73 ms (the BLAS loop 69-100: its own threads suffer as much),
 * but the small one ~7.5 ms, where the BLAS loop, whose products are that small that
 * OpenBLAS runs them on one thread, took 1.2. (Tried and dropped: a team that goes on
 * with thread 0 alone after a few waits ended asleep; no better, as libgomp's idle
 * workers themselves spin for ~3-4 ms after each parallel region, GOMP_SPINCOUNT.) */
#define CRNN_PG_SPINS 128
#define CRNN_PG_WAIT_SECONDS 200e-6

#if defined(__unix__) || defined(__APPLE__)
#include <sched.h>
#define CRNN_PG_YIELD() sched_yield()
#else
#define CRNN_PG_YIELD() ((void)0)
#endif
#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <limits.h>
#define CRNN_PG_FUTEX 1
#else
#define CRNN_PG_FUTEX 0
#endif

#define CRNN_PG_MAX_SEEN 64  /* threads whose CPU the barrier tracks */

typedef struct {
    int count;
    int sense;
    int sleepers;
    int cpu[CRNN_PG_MAX_SEEN];  /* the CPU each thread last arrived on (-1: unknown) */
} crnn_pg_barrier_t;

static inline void crnn_pg_barrier_init(crnn_pg_barrier_t *bar)
{
    bar->count = bar->sense = bar->sleepers = 0;
    for (int i = 0; i < CRNN_PG_MAX_SEEN; i++)
        bar->cpu[i] = -1;
}

#if defined(__unix__) || defined(__APPLE__)
#include <time.h>
static inline double crnn_pg_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}
#else
static inline double crnn_pg_seconds(void) { return 0.0; } /* phase 2 never ends */
#endif

#if defined(__linux__) && defined(__GLIBC__)
static inline int crnn_pg_cpu(void) { return sched_getcpu(); }
#else
static inline int crnn_pg_cpu(void) { return -1; }
#endif

/* Whether another thread of the team last arrived on this CPU. */
static inline int crnn_pg_cpu_shared(const crnn_pg_barrier_t *bar, int nth, int tid,
                                     int cpu)
{
    if (cpu < 0)
        return 0;
    for (int i = 0; i < nth && i < CRNN_PG_MAX_SEEN; i++)
        if (i != tid && __atomic_load_n(&bar->cpu[i], __ATOMIC_RELAXED) == cpu)
            return 1;
    return 0;
}

/* Wait for the other nth - 1 threads of the team (tid: this thread's number, local: its
 * own sense, starting at 0). */
static inline void crnn_pg_barrier(crnn_pg_barrier_t *bar, int nth, int tid, int *local)
{
    if (nth <= 1)
        return;
    const int sense = *local = !*local;
    const int cpu = crnn_pg_cpu();
    if (tid < CRNN_PG_MAX_SEEN)
        __atomic_store_n(&bar->cpu[tid], cpu, __ATOMIC_RELAXED);
    if (__atomic_add_fetch(&bar->count, 1, __ATOMIC_ACQ_REL) == nth) {
        __atomic_store_n(&bar->count, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&bar->sense, sense, __ATOMIC_SEQ_CST);
#if CRNN_PG_FUTEX
        if (__atomic_load_n(&bar->sleepers, __ATOMIC_SEQ_CST) > 0)
            syscall(SYS_futex, &bar->sense, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
#endif
        return;
    }
    /* 1. spin: a step's wait in the quiet case */
    for (int spins = 0; spins < CRNN_PG_SPINS; spins++) {
        if (__atomic_load_n(&bar->sense, __ATOMIC_ACQUIRE) == sense)
            return;
#if CRNN_PG_X86
        __builtin_ia32_pause();
#endif
    }
    /* 2. spin on for up to CRNN_PG_WAIT_SECONDS, unless the thread being waited for
     * shares this CPU: then it can only run once this one sleeps */
    const double start = crnn_pg_seconds();
    for (int spins = 0; !crnn_pg_cpu_shared(bar, nth, tid, cpu); spins++) {
        if (__atomic_load_n(&bar->sense, __ATOMIC_ACQUIRE) == sense)
            return;
#if CRNN_PG_X86
        __builtin_ia32_pause();
#endif
        if (spins % 16 == 0 && crnn_pg_seconds() - start > CRNN_PG_WAIT_SECONDS)
            break;
    }
    /* 3. sleep: frees this CPU for the thread being waited for, whether it shares it
     * or is preempted on another */
#if CRNN_PG_FUTEX
    __atomic_add_fetch(&bar->sleepers, 1, __ATOMIC_SEQ_CST);
    /* sleeps only while sense still holds the old value (the kernel compares) */
    while (__atomic_load_n(&bar->sense, __ATOMIC_SEQ_CST) != sense)
        syscall(SYS_futex, &bar->sense, FUTEX_WAIT_PRIVATE, !sense, NULL, NULL, 0);
    __atomic_sub_fetch(&bar->sleepers, 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
#else
    while (__atomic_load_n(&bar->sense, __ATOMIC_ACQUIRE) != sense)
        CRNN_PG_YIELD();
#endif
}

/* ------------------------------------------------------------------------------------ */
/* Plain packed product for benchmarks and tests: C (+)= A @ W for `steps` times in one
 * parallel region with a barrier after each, as the LSTM's time loop runs it. W (K x N,
 * row stride ldw) is packed into Wp (ceil(N/64) panels of K x 64, 64-byte aligned) by
 * the same threads first. */
static void crnn_pg_pack_plain(const float *W, Py_ssize_t ldw, Py_ssize_t K, Py_ssize_t N,
                               float *Wp, Py_ssize_t p0, Py_ssize_t p1)
{
    for (Py_ssize_t p = p0; p < p1; p++) {
        float *dst = Wp + p * K * CRNN_PG_NR;
        const Py_ssize_t n0 = p * CRNN_PG_NR, nn = crnn_pg_min(CRNN_PG_NR, N - n0);
        for (Py_ssize_t k = 0; k < K; k++) {
            float *d = dst + k * CRNN_PG_NR;
            const float *s = W + k * ldw + n0;
            for (Py_ssize_t c = 0; c < nn; c++)
                d[c] = s[c];
            for (Py_ssize_t c = nn; c < CRNN_PG_NR; c++)
                d[c] = 0.0f;
        }
    }
}

static void crnn_pg_gemm_steps(const float *A, Py_ssize_t lda, const float *W,
                               Py_ssize_t ldw, float *Wp, float *C, Py_ssize_t ldc,
                               Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, int accumulate,
                               Py_ssize_t steps)
{
    const int isa = crnn_pg_isa();
    const Py_ssize_t np = (N + CRNN_PG_NR - 1) / CRNN_PG_NR;
    crnn_pg_barrier_t bar;
    crnn_pg_barrier_init(&bar);
#ifdef _OPENMP
#pragma omp parallel
#endif
    {
        const int tid = crnn_pg_thread(), nth = crnn_pg_threads();
        int sense = 0;
        crnn_pg_pack_plain(W, ldw, K, N, Wp, tid * np / nth, (tid + 1) * np / nth);
        crnn_pg_barrier(&bar, nth, tid, &sense);
        Py_ssize_t nq, i0, i1;
        crnn_pg_thread_tiles(np, tid, nth, &nq, &i0, &i1);
        for (Py_ssize_t s = 0; s < steps; s++) {
            for (Py_ssize_t i = i0; i < i1; i++) {
                const Py_ssize_t p = i / nq;
                Py_ssize_t r0, r1;
                crnn_pg_chunk_rows(M, nq, i % nq, &r0, &r1);
                int cnt[4];
                crnn_pg_counts(N - p * CRNN_PG_NR, cnt);
                crnn_pg_tile(isa, r0, r1, K, A, lda, Wp + p * K * CRNN_PG_NR,
                             C + p * CRNN_PG_NR, ldc, 16, cnt, accumulate);
            }
            crnn_pg_barrier(&bar, nth, tid, &sense);
        }
    }
}

#endif
