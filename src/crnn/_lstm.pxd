# What _lstm shares with the other kernel modules: the packed GEMM of _pgemm.h, whose
# thread pool is a static of this module, so that a process has one pool whichever
# kernels it runs (the GRU's recurrent product, _gru.pyx, calls it from here).

cdef Py_ssize_t packed_size(Py_ssize_t K, Py_ssize_t N) noexcept nogil
cdef float *packed_align(float *p) noexcept nogil
cdef void packed_product(const float *A, Py_ssize_t lda, const float *W, Py_ssize_t ldw,
                         float *Wp, float *C, Py_ssize_t ldc, Py_ssize_t M, Py_ssize_t N,
                         Py_ssize_t K, bint accumulate, Py_ssize_t steps) noexcept nogil

# Any work on that pool (crnn_pg_run of _pgemm.h), for the kernels of other modules (the
# streaming steps of _step.pyx): nphases phases run in order, phase ph being
# items(ctx, ph) independent items run(ctx, ph, i); an item may read everything the
# earlier phases wrote. nth threads at most (pool_threads(): crnn.set_num_threads).
ctypedef Py_ssize_t (*pool_items_f)(void *ctx, Py_ssize_t ph) noexcept nogil
ctypedef void (*pool_item_f)(void *ctx, Py_ssize_t ph, Py_ssize_t i) noexcept nogil
cdef void pool_run(pool_items_f items, pool_item_f run, void *ctx, Py_ssize_t nphases,
                   int nth) noexcept nogil
cdef int pool_threads() noexcept nogil
