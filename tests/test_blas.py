"""The row-major GEMM and GEMV helpers against NumPy, for every transpose combination
and dtype."""
import itertools

import numpy as np
import pytest

from conftest import assert_close
from crnn._blas import gemm_py, gemv_py, transpose_py


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta,tb", list(itertools.product("nt", "nt")))
@pytest.mark.parametrize("m,n,k", [(3, 5, 7), (1, 1, 1), (17, 4, 33), (64, 65, 9)])
@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (-0.5, 1.0), (2.0, 0.25)])
def test_gemm_matches_numpy(dtype, ta, tb, m, n, k, alpha, beta):
    rng = np.random.default_rng(m * 100 + n * 10 + k)
    A = rng.standard_normal((k, m) if ta == "t" else (m, k)).astype(dtype)
    B = rng.standard_normal((n, k) if tb == "t" else (k, n)).astype(dtype)
    C = rng.standard_normal((m, n)).astype(dtype)
    opA = A.T if ta == "t" else A
    opB = B.T if tb == "t" else B
    expected = alpha * (opA.astype(np.float64) @ opB.astype(np.float64)) + beta * C
    out = gemm_py(ta, tb, alpha, A, B, beta, C)
    assert out is C
    assert_close(C, expected, dtype, scale=10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_empty_k_scales_c(dtype):
    A = np.empty((3, 0), dtype)
    B = np.empty((0, 4), dtype)
    C = np.full((3, 4), 2.0, dtype)
    gemm_py("n", "n", 1.0, A, B, 0.5, C)
    np.testing.assert_array_equal(C, np.full((3, 4), 1.0))
    C[...] = np.nan
    gemm_py("n", "n", 1.0, A, B, 0.0, C)  # beta = 0 overwrites, NaN included
    np.testing.assert_array_equal(C, np.zeros((3, 4)))


def test_gemm_rejects_bad_arguments():
    a = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match="all float32 or all float64"):
        gemm_py("n", "n", 1.0, a, np.ones((3, 2)), 0.0, np.ones((2, 2), np.float32))
    with pytest.raises(ValueError, match=r"op\(A\)"):
        gemm_py("n", "n", 1.0, a, a, 0.0, np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        gemm_py("n", "n", 1.0, np.ones((3, 2), np.float32).T, np.ones((3, 2), np.float32),
                0.0, np.ones((2, 2), np.float32))
    with pytest.raises(ValueError, match="trans flags"):
        gemm_py("x", "n", 1.0, a, np.ones((3, 2), np.float32), 0.0,
                np.ones((2, 2), np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta", ["n", "t"])
@pytest.mark.parametrize("m,n", [(3, 5), (1, 1), (1, 9), (9, 1), (17, 33), (64, 65)])
@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (-0.5, 1.0), (2.0, 0.25)])
def test_gemv_matches_numpy(dtype, ta, m, n, alpha, beta):
    rng = np.random.default_rng(m * 100 + n)
    A = rng.standard_normal((n, m) if ta == "t" else (m, n)).astype(dtype)
    x = rng.standard_normal(n).astype(dtype)
    y = rng.standard_normal(m).astype(dtype)
    opA = A.T if ta == "t" else A
    expected = alpha * (opA.astype(np.float64) @ x.astype(np.float64)) + beta * y
    out = gemv_py(ta, alpha, A, x, beta, y)
    assert out is y
    assert_close(y, expected, dtype, scale=10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemv_row_vector_times_matrix(dtype):
    """y = x @ W for a row-major W (K, N), the product of a recurrent step: op(A) = W^T."""
    rng = np.random.default_rng(1)
    W = rng.standard_normal((7, 12)).astype(dtype)
    x = rng.standard_normal(7).astype(dtype)
    y = np.full(12, np.nan, dtype)
    gemv_py("t", 1.0, W, x, 0.0, y)   # beta = 0 overwrites, NaN included
    assert_close(y, x.astype(np.float64) @ W, dtype, scale=10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemv_empty_n_scales_y(dtype):
    A = np.empty((3, 0), dtype)
    y = np.full(3, 2.0, dtype)
    gemv_py("n", 1.0, A, np.empty(0, dtype), 0.5, y)
    np.testing.assert_array_equal(y, np.full(3, 1.0))
    y[...] = np.nan
    gemv_py("t", 1.0, A.T.copy(), np.empty(0, dtype), 0.0, y)
    np.testing.assert_array_equal(y, np.zeros(3))
    gemv_py("n", 1.0, np.empty((0, 4), dtype), np.ones(4, dtype), 1.0, np.empty(0, dtype))


def test_gemv_rejects_bad_arguments():
    a = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match="all float32 or all float64"):
        gemv_py("n", 1.0, a, np.ones(3), 0.0, np.ones(2, np.float32))
    with pytest.raises(ValueError, match=r"op\(A\)"):
        gemv_py("n", 1.0, a, np.ones(2, np.float32), 0.0, np.ones(2, np.float32))
    with pytest.raises(ValueError, match=r"op\(A\)"):
        gemv_py("t", 1.0, a, np.ones(3, np.float32), 0.0, np.ones(2, np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        gemv_py("n", 1.0, a, np.ones(6, np.float32)[::2], 0.0, np.ones(2, np.float32))
    with pytest.raises(ValueError, match="1-D ndarray"):
        gemv_py("n", 1.0, a, np.ones((3, 1), np.float32), 0.0, np.ones(2, np.float32))
    with pytest.raises(ValueError, match="trans flag"):
        gemv_py("x", 1.0, a, np.ones(3, np.float32), 0.0, np.ones(2, np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (16, 16), (17, 33), (64, 40), (100, 3)])
def test_transpose_matches_numpy(dtype, shape):
    A = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    out = transpose_py(A)
    assert out.flags.c_contiguous and out.dtype == dtype
    np.testing.assert_array_equal(out, A.T)


def test_transpose_rejects_bad_input():
    with pytest.raises(ValueError, match="expected a 2-D float32 or float64 ndarray"):
        transpose_py(np.ones(3))
    with pytest.raises(ValueError, match="expected a 2-D float32 or float64 ndarray"):
        transpose_py(np.ones((2, 2), dtype=np.int64))
