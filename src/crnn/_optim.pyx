"""Optimizer updates in one pass over a parameter: Adam.

One parameter array ``p`` and its gradient ``g`` (``N`` elements, one float dtype), updated
in place with the optimizer's slots ``m``, ``v`` (and AMSGrad's ``v_hat``), element by
element in the order of the steps of the NumPy twin (``crnn.reference.optim``), each
operation rounded to the dtype as NumPy rounds it: the results equal the twin's bit for
bit (built with ``-ffp-contract=off``: no fused multiply-add, see setup.py). NumPy makes a
pass over the arrays per operation (eight for Adam); here every element is read once.

``adam_update`` has the signature of its twin in ``crnn.reference.optim``.
"""
from cython cimport floating
from libc.math cimport sqrt, sqrtf

import numpy as np


cdef extern from "_optim_simd.h" nogil:
    void adam_f32 "crnn_adam_f32"(float *p, const float *g, float *m, float *v,
                                  Py_ssize_t n, float alpha, float c1, float c2, float eps)
    void adam_f64 "crnn_adam_f64"(double *p, const double *g, double *m, double *v,
                                  Py_ssize_t n, double alpha, double c1, double c2,
                                  double eps)


cdef void _adam(floating *p, const floating *g, floating *m, floating *v, floating *v_hat,
                Py_ssize_t N, floating alpha, floating c1, floating c2,
                floating eps) noexcept nogil:
    # c1 = 1 - beta_1, c2 = 1 - beta_2 (rounded to the dtype, as the twin's). Without
    # v_hat, the loop of _optim_simd.h, vectorised for the widest ISA the CPU has.
    cdef Py_ssize_t i
    cdef floating gi, mi, vi, r
    if v_hat == NULL:
        if floating is float:
            adam_f32(p, g, m, v, N, alpha, c1, c2, eps)
        else:
            adam_f64(p, g, m, v, N, alpha, c1, c2, eps)
        return
    for i in range(N):
        gi = g[i]
        mi = m[i] + (gi - m[i]) * c1                  # 1.
        vi = v[i] + (gi * gi - v[i]) * c2             # 2.
        m[i] = mi
        v[i] = vi
        r = v_hat[i]                                  # 3. v_hat = max(v_hat, v)
        if not (r > vi or r != r):                    # (NaN from either side, as NumPy)
            r = vi
        v_hat[i] = r
        p[i] = p[i] - (mi * alpha) / (_sqrt(r) + eps)  # 4.


cdef inline floating _sqrt(floating a) noexcept nogil:
    if floating is float:
        return sqrtf(a)
    else:
        return sqrt(a)


def adam_update(p, g, m, v, v_hat, alpha, beta_1, beta_2, epsilon):
    """One Adam step in place: see ``crnn.reference.optim.adam_update``.

    Parameters
    ----------
    p, m, v : ndarray, float32 or float64, C-contiguous, writeable, one shape
        The parameter and its first and second moments.
    g : ndarray of p's shape (cast to p's dtype, copied if not C-contiguous)
    v_hat : ndarray like m, or None
        AMSGrad's running maximum of v.
    alpha, beta_1, beta_2, epsilon : float
        ``alpha = lr * sqrt(1 - beta_2**t) / (1 - beta_1**t)``.
    """
    if not isinstance(p, np.ndarray) or p.dtype not in (np.float32, np.float64):
        raise ValueError(f"expected p a float32 or float64 ndarray, got "
                         f"{getattr(p, 'dtype', type(p).__name__)}")
    slots = {"m": m, "v": v} if v_hat is None else {"m": m, "v": v, "v_hat": v_hat}
    for name, a in {"p": p, **slots}.items():
        if not isinstance(a, np.ndarray) or a.shape != p.shape or a.dtype != p.dtype:
            raise ValueError(f"expected {name} an ndarray of p's shape {p.shape} and dtype "
                             f"{p.dtype}, got {getattr(a, 'shape', type(a).__name__)} "
                             f"{getattr(a, 'dtype', '')}")
        if not a.flags.c_contiguous or not a.flags.writeable:
            raise ValueError(f"expected {name} C-contiguous and writeable")
    g = np.ascontiguousarray(g, dtype=p.dtype)
    if g.shape != p.shape:
        raise ValueError(f"expected g of p's shape {p.shape}, got {g.shape}")
    dt = p.dtype.type
    one = dt(1)
    # the scalars rounded to the dtype first, as the twin's
    c1, c2 = one - dt(beta_1), one - dt(beta_2)
    if p.size == 0:
        return
    if p.dtype == np.float32:
        _adam_views[float](p.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1),
                           None if v_hat is None else v_hat.reshape(-1), dt(alpha), c1, c2,
                           dt(epsilon))
    else:
        _adam_views[double](p.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1),
                            None if v_hat is None else v_hat.reshape(-1), dt(alpha), c1,
                            c2, dt(epsilon))


cdef void _adam_views(floating[::1] p, const floating[::1] g, floating[::1] m,
                      floating[::1] v, floating[::1] v_hat, floating alpha, floating c1,
                      floating c2, floating eps):
    cdef floating *vh = NULL
    if v_hat is not None:
        vh = &v_hat[0]
    with nogil:
        _adam(&p[0], &g[0], &m[0], &v[0], vh, p.shape[0], alpha, c1, c2, eps)
