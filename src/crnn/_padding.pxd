# The backward pass at a padded step (a zero in the mask of real steps), shared by the
# SimpleRNN and LSTM kernels: the step gets no gradient, and the gradient reaching h_t
# goes straight to h_{t-1}. It is held aside while the step's recurrent GEMM overwrites
# dh_next, then put back. Inline; no runtime module behind this file.
from cython cimport floating
from libc.string cimport memcpy, memset


cdef inline void hold_padded_row(floating *d_step, Py_ssize_t width, floating *dh_pad,
                                 const floating *dh_next, const floating *dhs_row,
                                 Py_ssize_t H) noexcept nogil:
    """One padded row before the GEMM: ``d_step[:width] = 0`` (nothing into the step)
    and ``dh_pad = dh_next + dhs_t`` (the gradient reaching ``h_t``), ``H`` units."""
    cdef Py_ssize_t j
    memset(d_step, 0, width * sizeof(floating))
    for j in range(H):
        dh_pad[j] = dh_next[j] + dhs_row[j]


cdef inline void pass_padded_rows(floating *dh_next, const floating *dh_pad,
                                  const unsigned char *real, Py_ssize_t B, Py_ssize_t T,
                                  Py_ssize_t t, Py_ssize_t H) noexcept nogil:
    """After the GEMM: every row padded at step ``t`` passes its held gradient on,
    ``dh_next[r] = dh_pad[r]``."""
    cdef Py_ssize_t r
    for r in range(B):
        if not real[r * T + t]:
            memcpy(dh_next + r * H, dh_pad + r * H, H * sizeof(floating))
