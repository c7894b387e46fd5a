# Elementwise activations for the kernels: inline, branch-free where it matters, so that
# GCC vectorises the loops over one row of units. Included (cimported) by every kernel
# module and by the fused row passes of _lstm_rows.pxd and _gru_rows.pxd; there is no
# runtime module behind this file.
#
# Codes match crnn.activations.CODES.
from cython cimport floating
from libc.math cimport exp, tanh

cdef enum:
    TANH = 0
    RELU = 1
    SIGMOID = 2
    LINEAR = 3


cdef extern from "_simd.h" nogil:
    # In C so that the compiler can build it for AVX2 and AVX-512 too (see _simd.h).
    void bias_tanh_row_f32 "crnn_bias_tanh_row_f32"(float *a, const float *b, Py_ssize_t n)
    void bias_sigmoid_row_f32 "crnn_bias_sigmoid_row_f32"(float *a, const float *b,
                                                          Py_ssize_t n)
    # The float32 tanh and exp of the vectorised loops (_simd.h, _lstm_simd.h,
    # _gru_simd.h), for the generic loops: every float32 path computes the same tanh and
    # sigmoid.
    float tanh_f32 "crnn_tanh_f32"(float x)
    float exp_f32 "crnn_exp_f32"(float x)


cdef inline floating activate(floating v, int act) noexcept nogil:
    """act(v) for one element (the generic loops: any activation, either dtype)."""
    if act == TANH:
        return tanh_f32(v) if floating is float else tanh(v)
    elif act == RELU:
        return 0 if v < 0 else v
    elif act == SIGMOID:
        return 1 / (1 + (exp_f32(-v) if floating is float else exp(-v)))
    return v


cdef inline floating derivative(floating y, int act) noexcept nogil:
    """act'(a) from the output y = act(a)."""
    if act == TANH:
        return 1 - y * y
    elif act == RELU:
        return 1 if y > 0 else 0
    elif act == SIGMOID:
        return y * (1 - y)
    return 1


cdef inline void bias_activate_row(floating *a, const floating *b, Py_ssize_t n,
                                   int act) noexcept nogil:
    """a[j] = act(a[j] + b[j]) for j < n, in place; the switch sits outside the loop."""
    cdef Py_ssize_t j
    cdef floating v
    if act == TANH:
        if floating is float:
            bias_tanh_row_f32(a, b, n)
        else:
            for j in range(n):
                a[j] = tanh(a[j] + b[j])
    elif act == RELU:
        for j in range(n):
            v = a[j] + b[j]
            a[j] = 0 if v < 0 else v
    elif act == SIGMOID:
        if floating is float:
            bias_sigmoid_row_f32(a, b, n)
        else:
            for j in range(n):
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
