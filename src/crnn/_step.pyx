"""One time step of SimpleRNN, LSTM and GRU for streaming inference, state kept inside.

Notation: ``B`` batch, ``D`` input features, ``H`` units, ``G`` the gate width (``H``,
``4H``, ``3H``); weights in Keras's layout, ``W_x (D, G)``, ``W_h (H, G)``, ``b``. One
:class:`Stepper` holds references to the weights and pointers into them (taken once), its
state and its scratch buffers, so that ``stepper.step(x_t)`` does one small check of
``x_t`` and then only the arithmetic of the step. What a step computes is what one step
of ``<family>_forward`` computes (the twins in ``crnn.reference`` with ``T = 1``; the
recurrent dropout of training is not applied: a stepper is for inference)::

    SimpleRNN   1-2. a = x_t @ W_x + h @ W_h
                3.   h = act(a + b)
    LSTM        1-2. z = x_t @ W_x + h @ W_h
                3-5. i, f, g, o = ract(z_i + b_i), ract(z_f + b_f), act(z_c + b_c),
                     ract(z_o + b_o);  c = f * c + i * g;  h = o * act(c)
    GRU, reset_after=True (b (2, G) = [b_i, b_r])
                1.   g = x_t @ W_x
                2.   rec = h @ W_h
                3-5. z = ract(g_z + b_i,z + rec_z + b_r,z), r likewise,
                     n = act(g_h + b_i,h + r * (rec_h + b_r,h)),  h = z * h + (1 - z) * n
    GRU, reset_after=False (b (G,))
                1.   g = x_t @ W_x
                2.   rec[:, :2H] = h @ W_h[:, :2H]
                3.   z = ract(g_z + b_z + rec_z),  r = ract(g_r + b_r + rec_r),  q = r * h
                4.   rec[:, 2H:] = q @ W_h[:, 2H:]
                4-5. n = act(g_h + b_h + rec_h),  h = z * h + (1 - z) * n

The fused elementwise passes are the forward kernels' own, cimported from
``_activations.pxd``, ``_lstm_rows.pxd`` and ``_gru_rows.pxd`` (the vectorised float32
rows of ``_simd.h``, ``_lstm_simd.h`` and ``_gru_simd.h`` for the default activations,
generic loops computing the same formulas otherwise), so a stepper agrees with the
layer's full forward pass to rounding: the products differ only in summation order.

The products. For ``B = 1`` and small weights, a vector-matrix product of our own
(``crnn_step_vm_*`` below) that makes one pass over ``W_x`` and ``W_h`` with the output
block in registers: the BLAS call it replaces costs more in fixed overhead than the
arithmetic at ``H = 64`` (and OpenBLAS's ``sgemv`` goes multi-threaded from 2304*4
elements, waking its pool for a microsecond of work), and that keeps up with BLAS on two
threads at ``H = 1024`` (see ``VM_MAX``). From ``VM_MAX`` multiply-adds per step on, or
``B > 1``, BLAS: ``gemv`` or ``gemm``, both through ``crnn._blas``.
"""
from cpython.buffer cimport (PyBUF_C_CONTIGUOUS, PyBUF_FORMAT, PyBUF_WRITABLE,
                             PyBuffer_Release, PyObject_GetBuffer)
from cpython.exc cimport PyErr_Clear
from cython cimport floating
from libc.string cimport memcpy

from crnn._activations cimport bias_activate_row
from crnn._blas cimport NoTrans, Trans, gemm, gemv
from crnn._gru_rows cimport gru_after_row, gru_candidate_row, gru_gates_row
from crnn._lstm_rows cimport lstm_forward_row

import numpy as np

from crnn import _checks
from crnn.activations import CODES, check as _check_activation


cdef extern from "Python.h":
    # PyObject_GetBuffer without Cython's exception check: the fast path of a step asks
    # for the buffer and, on -1, clears the error and takes the converting path.
    int get_buffer_or_fail "PyObject_GetBuffer"(object obj, Py_buffer *view, int flags)


cdef extern from *:
    """
    /* y[0:N] = x1[0:K1] @ W1[0:K1, 0:N] + x2[0:K2] @ W2[0:K2, 0:N], row-major W with row
     * strides ld1, ld2 (K2 may be 0). The rows of W are taken four at a time over the
     * whole width, y[j] += a0 w0[j] + a1 w1[j] + a2 w2[j] + a3 w3[j]: four sequential
     * streams through the weights (which the hardware prefetchers follow; a block of y
     * held in registers against every row would stride through W a row length apart,
     * across pages at H = 1024) and one pass over y, which stays in L1, per four rows.
     * No BLAS call. Compiled for the baseline, AVX with FMA and AVX-512F (CRNN_CLONES,
     * _simd.h). */
    #include "_simd.h"
    #define CRNN_VM_ROWS(T)                                                             \
        static inline __attribute__((always_inline)) void                               \
        crnn_step_rows_##T(T *__restrict__ y, const T *__restrict__ x,                  \
                           const T *__restrict__ W, Py_ssize_t K, Py_ssize_t ld,        \
                           Py_ssize_t N, int init)                                      \
        {                                                                               \
            Py_ssize_t k = 0, j;                                                        \
            for (; k + 4 <= K; k += 4) {                                                \
                const T a0 = x[k], a1 = x[k + 1], a2 = x[k + 2], a3 = x[k + 3];         \
                const T *__restrict__ w0 = W + k * ld;                                  \
                const T *__restrict__ w1 = w0 + ld;                                     \
                const T *__restrict__ w2 = w1 + ld;                                     \
                const T *__restrict__ w3 = w2 + ld;                                     \
                if (init) {                                                             \
                    for (j = 0; j < N; j++)                                             \
                        y[j] = ((a0 * w0[j] + a1 * w1[j]) + a2 * w2[j]) + a3 * w3[j];   \
                    init = 0;                                                           \
                } else {                                                                \
                    for (j = 0; j < N; j++)                                             \
                        y[j] += ((a0 * w0[j] + a1 * w1[j]) + a2 * w2[j]) + a3 * w3[j];  \
                }                                                                       \
            }                                                                           \
            for (; k < K; k++) {                                                        \
                const T a = x[k];                                                       \
                const T *__restrict__ w = W + k * ld;                                   \
                if (init) {                                                             \
                    for (j = 0; j < N; j++) y[j] = a * w[j];                            \
                    init = 0;                                                           \
                } else {                                                                \
                    for (j = 0; j < N; j++) y[j] += a * w[j];                           \
                }                                                                       \
            }                                                                           \
        }
    CRNN_VM_ROWS(float)
    CRNN_VM_ROWS(double)
    #define CRNN_VM_BODY(T)                                                             \
        crnn_step_rows_##T(y, x1, W1, K1, ld1, N, 1);                                   \
        if (K2 > 0) crnn_step_rows_##T(y, x2, W2, K2, ld2, N, 0);

    CRNN_CLONES static void crnn_step_vm_f32(
        float *__restrict__ y, const float *__restrict__ x1, const float *__restrict__ W1,
        Py_ssize_t K1, Py_ssize_t ld1, const float *__restrict__ x2,
        const float *__restrict__ W2, Py_ssize_t K2, Py_ssize_t ld2, Py_ssize_t N)
    { CRNN_VM_BODY(float) }

    CRNN_CLONES static void crnn_step_vm_f64(
        double *__restrict__ y, const double *__restrict__ x1,
        const double *__restrict__ W1, Py_ssize_t K1, Py_ssize_t ld1,
        const double *__restrict__ x2, const double *__restrict__ W2, Py_ssize_t K2,
        Py_ssize_t ld2, Py_ssize_t N)
    { CRNN_VM_BODY(double) }
    """
    void vm_f32 "crnn_step_vm_f32"(float *y, const float *x1, const float *W1,
                                   Py_ssize_t K1, Py_ssize_t ld1, const float *x2,
                                   const float *W2, Py_ssize_t K2, Py_ssize_t ld2,
                                   Py_ssize_t N) noexcept nogil
    void vm_f64 "crnn_step_vm_f64"(double *y, const double *x1, const double *W1,
                                   Py_ssize_t K1, Py_ssize_t ld1, const double *x2,
                                   const double *W2, Py_ssize_t K2, Py_ssize_t ld2,
                                   Py_ssize_t N) noexcept nogil


# Up to this many multiply-adds per step (B = 1) the products run crnn_step_vm_*, from it
# on BLAS gemv. Measured here (2 shared cores, load 2-4; benchmarks/bench_step.py, float32,
# one step, us, vm / OpenBLAS 0.3.31 sgemv on 2 threads): LSTM H = D = 256 29 / 28-49,
# GRU 256 20 / 20-41, SimpleRNN 1024 107-111 / 300-5900, LSTM 1024 1000-2750 /
# 1600-7100, GRU 1024 860-2330 / 1200-5450. One thread streaming the weights keeps up
# with two (the step is bound by reading the weights from L2/L3/DRAM), and it neither
# wakes a thread pool per step nor fights another pool (PyTorch's, the kernels' OpenMP)
# for the cores. So BLAS is kept for the very large only.
VM_MAX = 1 << 24

# From this many multiply-adds per step on, a step releases the GIL.
NOGIL_MIN = 1 << 16

cdef enum:
    SIMPLE = 0
    LSTM = 1
    GRU_AFTER = 2
    GRU_BEFORE = 3


# -- the products --------------------------------------------------------------------

cdef void _project(floating *y, Py_ssize_t ldy, const floating *x1, const floating *W1,
                   Py_ssize_t K1, Py_ssize_t ld1, const floating *x2, const floating *W2,
                   Py_ssize_t K2, Py_ssize_t ld2, Py_ssize_t B, Py_ssize_t N,
                   bint vm) noexcept nogil:
    """y[:, :N] = x1 @ W1[:, :N] + x2 @ W2[:, :N] for B rows (x1 (B, K1), x2 (B, K2) or
    K2 = 0; y's rows ldy apart); vm: B = 1 on crnn_step_vm_*."""
    if B == 1 and vm:
        if floating is float:
            vm_f32(y, x1, W1, K1, ld1, x2, W2, K2, ld2, N)
        else:
            vm_f64(y, x1, W1, K1, ld1, x2, W2, K2, ld2, N)
    elif B == 1:
        # y = x1 @ W1
        gemv(Trans, <int> N, <int> K1, <floating> 1, W1, <int> ld1, x1, <floating> 0, y)
        if K2 > 0:
            # y += x2 @ W2
            gemv(Trans, <int> N, <int> K2, <floating> 1, W2, <int> ld2, x2, <floating> 1,
                 y)
    else:
        # y = x1 @ W1
        gemm(NoTrans, NoTrans, <int> B, <int> N, <int> K1, <floating> 1, x1, <int> K1,
             W1, <int> ld1, <floating> 0, y, <int> ldy)
        if K2 > 0:
            # y += x2 @ W2
            gemm(NoTrans, NoTrans, <int> B, <int> N, <int> K2, <floating> 1, x2, <int> K2,
                 W2, <int> ld2, <floating> 1, y, <int> ldy)


# -- one step ------------------------------------------------------------------------

cdef void _step(int kind, floating *h, floating *c, floating *z, floating *rec,
                floating *hn, floating *h_new, const floating *x, const floating *W_x,
                const floating *W_h, const floating *b, Py_ssize_t B, Py_ssize_t D,
                Py_ssize_t H, int act, int ract, bint vm) noexcept nogil:
    """One step for B rows, in place on the state h (and c). Scratch: z (B, G); for the
    GRU rec (B, G), hn (B, H) and h_new (B, H); for the LSTM h_new (B, H) holds c_t."""
    cdef Py_ssize_t i
    cdef Py_ssize_t G
    if kind == SIMPLE:
        # 1-2. z = x_t @ W_x + h @ W_h
        _project(z, H, x, W_x, D, H, h, W_h, H, H, B, H, vm)
        # 3. h = act(z + b)
        for i in range(B):
            bias_activate_row(z + i * H, b, H, act)
        memcpy(h, z, B * H * sizeof(floating))
    elif kind == LSTM:
        G = 4 * H
        # 1-2. z = x_t @ W_x + h @ W_h
        _project(z, G, x, W_x, D, G, h, W_h, H, G, B, G, vm)
        # 3-5. gates, c_t (into h_new), h_t (into h: the product has read it)
        for i in range(B):
            lstm_forward_row(z + i * G, b, c + i * H, h_new + i * H, h + i * H, NULL,
                             NULL, H, act, ract)
        memcpy(c, h_new, B * H * sizeof(floating))
    elif kind == GRU_AFTER:
        G = 3 * H
        # 1. z = x_t @ W_x;  2. rec = h @ W_h
        _project(z, G, x, W_x, D, G, NULL, NULL, 0, 0, B, G, vm)
        _project(rec, G, h, W_h, H, G, NULL, NULL, 0, 0, B, G, vm)
        # 3-5. h_new = z * h + (1 - z) * n
        for i in range(B):
            gru_after_row(z + i * G, rec + i * G, b, b + G, h + i * H, hn + i * H,
                          h_new + i * H, NULL, NULL, H, act, ract)
        memcpy(h, h_new, B * H * sizeof(floating))
    else:
        G = 3 * H
        # 1. z = x_t @ W_x;  2. rec[:, :2H] = h @ W_h[:, :2H]
        _project(z, G, x, W_x, D, G, NULL, NULL, 0, 0, B, G, vm)
        _project(rec, G, h, W_h, H, G, NULL, NULL, 0, 0, B, 2 * H, vm)
        # 3. z, r; hn = q = r * h
        for i in range(B):
            gru_gates_row(z + i * G, rec + i * G, b, h + i * H, hn + i * H, H, act, ract)
        # 4. rec[:, 2H:] = q @ U_h
        _project(rec + 2 * H, G, hn, W_h + 2 * H, H, G, NULL, NULL, 0, 0, B, H, vm)
        # 4-5. h_new = z * h + (1 - z) * n
        for i in range(B):
            gru_candidate_row(z + i * G, z + i * G + 2 * H, rec + i * G + 2 * H,
                              b + 2 * H, h + i * H, h_new + i * H, NULL, NULL, H, act,
                              ract)
        memcpy(h, h_new, B * H * sizeof(floating))


cdef inline void _step_any(bint f32, int kind, void *h, void *c, void *z, void *rec,
                           void *hn, void *h_new, const void *x, const void *W_x,
                           const void *W_h, const void *b, Py_ssize_t B, Py_ssize_t D,
                           Py_ssize_t H, int act, int ract, bint vm) noexcept nogil:
    if f32:
        _step(kind, <float *> h, <float *> c, <float *> z, <float *> rec, <float *> hn,
              <float *> h_new, <const float *> x, <const float *> W_x,
              <const float *> W_h, <const float *> b, B, D, H, act, ract, vm)
    else:
        _step(kind, <double *> h, <double *> c, <double *> z, <double *> rec,
              <double *> hn, <double *> h_new, <const double *> x, <const double *> W_x,
              <const double *> W_h, <const double *> b, B, D, H, act, ract, vm)


# -- the Python face -------------------------------------------------------------------

cdef void *_data(object arr) except NULL:
    """The data pointer of a C-contiguous ndarray (kept alive by the caller)."""
    cdef Py_buffer view
    PyObject_GetBuffer(arr, &view, PyBUF_C_CONTIGUOUS)
    cdef void *p = view.buf
    PyBuffer_Release(&view)
    return p


_FAMILIES = {"simple_rnn": (1, ("h",)), "lstm": (4, ("h", "c")), "gru": (3, ("h",))}


cdef class Stepper:
    """A recurrent layer's step for a batch of ``batch_size``, its state kept inside.

    ``Stepper(family, W_x, W_h, b, batch_size=1, activation="tanh",
    recurrent_activation="sigmoid", reset_after=True, states=None)``; ``family`` is
    ``"simple_rnn"``, ``"lstm"`` or ``"gru"``, the weights are in Keras's layout
    (``W_x (D, G)``, ``W_h (H, G)``, ``b (G,)``, or ``(2, G)`` for a ``reset_after``
    GRU), C-contiguous, all float32 or all float64. Usually made by
    ``layer.stepper(batch_size)`` (:mod:`crnn.streaming`).

    The stepper keeps references to the weight arrays and reads them at every step: a
    change made in place (``set_weights``, an optimizer's update) is seen by the next
    step; arrays replaced by new ones (building the layer again) are not: make a new
    stepper. ``uses(W_x, W_h, b)`` says whether it reads these very arrays.

    ``step(x_t, out=None)`` advances the state by one step and returns ``h_t (B, H)``: a
    new array, or ``out`` (a C-contiguous ``(B, H)`` array of the dtype) written in
    place, which makes a step allocate nothing. ``x_t (B, D)`` of the stepper's dtype
    and C-contiguous is read where it lies; anything else is converted as a layer's call
    converts (``numpy.ascontiguousarray(x_t, dtype)``: float64 to float32 is cast, at the
    cost of a copy); a wrong shape, or what does not convert, raises ``ValueError``. A
    NaN is no error: it propagates as in the full forward pass.

    ``states`` is a list of copies of the state (``[h]``, or ``[h, c]`` for the LSTM);
    ``reset(states=None)`` sets it (None: zeros).

    A stepper is for one thread: large steps release the GIL, and two threads stepping
    one stepper would race on its state (make one stepper per thread). Steps are not
    recorded on a ``GradientTape``: inference only.
    """

    cdef readonly str family
    cdef readonly Py_ssize_t batch_size, input_dim, units
    cdef readonly object dtype
    cdef readonly object kernel, recurrent_kernel, bias
    cdef readonly str activation, recurrent_activation
    cdef readonly bint reset_after
    cdef int kind, act, ract
    cdef bint f32, vm, nogil_step
    cdef Py_ssize_t itemsize
    cdef char fmt
    cdef object _h, _c, _z, _rec, _hn, _hnew, _shape, _empty, _state_names
    cdef void *p_h
    cdef void *p_c
    cdef void *p_z
    cdef void *p_rec
    cdef void *p_hn
    cdef void *p_hnew
    cdef const void *p_Wx
    cdef const void *p_Wh
    cdef const void *p_b

    def __init__(self, family, W_x, W_h, b, batch_size=1, activation="tanh",
                 recurrent_activation="sigmoid", reset_after=True, states=None):
        if family not in _FAMILIES:
            raise ValueError(f"expected family to be one of {sorted(_FAMILIES)}, got "
                             f"{family!r}")
        gates, names = _FAMILIES[family]
        if (not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool)
                or batch_size < 1):
            raise ValueError(f"expected batch_size to be a positive int, got "
                             f"{batch_size!r}")
        _checks.array("W_h", W_h, (None, None))
        H = W_h.shape[0]
        if W_h.shape != (H, gates * H):
            raise ValueError(f"expected W_h (recurrent kernel) of shape (H, {gates}*H), "
                             f"got {W_h.shape}")
        _checks.array("W_x", W_x, (None, gates * H), W_h.dtype)
        D = W_x.shape[0]
        bias_shape = (2, 3 * H) if family == "gru" and reset_after else (gates * H,)
        _checks.array("b", b, bias_shape, W_h.dtype)
        _checks.blas_sizes(B=int(batch_size), T=1, D=D, H=gates * H)
        self.family = family
        self.batch_size, self.input_dim, self.units = int(batch_size), D, H
        self.dtype = W_h.dtype
        self.kernel, self.recurrent_kernel, self.bias = W_x, W_h, b
        self.activation = _check_activation(activation)
        self.recurrent_activation = _check_activation(recurrent_activation)
        self.act = CODES[self.activation]
        self.ract = CODES[self.recurrent_activation]
        self.reset_after = bool(reset_after)
        self.kind = (SIMPLE if family == "simple_rnn" else LSTM if family == "lstm"
                     else GRU_AFTER if self.reset_after else GRU_BEFORE)
        self.f32 = self.dtype == np.float32
        self.itemsize = self.dtype.itemsize
        self.fmt = b"f"[0] if self.f32 else b"d"[0]
        macs = (D + H) * gates * H * self.batch_size
        self.vm = macs < VM_MAX
        self.nogil_step = macs >= NOGIL_MIN
        B, G = self.batch_size, gates * H
        self._shape = (B, H)
        self._empty = np.empty
        self._state_names = names
        self._h = np.zeros((B, H), self.dtype)
        self._c = np.zeros((B, H), self.dtype)
        self._z = np.zeros((B, G), self.dtype)
        self._rec = np.zeros((B, G), self.dtype)
        self._hn = np.zeros((B, H), self.dtype)
        self._hnew = np.zeros((B, H), self.dtype)
        self.p_h, self.p_c = _data(self._h), _data(self._c)
        self.p_z, self.p_rec = _data(self._z), _data(self._rec)
        self.p_hn, self.p_hnew = _data(self._hn), _data(self._hnew)
        self.p_Wx, self.p_Wh, self.p_b = _data(W_x), _data(W_h), _data(b)
        self.reset(states)

    # -- state ---------------------------------------------------------------------
    @property
    def state_names(self):
        return self._state_names

    @property
    def states(self):
        """Copies of the state: ``[h]``, or ``[h, c]`` for the LSTM, each ``(B, H)``."""
        if self.kind == LSTM:
            return [self._h.copy(), self._c.copy()]
        return [self._h.copy()]

    def reset(self, states=None):
        """Set the state: None for zeros, else a list with one ``(B, H)`` array per name
        in ``state_names`` (a one-state cell takes one array alone too); converted to the
        dtype as a layer's call converts its initial state."""
        names = self._state_names
        if states is None:
            self._h[...] = 0
            self._c[...] = 0
            return
        new = [_checks.converted(f"state {name}", s, self.dtype, self._shape,
                                 contiguous=False)
               for name, s in zip(names, _checks.state_list(names, states))]
        self._h[...] = new[0]
        if len(new) > 1:
            self._c[...] = new[1]

    def uses(self, W_x, W_h, b):
        """Whether this stepper reads these very weight arrays."""
        return W_x is self.kernel and W_h is self.recurrent_kernel and b is self.bias

    # -- the step ------------------------------------------------------------------
    def step(self, x_t, out=None):
        """Advance the state by one step; return ``h_t (B, H)`` (a new array, or ``out``
        written in place). See the class docstring."""
        cdef Py_buffer view
        cdef bint ok = False
        if self.p_h == NULL:
            raise ValueError("expected a Stepper made by its constructor (__init__ has not "
                             "run)")
        if get_buffer_or_fail(x_t, &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) == 0:
            try:
                ok = self._matches(&view, self.input_dim)
                if ok:
                    self._run(view.buf)
            finally:
                PyBuffer_Release(&view)
        else:
            PyErr_Clear()
        if not ok:
            self._run_converted(x_t)
        return self._output(out)

    cdef bint _matches(self, Py_buffer *view, Py_ssize_t cols) noexcept:
        return (view.ndim == 2 and view.shape[0] == self.batch_size
                and view.shape[1] == cols and view.itemsize == self.itemsize
                and view.format != NULL and view.format[0] == self.fmt
                and view.format[1] == 0)

    cdef void _run(self, const void *x) noexcept:
        if self.nogil_step:
            with nogil:
                _step_any(self.f32, self.kind, self.p_h, self.p_c, self.p_z, self.p_rec,
                          self.p_hn, self.p_hnew, x, self.p_Wx, self.p_Wh, self.p_b,
                          self.batch_size, self.input_dim, self.units, self.act,
                          self.ract, self.vm)
        else:
            _step_any(self.f32, self.kind, self.p_h, self.p_c, self.p_z, self.p_rec,
                      self.p_hn, self.p_hnew, x, self.p_Wx, self.p_Wh, self.p_b,
                      self.batch_size, self.input_dim, self.units, self.act, self.ract,
                      self.vm)

    cdef _run_converted(self, x_t):
        """The slow path: x_t converted (a copy), its shape checked, then the step."""
        x = _checks.converted("x_t", x_t, self.dtype, (self.batch_size, self.input_dim),
                              "(batch, features)")
        self._run(_data(x))

    cdef _output(self, out):
        cdef Py_buffer view
        cdef Py_ssize_t nbytes = self.batch_size * self.units * self.itemsize
        if out is None:
            res = self._empty(self._shape, self.dtype)
            memcpy(_data(res), self.p_h, nbytes)
            return res
        try:
            PyObject_GetBuffer(out, &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT
                               | PyBUF_WRITABLE)
        except Exception:
            raise ValueError(f"expected out to be a writable C-contiguous {self.dtype} "
                             f"array of shape {self._shape}, got {type(out).__name__}"
                             f"{getattr(out, 'shape', '')}") from None
        try:
            if not self._matches(&view, self.units):
                raise ValueError(f"expected out to be a writable C-contiguous "
                                 f"{self.dtype} array of shape {self._shape}, got "
                                 f"{getattr(out, 'dtype', type(out).__name__)} of shape "
                                 f"{getattr(out, 'shape', None)}")
            memcpy(view.buf, self.p_h, nbytes)
        finally:
            PyBuffer_Release(&view)
        return out

    def __repr__(self):
        extra = ""
        if self.family != "simple_rnn":
            extra = f", recurrent_activation={self.recurrent_activation!r}"
        if self.family == "gru":
            extra += f", reset_after={self.reset_after}"
        return (f"Stepper({self.family!r}, batch_size={self.batch_size}, "
                f"input_dim={self.input_dim}, units={self.units}, "
                f"dtype={self.dtype.name}, activation={self.activation!r}{extra})")


def _set_vm_max(n):
    """Set :data:`VM_MAX` for steppers made from now on (benchmarks and tests); returns
    the old value."""
    global VM_MAX
    old, VM_MAX = VM_MAX, int(n)
    return old
