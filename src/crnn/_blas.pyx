"""Row-major GEMM and GEMV for C-contiguous buffers, over ``scipy.linalg.cython_blas``.

Fortran BLAS reads a row-major buffer as its transpose. To compute the row-major

    C = alpha * op(A) @ op(B) + beta * C        (C is m x n, op(A) m x k, op(B) k x n)

we ask BLAS for the column-major ``C^T = alpha * op(B)^T @ op(A)^T + beta * C^T``: swap
A with B and m with n, keep the trans flags. Each leading dimension is the stored row
length of that matrix (its row stride in elements), which lets a kernel address one time
step of a batch-first ``(B, T, H)`` buffer as a ``(B, H)`` matrix with row stride ``T*H``.

For the row-major ``y = alpha * op(A) @ x + beta * y`` (op(A) m x n) the same reading
flips the one trans flag: BLAS sees the stored A as its transpose, so ``op(A) = A`` is
``gemv("T")`` and ``op(A) = A^T`` is ``gemv("N")``, on the stored matrix as BLAS sees it
(``(n, m)`` for ``A``, ``(m, n)`` for ``A^T``). In particular ``y = x @ A`` for A
``(K, N)`` is ``y = A^T @ x``: ``gemv("N", N, K, A, lda)``.
"""
from cython cimport floating
from scipy.linalg.cython_blas cimport dgemm, dgemv, sgemm, sgemv

import numpy as np


# While crnn computes (crnn/cores.py: the BLAS libraries on one thread), products of
# SPLIT_MIN multiply-adds or more are split into blocks that crnn's pool runs, one
# single-threaded BLAS call a block (_lstm's _split_gemm); otherwise BLAS runs them.
cdef gemm_splitter _splitter = NULL
cdef bint _split = False
cdef double SPLIT_MIN = 1 << 18


cdef void set_gemm_splitter(gemm_splitter f) noexcept nogil:
    global _splitter
    _splitter = f


cdef bint splitting() noexcept nogil:
    return _split


def _split_products(on=None):
    """Whether gemm splits large products over crnn's pool (crnn/cores.py turns it on
    inside crnn's computations, with BLAS on one thread); with ``on``, set it first."""
    global _split
    if on is not None:
        _split = bool(on)
    return _split


cdef void gemm(BLAS_Trans ta, BLAS_Trans tb, int m, int n, int k,
               floating alpha, const floating *A, int lda,
               const floating *B, int ldb,
               floating beta, floating *C, int ldc) noexcept nogil:
    """C = alpha * op(A) @ op(B) + beta * C for row-major buffers: :c:func:`blas_gemm`,
    split over crnn's pool while crnn computes, from SPLIT_MIN multiply-adds."""
    if (_split and _splitter != NULL and m > 0 and n > 0 and k > 0
            and <double> m * n * k >= SPLIT_MIN):
        if _splitter(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc,
                     floating is double):
            return
    blas_gemm(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)


cdef void blas_gemm(BLAS_Trans ta, BLAS_Trans tb, int m, int n, int k,
                    floating alpha, const floating *A, int lda,
                    const floating *B, int ldb,
                    floating beta, floating *C, int ldc) noexcept nogil:
    """C = alpha * op(A) @ op(B) + beta * C for row-major buffers, one BLAS call.

    ``lda``, ``ldb``, ``ldc`` are row strides in elements. An empty product (``k == 0``)
    scales C by beta without calling BLAS; an empty C (``m == 0`` or ``n == 0``) is
    left alone. Leading dimensions are raised to at least 1, as Fortran BLAS demands
    even for empty operands.
    """
    cdef char transa = ta
    cdef char transb = tb
    cdef int i, j
    if m <= 0 or n <= 0:
        return
    if k <= 0:
        for i in range(m):
            for j in range(n):
                C[i * ldc + j] = 0 if beta == 0 else beta * C[i * ldc + j]
        return
    lda = max(lda, 1)
    ldb = max(ldb, 1)
    ldc = max(ldc, 1)
    if floating is float:
        sgemm(&transb, &transa, &n, &m, &k, &alpha, <float *> B, &ldb,
              <float *> A, &lda, &beta, C, &ldc)
    else:
        dgemm(&transb, &transa, &n, &m, &k, &alpha, <double *> B, &ldb,
              <double *> A, &lda, &beta, C, &ldc)


cdef void gemv(BLAS_Trans ta, int m, int n, floating alpha, const floating *A, int lda,
               const floating *x, floating beta, floating *y) noexcept nogil:
    """y = alpha * op(A) @ x + beta * y for a row-major buffer A.

    ``op(A)`` is m x n (A itself is stored ``(m, n)`` for NoTrans, ``(n, m)`` for Trans),
    ``lda`` its row stride in elements; x (n,) and y (m,) are contiguous. As in
    :c:func:`gemm`, an empty product (``n == 0``) scales y by beta without calling BLAS,
    an empty y (``m == 0``) is left alone, and lda is raised to at least 1.
    """
    # BLAS reads the stored A as its transpose, (rows, cols) below: the flag flips
    cdef char trans = b"N"
    cdef int rows = m, cols = n
    cdef int inc = 1, i
    if ta == NoTrans:
        trans = b"T"
        rows = n
        cols = m
    if m <= 0:
        return
    if n <= 0:
        for i in range(m):
            y[i] = 0 if beta == 0 else beta * y[i]
        return
    lda = max(lda, 1)
    if floating is float:
        sgemv(&trans, &rows, &cols, &alpha, <float *> A, &lda, <float *> x, &inc, &beta,
              y, &inc)
    else:
        dgemv(&trans, &rows, &cols, &alpha, <double *> A, &lda, <double *> x, &inc,
              &beta, y, &inc)


cdef void transpose(int rows, int cols, const floating *A, int lda,
                    floating *out, int ldo) noexcept nogil:
    """out = A^T: A is rows x cols (row stride lda), out is cols x rows (row stride ldo).

    In 16 x 16 tiles, each written row by row: a plain double loop strides through
    memory on one side, and wider tiles put every row of a tile in the same cache set when
    the rows are 4 KiB apart. 1024 x 1024 float32, measured here: 0.83 ms (32-wide tiles
    3.5 ms; NumPy's ``ascontiguousarray(W.T)`` 7 ms).
    """
    cdef int i0, j0, i, j, i1, j1
    for i0 in range(0, rows, 16):
        i1 = min(i0 + 16, rows)
        for j0 in range(0, cols, 16):
            j1 = min(j0 + 16, cols)
            for j in range(j0, j1):
                for i in range(i0, i1):
                    out[j * ldo + i] = A[i * lda + j]


cdef bint trans_b_faster(int m, int n, int k) noexcept nogil:
    """Whether ``op(B)`` is better handed to BLAS as ``Bt`` with Trans than as ``B``.

    The same row-major product ``(m x k) @ (k x n)`` can take its second operand as
    ``B`` (NoTrans) or as a stored transpose ``Bt`` (Trans); the recurrent GEMMs, whose
    second operand is a weight matrix, can keep both copies and choose. Measured with
    SciPy's OpenBLAS 0.3.30 (SkylakeX kernels, 2 threads), per call, (m, n, k):
    (32, 64, 64) 1.6 us NoTrans vs 3.0 us Trans (OpenBLAS's small-matrix kernels);
    (32, 128, 128) 8.7 vs 13.4 us; (64, 256, 256) and (32, 256, 256) equal;
    (64, 512, 512) 173 vs 160 us; (128, 1024, 1024) 1178 vs 1074 us (228 vs 250 GFLOP/s).
    So: Trans above about a million multiply-adds.
    """
    return <double> m * n * k > 1e6


def transpose_py(A):
    """Python twin of :c:func:`transpose` for tests: a new C-contiguous ``A.T``."""
    if not isinstance(A, np.ndarray) or A.ndim != 2 or A.dtype not in (np.float32,
                                                                       np.float64):
        raise ValueError(f"expected a 2-D float32 or float64 ndarray, got "
                         f"{type(A).__name__} {getattr(A, 'dtype', '')} "
                         f"ndim={getattr(A, 'ndim', None)}")
    A = np.ascontiguousarray(A)
    out = np.empty(A.shape[::-1], dtype=A.dtype)
    if A.size:
        if A.dtype == np.float32:
            _transpose_typed[float](A, out)
        else:
            _transpose_typed[double](A, out)
    return out


cdef void _transpose_typed(const floating[:, ::1] A, floating[:, ::1] out):
    with nogil:
        transpose(<int> A.shape[0], <int> A.shape[1], &A[0, 0], <int> A.shape[1],
                  &out[0, 0], <int> out.shape[1])


def _check_operands(operands):
    """Refuse operands of the Python twins that are not C-contiguous ndarrays of their
    rank (``operands``: name -> (array, ndim)), all float32 or all float64."""
    arrays = [a for a, _ in operands.values()]
    first = arrays[0]
    for name, (arr, ndim) in operands.items():
        if not isinstance(arr, np.ndarray) or arr.ndim != ndim:
            raise ValueError(f"expected {name} to be a {ndim}-D ndarray, got "
                             f"{type(arr).__name__} with ndim={getattr(arr, 'ndim', None)}")
        if arr.dtype != first.dtype or arr.dtype not in (np.float32, np.float64):
            raise ValueError(f"expected {', '.join(operands)} all float32 or all float64, "
                             f"got {', '.join(str(a.dtype) for a in arrays)}")
        if not arr.flags.c_contiguous:
            raise ValueError(f"expected {name} to be C-contiguous")


def gemm_py(str trans_a, str trans_b, alpha, A, B, beta, C):
    """Python twin of :c:func:`gemm` for tests: ``C = alpha*op(A)@op(B) + beta*C`` in place.

    Parameters
    ----------
    trans_a, trans_b : {"n", "t"}
        Whether A (resp. B) enters as itself or transposed.
    A, B, C : ndarray, 2-D, C-contiguous, all float32 or all float64
        ``op(A)`` is ``(m, k)``, ``op(B)`` is ``(k, n)``, ``C`` is ``(m, n)``.
    """
    _check_operands({"A": (A, 2), "B": (B, 2), "C": (C, 2)})
    if trans_a not in ("n", "t") or trans_b not in ("n", "t"):
        raise ValueError(f"expected trans flags 'n' or 't', got {trans_a!r}, {trans_b!r}")
    m, ka = A.shape[::-1] if trans_a == "t" else A.shape
    kb, n = B.shape[::-1] if trans_b == "t" else B.shape
    if ka != kb or C.shape != (m, n):
        raise ValueError(f"expected op(A) (m, k), op(B) (k, n), C (m, n), got op(A) "
                         f"{(m, ka)}, op(B) {(kb, n)}, C {C.shape}")
    if C.dtype == np.float32:
        _gemm_typed[float](trans_a, trans_b, alpha, A, B, beta, C)
    else:
        _gemm_typed[double](trans_a, trans_b, alpha, A, B, beta, C)
    return C


cdef void _gemm_typed(str trans_a, str trans_b, floating alpha,
                      const floating[:, ::1] A, const floating[:, ::1] B,
                      floating beta, floating[:, ::1] C):
    cdef BLAS_Trans ta = Trans if trans_a == "t" else NoTrans
    cdef BLAS_Trans tb = Trans if trans_b == "t" else NoTrans
    cdef int m = C.shape[0], n = C.shape[1]
    cdef int k = A.shape[0] if trans_a == "t" else A.shape[1]
    if m == 0 or n == 0:
        return
    cdef const floating *a = &A[0, 0] if A.shape[0] * A.shape[1] > 0 else NULL
    cdef const floating *b = &B[0, 0] if B.shape[0] * B.shape[1] > 0 else NULL
    with nogil:
        gemm(ta, tb, m, n, k, alpha, a, <int> A.shape[1], b, <int> B.shape[1],
             beta, &C[0, 0], n)


def gemv_py(str trans_a, alpha, A, x, beta, y):
    """Python twin of :c:func:`gemv` for tests: ``y = alpha*op(A)@x + beta*y`` in place.

    Parameters
    ----------
    trans_a : {"n", "t"}
        Whether A enters as itself or transposed.
    A : ndarray, 2-D, C-contiguous
        ``op(A)`` is ``(m, n)``.
    x, y : ndarray, 1-D, contiguous, ``(n,)`` and ``(m,)``; A, x, y all float32 or all
        float64
    """
    _check_operands({"A": (A, 2), "x": (x, 1), "y": (y, 1)})
    if trans_a not in ("n", "t"):
        raise ValueError(f"expected trans flag 'n' or 't', got {trans_a!r}")
    m, n = A.shape[::-1] if trans_a == "t" else A.shape
    if x.shape != (n,) or y.shape != (m,):
        raise ValueError(f"expected op(A) (m, n), x (n,), y (m,), got op(A) {(m, n)}, "
                         f"x {x.shape}, y {y.shape}")
    if y.dtype == np.float32:
        _gemv_typed[float](trans_a, alpha, A, x, beta, y)
    else:
        _gemv_typed[double](trans_a, alpha, A, x, beta, y)
    return y


cdef void _gemv_typed(str trans_a, floating alpha, const floating[:, ::1] A,
                      const floating[::1] x, floating beta, floating[::1] y):
    cdef BLAS_Trans ta = Trans if trans_a == "t" else NoTrans
    cdef int m = y.shape[0], n = x.shape[0]
    if m == 0:
        return
    cdef const floating *a = &A[0, 0] if A.shape[0] * A.shape[1] > 0 else NULL
    cdef const floating *px = &x[0] if n > 0 else NULL
    with nogil:
        gemv(ta, m, n, alpha, a, <int> A.shape[1], px, beta, &y[0])
