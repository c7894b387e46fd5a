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
 * A time loop runs as phases of items on a pool of our own (crnn_pg_run: work claiming,
 * no barrier; see there for why not OpenMP's threads and a barrier per step).
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

/* Rows [*r0, *r1) of chunk q of nq over M rows. */
static inline void crnn_pg_chunk_rows(Py_ssize_t M, Py_ssize_t nq, Py_ssize_t q,
                                      Py_ssize_t *r0, Py_ssize_t *r1)
{
    const Py_ssize_t nb = (M + CRNN_PG_MR - 1) / CRNN_PG_MR;
    *r0 = crnn_pg_min(M, (q * nb / nq) * CRNN_PG_MR);
    *r1 = crnn_pg_min(M, ((q + 1) * nb / nq) * CRNN_PG_MR);
}

/* ------------------------------------------------------------------------------------ */
/* Threads: crnn_pg_set_threads' count (crnn.set_num_threads; crnn/cores.py sets it at */
/* import), one setting for the process, whatever thread calls; before it is set,     */
/* OpenMP's default. A thread that runs one of several computations at once            */
/* (crnn.cores.concurrently) has a count of its own, crnn_pg_set_local_threads' (0:    */
/* the process's). Without OpenMP (setup.py) one thread.                                */

#define CRNN_PG_MAX_SLOTS 64  /* at most this many threads */

#ifdef _OPENMP
#include <omp.h>
static int crnn_pg_threads = 0;  /* 0: not set */
static __thread int crnn_pg_local_threads = 0;  /* 0: not set */
static inline int crnn_pg_max_threads(void)
{
    int n = crnn_pg_local_threads;
    if (n <= 0)
        n = __atomic_load_n(&crnn_pg_threads, __ATOMIC_RELAXED);
    return n > 0 ? (n < CRNN_PG_MAX_SLOTS ? n : CRNN_PG_MAX_SLOTS) : omp_get_max_threads();
}
static inline void crnn_pg_set_threads(int n)
{
    __atomic_store_n(&crnn_pg_threads, n, __ATOMIC_RELAXED);
}
static inline void crnn_pg_set_local_threads(int n) { crnn_pg_local_threads = n; }
static inline int crnn_pg_local_count(void) { return crnn_pg_local_threads; }
#else
static inline int crnn_pg_max_threads(void) { return 1; }
static inline void crnn_pg_set_threads(int n) { (void)n; }
static inline void crnn_pg_set_local_threads(int n) { (void)n; }
static inline int crnn_pg_local_count(void) { return 0; }
#endif

#if defined(__unix__) || defined(__APPLE__)
#include <sched.h>
#include <time.h>
#define CRNN_PG_YIELD() sched_yield()
static inline double crnn_pg_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}
#else
#define CRNN_PG_YIELD() ((void)0)
static inline double crnn_pg_seconds(void) { return 0.0; }
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

#if defined(__linux__) && defined(__GLIBC__)
static inline int crnn_pg_cpu(void) { return sched_getcpu(); }
#else
static inline int crnn_pg_cpu(void) { return -1; }
#endif

static inline void crnn_pg_pause(void)
{
#if CRNN_PG_X86
    __builtin_ia32_pause();
#endif
}

/* Work claiming: a kernel's loop as a sequence of phases (the packing of the weights,
 * each time step, the backward's dx and dW blocks), phase ph being items(ph) independent
 * items (tiles), and every item of a phase may need every item of the earlier ones
 * (step t+1 reads all of h_t). No thread ever waits for another to ARRIVE, only for
 * claimed items to FINISH: a participant claims an item of the current phase, runs it
 * and counts it in `done`; phase ph may start once done reaches the items of the phases
 * before it. A thread that comes late (woken late, descheduled) fast-forwards to the
 * current phase; one that never comes leaves its items to the others, and the caller
 * alone can run the whole loop.
 *
 * Each phase's items are split into nth contiguous ranges, range r = slot r's own (the
 * same split as the static one before: a thread's own tiles are the same at every step,
 * so its weight panels stay in its L2); a participant claims from its own range first,
 * then steals from the others'. A range's claim counter holds (phase << 32 | next index):
 * an item is claimed by a CAS, only in the phase that is current, so a thread never
 * holds an item it cannot run at once (a descheduled thread holding a future item would
 * block the step it belongs to). Counters only grow (no ABA).
 *
 * Determinism: the items of a phase write disjoint outputs and any scratch they
 * accumulate into is indexed by the item (e.g. the backward's db by row chunk), never by
 * the thread that ran it, so results do not depend on who ran what; only the staging
 * tiles of the forward are the running thread's (its slot). */

typedef struct crnn_pg_work crnn_pg_work_t;
struct crnn_pg_work {
    Py_ssize_t (*items)(const crnn_pg_work_t *w, Py_ssize_t ph);
    void (*run)(const crnn_pg_work_t *w, Py_ssize_t ph, Py_ssize_t i, int slot);
    Py_ssize_t nphases;
    int nth;  /* slots (ranges per phase): the caller 0, workers 1 .. nth - 1 */
    struct {
        int64_t next;  /* claims: phase << 32 | next index */
        int active;    /* the owner is in the job */
        char pad[52];
    } __attribute__((aligned(64))) range[CRNN_PG_MAX_SLOTS];
    int64_t done __attribute__((aligned(64)));
    struct {
        Py_ssize_t ph;    /* the phase this slot was in when it last left */
        int64_t start;    /* items before it */
    } cursor[CRNN_PG_MAX_SLOTS];
};

static void crnn_pg_work_init(crnn_pg_work_t *w, int nth)
{
    w->nth = nth < 1 ? 1 : nth > CRNN_PG_MAX_SLOTS ? CRNN_PG_MAX_SLOTS : nth;
    for (int r = 0; r < CRNN_PG_MAX_SLOTS; r++) {
        w->range[r].next = 0;
        w->range[r].active = r == 0;
        w->cursor[r].ph = 0;
        w->cursor[r].start = 0;
    }
    w->done = 0;
}

/* The CPU the caller (slot 0) last ran an item on, -1 unknown: a worker on it leaves. */
static int crnn_pg_caller_cpu = -1;

/* Solo spells. When a thread holding an item was off its CPU for long (the caller
 * waited more than CRNN_PG_STALL_SECONDS plus 4 items' time for a phase to end) twice
 * within CRNN_PG_STALL_WINDOW, the caller runs alone for CRNN_PG_SOLO_SECONDS: its jobs
 * are not published, and workers stop claiming. A safety net for a worker that keeps
 * being preempted while it holds items (each time for a time slice): measured with a
 * busy process beside the small shape (32, 50, 32, 64), backward 2.0 ms steadily on the
 * caller alone (without spells 1.7-2.1; the BLAS loop 1.5-6). One stall alone is not
 * enough: in a quiet loop one came every ~800 calls (a kernel thread, the hypervisor),
 * and a spell after each cost ~5% on average. In stall.py's scenarios (after a NumPy or
 * SciPy matmul) no spell started. */
#define CRNN_PG_STALL_SECONDS 300e-6
#define CRNN_PG_SOLO_SECONDS 50e-3
#define CRNN_PG_STALL_WINDOW 20e-3

static double crnn_pg_solo_until = 0.0;

static inline void crnn_pg_solo_from(double now)
{
    static double last_stall = -1.0;  /* the caller's own (the pool has one caller) */
    if (last_stall < 0.0 || now - last_stall > CRNN_PG_STALL_WINDOW) {
        last_stall = now;  /* a lone stall: a kernel thread, the hypervisor */
        return;
    }
    const double until = now + CRNN_PG_SOLO_SECONDS;
    __atomic_store(&crnn_pg_solo_until, &until, __ATOMIC_RELAXED);
}

static inline int crnn_pg_solo(void)
{
    double until;
    __atomic_load(&crnn_pg_solo_until, &until, __ATOMIC_RELAXED);
    return until > 0.0 && crnn_pg_seconds() < until;
}

/* Claim an item of phase ph (of n items) from range r, if more than `keep` are left
 * unclaimed there; -1: none, -2: phase ph is over (the caller's view is stale). */
static inline Py_ssize_t crnn_pg_claim(crnn_pg_work_t *w, int r, Py_ssize_t ph,
                                       Py_ssize_t n, int keep)
{
    const int nth = w->nth;
    const Py_ssize_t lo = r * n / nth, len = (r + 1) * n / nth - lo;
    if (len <= 0)
        return -1;
    int64_t v = __atomic_load_n(&w->range[r].next, __ATOMIC_RELAXED);
    for (;;) {
        const int64_t vph = v >> 32;
        int64_t i = v & 0xffffffff;
        if (vph > ph)
            return -2;
        if (vph < ph)
            i = 0;  /* the counter still holds an earlier, finished phase */
        if (len - i <= keep)
            return -1;
        const int64_t nv = ((int64_t)ph << 32) | (i + 1);
        if (__atomic_compare_exchange_n(&w->range[r].next, &v, nv, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_RELAXED))
            return lo + i;
    }
}

/* Slot `slot` runs items until every phase is complete (returns 1) or, when !wait,
 * until nothing is left to claim in the current phase (returns 0; the claimed items of
 * others are still running).
 *
 * Stealing: from a range whose owner is not in the job, anything; from one whose owner
 * is, only while 2 or more items are left unclaimed there (the owner takes the next one
 * within an item's time: stealing it would make the owner wait idle, and would move its
 * weight panels into the thief's L2), or, once this thread has waited for the phase
 * for more than twice its last item's time (the owner was preempted), the last one. */
static int crnn_pg_work_on(crnn_pg_work_t *w, int slot, int wait)
{
    const int nth = w->nth;
    Py_ssize_t ph = w->cursor[slot].ph;
    int64_t start = w->cursor[slot].start;
    int result = 0, force = 0;
    double item_time = 0.0;
    __atomic_store_n(&w->range[slot].active, 1, __ATOMIC_RELAXED);
    for (;;) {
        int64_t done = __atomic_load_n(&w->done, __ATOMIC_ACQUIRE);
        Py_ssize_t n = 0;
        while (ph < w->nphases) {
            n = w->items(w, ph);
            if (done < start + n)
                break;
            start += n;
            ph++;
            force = 0;
        }
        if (ph >= w->nphases) {
            result = 1;
            break;
        }
        if (slot != 0 && crnn_pg_solo())
            break;  /* the caller goes on alone (see crnn_pg_solo_from) */
        Py_ssize_t item = -1;
        int stale = 0;
        for (int k = 0; k < nth && item < 0; k++) {
            const int r = (slot + k) % nth;
            const int keep = (k == 0 || force ||
                              !__atomic_load_n(&w->range[r].active, __ATOMIC_RELAXED))
                                 ? 0 : 1;
            item = crnn_pg_claim(w, r, ph, n, keep);
            if (item == -2)
                stale = 1;
        }
        if (item >= 0) {
            const double t0 = crnn_pg_seconds();
            w->run(w, ph, item, slot);
            __atomic_add_fetch(&w->done, 1, __ATOMIC_RELEASE);
            item_time = crnn_pg_seconds() - t0;
            if (slot == 0)
                __atomic_store_n(&crnn_pg_caller_cpu, crnn_pg_cpu(), __ATOMIC_RELAXED);
            continue;
        }
        if (stale)
            continue;
        if (!wait)
            break;
        /* the phase ends when the others' items do: spin (yield after a while in case
         * one of them was preempted on this CPU), and after twice an item's time, steal
         * whatever is left */
        const double t0 = crnn_pg_seconds(), limit = 10e-6 + 2.0 * item_time;
        int stalled = 0;
        for (int spins = 0; __atomic_load_n(&w->done, __ATOMIC_ACQUIRE) < start + n;
             spins++) {
            crnn_pg_pause();
            if (spins % 64 == 63) {
                const double waited = crnn_pg_seconds() - t0;
                if (!force && waited > limit) {
                    force = 1;
                    break;
                }
                if (!stalled && waited > CRNN_PG_STALL_SECONDS + 4.0 * item_time) {
                    /* the holder of an item is off its CPU */
                    crnn_pg_solo_from(t0 + waited);
                    stalled = 1;
                }
                if (spins > 4096)
                    CRNN_PG_YIELD();
            }
        }
    }
    if (slot != 0)
        __atomic_store_n(&w->range[slot].active, 0, __ATOMIC_RELAXED);
    w->cursor[slot].ph = ph;
    w->cursor[slot].start = start;
    return result;
}

/* The pool: nth - 1 persistent worker threads of our own (pthreads, started on first
 * use), where the build has OpenMP and pthreads (crnn_pg_max_threads says how many).
 *
 * The caller publishes the job, works on it itself from slot 0, and at the end waits
 * only for workers that are inside it: a worker joins (CAS on ctl: count + 1, only while
 * the job is OPEN), claims and runs items, and leaves (count - 1) as soon as nothing is
 * left to claim in the current phase, then rejoins when the phase has moved on; the
 * caller, once every item is done, closes the job (clears OPEN: no one joins any more)
 * and waits for the count to reach zero. So a worker that is asleep, halted or
 * descheduled costs nothing unless it holds a claimed item, and the job descriptor (on
 * the caller's stack) is only read by workers inside it.
 *
 * Why not OpenMP's parallel region with a barrier per step (the loop before): a step's
 * barrier waits for the slower thread, and when that one is off its CPU, for a time
 * slice (ms) where a step takes microseconds. On this project's machine (2 vCPUs of a
 * VM, Linux 6.18) that happened (a) after an idle spell (a halted vCPU wakes in ~100 us
 * to ms): the first forward after 0.05-0.15 s idle took 5.9-9.6 ms at the small shape
 * (32, 50, 32, 64) instead of 0.74; (b) beside a busy thread of another pool: OpenBLAS's
 * idle workers (SciPy's, or NumPy's after any NumPy matmul, e.g. a Dense layer) spin at
 * full CPU for ~100 ms after each call, and the small forward then took 7.5 ms instead
 * of 1.0 on the BLAS loop (a custom spin-then-futex barrier that checked whether its
 * partner shared its CPU made this better than libgomp's barrier, not good). Even a
 * work-claiming loop inside an OpenMP region would wait at the region's end for a
 * worker that was never scheduled, hence a pool of our own.
 *
 * With the pool, medians at that shape: after a NumPy matmul the forward 1.05-1.13 ms and
 * the backward 2.1-2.4 (BLAS loop 0.97 and 1.75), after a SciPy one 1.06 and 2.14 (0.92
 * and 1.62), after 0.05-0.15 s idle the forward 0.9 (1.1-1.3), back to back 0.57
 * (0.91). A worker
 * never runs beside the caller on the caller's CPU (it would only take the caller's
 * time, and hold items through the caller's time slices): it moves off it or sleeps
 * (crnn_pg_move_off).
 *
 * Idle workers spin CRNN_PG_IDLE_SECONDS after their last job (back-to-back calls, e.g.
 * forward then backward, find them awake: a futex wake costs ~100 us here), then sleep
 * on a futex (elsewhere: yield). Without OpenMP or pthreads the caller runs every item
 * itself. */
#define CRNN_PG_IDLE_SECONDS 2e-3

#if defined(_OPENMP) && (defined(__unix__) || defined(__APPLE__))
#define CRNN_PG_POOL 1
#include <pthread.h>

#define CRNN_PG_OPEN 0x40000000

typedef struct {
    int ctl;             /* CRNN_PG_OPEN while a job is open | workers inside it */
    int seq;             /* bumped by each publication (futex word) */
    int sleepers;        /* workers asleep on seq */
    int busy;            /* a caller owns the pool (another caller runs alone) */
    int nworkers;        /* started (slots 1 .. nworkers) */
    int tid[CRNN_PG_MAX_SLOTS];     /* the workers' thread ids (Linux) */
    int pinned[CRNN_PG_MAX_SLOTS];  /* set off the caller's CPU by the caller */
    int nth;             /* the open job's slots */
    crnn_pg_work_t *job;
} crnn_pg_pool_t;

static crnn_pg_pool_t crnn_pg_pool;

/* Move this thread off CPU `cpu` (allowed on every CPU of its mask but that one, which
 * migrates it at once, then the mask restored: it stays where it is); 1 if it moved.
 * Why: the scheduler wakes a sleeping thread on the CPU it last ran on or the waker's;
 * once a worker ran on the caller's CPU (after an idle spell both threads can wake on
 * one CPU), every wake put it there again (measured: the small shape's forward at the
 * one-thread 1.0 ms for call after call, the worker running 1% of the items, all on
 * the caller's CPU), while the other CPU idled. */
static int crnn_pg_move_off(int cpu)
{
#if defined(__linux__) && defined(__GLIBC__) && defined(CPU_SETSIZE)
    cpu_set_t all, other;
    if (cpu < 0 || cpu >= CPU_SETSIZE || sched_getaffinity(0, sizeof all, &all) != 0)
        return 0;
    other = all;
    CPU_CLR(cpu, &other);
    if (CPU_COUNT(&other) == 0 || sched_setaffinity(0, sizeof other, &other) != 0)
        return 0;
    sched_setaffinity(0, sizeof all, &all);
    return crnn_pg_cpu() != cpu;
#else
    (void)cpu;
    return 0;
#endif
}

/* Whether this worker runs on the CPU the caller last ran on, and cannot move off. */
static int crnn_pg_stuck_on_callers_cpu(const crnn_pg_pool_t *pool)
{
    const int cpu = crnn_pg_cpu();
    (void)pool;
    if (cpu < 0 || cpu != __atomic_load_n(&crnn_pg_caller_cpu, __ATOMIC_RELAXED))
        return 0;
    return !crnn_pg_move_off(cpu);
}

/* Wake the sleeping workers off the caller's CPU: each worker's mask without it (the
 * worker restores its own when it runs, crnn_pg_unpin). Why: the scheduler wakes a
 * thread on its previous CPU only if that one is idle and, in a VM, not marked
 * preempted, which a halted vCPU is; so after an idle spell the worker woke on the
 * caller's CPU and ran only when the caller's time slice ended (measured: a forward
 * after 0.15 s idle and the next one too at the one-thread 1.0-1.2 ms, the worker
 * joining neither). Costs two system calls a worker, only when one was asleep. */
static void crnn_pg_pin_off(crnn_pg_pool_t *pool, int cpu)
{
#if defined(__linux__) && defined(__GLIBC__) && defined(CPU_SETSIZE)
    if (cpu < 0 || cpu >= CPU_SETSIZE)
        return;
    for (int slot = 1; slot <= pool->nworkers; slot++) {
        cpu_set_t set;
        const int tid = __atomic_load_n(&pool->tid[slot], __ATOMIC_ACQUIRE);
        if (tid <= 0 || sched_getaffinity(tid, sizeof set, &set) != 0)
            continue;
        CPU_CLR(cpu, &set);
        if (CPU_COUNT(&set) == 0)
            continue;
        __atomic_store_n(&pool->pinned[slot], 1, __ATOMIC_RELEASE);
        sched_setaffinity(tid, sizeof set, &set);
    }
#else
    (void)pool, (void)cpu;
#endif
}

#if defined(__linux__) && defined(__GLIBC__) && defined(CPU_SETSIZE)
typedef cpu_set_t crnn_pg_mask_t;
#else
typedef int crnn_pg_mask_t;
#endif

/* This worker's own mask back, if the caller pinned it off its CPU. */
static inline void crnn_pg_unpin(crnn_pg_pool_t *pool, int slot, const crnn_pg_mask_t *home)
{
    if (__atomic_load_n(&pool->pinned[slot], __ATOMIC_ACQUIRE) &&
        __atomic_exchange_n(&pool->pinned[slot], 0, __ATOMIC_ACQ_REL)) {
#if defined(__linux__) && defined(__GLIBC__) && defined(CPU_SETSIZE)
        sched_setaffinity(0, sizeof *home, home);
#else
        (void)home;
#endif
    }
}

static void *crnn_pg_worker(void *arg)
{
    crnn_pg_pool_t *pool = &crnn_pg_pool;
    const int slot = (int)(intptr_t)arg;
    crnn_pg_mask_t home;
#if defined(__linux__) && defined(__GLIBC__) && defined(CPU_SETSIZE)
    if (sched_getaffinity(0, sizeof home, &home) != 0)
        CPU_ZERO(&home);
    else
        __atomic_store_n(&pool->tid[slot], (int)syscall(SYS_gettid), __ATOMIC_RELEASE);
#else
    home = 0;
#endif
    int finished = __atomic_load_n(&pool->seq, __ATOMIC_ACQUIRE);  /* jobs up to here */
    for (;;) {
        /* wait for a job newer than `finished` */
        const double start = crnn_pg_seconds();
        for (int spins = 1;; spins++) {
            const int seq = __atomic_load_n(&pool->seq, __ATOMIC_ACQUIRE);
            if (seq != finished)
                break;
            crnn_pg_pause();
            if (spins % 64 == 0 && (crnn_pg_seconds() - start > CRNN_PG_IDLE_SECONDS ||
                                    crnn_pg_stuck_on_callers_cpu(pool))) {
#if CRNN_PG_FUTEX
                __atomic_add_fetch(&pool->sleepers, 1, __ATOMIC_SEQ_CST);
                while (__atomic_load_n(&pool->seq, __ATOMIC_SEQ_CST) == finished)
                    syscall(SYS_futex, &pool->seq, FUTEX_WAIT_PRIVATE, finished, NULL,
                            NULL, 0);
                __atomic_sub_fetch(&pool->sleepers, 1, __ATOMIC_RELAXED);
                crnn_pg_unpin(pool, slot, &home);
#else
                CRNN_PG_YIELD();
#endif
            }
        }
        /* join it while it is open, as often as its phases leave this worker idle */
        for (;;) {
            int c = __atomic_load_n(&pool->ctl, __ATOMIC_ACQUIRE);
            if (!(c & CRNN_PG_OPEN)) {
                /* closed: done (maybe by the caller alone) before we got here (a job is
                 * opened before seq announces it) */
                finished = __atomic_load_n(&pool->seq, __ATOMIC_ACQUIRE);
                break;
            }
            if (slot >= __atomic_load_n(&pool->nth, __ATOMIC_RELAXED)) {
                finished = __atomic_load_n(&pool->seq, __ATOMIC_ACQUIRE);
                break;
            }
            if (crnn_pg_stuck_on_callers_cpu(pool)) {
                /* woken on the caller's CPU: an item claimed here would wait for the
                 * caller's time slice to end */
                finished = __atomic_load_n(&pool->seq, __ATOMIC_ACQUIRE);
                break;
            }
            if (!__atomic_compare_exchange_n(&pool->ctl, &c, c + 1, 0, __ATOMIC_ACQ_REL,
                                             __ATOMIC_RELAXED))
                continue;
            /* inside: the job, its slot count and seq hold still until we leave */
            if (slot >= __atomic_load_n(&pool->nth, __ATOMIC_RELAXED)) {
                __atomic_sub_fetch(&pool->ctl, 1, __ATOMIC_RELEASE);
                continue;  /* a newer job with fewer slots opened meanwhile */
            }
            crnn_pg_work_t *w = __atomic_load_n(&pool->job, __ATOMIC_ACQUIRE);
            const int seq = __atomic_load_n(&pool->seq, __ATOMIC_RELAXED);
            const int all_done = crnn_pg_work_on(w, slot, 0);
            __atomic_sub_fetch(&pool->ctl, 1, __ATOMIC_RELEASE);
            if (all_done) {
                finished = seq;
                break;
            }
            /* out again until the others' items of this phase are done; then rejoin
             * (the job's own counters may be gone once we are out: poll by joining);
             * but on the caller's CPU (another thread holds the other one), spinning
             * would only slow the caller down: leave the job to it and sleep */
            if (crnn_pg_stuck_on_callers_cpu(pool)) {
                finished = seq;
                break;
            }
            for (int k = 0; k < 32; k++)
                crnn_pg_pause();
        }
    }
    return NULL;
}

/* After fork() the child has none of the parent's workers. */
static void crnn_pg_pool_atfork_child(void)
{
    memset(&crnn_pg_pool, 0, sizeof crnn_pg_pool);
}

/* Start workers up to slot nth - 1 (the caller owns the pool); returns the slots that
 * can run (1 + workers). */
static int crnn_pg_pool_grow(int nth)
{
    crnn_pg_pool_t *pool = &crnn_pg_pool;
    static int atfork = 0;
    if (!atfork) {
        pthread_atfork(NULL, NULL, crnn_pg_pool_atfork_child);
        atfork = 1;
    }
    while (pool->nworkers < nth - 1) {
        pthread_t th;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        const int err = pthread_create(&th, &attr, crnn_pg_worker,
                                       (void *)(intptr_t)(pool->nworkers + 1));
        pthread_attr_destroy(&attr);
        if (err != 0)
            break;
        pool->nworkers++;
    }
    return 1 + pool->nworkers;
}
#else
#define CRNN_PG_POOL 0
#endif

/* Run the work w->items / w->run / w->nphases on nth slots (set up by this function):
 * the calling thread and the pool's workers; one thread without a pool, or while another
 * caller has it. */
static void crnn_pg_run(crnn_pg_work_t *w, int nth)
{
    crnn_pg_work_init(w, nth);
#if CRNN_PG_POOL
    crnn_pg_pool_t *pool = &crnn_pg_pool;
    int idle = 0;
    if (w->nth > 1 && !crnn_pg_solo() &&
        __atomic_compare_exchange_n(&pool->busy, &idle, 1, 0, __ATOMIC_ACQUIRE,
                                    __ATOMIC_RELAXED)) {
        __atomic_store_n(&crnn_pg_caller_cpu, crnn_pg_cpu(), __ATOMIC_RELAXED);
        crnn_pg_pool_grow(w->nth);
        __atomic_store_n(&pool->job, w, __ATOMIC_RELAXED);
        __atomic_store_n(&pool->nth, w->nth, __ATOMIC_RELAXED);
        /* open, then announce: a worker that sees the new seq and a closed job knows
         * the job is over */
        __atomic_store_n(&pool->ctl, CRNN_PG_OPEN, __ATOMIC_SEQ_CST);
        __atomic_add_fetch(&pool->seq, 1, __ATOMIC_SEQ_CST);
#if CRNN_PG_FUTEX
        if (__atomic_load_n(&pool->sleepers, __ATOMIC_SEQ_CST) > 0) {
            crnn_pg_pin_off(pool, crnn_pg_caller_cpu);
            syscall(SYS_futex, &pool->seq, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
        }
#endif
        crnn_pg_work_on(w, 0, 1);
        __atomic_fetch_and(&pool->ctl, ~CRNN_PG_OPEN, __ATOMIC_SEQ_CST);
        for (int spins = 0; __atomic_load_n(&pool->ctl, __ATOMIC_ACQUIRE) != 0; spins++) {
            crnn_pg_pause();
            if (spins > 4096)
                CRNN_PG_YIELD();
        }
        __atomic_store_n(&pool->busy, 0, __ATOMIC_RELEASE);
        return;
    }
#endif
    crnn_pg_work_on(w, 0, 1);
}

/* ------------------------------------------------------------------------------------ */
/* Plain packed product: C (+)= A @ W for `steps` times, each step a phase, as the LSTM's
 * time loop runs it (benchmarks and tests), or one product of a time loop that runs on
 * the calling thread (the GRU's recurrent product, _gru.pyx). W (K x N, row stride ldw)
 * is packed into Wp (ceil(N/64) panels of K x 64, 64-byte aligned) in a first phase;
 * W NULL: Wp holds it packed already (steps 0: only the packing). */
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

typedef struct {
    crnn_pg_work_t w;
    const float *A, *W;
    float *Wp, *C;
    Py_ssize_t lda, ldw, ldc, M, N, K, np, nq;
    int accumulate, isa;
} crnn_pg_steps_t;

static Py_ssize_t crnn_pg_steps_items(const crnn_pg_work_t *w, Py_ssize_t ph)
{
    const crnn_pg_steps_t *g = (const crnn_pg_steps_t *)w;
    return (ph == 0 && g->W != NULL) ? g->np : g->np * g->nq;
}

static void crnn_pg_steps_run(const crnn_pg_work_t *w, Py_ssize_t ph, Py_ssize_t i,
                              int slot)
{
    const crnn_pg_steps_t *g = (const crnn_pg_steps_t *)w;
    (void)slot;
    if (ph == 0 && g->W != NULL) {
        crnn_pg_pack_plain(g->W, g->ldw, g->K, g->N, g->Wp, i, i + 1);
        return;
    }
    const Py_ssize_t p = i / g->nq;
    Py_ssize_t r0, r1;
    crnn_pg_chunk_rows(g->M, g->nq, i % g->nq, &r0, &r1);
    int cnt[4];
    crnn_pg_counts(g->N - p * CRNN_PG_NR, cnt);
    crnn_pg_tile(g->isa, r0, r1, g->K, g->A, g->lda, g->Wp + p * g->K * CRNN_PG_NR,
                 g->C + p * CRNN_PG_NR, g->ldc, 16, cnt, g->accumulate);
}

static void crnn_pg_gemm_steps(const float *A, Py_ssize_t lda, const float *W,
                               Py_ssize_t ldw, float *Wp, float *C, Py_ssize_t ldc,
                               Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, int accumulate,
                               Py_ssize_t steps)
{
    const int nth = crnn_pg_max_threads();
    crnn_pg_steps_t g;
    g.A = A, g.W = W, g.Wp = Wp, g.C = C;
    g.lda = lda, g.ldw = ldw, g.ldc = ldc, g.M = M, g.N = N, g.K = K;
    g.np = (N + CRNN_PG_NR - 1) / CRNN_PG_NR;
    g.nq = crnn_pg_row_chunks(g.np, nth);
    g.accumulate = accumulate, g.isa = crnn_pg_isa();
    g.w.items = crnn_pg_steps_items, g.w.run = crnn_pg_steps_run;
    g.w.nphases = (W != NULL) + steps;
    crnn_pg_run(&g.w, nth);
}

#endif
