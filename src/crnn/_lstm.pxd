# What _lstm shares with the other kernel modules: the packed GEMM of _pgemm.h, whose
# thread pool is a static of this module, so that a process has one pool whichever
# kernels it runs (the GRU's recurrent product, _gru.pyx, calls it from here).

cdef Py_ssize_t packed_size(Py_ssize_t K, Py_ssize_t N) noexcept nogil
cdef float *packed_align(float *p) noexcept nogil
cdef void packed_product(const float *A, Py_ssize_t lda, const float *W, Py_ssize_t ldw,
                         float *Wp, float *C, Py_ssize_t ldc, Py_ssize_t M, Py_ssize_t N,
                         Py_ssize_t K, bint accumulate, Py_ssize_t steps) noexcept nogil
