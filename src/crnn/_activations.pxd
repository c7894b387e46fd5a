# Elementwise activations for the kernels: inline, branch-free where it matters, so that
# GCC vectorises the loops over one row of units. Included (cimported) by every kernel
# module; there is no runtime module behind this file.
#
# Codes match crnn.activations.CODES.
from cython cimport floating
from libc.math cimport exp, expf, fabs, fabsf, tanh

cdef enum:
    TANH = 0
    RELU = 1
    SIGMOID = 2
    LINEAR = 3


cdef inline float tanh_f32(float x) noexcept nogil:
    # Rational approximation of tanh on [-7.9, 7.9] (Eigen's generic_fast_tanh_float):
    # odd 13th-degree numerator over even 6th-degree denominator, within a few ulp of
    # float32 tanh, and no branch or call, so a loop over it vectorises. Beyond the clamp
    # tanh is +-1 in float32. Comparisons rather than fminf/fmaxf keep NaN a NaN.
    # Every constant is a float: a double literal would turn each step into
    # float -> double -> float conversions and stop the vectorisation.
    cdef float c = <float> 7.90531110763549805
    cdef float xc = c if x > c else x
    xc = -c if xc < -c else xc
    cdef float x2 = xc * xc
    cdef float p = <float> -2.76076847742355e-16
    p = p * x2 + <float> 2.00018790482477e-13
    p = p * x2 + <float> -8.60467152213735e-11
    p = p * x2 + <float> 5.12229709037114e-08
    p = p * x2 + <float> 1.48572235717979e-05
    p = p * x2 + <float> 6.37261928875436e-04
    p = p * x2 + <float> 4.89352455891786e-03
    p = p * xc
    cdef float q = <float> 1.19825839466702e-06
    q = q * x2 + <float> 1.18534705686654e-04
    q = q * x2 + <float> 2.26843463243900e-03
    q = q * x2 + <float> 4.89352518554385e-03
    cdef float tiny = <float> 0.0004
    # The division is done unconditionally and then selected: GCC will not if-convert
    # (and so not vectorise) a branch that divides.
    cdef float r = p / q
    # tanh(x) = x to float32 precision for |x| < 4e-4; this also keeps the sign of -0.
    return x if fabsf(x) < tiny else r


cdef inline floating activate(floating a, int act) noexcept nogil:
    """h = act(a) for one element (used where a row loop is not worth specialising)."""
    if act == TANH:
        if floating is float:
            return tanh_f32(a)
        else:
            return tanh(a)
    elif act == RELU:
        return 0 if a < 0 else a          # NaN passes through
    elif act == SIGMOID:
        if floating is float:
            return 1 / (1 + expf(-a))
        else:
            return 1 / (1 + exp(-a))
    return a


cdef inline void bias_activate_row(floating *a, const floating *b, Py_ssize_t n,
                                   int act) noexcept nogil:
    """a[j] = act(a[j] + b[j]) for j < n, in place; the switch sits outside the loop."""
    cdef Py_ssize_t j
    cdef floating v
    if act == TANH:
        for j in range(n):
            if floating is float:
                a[j] = tanh_f32(a[j] + b[j])
            else:
                a[j] = tanh(a[j] + b[j])
    elif act == RELU:
        for j in range(n):
            v = a[j] + b[j]
            a[j] = 0 if v < 0 else v
    elif act == SIGMOID:
        for j in range(n):
            if floating is float:
                a[j] = 1 / (1 + expf(-(a[j] + b[j])))
            else:
                a[j] = 1 / (1 + exp(-(a[j] + b[j])))
    else:
        for j in range(n):
            a[j] = a[j] + b[j]


cdef inline void activation_grad_row(floating *da, floating *db, const floating *dh_a,
                                     const floating *dh_b, const floating *h,
                                     Py_ssize_t n, int act) noexcept nogil:
    """da[j] = (dh_a[j] + dh_b[j]) * act'(a[j]) and db[j] += da[j], in one pass.

    The derivative is taken from the output h = act(a): tanh 1 - h**2, sigmoid
    h * (1 - h), relu 1 where h > 0, linear 1. ``da`` may alias ``dh_a`` or ``dh_b``.
    """
    cdef Py_ssize_t j
    cdef floating d
    if act == TANH:
        for j in range(n):
            d = (dh_a[j] + dh_b[j]) * (1 - h[j] * h[j])
            da[j] = d
            db[j] += d
    elif act == RELU:
        for j in range(n):
            d = (dh_a[j] + dh_b[j]) * (1 if h[j] > 0 else 0)
            da[j] = d
            db[j] += d
    elif act == SIGMOID:
        for j in range(n):
            d = (dh_a[j] + dh_b[j]) * h[j] * (1 - h[j])
            da[j] = d
            db[j] += d
    else:
        for j in range(n):
            d = dh_a[j] + dh_b[j]
            da[j] = d
            db[j] += d
