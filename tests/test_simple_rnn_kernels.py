"""SimpleRNN kernels: the Cython loop against the NumPy reference (forward and backward),
the reference against central finite differences, and the argument checks of both."""
import numpy as np
import pytest
import scipy.special

from conftest import assert_close, random_problem
from crnn import _simple_rnn as fast
from crnn import reference as ref

ACTIVATIONS = ["tanh", "relu", "sigmoid", "linear"]
DTYPES = [np.float32, np.float64]


def both_backends(fn_name, *args, **kwargs):
    return (getattr(ref, fn_name)(*args, **kwargs), getattr(fast, fn_name)(*args, **kwargs))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("mask", [False, True])
@pytest.mark.parametrize("grads", ["both", "sequence", "last", "none"])
@pytest.mark.parametrize("size", ["small", "large"])
def test_fast_matches_reference(rng, dtype, activation, mask, grads, size):
    # "large": B*H*H above 1e6, where the recurrent GEMMs switch which copy of W_h they
    # read (W_h itself or its transpose: _blas.trans_b_faster); both paths are checked.
    B, T, D, H = (4, 9, 3, 6) if size == "small" else (17, 5, 3, 256)
    x, h0, W_x, W_h, b, m = random_problem(rng, B, T, D, H, dtype, mask)
    hs_ref, hs_fast = both_backends("simple_rnn_forward", x, h0, W_x, W_h, b, activation, m)
    assert hs_fast.shape == (B, T, H) and hs_fast.dtype == dtype
    assert_close(hs_fast, hs_ref, dtype)
    dhs = rng.standard_normal((B, T, H)).astype(dtype) if grads in ("both", "sequence") else None
    dl = rng.standard_normal((B, H)).astype(dtype) if grads in ("both", "last") else None
    g_ref, g_fast = both_backends("simple_rnn_backward", x, h0, W_x, W_h, hs_ref, dhs, dl,
                                  activation, m)
    for name, a, e in zip(["dx", "dh0", "dW_x", "dW_h", "db"], g_fast, g_ref):
        assert a.shape == e.shape and a.dtype == dtype, name
        assert_close(a, e, dtype, err_msg=name)
    if grads == "none":
        for g in g_fast:
            assert not g.any()


def loss_and_grads(backend, params, activation, dhs, dl, mask):
    """L = sum(dhs * hs) + sum(dl * h_last); its gradients by the backend's BPTT."""
    x, h0, W_x, W_h, b = params
    hs = backend.simple_rnn_forward(x, h0, W_x, W_h, b, activation, mask)
    loss = np.sum(dhs * hs) + np.sum(dl * hs[:, -1])
    dx, dh0, dW_x, dW_h, db = backend.simple_rnn_backward(x, h0, W_x, W_h, hs, dhs, dl,
                                                          activation, mask)
    return loss, [dx, dh0, dW_x, dW_h, db]


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("mask", [False, True])
def test_reference_matches_finite_differences(rng, activation, mask):
    B, T, D, H = 2, 5, 3, 4
    x, h0, W_x, W_h, b, m = random_problem(rng, B, T, D, H, np.float64, mask, w_scale=1.0)
    if activation == "relu":  # keep pre-activations away from the kink at 0
        b = b + 0.05
    dhs = rng.standard_normal((B, T, H))
    dl = rng.standard_normal((B, H))
    params = [x, h0, W_x, W_h, b]
    _, analytic = loss_and_grads(ref, params, activation, dhs, dl, m)
    eps = 1e-6
    for name, p, g in zip(["x", "h0", "W_x", "W_h", "b"], params, analytic):
        numeric = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            old = p[idx]
            p[idx] = old + eps
            lp, _ = loss_and_grads(ref, params, activation, dhs, dl, m)
            p[idx] = old - eps
            lm, _ = loss_and_grads(ref, params, activation, dhs, dl, m)
            p[idx] = old
            numeric[idx] = (lp - lm) / (2 * eps)
        np.testing.assert_allclose(g, numeric, rtol=1e-6, atol=1e-7, err_msg=name)


@pytest.mark.parametrize("backend", [fast, ref], ids=["cython", "reference"])
def test_empty_batch_and_empty_sequence(backend):
    for B, T in [(0, 4), (3, 0), (0, 0)]:
        x = np.ones((B, T, 2), np.float32)
        h0 = np.full((B, 3), 0.5, np.float32)
        W_x, W_h, b = np.ones((2, 3), np.float32), np.eye(3, dtype=np.float32), np.zeros(3, np.float32)
        hs = backend.simple_rnn_forward(x, h0, W_x, W_h, b)
        assert hs.shape == (B, T, 3)
        dl = np.ones((B, 3), np.float32)
        dx, dh0, dW_x, dW_h, db = backend.simple_rnn_backward(x, h0, W_x, W_h, hs, None, dl)
        assert dx.shape == (B, T, 2) and not dx.any()
        np.testing.assert_array_equal(dh0, dl)  # with no step, h_last is h0
        assert not dW_x.any() and not dW_h.any() and not db.any()


@pytest.mark.parametrize("backend", [fast, ref], ids=["cython", "reference"])
def test_nan_propagates(backend):
    x = np.ones((2, 4, 3), np.float32)
    x[0, 1, 2] = np.nan
    h0 = np.zeros((2, 5), np.float32)
    W_x = np.full((3, 5), 0.1, np.float32)
    W_h = np.full((5, 5), 0.1, np.float32)
    for activation in ACTIVATIONS:
        hs = backend.simple_rnn_forward(x, h0, W_x, W_h, np.zeros(5, np.float32), activation)
        assert np.isnan(hs[0, 1:]).all(), activation  # from the NaN step on, sequence 0
        assert np.isfinite(hs[0, :1]).all() and np.isfinite(hs[1]).all(), activation


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_over_the_float_range(dtype, activation):
    # W_x = I, W_h = 0, b = 0: h = act(x) elementwise, in rows of 64 units (long enough
    # for the vector loops), so the kernel's own float32 tanh and sigmoid (vectorised
    # approximations, see src/crnn/_simd.h) are held to the float64 formula everywhere:
    # tails, tiny values, infinities and NaN.
    a = np.concatenate([np.linspace(-120, 120, 24000), np.geomspace(1e-30, 20, 4000),
                        -np.geomspace(1e-30, 20, 4000), [0, -0.0, 1e30, -1e30] * 16])
    H = 64
    x = a.astype(dtype).reshape(-1, 1, H)
    B = x.shape[0]
    h = fast.simple_rnn_forward(x, np.zeros((B, H), dtype), np.eye(H, dtype=dtype),
                                np.zeros((H, H), dtype), np.zeros(H, dtype), activation)
    exact = {"tanh": np.tanh, "relu": lambda v: np.maximum(v, 0),
             "sigmoid": scipy.special.expit, "linear": lambda v: v}[activation]
    eps, tiny = np.finfo(dtype).eps, np.finfo(dtype).tiny
    np.testing.assert_allclose(h, exact(x.astype(np.float64)), rtol=4 * eps, atol=tiny)
    # infinities through the bias (through x @ I they would meet 0 * inf = NaN)
    b = np.array([np.inf, -np.inf] * (H // 2), dtype)
    h = fast.simple_rnn_forward(np.zeros((1, 1, H), dtype), np.zeros((1, H), dtype),
                                np.zeros((H, H), dtype), np.zeros((H, H), dtype), b, activation)
    np.testing.assert_array_equal(h[0, 0], exact(b.astype(np.float64)))
    x[::3] = np.nan                            # a NaN in a row makes the whole row NaN
    h = fast.simple_rnn_forward(x, np.zeros((B, H), dtype), np.eye(H, dtype=dtype),
                                np.zeros((H, H), dtype), np.zeros(H, dtype), activation)
    assert np.isnan(h[::3]).all()


def good_args(dtype=np.float32):
    B, T, D, H = 2, 3, 4, 5
    return dict(x=np.ones((B, T, D), dtype), h0=np.zeros((B, H), dtype),
                W_x=np.ones((D, H), dtype), W_h=np.ones((H, H), dtype), b=np.ones(H, dtype))


@pytest.mark.parametrize("backend", [fast, ref], ids=["cython", "reference"])
@pytest.mark.parametrize("name,bad,message", [
    ("x", np.ones((2, 3), np.float32), r"expected x of shape \(\?, \?, \?\), got \(2, 3\)"),
    ("x", np.ones((2, 3, 4), np.int64), "float32 or float64, got int64"),
    ("x", [[[1.0]]], "numpy.ndarray, got list"),
    ("x", np.ones((2, 4, 3), np.float32).transpose(0, 2, 1), "C-contiguous"),
    ("h0", np.zeros((3, 5), np.float32), r"expected h0 of shape \(2, 5\), got \(3, 5\)"),
    ("h0", np.zeros((2, 5), np.float64), "dtype float32"),
    ("W_x", np.ones((5, 5), np.float32), r"expected W_x of shape \(4, 5\), got \(5, 5\)"),
    ("W_h", np.ones((5, 4), np.float32), r"\(H, H\), got \(5, 4\)"),
    ("b", np.ones(4, np.float32), r"expected b of shape \(5,\), got \(4,\)"),
    ("b", None, "got None"),
])
def test_forward_rejects_bad_arguments(backend, name, bad, message):
    args = good_args()
    args[name] = bad
    with pytest.raises(ValueError, match=message):
        backend.simple_rnn_forward(**args)


@pytest.mark.parametrize("backend", [fast, ref], ids=["cython", "reference"])
def test_backward_rejects_bad_arguments(backend):
    a = good_args()
    hs = backend.simple_rnn_forward(**a)
    del a["b"]
    with pytest.raises(ValueError, match=r"expected hs of shape \(2, 3, 5\)"):
        backend.simple_rnn_backward(**a, hs=hs[:, :2].copy(), dhs=None, dh_last=None)
    with pytest.raises(ValueError, match=r"expected dhs of shape \(2, 3, 5\)"):
        backend.simple_rnn_backward(**a, hs=hs, dhs=np.ones((2, 3, 4), np.float32),
                                    dh_last=None)
    with pytest.raises(ValueError, match=r"expected dh_last of shape \(2, 5\)"):
        backend.simple_rnn_backward(**a, hs=hs, dhs=None, dh_last=np.ones(5, np.float32))
    with pytest.raises(ValueError, match="activation"):
        backend.simple_rnn_backward(**a, hs=hs, dhs=None, dh_last=None, activation="elu")
    with pytest.raises(ValueError, match=r"recurrent_mask of shape \(2, 5\)"):
        backend.simple_rnn_backward(**a, hs=hs, dhs=None, dh_last=None,
                                    recurrent_mask=np.ones((5, 2), np.float32))
