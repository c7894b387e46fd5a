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

The products. For ``B = 1`` (and the weights below ``VM_MAX`` multiply-adds), a
vector-matrix product of our own (``_step_kernels.h``) that makes one sequential pass
over ``W_x`` and ``W_h``: the BLAS call it replaces costs more in fixed overhead than the
arithmetic at ``H = 64`` (and OpenBLAS's ``sgemv`` goes multi-threaded from 2304*4
elements, waking its pool for a microsecond of work). From ``SPLIT_MIN`` multiply-adds per
step on, the columns of the products are cut into blocks, one per thread of crnn's pool
(``_lstm.pool_run``, the threads ``crnn.set_num_threads`` sets): a step is bound by
reading the weights from memory, and two cores read faster than one; below, the caller
alone (waking the pool costs more than the product). ``B > 1`` in float32 or float64:
BLAS (``gemv``/``gemm`` through ``crnn._blas``) on the caller.

Reduced precision (``precision="bfloat16"`` or ``"int8"``, float32 only): the stepper
keeps a copy of ``W_x`` and ``W_h`` rounded or quantized as ``crnn/reference/quantize.py``
specifies, packed in panels of 64 columns (``_step_kernels.h``), and computes in float32
(inputs, states, sums; int8 sums scaled per column once). Every batch size takes the
panel kernels, split over the pool from ``SPLIT_MIN`` as above. The NumPy twin of such a
step is the float32 step with the weights ``quantize.step_weights`` gives.
"""
from cpython.buffer cimport (PyBUF_C_CONTIGUOUS, PyBUF_FORMAT, PyBUF_WRITABLE,
                             PyBuffer_Release, PyObject_GetBuffer)
from cpython.exc cimport PyErr_Clear
from cython cimport floating
from libc.stdint cimport int8_t, uint16_t
from libc.string cimport memcpy, memset

from crnn._activations cimport bias_activate_row
from crnn._blas cimport NoTrans, Trans, gemm, gemv
from crnn._gru_rows cimport gru_after_row, gru_candidate_row, gru_gates_row
from crnn._lstm cimport pool_run, pool_threads
from crnn._lstm_rows cimport lstm_forward_row

import numpy as np

from crnn import _checks, engine
from crnn.activations import CODES, check as _check_activation
from crnn.reference import quantize as _quantize


cdef extern from "Python.h":
    # PyObject_GetBuffer without Cython's exception check: the fast path of a step asks
    # for the buffer and, on -1, clears the error and takes the converting path.
    int get_buffer_or_fail "PyObject_GetBuffer"(object obj, Py_buffer *view, int flags)


cdef extern from "_step_kernels.h" nogil:
    int sk_isa "crnn_sk_isa"()
    int sk_force_isa "crnn_sk_force_isa"(int isa)
    void rows_f32 "crnn_sk_rows_f32"(int isa, float *y, const float *x, const float *W,
                                     Py_ssize_t K, Py_ssize_t ld, Py_ssize_t N, int init)
    void rows_f64 "crnn_sk_rows_f64"(double *y, const double *x, const double *W,
                                     Py_ssize_t K, Py_ssize_t ld, Py_ssize_t N, int init)
    void panels_bf16 "crnn_sk_panels_bf16"(
        int isa, float *y, Py_ssize_t ldy, const float *x, Py_ssize_t ldx, Py_ssize_t B,
        const uint16_t *P, const float *s, Py_ssize_t K, Py_ssize_t N, Py_ssize_t p0,
        Py_ssize_t p1, int accumulate)
    void panels_i8 "crnn_sk_panels_i8"(
        int isa, float *y, Py_ssize_t ldy, const float *x, Py_ssize_t ldx, Py_ssize_t B,
        const int8_t *P, const float *s, Py_ssize_t K, Py_ssize_t N, Py_ssize_t p0,
        Py_ssize_t p1, int accumulate)
    enum: NB "CRNN_SK_NB"


# Up to this many multiply-adds per step (B = 1) the float32/float64 products run the
# kernels of _step_kernels.h, from it on BLAS gemv. Measured when these kernels were
# written (2 shared cores, load 2-4, one step, us, ours on one thread / OpenBLAS 0.3.31
# sgemv on 2 threads): LSTM H = D = 256 29 / 28-49, SimpleRNN 1024 107-111 / 300-5900,
# LSTM 1024 1000-2750 / 1600-7100: one thread streaming the weights kept up with BLAS on
# two, without waking a BLAS pool per step or fighting another pool for the cores (from
# SPLIT_MIN on, split over crnn's pool). So BLAS is kept for the very large.
VM_MAX = 1 << 24

# From this many multiply-adds per step (weights times batch) on, the products are split
# over crnn's pool. Measured (benchmarks/bench_step.py --split, D = H, 2 shared cores,
# load ~3.6, us, one thread / pool): float32 SimpleRNN 256 (131K) 8.6 / 11.2, 512 (524K)
# 52 / 41; LSTM 128 (131K) 7.2 / 10.0, 256 (524K) 57 / 40; GRU 256 (393K) 22.9 / 23.6;
# bfloat16 and int8 LSTM 128 7.5 / 6.2 and 5.8 / 5.8, GRU 256 17.9 / 13.6 and 17.2 /
# 11.7. Below ~2^18 waking the pool costs what the second core saves.
SPLIT_MIN = 1 << 18

# A SimpleRNN step split into blocks of fewer columns than this is cut by rows instead
# (see the plan's by_rows).
ROWS_BELOW = 1024

# From this many multiply-adds per step on, a step releases the GIL.
NOGIL_MIN = 1 << 16

cdef enum:
    SIMPLE = 0
    LSTM = 1
    GRU_AFTER = 2
    GRU_BEFORE = 3

cdef enum:
    NATIVE = 0     # the layer's own float32/float64 arrays, row-major
    BF16 = 1       # panels of uint16
    INT8 = 2       # panels of int8, scales per column

_PRECISION_CODES = {"float32": NATIVE, "bfloat16": BF16, "int8": INT8}


# -- the products --------------------------------------------------------------------
# A step's products run as phases of items (_lstm.pool_run, or a loop on the caller):
# phase ph runs its products (y (+)= x @ W, in order) on the columns of block i of
# nblocks, for every i; a GRU with reset_after=False has a middle phase of one item,
# the gates (z, r and q = r * h, which the candidate's product reads).

cdef struct _prod:
    void *y
    const void *x
    const void *W          # NATIVE: at its first column, row stride ld; else panels
    const float *s         # INT8: scales, panel-padded
    Py_ssize_t ldy, ldx, K, ld, N
    int accumulate


cdef struct _phase:
    int gates              # the GRU's gates pass, one item
    int nprods
    _prod prods[2]


cdef struct _plan:
    _phase phases[3]
    Py_ssize_t nphases, nblocks, B, H
    int prec, isa, act, ract
    bint f32, vm
    # by rows (phase 0 of a SimpleRNN, batch 1, its own dtype): block i multiplies rows
    # i/nblocks of every product into its own partial sum, partials[i] (N each), added
    # up after the phase; else blocks of columns
    bint by_rows
    void *partials
    # the GRU's gates pass (reset_after=False)
    void *z
    void *rec
    void *hn
    void *h
    const void *b


cdef void _native_cols(const _plan *pl, const _prod *pr, Py_ssize_t c0, Py_ssize_t c1,
                       floating *y, const floating *x, const floating *W) noexcept nogil:
    """Columns c0:c1 of y = x @ W (+ y), W the layer's row-major array."""
    cdef Py_ssize_t n = c1 - c0
    cdef floating beta = 1 if pr.accumulate else 0
    if pl.B == 1 and pl.vm:
        # y[c0:c1] (+)= x @ W[:, c0:c1]
        if floating is float:
            rows_f32(pl.isa, y + c0, x, W + c0, pr.K, pr.ld, n, not pr.accumulate)
        else:
            rows_f64(y + c0, x, W + c0, pr.K, pr.ld, n, not pr.accumulate)
    elif pl.B == 1:
        # y[c0:c1] = x @ W[:, c0:c1] + beta * y[c0:c1]
        gemv(Trans, <int> n, <int> pr.K, <floating> 1, W + c0, <int> pr.ld, x, beta,
             y + c0)
    else:
        # y[:, c0:c1] = x @ W[:, c0:c1] + beta * y[:, c0:c1]
        gemm(NoTrans, NoTrans, <int> pl.B, <int> n, <int> pr.K, <floating> 1, x,
             <int> pr.ldx, W + c0, <int> pr.ld, beta, y + c0, <int> pr.ldy)


cdef void _prod_block(const _plan *pl, const _prod *pr, Py_ssize_t i) noexcept nogil:
    """Block i of pl.nblocks of the columns of the product pr."""
    cdef Py_ssize_t n = pl.nblocks, units, u0, u1
    if pl.prec == NATIVE:
        # blocks of whole 16-column units (a cache line of float32)
        units = (pr.N + 15) // 16
        u0 = min(pr.N, i * units // n * 16)
        u1 = min(pr.N, (i + 1) * units // n * 16)
        if u1 <= u0:
            return
        if pl.f32:
            _native_cols(pl, pr, u0, u1, <float *> pr.y, <const float *> pr.x,
                         <const float *> pr.W)
        else:
            _native_cols(pl, pr, u0, u1, <double *> pr.y, <const double *> pr.x,
                         <const double *> pr.W)
        return
    units = (pr.N + NB - 1) // NB        # panels
    u0 = i * units // n
    u1 = (i + 1) * units // n
    if u1 <= u0:
        return
    if pl.prec == BF16:
        panels_bf16(pl.isa, <float *> pr.y, pr.ldy, <const float *> pr.x, pr.ldx, pl.B,
                    <const uint16_t *> pr.W, NULL, pr.K, pr.N, u0, u1, pr.accumulate)
    else:
        panels_i8(pl.isa, <float *> pr.y, pr.ldy, <const float *> pr.x, pr.ldx, pl.B,
                  <const int8_t *> pr.W, pr.s, pr.K, pr.N, u0, u1, pr.accumulate)


cdef void _gates(const _plan *pl, floating *z, floating *rec, floating *hn,
                 const floating *h, const floating *b) noexcept nogil:
    """3. z, r; hn = q = r * h (GRU, reset_after=False)."""
    cdef Py_ssize_t i, H = pl.H, G = 3 * pl.H
    for i in range(pl.B):
        gru_gates_row(z + i * G, rec + i * G, b, h + i * H, hn + i * H, H, pl.act,
                      pl.ract)


cdef Py_ssize_t _plan_items(void *ctx, Py_ssize_t ph) noexcept nogil:
    cdef const _plan *pl = <const _plan *> ctx
    return 1 if pl.phases[ph].gates else pl.nblocks


cdef void _plan_item(void *ctx, Py_ssize_t ph, Py_ssize_t i) noexcept nogil:
    cdef const _plan *pl = <const _plan *> ctx
    cdef const _phase *phase = &pl.phases[ph]
    cdef int k
    if phase.gates:
        if pl.f32:
            _gates(pl, <float *> pl.z, <float *> pl.rec, <float *> pl.hn,
                   <const float *> pl.h, <const float *> pl.b)
        else:
            _gates(pl, <double *> pl.z, <double *> pl.rec, <double *> pl.hn,
                   <const double *> pl.h, <const double *> pl.b)
        return
    if pl.by_rows and ph == 0:
        if pl.f32:
            _rows_block(pl, phase, i, <float *> pl.partials)
        else:
            _rows_block(pl, phase, i, <double *> pl.partials)
        return
    for k in range(phase.nprods):
        _prod_block(pl, &phase.prods[k], i)


cdef void _rows_block(const _plan *pl, const _phase *phase, Py_ssize_t i,
                      floating *partials) noexcept nogil:
    """Block i of phase 0 by rows: partials[i] = sum over the products of
    x[k0:k1] @ W[k0:k1, :], rows k0:k1 of i/nblocks of each (batch 1, row-major W): every
    thread reads whole rows, one contiguous stretch of each matrix."""
    cdef const _prod *pr
    cdef Py_ssize_t k, k0, k1
    cdef floating *y = partials + i * phase.prods[0].N
    cdef int init = 1
    for k in range(phase.nprods):
        pr = &phase.prods[k]
        k0, k1 = i * pr.K // pl.nblocks, (i + 1) * pr.K // pl.nblocks
        if k1 <= k0:
            continue
        if floating is float:
            rows_f32(pl.isa, y, <const float *> pr.x + k0,
                     <const float *> pr.W + k0 * pr.ld, k1 - k0, pr.ld, pr.N, init)
        else:
            rows_f64(y, <const double *> pr.x + k0, <const double *> pr.W + k0 * pr.ld,
                     k1 - k0, pr.ld, pr.N, init)
        init = 0
    if init:   # no row of any product here: a zero partial
        for k in range(phase.prods[0].N):
            y[k] = 0


cdef void _add_partials(const _plan *pl, floating *y, const floating *partials,
                        Py_ssize_t N) noexcept nogil:
    """y = the sum of the blocks' partials, in block order."""
    cdef Py_ssize_t i, j
    for j in range(N):
        y[j] = partials[j]
    for i in range(1, pl.nblocks):
        for j in range(N):
            y[j] += partials[i * N + j]


cdef void _run_plan(_plan *pl) noexcept nogil:
    """Every phase of the plan: on the pool when it has more than one block a phase,
    else on the calling thread."""
    cdef Py_ssize_t ph, i
    if pl.nblocks > 1:
        pool_run(_plan_items, _plan_item, pl, pl.nphases, <int> pl.nblocks)
        if pl.by_rows:   # (a SimpleRNN has phase 0 alone)
            if pl.f32:
                _add_partials(pl, <float *> pl.phases[0].prods[0].y,
                              <const float *> pl.partials, pl.phases[0].prods[0].N)
            else:
                _add_partials(pl, <double *> pl.phases[0].prods[0].y,
                              <const double *> pl.partials, pl.phases[0].prods[0].N)
        return
    for ph in range(pl.nphases):
        for i in range(_plan_items(pl, ph)):
            _plan_item(pl, ph, i)


# -- one step ------------------------------------------------------------------------

cdef void _step(_plan *pl, int kind, floating *h, floating *c, floating *z,
                floating *rec, floating *hn, floating *h_new, const floating *x,
                const floating *b, Py_ssize_t B, Py_ssize_t H, int act,
                int ract) noexcept nogil:
    """One step for B rows, in place on the state h (and c). The plan's products read x
    and h (its pointers set at construction, x set here). Scratch: z (B, G); for the GRU
    rec (B, G), hn (B, H) and h_new (B, H); for the LSTM h_new (B, H) holds c_t."""
    cdef Py_ssize_t i
    cdef Py_ssize_t G
    pl.phases[0].prods[0].x = x
    # the products (SimpleRNN, LSTM 1-2: z = x_t @ W_x + h @ W_h; GRU 1-2: z = x_t @
    # W_x, rec = h @ W_h; reset_after=False 1-4: z = x_t @ W_x, rec[:, :2H] = h @
    # W_h[:, :2H], 3. the gates, 4. rec[:, 2H:] = q @ W_h[:, 2H:])
    _run_plan(pl)
    if kind == SIMPLE:
        # 3. h = act(z + b)
        for i in range(B):
            bias_activate_row(z + i * H, b, H, act)
        memcpy(h, z, B * H * sizeof(floating))
    elif kind == LSTM:
        G = 4 * H
        # 3-5. gates, c_t (into h_new), h_t (into h: the product has read it)
        for i in range(B):
            lstm_forward_row(z + i * G, b, c + i * H, h_new + i * H, h + i * H, NULL,
                             NULL, H, act, ract)
        memcpy(c, h_new, B * H * sizeof(floating))
    elif kind == GRU_AFTER:
        G = 3 * H
        # 3-5. h_new = z * h + (1 - z) * n
        for i in range(B):
            gru_after_row(z + i * G, rec + i * G, b, b + G, h + i * H, hn + i * H,
                          h_new + i * H, NULL, NULL, H, act, ract)
        memcpy(h, h_new, B * H * sizeof(floating))
    else:
        G = 3 * H
        # 4-5. h_new = z * h + (1 - z) * n
        for i in range(B):
            gru_candidate_row(z + i * G, z + i * G + 2 * H, rec + i * G + 2 * H,
                              b + 2 * H, h + i * H, h_new + i * H, NULL, NULL, H, act,
                              ract)
        memcpy(h, h_new, B * H * sizeof(floating))


cdef inline void _step_any(_plan *pl, int kind, void *h, void *c, void *z, void *rec,
                           void *hn, void *h_new, const void *x, const void *b,
                           Py_ssize_t B, Py_ssize_t H, int act, int ract) noexcept nogil:
    if pl.f32:
        _step(pl, kind, <float *> h, <float *> c, <float *> z, <float *> rec,
              <float *> hn, <float *> h_new, <const float *> x, <const float *> b, B, H,
              act, ract)
    else:
        _step(pl, kind, <double *> h, <double *> c, <double *> z, <double *> rec,
              <double *> hn, <double *> h_new, <const double *> x, <const double *> b,
              B, H, act, ract)


# -- the Python face -------------------------------------------------------------------

cdef void *_data(object arr) except NULL:
    """The data pointer of a C-contiguous ndarray (kept alive by the caller)."""
    cdef Py_buffer view
    PyObject_GetBuffer(arr, &view, PyBUF_C_CONTIGUOUS)
    cdef void *p = view.buf
    PyBuffer_Release(&view)
    return p


_FAMILIES = {"simple_rnn": (1, ("h",)), "lstm": (4, ("h", "c")), "gru": (3, ("h",))}


def _pack(W, precision):
    """A weight matrix ``W (K, N)`` as the panel kernels read it (_step_kernels.h):
    ``(panels, scales)``, rounded or quantized by ``crnn.reference.quantize``; scales
    None for bfloat16, else padded with zeros to whole panels."""
    K, N = W.shape
    n_panels = (N + NB - 1) // NB
    pad = n_panels * NB - N
    if precision == "bfloat16":
        Wb = np.pad(_quantize.bf16_round(W), ((0, 0), (0, pad)))
        # [k, p, g, hi, i] -> [p, k, g, i, hi]: a word holds columns i and 16 + i
        panels = Wb.reshape(K, n_panels, 2, 2, 16).transpose(1, 0, 2, 4, 3)
        return np.ascontiguousarray(panels), None
    q, s = _quantize.quantize_int8(W)
    panels = np.pad(q, ((0, 0), (0, pad))).reshape(K, n_panels, NB).transpose(1, 0, 2)
    return np.ascontiguousarray(panels), np.pad(s, (0, pad))


cdef class Stepper:
    """A recurrent layer's step for a batch of ``batch_size``, its state kept inside.

    ``Stepper(family, W_x, W_h, b, batch_size=1, activation="tanh",
    recurrent_activation="sigmoid", reset_after=True, states=None,
    precision="float32")``; ``family`` is ``"simple_rnn"``, ``"lstm"`` or ``"gru"``, the
    weights are in Keras's layout (``W_x (D, G)``, ``W_h (H, G)``, ``b (G,)``, or ``(2,
    G)`` for a ``reset_after`` GRU), C-contiguous, all float32 or all float64. Usually
    made by ``layer.stepper(batch_size)`` (:mod:`crnn.streaming`).

    ``precision``: ``"float32"`` computes in the weights' own dtype (float32 or float64)
    and reads the weight arrays at every step: a change made in place (``set_weights``,
    an optimizer's update) is seen by the next step; arrays replaced by new ones
    (building the layer again) are not: make a new stepper. ``"bfloat16"`` and
    ``"int8"`` keep a copy of the weights made at construction (float64 weights cast to
    float32 first), rounded to bfloat16 or quantized per column to int8 as
    ``crnn.reference.quantize`` specifies; inputs, states, outputs and arithmetic are
    float32, and the stepper's dtype is float32; changes to the layer's weights are not
    seen (make a new stepper). Inference only: ``step(x_t, training=True)`` raises
    ``ValueError``, and so does a reduced-precision step while a ``GradientTape``
    records (it has no gradient). ``uses(W_x, W_h, b)`` says whether the stepper was made
    from these very arrays.

    ``step(x_t, out=None)`` advances the state by one step and returns ``h_t (B, H)``: a
    new array, or ``out`` (a C-contiguous ``(B, H)`` array of the dtype) written in
    place, which makes a step allocate nothing. ``x_t (B, D)`` of the stepper's dtype
    and C-contiguous is read where it lies; anything else is converted as a layer's call
    converts (``numpy.ascontiguousarray(x_t, dtype)``: float64 to float32 is cast, at the
    cost of a copy); a wrong shape, or what does not convert, raises ``ValueError``. A
    NaN is no error: it propagates as in the full forward pass.

    ``states`` is a list of copies of the state (``[h]``, or ``[h, c]`` for the LSTM);
    ``reset(states=None)`` sets it (None: zeros).

    Large steps (``SPLIT_MIN`` multiply-adds on) run on crnn's pool of threads
    (``crnn.set_num_threads``), smaller ones on the calling thread. A stepper is for one
    thread: large steps release the GIL, and two threads stepping one stepper would race
    on its state (make one stepper per thread). Steps are not recorded on a
    ``GradientTape``.
    """

    cdef readonly str family, precision
    cdef readonly Py_ssize_t batch_size, input_dim, units
    cdef readonly object dtype
    cdef readonly object kernel, recurrent_kernel, bias
    cdef readonly str activation, recurrent_activation
    cdef readonly bint reset_after
    cdef int kind, act, ract, prec
    cdef bint f32, nogil_step
    cdef Py_ssize_t itemsize
    cdef char fmt
    cdef object _h, _c, _z, _rec, _hn, _hnew, _shape, _empty, _state_names, _held
    cdef void *p_h
    cdef void *p_c
    cdef void *p_z
    cdef void *p_rec
    cdef void *p_hn
    cdef void *p_hnew
    cdef const void *p_b
    cdef _plan plan

    def __init__(self, family, W_x, W_h, b, batch_size=1, activation="tanh",
                 recurrent_activation="sigmoid", reset_after=True, states=None,
                 precision="float32"):
        if family not in _FAMILIES:
            raise ValueError(f"expected family to be one of {sorted(_FAMILIES)}, got "
                             f"{family!r}")
        gates, names = _FAMILIES[family]
        precision = _quantize.check_precision(precision)
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
        self.family, self.precision = family, precision
        self.prec = _PRECISION_CODES[precision]
        self.batch_size, self.input_dim, self.units = int(batch_size), D, H
        self.dtype = W_h.dtype if self.prec == NATIVE else np.dtype(np.float32)
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
        B, G = self.batch_size, gates * H
        macs = (D + H) * G * B
        self.nogil_step = macs >= NOGIL_MIN
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
        if self.prec == NATIVE:
            self._held = [W_x, W_h, b]
        else:
            self._held = [np.array(b, dtype=np.float32)]   # a copy, as the weights'
        self.p_b = _data(self._held[0] if self.prec != NATIVE else b)
        self._make_plan(W_x, W_h, macs)
        self.reset(states)

    cdef _make_plan(self, W_x, W_h, Py_ssize_t macs):
        """The products of a step (_plan): which arrays, which columns, how many
        blocks (threads)."""
        cdef _plan *pl = &self.plan
        cdef Py_ssize_t B = self.batch_size, D = self.input_dim, H = self.units
        cdef Py_ssize_t G = (1 if self.kind == SIMPLE else 4 if self.kind == LSTM
                             else 3) * H
        cdef Py_ssize_t units
        memset(pl, 0, sizeof(_plan))
        pl.B, pl.H, pl.prec, pl.act, pl.ract = B, H, self.prec, self.act, self.ract
        pl.f32 = self.f32
        pl.vm = macs < VM_MAX
        pl.isa = sk_isa()
        pl.z, pl.rec, pl.hn, pl.h, pl.b = self.p_z, self.p_rec, self.p_hn, self.p_h, self.p_b
        cdef const void *Wx
        cdef const void *Wh
        cdef const void *Wh2 = NULL
        cdef const float *sx = NULL
        cdef const float *sh = NULL
        cdef const float *sh2 = NULL
        if self.prec == NATIVE:
            Wx, Wh = _data(W_x), _data(W_h)
            Wh2 = <const char *> Wh + 2 * H * self.itemsize
        else:
            W_x32 = np.asarray(W_x, dtype=np.float32)
            W_h32 = np.asarray(W_h, dtype=np.float32)
            if self.kind == GRU_BEFORE:   # two panel sets: [z, r] and the candidate's
                parts = [W_x32, W_h32[:, :2 * H], W_h32[:, 2 * H:]]
            else:
                parts = [W_x32, W_h32]
            packed = [_pack(W, self.precision) for W in parts]
            for P, s in packed:
                self._held.append(P)
                if s is not None:
                    self._held.append(s)
            Wx, Wh = _data(packed[0][0]), _data(packed[1][0])
            if self.prec == INT8:
                sx, sh = <const float *> _data(packed[0][1]), <const float *> _data(packed[1][1])
            if self.kind == GRU_BEFORE:
                Wh2 = _data(packed[2][0])
                if self.prec == INT8:
                    sh2 = <const float *> _data(packed[2][1])
        # phase 0: x_t @ W_x (x set at each step) and h @ W_h
        pl.nphases = 1
        pl.phases[0].nprods = 2
        _set_prod(&pl.phases[0].prods[0], self.p_z, G, NULL, D, Wx, sx, D, G, G, 0)
        if self.kind == SIMPLE or self.kind == LSTM:
            _set_prod(&pl.phases[0].prods[1], self.p_z, G, self.p_h, H, Wh, sh, H, G, G,
                      1)
        elif self.kind == GRU_AFTER:
            _set_prod(&pl.phases[0].prods[1], self.p_rec, G, self.p_h, H, Wh, sh, H, G,
                      G, 0)
        else:
            _set_prod(&pl.phases[0].prods[1], self.p_rec, G, self.p_h, H, Wh, sh, H,
                      G if self.prec == NATIVE else 2 * H, 2 * H, 0)
            pl.nphases = 3
            pl.phases[1].gates = 1
            pl.phases[2].nprods = 1
            _set_prod(&pl.phases[2].prods[0],
                      <char *> self.p_rec + 2 * H * self.itemsize, G, self.p_hn, H,
                      Wh2, sh2, H, G if self.prec == NATIVE else H, H, 0)
        # blocks: one per thread of the pool from SPLIT_MIN on (for the native dtype,
        # batch 1 below VM_MAX: BLAS runs the others), each at least 16 columns
        pl.nblocks = 1
        if macs >= SPLIT_MIN and (self.prec != NATIVE or (B == 1 and pl.vm)):
            units = (H + 15) // 16 if self.prec == NATIVE else (H + NB - 1) // NB
            pl.nblocks = max(1, min(<Py_ssize_t> pool_threads(), units))
        # A SimpleRNN's products have H columns: cut into blocks of fewer than
        # ROWS_BELOW columns each thread would read every weight row in short pieces
        # (at H = 1024 on 2 threads, 2 KB pieces 4 KB apart: 1.22x the one-thread step,
        # where the LSTM at H = 512, the same 8 MB in 4 KB pieces, made 1.64x); by rows
        # each reads whole rows instead, into a partial sum of its own.
        pl.by_rows = (pl.nblocks > 1 and self.kind == SIMPLE and self.prec == NATIVE
                      and H // pl.nblocks < ROWS_BELOW)
        pl.partials = NULL
        if pl.by_rows:
            partials = np.zeros(pl.nblocks * H, dtype=self.dtype)
            self._held.append(partials)
            pl.partials = _data(partials)

    # -- state ---------------------------------------------------------------------
    @property
    def state_names(self):
        return self._state_names

    @property
    def threads(self):
        """The threads a step is split over (1: the calling thread alone)."""
        return self.plan.nblocks

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
        """Whether this stepper was made from these very weight arrays."""
        return W_x is self.kernel and W_h is self.recurrent_kernel and b is self.bias

    # -- the step ------------------------------------------------------------------
    def step(self, x_t, out=None, training=False):
        """Advance the state by one step; return ``h_t (B, H)`` (a new array, or ``out``
        written in place). See the class docstring."""
        cdef Py_buffer view
        cdef bint ok = False
        if self.p_h == NULL:
            raise ValueError("expected a Stepper made by its constructor (__init__ has not "
                             "run)")
        if training or (self.prec != NATIVE and _recording()):
            self._refuse(training)
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

    def _step_states(self, x_t, states, W_x, W_h, b):
        """``layer.step``'s fast path: from ``states`` (None: zeros), one step of
        ``x_t``; ``(h_t, [h_t])`` or ``(h_t, [h_t, c_t])``, new arrays. None where it
        does not apply (a reduced precision; weights other than the stepper's; ``x_t``
        or a state not a C-contiguous array of the dtype and shape): the caller then
        takes the general path, which converts or raises."""
        cdef Py_buffer view
        cdef Py_buffer sview
        cdef void *dst
        cdef Py_ssize_t nbytes = self.batch_size * self.units * self.itemsize
        cdef Py_ssize_t k, n = 2 if self.kind == LSTM else 1
        cdef bint ok
        if (self.prec != NATIVE or self.p_h == NULL or W_x is not self.kernel
                or W_h is not self.recurrent_kernel or b is not self.bias):
            return None
        if states is not None:
            if type(states) is list or type(states) is tuple:
                if len(states) != n:
                    return None
            elif n == 1:
                states = (states,)
            else:
                return None
            for k in range(n):   # check every state before changing any
                if get_buffer_or_fail(states[k], &sview,
                                      PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0:
                    PyErr_Clear()
                    return None
                ok = self._matches(&sview, self.units)
                PyBuffer_Release(&sview)
                if not ok:
                    return None
        if get_buffer_or_fail(x_t, &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0:
            PyErr_Clear()
            return None
        try:
            if not self._matches(&view, self.input_dim):
                return None
            if states is None:
                memset(self.p_h, 0, nbytes)
                memset(self.p_c, 0, nbytes)
            else:
                for k in range(n):
                    dst = self.p_h if k == 0 else self.p_c
                    PyObject_GetBuffer(states[k], &sview, PyBUF_C_CONTIGUOUS)
                    memcpy(dst, sview.buf, nbytes)
                    PyBuffer_Release(&sview)
            self._run(view.buf)
        finally:
            PyBuffer_Release(&view)
        h = self._output(None)
        if n == 2:
            c = self._empty(self._shape, self.dtype)
            memcpy(_data(c), self.p_c, nbytes)
            return h, [h, c]
        return h, [h]

    cdef _refuse(self, training):
        if training:
            raise ValueError(f"expected training=False: a stepper is for inference (no "
                             f"dropout, no gradient), got training={training!r}")
        raise ValueError(f"a {self.precision} stepper has no gradient: its weights are a "
                         f"rounded copy; step outside the GradientTape (or use the "
                         f"layer's call for training)")

    cdef bint _matches(self, Py_buffer *view, Py_ssize_t cols) noexcept:
        return (view.ndim == 2 and view.shape[0] == self.batch_size
                and view.shape[1] == cols and view.itemsize == self.itemsize
                and view.format != NULL and view.format[0] == self.fmt
                and view.format[1] == 0)

    cdef void _run(self, const void *x) noexcept:
        self.plan.isa = sk_isa()
        if self.nogil_step:
            with nogil:
                _step_any(&self.plan, self.kind, self.p_h, self.p_c, self.p_z, self.p_rec,
                          self.p_hn, self.p_hnew, x, self.p_b, self.batch_size,
                          self.units, self.act, self.ract)
        else:
            _step_any(&self.plan, self.kind, self.p_h, self.p_c, self.p_z, self.p_rec,
                      self.p_hn, self.p_hnew, x, self.p_b, self.batch_size, self.units,
                      self.act, self.ract)

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
        if self.precision != "float32":
            extra += f", precision={self.precision!r}"
        return (f"Stepper({self.family!r}, batch_size={self.batch_size}, "
                f"input_dim={self.input_dim}, units={self.units}, "
                f"dtype={self.dtype.name}, activation={self.activation!r}{extra})")


cdef void _set_prod(_prod *pr, void *y, Py_ssize_t ldy, const void *x, Py_ssize_t ldx,
                    const void *W, const float *s, Py_ssize_t K, Py_ssize_t ld,
                    Py_ssize_t N, int accumulate) noexcept:
    pr.y, pr.ldy, pr.x, pr.ldx, pr.W, pr.s = y, ldy, x, ldx, W, s
    pr.K, pr.ld, pr.N, pr.accumulate = K, ld, N, accumulate


_recording = engine.recording


def _set_vm_max(n):
    """Set :data:`VM_MAX` for steppers made from now on (benchmarks and tests); returns
    the old value."""
    global VM_MAX
    old, VM_MAX = VM_MAX, int(n)
    return old


def _set_split_min(n):
    """Set :data:`SPLIT_MIN` for steppers made from now on (benchmarks and tests);
    returns the old value."""
    global SPLIT_MIN
    old, SPLIT_MIN = SPLIT_MIN, int(n)
    return old


def _isa(isa=None):
    """The step kernels' variant (0 portable C, 1 AVX2+FMA, 2 AVX-512F; read at every
    step); with ``isa``, force that one first (-1: by the CPU again). Raises ValueError
    if the CPU lacks it (tests run every variant the CPU has)."""
    if isa is not None:
        if sk_force_isa(int(isa)) != 0:
            raise ValueError(f"expected a kernel variant this CPU runs (-1 to "
                             f"{_best_isa()}), got {isa}")
    return sk_isa()


def _best_isa():
    """The widest variant this CPU runs."""
    cdef int old = sk_isa()
    sk_force_isa(-1)
    cdef int best = sk_isa()
    if old != best:
        sk_force_isa(old)
    return best
