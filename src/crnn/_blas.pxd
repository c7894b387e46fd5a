# Row-major GEMM and GEMV over scipy.linalg.cython_blas, shared by every kernel module.
from cython cimport floating


cpdef enum BLAS_Trans:
    NoTrans = 110  # ord('n')
    Trans = 116    # ord('t')


cdef void gemm(BLAS_Trans ta, BLAS_Trans tb, int m, int n, int k,
               floating alpha, const floating *A, int lda,
               const floating *B, int ldb,
               floating beta, floating *C, int ldc) noexcept nogil

cdef void blas_gemm(BLAS_Trans ta, BLAS_Trans tb, int m, int n, int k,
                    floating alpha, const floating *A, int lda,
                    const floating *B, int ldb,
                    floating beta, floating *C, int ldc) noexcept nogil

# Splits one product over crnn's thread pool (it lives in _lstm, which registers it):
# True if it computed C, False if it declined (then gemm calls BLAS itself).
ctypedef bint (*gemm_splitter)(BLAS_Trans ta, BLAS_Trans tb, int m, int n, int k,
                               double alpha, const void *A, int lda, const void *B,
                               int ldb, double beta, void *C, int ldc,
                               bint dbl) noexcept nogil

cdef void set_gemm_splitter(gemm_splitter f) noexcept nogil

# Whether crnn computes now (crnn/cores.py): BLAS on one thread, products split
cdef bint splitting() noexcept nogil


cdef void gemv(BLAS_Trans ta, int m, int n, floating alpha, const floating *A, int lda,
               const floating *x, floating beta, floating *y) noexcept nogil


cdef void transpose(int rows, int cols, const floating *A, int lda,
                    floating *out, int ldo) noexcept nogil

cdef bint trans_b_faster(int m, int n, int k) noexcept nogil
