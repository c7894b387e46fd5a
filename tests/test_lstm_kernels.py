"""LSTM kernels: the Cython loop against the NumPy reference (forward and backward), the
reference against central finite differences, edge sizes, NaN, and the argument checks of
both."""
import itertools

import numpy as np
import pytest
import scipy.special
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import assert_close
from crnn import _lstm as fast
from crnn.reference import lstm as ref

DTYPES = [np.float32, np.float64]
# (activation, recurrent_activation): Keras's default first (the vectorised float32
# path), then pairs that run the generic loop, every activation in both roles.
ACTIVATION_PAIRS = [("tanh", "sigmoid"), ("relu", "sigmoid"), ("linear", "tanh"),
                    ("sigmoid", "relu"), ("tanh", "linear")]
PAIR_IDS = ["-".join(p) for p in ACTIVATION_PAIRS]
# which of dhs, dh_last, dc_last are given (the others None)
GRADS = list(itertools.product([True, False], repeat=3))
GRAD_IDS = ["".join(n if g else "_" for n, g in zip(["s", "h", "c"], gs)) for gs in GRADS]
SIZES = {"small": (4, 9, 3, 6), "large": (17, 5, 3, 128), "ones": (1, 1, 1, 1)}
GRAD_NAMES = ["dx", "dh0", "dc0", "dW_x", "dW_h", "db"]


def lstm_problem(rng, B, T, D, H, dtype, mask=False, w_scale=0.5):
    """Arguments of ``lstm_forward``: weights small enough that the recurrence contracts."""
    x = rng.standard_normal((B, T, D)).astype(dtype)
    h0 = (0.5 * rng.standard_normal((B, H))).astype(dtype)
    c0 = (0.5 * rng.standard_normal((B, H))).astype(dtype)
    W_x = (rng.standard_normal((D, 4 * H)) / np.sqrt(D)).astype(dtype)
    W_h = (w_scale * rng.standard_normal((H, 4 * H)) / np.sqrt(H)).astype(dtype)
    b = (0.1 * rng.standard_normal(4 * H)).astype(dtype)
    m = ((rng.random((B, H)) > 0.3) / 0.7).astype(dtype) if mask else None
    return x, h0, c0, W_x, W_h, b, m


def output_grads(rng, B, T, H, dtype, given):
    shapes = [(B, T, H), (B, H), (B, H)]
    return [rng.standard_normal(s).astype(dtype) if g else None
            for s, g in zip(shapes, given)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activations", ACTIVATION_PAIRS, ids=PAIR_IDS)
@pytest.mark.parametrize("mask", [False, True])
@pytest.mark.parametrize("given", GRADS, ids=GRAD_IDS)
@pytest.mark.parametrize("size", list(SIZES))
def test_fast_matches_reference(rng, dtype, activations, mask, given, size):
    # "large": B*H*4H above 1e6, where both recurrent GEMMs of the BLAS loop switch which
    # copy of W_h they read (W_h itself or its transpose: _blas.trans_b_faster), and, in
    # float32 with the default activations, where the kernel takes the packed path
    # instead (_lstm._packed_path; "small" and "ones" stay on the BLAS loop): float64 and
    # the other activations check the former, and test_packed_path_matches_reference
    # forces each path.
    B, T, D, H = SIZES[size]
    x, h0, c0, W_x, W_h, b, m = lstm_problem(rng, B, T, D, H, dtype, mask)
    args = (x, h0, c0, W_x, W_h, b, *activations, m)
    out_ref = ref.lstm_forward(*args)
    out_fast = fast.lstm_forward(*args)
    for name, a, e, shape in zip(["hs", "cs", "gates"], out_fast, out_ref,
                                 [(B, T, H), (B, T, H), (B, T, 4 * H)]):
        assert a.shape == shape and a.dtype == dtype, name
        assert_close(a, e, dtype, err_msg=name)
    dhs, dh_last, dc_last = output_grads(rng, B, T, H, dtype, given)
    hs, cs, gates = out_ref
    bargs = (x, h0, c0, W_x, W_h, hs, cs, gates, dhs, dh_last, dc_last, *activations, m)
    g_ref = ref.lstm_backward(*bargs)
    g_fast = fast.lstm_backward(*bargs)
    shapes = [(B, T, D), (B, H), (B, H), (D, 4 * H), (H, 4 * H), (4 * H,)]
    for name, a, e, shape in zip(GRAD_NAMES, g_fast, g_ref, shapes):
        assert a.shape == shape and a.dtype == dtype, name
        assert_close(a, e, dtype, err_msg=name)
    if not any(given):
        for g in g_fast:
            assert not g.any()


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
VARIANT_IDS = {0: "C", 1: "avx2", 2: "avx512"}


@pytest.fixture
def packed_settings():
    """Restores the packed path's variant, thread count and path choice afterwards."""
    threads = fast._packed_threads()
    yield
    fast._packed_isa(-1)
    fast._packed_threads(threads)
    fast._force_path(None)


@pytest.mark.parametrize("variant", VARIANTS, ids=[VARIANT_IDS[v] for v in VARIANTS])
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("mask", [False, True])
@pytest.mark.parametrize("size", list(PACKED_SIZES))
def test_packed_path_matches_reference(rng, packed_settings, variant, threads, mask, size):
    B, T, D, H = PACKED_SIZES[size]
    fast._packed_isa(variant)
    fast._packed_threads(threads)
    fast._force_path("packed")
    x, h0, c0, W_x, W_h, b, m = lstm_problem(rng, B, T, D, H, np.float32, mask)
    out_ref = ref.lstm_forward(x, h0, c0, W_x, W_h, b, recurrent_mask=m)
    for name, a, e in zip(["hs", "cs", "gates"],
                          fast.lstm_forward(x, h0, c0, W_x, W_h, b, recurrent_mask=m),
                          out_ref):
        assert_close(a, e, np.float32, err_msg=name)
    for given in [(True, True, True), (False, False, True), (False, False, False)]:
        dhs, dh_last, dc_last = output_grads(rng, B, T, H, np.float32, given)
        bargs = (x, h0, c0, W_x, W_h, *out_ref, dhs, dh_last, dc_last)
        g_ref = ref.lstm_backward(*bargs, recurrent_mask=m)
        g_fast = fast.lstm_backward(*bargs, recurrent_mask=m)
        for name, a, e in zip(GRAD_NAMES, g_fast, g_ref):
            assert_close(a, e, np.float32, err_msg=f"{name} {given}")


@pytest.mark.parametrize("path", ["packed", "blas"])
@pytest.mark.parametrize("variant", VARIANTS, ids=[VARIANT_IDS[v] for v in VARIANTS])
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("size", ["odd", "b1", "long", "ones"])
def test_inference_returns_the_forward_states(rng, packed_settings, path, variant, threads,
                                              padded, size):
    # lstm_inference keeps only two steps of c (and of h without return_sequences) on
    # the packed path: every state it returns must be the forward's own, bit for bit,
    # and the reference's within rounding
    B, T, D, H = PACKED_SIZES[size]
    fast._packed_isa(variant)
    fast._packed_threads(threads)
    fast._force_path(path)
    x, h0, c0, W_x, W_h, b, _ = lstm_problem(rng, B, T, D, H, np.float32)
    mask = rng.random((B, T)) < 0.7 if padded else None
    hs, cs, _ = fast.lstm_forward(x, h0, c0, W_x, W_h, b, mask=mask)
    for sequences in (True, False):
        out, h_last, c_last = fast.lstm_inference(x, h0, c0, W_x, W_h, b, mask=mask,
                                                  return_sequences=sequences)
        np.testing.assert_array_equal(h_last, hs[:, -1])
        np.testing.assert_array_equal(c_last, cs[:, -1])
        if sequences:
            np.testing.assert_array_equal(out, hs)
        else:
            assert out is None
        expected = ref.lstm_inference(x, h0, c0, W_x, W_h, b, mask=mask,
                                      return_sequences=sequences)
        for name, a, e in zip(["hs", "h_last", "c_last"], (out, h_last, c_last), expected):
            if e is not None:
                assert_close(a, e, np.float32, err_msg=name)


@pytest.mark.parametrize("backend", [fast, ref], ids=["cython", "reference"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_inference_of_empty_sequences_returns_the_initial_states(rng, backend, dtype):
    x, h0, c0, W_x, W_h, b, _ = lstm_problem(rng, 3, 0, 2, 5, dtype)
    out, h_last, c_last = backend.lstm_inference(x, h0, c0, W_x, W_h, b)
    assert out.shape == (3, 0, 5)
    np.testing.assert_array_equal(h_last, h0)
    np.testing.assert_array_equal(c_last, c0)
    assert h_last is not h0 and c_last is not c0


def test_packed_and_blas_paths_agree(rng, packed_settings):
    # the (64, 100, 128, 256) benchmark shape, shortened: both paths, same answer
    x, h0, c0, W_x, W_h, b, _ = lstm_problem(rng, 64, 6, 128, 256, np.float32)
    dhs, dh_last, dc_last = output_grads(rng, 64, 6, 256, np.float32, (True, True, True))
    results = []
    for path in ("packed", "blas"):
        fast._force_path(path)
        out = fast.lstm_forward(x, h0, c0, W_x, W_h, b)
        results.append([*out, *fast.lstm_backward(x, h0, c0, W_x, W_h, *out, dhs, dh_last,
                                                  dc_last)])
    for name, a, e in zip(["hs", "cs", "gates"] + GRAD_NAMES, *results):
        assert_close(a, e, np.float32, err_msg=name)


@pytest.mark.parametrize("variant", VARIANTS, ids=[VARIANT_IDS[v] for v in VARIANTS])
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("M,N,K", [(1, 1, 1), (5, 20, 7), (6, 64, 128), (13, 130, 300),
                                   (64, 1024, 256), (19, 100, 1000)])
def test_packed_gemm_matches_numpy(rng, packed_settings, variant, threads, M, N, K):
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


def test_backward_leaves_its_arguments_alone(rng):
    x, h0, c0, W_x, W_h, b, m = lstm_problem(rng, 3, 4, 2, 5, np.float32, mask=True)
    hs, cs, gates = fast.lstm_forward(x, h0, c0, W_x, W_h, b, recurrent_mask=m)
    dhs, dh_last, dc_last = output_grads(rng, 3, 4, 5, np.float32, (True, True, True))
    args = [x, h0, c0, W_x, W_h, hs, cs, gates, dhs, dh_last, dc_last]
    copies = [a.copy() for a in args]
    first = fast.lstm_backward(*args, recurrent_mask=m)
    for a, c in zip(args, copies):
        np.testing.assert_array_equal(a, c)
    for a, e in zip(fast.lstm_backward(*args, recurrent_mask=m), first):
        np.testing.assert_array_equal(a, e)


@pytest.mark.parametrize("dtype", DTYPES)
def test_long_sequence(rng, dtype):
    # T = 200: the float32 gradients sum 200 steps of rounding, hence the wider margin.
    x, h0, c0, W_x, W_h, b, m = lstm_problem(rng, 3, 200, 4, 16, dtype)
    out_ref = ref.lstm_forward(x, h0, c0, W_x, W_h, b)
    for a, e in zip(fast.lstm_forward(x, h0, c0, W_x, W_h, b), out_ref):
        assert_close(a, e, dtype, scale=10)
    dhs, dh_last, dc_last = output_grads(rng, 3, 200, 16, dtype, (True, True, True))
    bargs = (x, h0, c0, W_x, W_h, *out_ref, dhs, dh_last, dc_last)
    for name, a, e in zip(GRAD_NAMES, fast.lstm_backward(*bargs), ref.lstm_backward(*bargs)):
        assert_close(a, e, dtype, scale=10, err_msg=name)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(B=st.integers(1, 12), T=st.integers(1, 12), D=st.integers(1, 12), H=st.integers(1, 12),
       dtype=st.sampled_from(DTYPES), activations=st.sampled_from(ACTIVATION_PAIRS),
       mask=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_any_small_shape(B, T, D, H, dtype, activations, mask, seed):
    rng = np.random.default_rng(seed)
    x, h0, c0, W_x, W_h, b, m = lstm_problem(rng, B, T, D, H, dtype, mask)
    out_ref = ref.lstm_forward(x, h0, c0, W_x, W_h, b, *activations, m)
    for a, e in zip(fast.lstm_forward(x, h0, c0, W_x, W_h, b, *activations, m), out_ref):
        assert_close(a, e, dtype)
    dhs, dh_last, dc_last = output_grads(rng, B, T, H, dtype, (True, True, True))
    bargs = (x, h0, c0, W_x, W_h, *out_ref, dhs, dh_last, dc_last, *activations, m)
    for name, a, e in zip(GRAD_NAMES, fast.lstm_backward(*bargs), ref.lstm_backward(*bargs)):
        assert a.shape == e.shape, name
        assert_close(a, e, dtype, err_msg=name)


def loss_and_grads(params, activations, dhs, dh_last, dc_last, mask):
    """L = sum(dhs * hs) + sum(dh_last * h_last) + sum(dc_last * c_last) and its
    gradients by the reference's BPTT."""
    x, h0, c0, W_x, W_h, b = params
    hs, cs, gates = ref.lstm_forward(x, h0, c0, W_x, W_h, b, *activations, mask)
    loss = np.sum(dhs * hs) + np.sum(dh_last * hs[:, -1]) + np.sum(dc_last * cs[:, -1])
    grads = ref.lstm_backward(x, h0, c0, W_x, W_h, hs, cs, gates, dhs, dh_last, dc_last,
                              *activations, mask)
    return loss, grads


@pytest.mark.parametrize("activations", ACTIVATION_PAIRS + [("sigmoid", "sigmoid")],
                         ids=PAIR_IDS + ["sigmoid-sigmoid"])
@pytest.mark.parametrize("mask", [False, True])
def test_reference_matches_finite_differences(rng, activations, mask):
    B, T, D, H = 2, 4, 3, 3
    x, h0, c0, W_x, W_h, b, m = lstm_problem(rng, B, T, D, H, np.float64, mask,
                                             w_scale=1.0)
    dhs, dh_last, dc_last = output_grads(rng, B, T, H, np.float64, (True, True, True))
    params = [x, h0, c0, W_x, W_h, b]
    _, analytic = loss_and_grads(params, activations, dhs, dh_last, dc_last, m)
    # analytic is (dx, dh0, dc0, dW_x, dW_h, db), in the order of params
    eps = 1e-6
    for name, p, g in zip(["x", "h0", "c0", "W_x", "W_h", "b"], params, analytic):
        numeric = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            old = p[idx]
            p[idx] = old + eps
            lp, _ = loss_and_grads(params, activations, dhs, dh_last, dc_last, m)
            p[idx] = old - eps
            lm, _ = loss_and_grads(params, activations, dhs, dh_last, dc_last, m)
            p[idx] = old
            numeric[idx] = (lp - lm) / (2 * eps)
        np.testing.assert_allclose(g, numeric, rtol=1e-6, atol=1e-7, err_msg=name)


@pytest.mark.parametrize("backend", [fast, ref], ids=["cython", "reference"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_batch_and_empty_sequence(backend, dtype):
    for B, T in [(0, 4), (3, 0), (0, 0)]:
        D, H = 2, 3
        x = np.ones((B, T, D), dtype)
        h0 = np.full((B, H), 0.5, dtype)
        c0 = np.full((B, H), -0.5, dtype)
        W_x, W_h = np.ones((D, 4 * H), dtype), np.ones((H, 4 * H), dtype)
        b = np.zeros(4 * H, dtype)
        hs, cs, gates = backend.lstm_forward(x, h0, c0, W_x, W_h, b)
        assert hs.shape == cs.shape == (B, T, H) and gates.shape == (B, T, 4 * H)
        assert hs.dtype == cs.dtype == gates.dtype == dtype
        dh_last = np.ones((B, H), dtype)
        dc_last = np.full((B, H), 2.0, dtype)
        for dl, dcl in [(dh_last, dc_last), (None, None)]:
            dx, dh0, dc0, dW_x, dW_h, db = backend.lstm_backward(
                x, h0, c0, W_x, W_h, hs, cs, gates, None, dl, dcl)
            assert dx.shape == (B, T, D) and not dx.any()
            # with no step, the final states are h0 and c0
            np.testing.assert_array_equal(dh0, np.zeros((B, H)) if dl is None else dl)
            np.testing.assert_array_equal(dc0, np.zeros((B, H)) if dcl is None else dcl)
            assert dW_x.shape == (D, 4 * H) and dW_h.shape == (H, 4 * H)
            assert db.shape == (4 * H,)
            assert not dW_x.any() and not dW_h.any() and not db.any()
            if dl is not None:
                assert dh0 is not dl and dc0 is not dcl  # copies, not the caller's arrays


@pytest.mark.parametrize("backend", [fast, ref], ids=["cython", "reference"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activations", ACTIVATION_PAIRS, ids=PAIR_IDS)
def test_nan_propagates(backend, dtype, activations):
    x = np.ones((2, 4, 3), dtype)
    x[0, 1, 2] = np.nan
    h0 = np.zeros((2, 5), dtype)
    c0 = np.zeros((2, 5), dtype)
    W_x = np.full((3, 20), 0.1, dtype)
    W_h = np.full((5, 20), 0.1, dtype)
    hs, cs, gates = backend.lstm_forward(x, h0, c0, W_x, W_h, np.zeros(20, dtype),
                                         *activations)
    for name, a in [("hs", hs), ("cs", cs), ("gates", gates)]:
        assert np.isnan(a[0, 1:]).all(), name  # from the NaN step on, sequence 0
        assert np.isfinite(a[0, :1]).all() and np.isfinite(a[1]).all(), name
    dhs = np.ones((2, 4, 5), dtype)
    dx, dh0, dc0, dW_x, dW_h, db = backend.lstm_backward(
        x, h0, c0, W_x, W_h, hs, cs, gates, dhs, None, None, *activations)
    assert np.isnan(dx[0, :2]).all() and np.isnan(db).all()
    assert np.isfinite(dx[1]).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_extreme_preactivations(dtype):
    # h0 = c0 = 0, W_h = 0, W_x = I on each gate block: every gate sees x itself, over
    # the whole float range (tails, tiny values, infinities). The kernel's float32 path
    # uses its own vectorised tanh and sigmoid (src/crnn/_lstm_simd.h); hold it to the
    # float64 formulas.
    H = 64
    a = np.concatenate([np.linspace(-120, 120, 6400), np.geomspace(1e-30, 20, 1600),
                        -np.geomspace(1e-30, 20, 1600), [0, -0.0, 1e30, -1e30] * 16])
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


def good_args(dtype=np.float32):
    B, T, D, H = 2, 3, 4, 5
    return dict(x=np.ones((B, T, D), dtype), h0=np.zeros((B, H), dtype),
                c0=np.zeros((B, H), dtype), W_x=np.ones((D, 4 * H), dtype),
                W_h=np.ones((H, 4 * H), dtype), b=np.ones(4 * H, dtype))


@pytest.mark.parametrize("backend", [fast, ref], ids=["cython", "reference"])
@pytest.mark.parametrize("name,bad,message", [
    ("x", np.ones((2, 3), np.float32), r"expected x of shape \(\?, \?, \?\), got \(2, 3\)"),
    ("x", np.ones((2, 3, 4), np.int64), "expected x to have dtype float32 or float64, got int64"),
    ("x", [[[1.0]]], "expected x to be a numpy.ndarray, got list"),
    ("x", np.ones((2, 4, 3), np.float32).transpose(0, 2, 1), "expected x to be C-contiguous"),
    ("h0", np.zeros((3, 5), np.float32), r"expected h0 of shape \(2, 5\), got \(3, 5\)"),
    ("c0", np.zeros((2, 4), np.float32), r"expected c0 of shape \(2, 5\), got \(2, 4\)"),
    ("c0", np.zeros((2, 5), np.float64), "expected c0 to have dtype float32"),
    ("c0", None, r"expected c0 to be an array of shape \(2, 5\), got None"),
    ("W_x", np.ones((4, 5), np.float32), r"expected W_x of shape \(4, 20\), got \(4, 5\)"),
    ("W_h", np.ones((5, 5), np.float32), r"expected W_h .* \(H, 4\*H\), got \(5, 5\)"),
    ("b", np.ones(5, np.float32), r"expected b of shape \(20,\), got \(5,\)"),
    ("b", np.ones((1, 20), np.float32), r"expected b of shape \(20,\), got \(1, 20\)"),
])
def test_forward_rejects_bad_arguments(backend, name, bad, message):
    args = good_args()
    args[name] = bad
    with pytest.raises(ValueError, match=message):
        backend.lstm_forward(**args)


@pytest.mark.parametrize("backend", [fast, ref], ids=["cython", "reference"])
@pytest.mark.parametrize("kwarg,message", [
    (dict(activation="elu"), "expected activation to be one of"),
    (dict(recurrent_activation="softmax"), "expected activation to be one of"),
    (dict(recurrent_activation=3), "expected activation to be one of"),
    (dict(recurrent_mask=np.ones((5, 2), np.float32)),
     r"expected recurrent_mask of shape \(2, 5\), got \(5, 2\)"),
    (dict(recurrent_mask=np.ones((2, 5), np.float64)), "expected recurrent_mask to have dtype"),
])
def test_forward_rejects_bad_options(backend, kwarg, message):
    with pytest.raises(ValueError, match=message):
        backend.lstm_forward(**good_args(), **kwarg)


@pytest.mark.parametrize("backend", [fast, ref], ids=["cython", "reference"])
def test_backward_rejects_bad_arguments(backend):
    a = good_args()
    hs, cs, gates = backend.lstm_forward(**a)
    del a["b"]
    ok = dict(hs=hs, cs=cs, gates=gates, dhs=None, dh_last=None, dc_last=None)
    bad = [
        (dict(hs=hs[:, :2].copy()), r"expected hs of shape \(2, 3, 5\), got \(2, 2, 5\)"),
        (dict(cs=None), r"expected cs to be an array of shape \(2, 3, 5\), got None"),
        (dict(cs=cs.astype(np.float64)), "expected cs to have dtype float32"),
        (dict(gates=hs), r"expected gates of shape \(2, 3, 20\), got \(2, 3, 5\)"),
        (dict(gates=np.asfortranarray(gates)), "expected gates to be C-contiguous"),
        (dict(dhs=np.ones((2, 3, 4), np.float32)), r"expected dhs of shape \(2, 3, 5\)"),
        (dict(dh_last=np.ones(5, np.float32)), r"expected dh_last of shape \(2, 5\)"),
        (dict(dc_last=np.ones((2, 6), np.float32)), r"expected dc_last of shape \(2, 5\)"),
        (dict(dc_last=[[0.0] * 5] * 2), "expected dc_last to be a numpy.ndarray"),
        (dict(activation="elu"), "expected activation to be one of"),
        (dict(recurrent_activation="elu"), "expected activation to be one of"),
        (dict(recurrent_mask=np.ones((5, 2), np.float32)),
         r"expected recurrent_mask of shape \(2, 5\)"),
    ]
    for change, message in bad:
        with pytest.raises(ValueError, match=message):
            backend.lstm_backward(**a, **{**ok, **change})
