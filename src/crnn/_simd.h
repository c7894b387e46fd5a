/* Elementwise loops of the kernels that are worth more than SSE2.
 *
 * The extensions are compiled for the baseline x86-64 (SSE2), which every x86-64 CPU
 * runs. A loop here is compiled three times, for that baseline, for AVX with FMA and for
 * AVX-512F, and the widest one the CPU supports is chosen once when the module loads
 * (GCC's target_clones, resolved through an ifunc by glibc). Elsewhere (other compilers,
 * other C libraries, other architectures) the macro is empty and the loop is compiled
 * once, for the baseline: narrower vectors, and results that differ in the last bits
 * (FMA rounds once where SSE2 rounds twice).
 *
 * Feature targets, not "arch=" ones: an "arch=" clone also changes the tuning, and GCC
 * then refuses (or, without always_inline, silently skips) inlining the default-target
 * helper below, leaving a scalar call per element. Measured on this machine's Xeon, one
 * 1024-wide row: 1.44 ns per element for SSE2, 0.26 for the AVX-512F clone.
 *
 * Only compute-bound loops belong here: the float32 tanh and sigmoid, ~20 operations per
 * element each. (libm's expf is a call per element that no loop around it vectorises: on
 * the (128, 100, 512, 1024) benchmark shape a sigmoid forward pass took 200 ms where tanh
 * took 155.)
 */
#ifndef CRNN_SIMD_H
#define CRNN_SIMD_H

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 6 && defined(__x86_64__) \
    && defined(__linux__) && defined(__GLIBC__)
#define CRNN_CLONES __attribute__((target_clones("avx512f", "fma", "default")))
#else
#define CRNN_CLONES
#endif

/* for the loops a module including this header may not call (_optim uses none) */
#if defined(__GNUC__)
#define CRNN_MAYBE_UNUSED __attribute__((unused))
#else
#define CRNN_MAYBE_UNUSED
#endif

/* tanh for float32: Eigen's generic_fast_tanh_float, an odd 13th-degree polynomial over
 * an even 6th-degree one on [-7.9, 7.9] (beyond the clamp tanh is +-1 in float32),
 * within a few ulp of tanhf. No branch and no call, so a loop over it vectorises.
 * Comparisons rather than fminf/fmaxf keep a NaN a NaN; the division is done
 * unconditionally and then selected, because GCC will not if-convert a branch that
 * divides; |x| < 4e-4 returns x, which is tanh(x) to float32 precision and keeps -0. */
static inline __attribute__((always_inline)) float crnn_tanh_f32(float x)
{
    const float c = 7.90531110763549805f;
    float xc = x > c ? c : x;
    xc = xc < -c ? -c : xc;
    const float x2 = xc * xc;
    float p = -2.76076847742355e-16f;
    p = p * x2 + 2.00018790482477e-13f;
    p = p * x2 + -8.60467152213735e-11f;
    p = p * x2 + 5.12229709037114e-08f;
    p = p * x2 + 1.48572235717979e-05f;
    p = p * x2 + 6.37261928875436e-04f;
    p = p * x2 + 4.89352455891786e-03f;
    p = p * xc;
    float q = 1.19825839466702e-06f;
    q = q * x2 + 1.18534705686654e-04f;
    q = q * x2 + 2.26843463243900e-03f;
    q = q * x2 + 4.89352518554385e-03f;
    const float r = p / q;
    return __builtin_fabsf(x) < 0.0004f ? x : r;
}

/* exp for float32: Cephes's expf. exp(x) = 2^n exp(r) with n = round(x / ln 2) and
 * r = x - n ln 2 (ln 2 split in two for exactness), exp(r) by a degree-7 polynomial on
 * |r| <= ln(2)/2, 2^n built in the exponent bits; within ~1 ulp of expf. x is clamped to
 * [-87.34, 88.72]: below, the result stays at 1.2e-38 (expf: denormals, then 0); from
 * 88.38 up it is inf (expf: from 88.72), which is where the sigmoid's 1 / (1 + exp(-x))
 * is 0 to float32 precision anyway. A NaN passes through r. The rounding and the bit copy
 * vectorise on SSE2. */
static inline __attribute__((always_inline)) float crnn_exp_f32(float x)
{
    const float hi = 88.7228390520683f, lo = -87.3365478515625f;
    float xc = x > hi ? hi : x;
    xc = xc < lo ? lo : xc;
    const float xs = xc == xc ? xc : 0.0f;      /* no NaN into the int conversion */
    /* round to nearest: adding 1.5 * 2^23 pushes the fraction bits out (|t| < 2^22) */
    const float fn = (xs * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    const int n = (int) fn;
    const float r = (xc - fn * 0.693359375f) - fn * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const int bits = (n + 127) << 23;
    float scale;
    __builtin_memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* a[j] = sigmoid(a[j] + b[j]) = 1 / (1 + exp(-(a[j] + b[j]))) for j < n, in place. */
CRNN_CLONES CRNN_MAYBE_UNUSED static void crnn_bias_sigmoid_row_f32(float *a, const float *b, Py_ssize_t n)
{
    for (Py_ssize_t j = 0; j < n; j++)
        a[j] = 1.0f / (1.0f + crnn_exp_f32(-(a[j] + b[j])));
}

/* a[j] = tanh(a[j] + b[j]) for j < n, in place. */
CRNN_CLONES CRNN_MAYBE_UNUSED static void crnn_bias_tanh_row_f32(float *a, const float *b, Py_ssize_t n)
{
    for (Py_ssize_t j = 0; j < n; j++)
        a[j] = crnn_tanh_f32(a[j] + b[j]);
}

#endif
