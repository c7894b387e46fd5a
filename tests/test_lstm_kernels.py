"""What only the LSTM kernel has: its packed GEMM path (src/crnn/_pgemm.h,
_lstm_packed.h) in each instruction set and thread count, and its own vectorised float32
activations over the whole float range. Everything it shares with the other cells is in
test_kernels.py."""
import numpy as np
import pytest
import scipy.special

from conftest import assert_close
from crnn import _lstm as fast
from crnn.reference import lstm as ref
from kernel_cases import BY_ID, DTYPES, ISA_IDS, float_range, output_grads, problem

LSTM = BY_ID["lstm"]


# float32 with the default activations runs on the packed GEMM (src/crnn/_pgemm.h,
# _lstm_packed.h) where _lstm._packed_path says so; these sizes take it through its
# edges: B not a multiple of the 6-row micro-tile, H not a multiple of the 16 units
# (forward) or 64 units (backward) of a panel, H = 1, B = 1, panel counts that split
# unevenly between threads, and more than one K block: of the per-step GEMM (256: 4H in
# "kblocks", H in "wide"), of dx (512 columns of dz: "wide") and of the weight gradients
# (512 rows (b, t): "long", whose dx also spans several 96-row chunks).
PACKED_SIZES = {"ones": (1, 1, 1, 1), "odd": (13, 4, 5, 70), "b1": (1, 6, 3, 40),
                "kblocks": (7, 3, 4, 150), "wide": (20, 3, 2, 300),
                "long": (9, 70, 3, 20)}
VARIANTS = [v for v in (0, 1, 2) if v <= fast._packed_isa()]  # C, AVX2, AVX-512


@pytest.mark.parametrize("variant", VARIANTS, ids=[ISA_IDS[v] for v in VARIANTS])
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("split", ["units", "rows"])
@pytest.mark.parametrize("mask", [False, True])
@pytest.mark.parametrize("size", list(PACKED_SIZES))
def test_packed_path_matches_reference(rng, kernel_paths, variant, threads, split, mask,
                                       size):
    B, T, D, H = PACKED_SIZES[size]
    fast._packed_isa(variant)
    fast._packed_threads(threads)
    fast._force_path("packed")
    fast._force_split(split)
    args = problem(LSTM, rng, B, T, D, H, np.float32, mask=mask)
    out_ref = LSTM.forward("reference", args)
    for name, a, e in zip(LSTM.outputs, LSTM.forward("cython", args), out_ref):
        assert_close(a, e, np.float32, err_msg=name)
    for given in [(True, True, True), (False, False, True), (False, False, False)]:
        dhs, lasts = output_grads(LSTM, rng, B, T, H, np.float32, given)
        g_ref = LSTM.backward("reference", args, out_ref, dhs, lasts)
        g_fast = LSTM.backward("cython", args, out_ref, dhs, lasts)
        for name, a, e in zip(LSTM.params, g_fast, g_ref):
            assert_close(a, e, np.float32, err_msg=f"d{name} {given}")


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("B,T,D,H", [(40, 9, 5, 70), (64, 6, 16, 128), (25, 4, 3, 16)])
def test_split_by_rows_equals_split_by_units(rng, kernel_paths, threads, B, T, D, H):
    # The time loop cut by rows (each thread a chunk of the batch through every step)
    # computes what the loop cut by units computes, bit for bit, with masks of real steps
    # and a recurrent mask, in training and inference; only db, summed per row chunk,
    # may differ in the last bits.
    fast._packed_threads(threads)
    fast._force_path("packed")
    args = problem(LSTM, rng, B, T, D, H, np.float32, mask=True)
    real = rng.random((B, T)) > 0.3
    grads = output_grads(LSTM, rng, B, T, H, np.float32, (True, True, True))
    dhs, (dh_last, dc_last) = grads
    results = []
    for split in ("units", "rows"):
        fast._force_split(split)
        x, h0, c0, W_x, W_h, b, m = (args[k] for k in ("x", "h0", "c0", "W_x", "W_h", "b",
                                                       "recurrent_mask"))
        hs, cs, gates = fast.lstm_forward(x, h0, c0, W_x, W_h, b, recurrent_mask=m,
                                          mask=real)
        back = fast.lstm_backward(x, h0, c0, W_x, W_h, hs, cs, gates, dhs, dh_last,
                                  dc_last, recurrent_mask=m, mask=real)
        results.append([hs, cs, gates, *back,
                        *fast.lstm_inference(x, h0, c0, W_x, W_h, b, mask=real)])
    names = ["hs", "cs", "gates", "dx", "dh0", "dc0", "dW_x", "dW_h", "db", "hs (inference)",
             "h_last", "c_last"]
    for name, a, e in zip(names, *results):
        if name == "db":
            assert_close(a, e, np.float32, err_msg=name)
        else:
            np.testing.assert_array_equal(a, e, err_msg=name)


@pytest.mark.parametrize("variant", VARIANTS, ids=[ISA_IDS[v] for v in VARIANTS])
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("M,N,K", [(1, 1, 1), (5, 20, 7), (6, 64, 128), (13, 130, 300),
                                   (64, 1024, 256), (19, 100, 1000)])
def test_packed_gemm_matches_numpy(rng, kernel_paths, variant, threads, M, N, K):
    fast._packed_isa(variant)
    fast._packed_threads(threads)
    # A and C as one time step of batch-first buffers: rows further apart than their length
    A = rng.standard_normal((M, 3, K)).astype(np.float32)[:, 1]
    W = rng.standard_normal((K, N)).astype(np.float32)
    C0 = rng.standard_normal((M, 2, N)).astype(np.float32)
    expected = A.astype(np.float64) @ W
    for accumulate, steps in [(True, 1), (False, 3)]:
        C = C0.copy()
        fast._step_gemm_packed(A, W, C[:, 0], accumulate, steps)
        want = expected + C0[:, 0] if accumulate else expected
        assert_close(C[:, 0], want, np.float32, scale=np.sqrt(K))
        np.testing.assert_array_equal(C[:, 1], C0[:, 1])  # the rows between: untouched


@pytest.mark.parametrize("dtype", DTYPES)
def test_extreme_preactivations(dtype):
    # h0 = c0 = 0, W_h = 0, W_x = I on each gate block: every gate sees x itself, over
    # the whole float range (tails, tiny values, infinities). The kernel's float32 path
    # uses its own vectorised tanh and sigmoid (src/crnn/_lstm_simd.h); hold it to the
    # float64 formulas.
    H = 64
    a = float_range(6400, 1600)
    x = a.astype(dtype).reshape(-1, 1, H)
    B = x.shape[0]
    W_x = np.tile(np.eye(H, dtype=dtype), 4)
    zeros = np.zeros((B, H), dtype)
    hs, cs, gates = fast.lstm_forward(x, zeros, zeros, W_x, np.zeros((H, 4 * H), dtype),
                                      np.zeros(4 * H, dtype))
    v = x[:, 0].astype(np.float64)
    s, t = scipy.special.expit(v), np.tanh(v)
    eps, tiny = np.finfo(dtype).eps, np.finfo(dtype).tiny
    np.testing.assert_allclose(gates[:, 0], np.concatenate([s, s, t, s], axis=1),
                               rtol=4 * eps, atol=tiny)
    np.testing.assert_allclose(cs[:, 0], s * t, rtol=12 * eps, atol=tiny)
    np.testing.assert_allclose(hs[:, 0], s * np.tanh(s * t), rtol=24 * eps, atol=tiny)
    x[::3] = np.nan                            # a NaN in a row makes the whole row NaN
    for a in fast.lstm_forward(x, zeros, zeros, W_x, np.zeros((H, 4 * H), dtype),
                               np.zeros(4 * H, dtype)):
        assert np.isnan(a[::3]).all()
    # infinities through the bias (through x @ W_x they would meet 0 * inf = NaN)
    b = np.array([np.inf, -np.inf] * (2 * H), dtype)
    hs, cs, gates = fast.lstm_forward(np.zeros((1, 1, H), dtype), np.zeros((1, H), dtype),
                                      np.zeros((1, H), dtype), np.zeros((H, 4 * H), dtype),
                                      np.zeros((H, 4 * H), dtype), b)
    expected = ref.lstm_forward(np.zeros((1, 1, H), np.float64), np.zeros((1, H)),
                                np.zeros((1, H)), np.zeros((H, 4 * H)),
                                np.zeros((H, 4 * H)), b.astype(np.float64))
    np.testing.assert_array_equal(gates, expected[2])   # exactly 0, 1 or -1
    np.testing.assert_array_equal(cs, expected[1])
    np.testing.assert_allclose(hs, expected[0], rtol=4 * eps)  # tanh(1) at dtype precision
