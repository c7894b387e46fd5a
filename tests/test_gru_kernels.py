"""GRU kernels: the Cython loop against the NumPy reference (forward and backward, both
``reset_after`` variants), the reference against central finite differences, and the
argument checks of both."""
import numpy as np
import pytest
import scipy.special

from conftest import assert_close
from crnn import _gru as fast
from crnn.reference import gru as ref

DTYPES = [np.float32, np.float64]
# (activation, recurrent_activation): the default first; every activation in each role.
PAIRS = [("tanh", "sigmoid"), ("relu", "sigmoid"), ("linear", "sigmoid"),
         ("sigmoid", "tanh"), ("tanh", "relu"), ("sigmoid", "linear")]


def gru_problem(rng, B, T, D, H, dtype, reset_after=True, mask=False, w_scale=0.5,
                recurrent_activation="sigmoid"):
    """Arguments of the GRU kernels, with weights small enough that the recurrence
    contracts. With an unbounded recurrent activation (relu, linear) the update gate z
    can leave [0, 1], and h_t = z h_{t-1} + (1 - z) n then grows: its input is scaled
    down and its bias set to 0.5, which keeps z inside."""
    G = 3 * H
    x = rng.standard_normal((B, T, D)).astype(dtype)
    h0 = (0.5 * rng.standard_normal((B, H))).astype(dtype)
    W_x = rng.standard_normal((D, G)) / np.sqrt(D)
    W_h = w_scale * rng.standard_normal((H, G)) / np.sqrt(H)
    b = 0.1 * rng.standard_normal((2, G) if reset_after else G)
    if recurrent_activation in ("relu", "linear"):
        W_x[:, :H] *= 0.1
        W_h[:, :H] *= 0.1
        b[..., :H] = 0.5 / b.ndim  # with reset_after, the two rows add up to 0.5
    m = ((rng.random((B, H)) > 0.3) / 0.7).astype(dtype) if mask else None
    return x, h0, W_x.astype(dtype), W_h.astype(dtype), b.astype(dtype), m


def both_backends(fn_name, *args, **kwargs):
    return (getattr(ref, fn_name)(*args, **kwargs), getattr(fast, fn_name)(*args, **kwargs))


# every activation pair with both output gradients; the default pair also with only one
# of them, or none
CASES = ([(acts, "both") for acts in PAIRS]
         + [(PAIRS[0], grads) for grads in ("sequence", "last", "none")])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("acts,grads", CASES, ids=["-".join(a) + "-" + g for a, g in CASES])
@pytest.mark.parametrize("mask", [False, True])
@pytest.mark.parametrize("size", ["small", "large"])
def test_fast_matches_reference(rng, dtype, reset_after, acts, grads, mask, size):
    # "large": B*H*3H above 1e6, where the recurrent GEMMs switch which copy of W_h they
    # read (W_h itself or its transpose: _blas.trans_b_faster); both paths are checked.
    B, T, D, H = (4, 9, 3, 6) if size == "small" else (17, 5, 3, 192)
    x, h0, W_x, W_h, b, m = gru_problem(rng, B, T, D, H, dtype, reset_after, mask,
                                        recurrent_activation=acts[1])
    out_ref, out_fast = both_backends("gru_forward", x, h0, W_x, W_h, b, reset_after,
                                      *acts, m)
    for name, a, e, shape in zip(["hs", "gates", "hn"], out_fast, out_ref,
                                 [(B, T, H), (B, T, 3 * H), (B, T, H)]):
        assert a.shape == shape and a.dtype == dtype, name
        assert_close(a, e, dtype, err_msg=name)
    dhs = (rng.standard_normal((B, T, H)).astype(dtype) if grads in ("both", "sequence")
           else None)
    dl = rng.standard_normal((B, H)).astype(dtype) if grads in ("both", "last") else None
    g_ref, g_fast = both_backends("gru_backward", x, h0, W_x, W_h, *out_ref, dhs, dl,
                                  reset_after, *acts, m)
    for name, a, e in zip(["dx", "dh0", "dW_x", "dW_h", "db"], g_fast, g_ref):
        assert a.shape == e.shape and a.dtype == dtype, name
        assert_close(a, e, dtype, err_msg=name)
    assert g_fast[4].shape == b.shape
    if grads == "none":
        for g in g_fast:
            assert not g.any()


def test_forward_inputs_are_not_modified(rng):
    for reset_after in (True, False):
        args = gru_problem(rng, 3, 4, 2, 5, np.float32, reset_after, mask=True)
        saved = [a.copy() for a in args]
        out = fast.gru_forward(*args[:5], reset_after, recurrent_mask=args[5])
        kept = [o.copy() for o in out]
        fast.gru_backward(*args[:4], *out, np.ones((3, 4, 5), np.float32), None,
                          reset_after, recurrent_mask=args[5])
        for a, s in zip(args + out, saved + kept):
            np.testing.assert_array_equal(a, s)


def loss_and_grads(backend, params, reset_after, acts, dhs, dl, mask):
    """L = sum(dhs * hs) + sum(dl * h_last); its gradients by the backend's BPTT."""
    x, h0, W_x, W_h, b = params
    hs, gates, hn = backend.gru_forward(x, h0, W_x, W_h, b, reset_after, *acts, mask)
    loss = np.sum(dhs * hs) + np.sum(dl * hs[:, -1])
    grads = backend.gru_backward(x, h0, W_x, W_h, hs, gates, hn, dhs, dl, reset_after,
                                 *acts, mask)
    return loss, list(grads)


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("acts", [("tanh", "sigmoid"), ("relu", "tanh"),
                                  ("sigmoid", "relu"), ("linear", "linear")],
                         ids="-".join)
@pytest.mark.parametrize("mask", [False, True])
def test_reference_matches_finite_differences(rng, reset_after, acts, mask):
    B, T, D, H = 2, 5, 3, 4
    x, h0, W_x, W_h, b, m = gru_problem(rng, B, T, D, H, np.float64, reset_after, mask,
                                        w_scale=1.0, recurrent_activation=acts[1])
    if "relu" in acts:  # keep pre-activations away from the kink at 0
        b = b + 0.05
    dhs = rng.standard_normal((B, T, H))
    dl = rng.standard_normal((B, H))
    params = [x, h0, W_x, W_h, b]
    _, analytic = loss_and_grads(ref, params, reset_after, acts, dhs, dl, m)
    eps = 1e-6
    for name, p, g in zip(["x", "h0", "W_x", "W_h", "b"], params, analytic):
        assert g.shape == p.shape, name
        numeric = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            old = p[idx]
            p[idx] = old + eps
            lp, _ = loss_and_grads(ref, params, reset_after, acts, dhs, dl, m)
            p[idx] = old - eps
            lm, _ = loss_and_grads(ref, params, reset_after, acts, dhs, dl, m)
            p[idx] = old
            numeric[idx] = (lp - lm) / (2 * eps)
        np.testing.assert_allclose(g, numeric, rtol=1e-6, atol=1e-7, err_msg=name)


@pytest.mark.parametrize("reset_after", [True, False])
def test_reference_is_keras_reset_gate_and_mask(rng, reset_after):
    # One step written out: the mask scales only the state entering the products with
    # W_h; the interpolation uses h_{t-1} itself (Keras's GRUCell, implementation 1).
    B, D, H = 3, 2, 4
    x, h0, W_x, W_h, b, m = gru_problem(rng, B, 1, D, H, np.float64, reset_after, True)
    sig = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
    hm = h0 * m
    if reset_after:
        xz, xr, xh = np.split(x[:, 0] @ W_x + b[0], 3, axis=1)
        hz, hr, hh = np.split(hm @ W_h + b[1], 3, axis=1)
        z, r = sig(xz + hz), sig(xr + hr)
        n = np.tanh(xh + r * hh)
    else:
        xz, xr, xh = np.split(x[:, 0] @ W_x + b, 3, axis=1)
        U_z, U_r, U_h = np.split(W_h, 3, axis=1)
        z, r = sig(xz + hm @ U_z), sig(xr + hm @ U_r)
        n = np.tanh(xh + (r * hm) @ U_h)
    expected = z * h0 + (1 - z) * n
    for backend in (ref, fast):
        hs, gates, hn = backend.gru_forward(x, h0, W_x, W_h, b, reset_after,
                                            recurrent_mask=m)
        np.testing.assert_allclose(hs[:, 0], expected, rtol=1e-12)
        np.testing.assert_allclose(gates[:, 0], np.concatenate([z, r, n], axis=1),
                                   rtol=1e-12)
        np.testing.assert_allclose(hn[:, 0], hh if reset_after else r * hm, rtol=1e-12)


@pytest.mark.parametrize("backend", [fast, ref], ids=["cython", "reference"])
@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("mask", [False, True])
def test_empty_batch_and_empty_sequence(backend, reset_after, mask):
    H, D = 3, 2
    bias_shape = (2, 3 * H) if reset_after else (3 * H,)
    for B, T in [(0, 4), (3, 0), (0, 0)]:
        x = np.ones((B, T, D), np.float32)
        h0 = np.full((B, H), 0.5, np.float32)
        W_x, W_h = np.ones((D, 3 * H), np.float32), np.ones((H, 3 * H), np.float32)
        b = np.zeros(bias_shape, np.float32)
        m = np.ones((B, H), np.float32) if mask else None
        hs, gates, hn = backend.gru_forward(x, h0, W_x, W_h, b, reset_after,
                                            recurrent_mask=m)
        assert hs.shape == (B, T, H) and gates.shape == (B, T, 3 * H)
        assert hn.shape == (B, T, H)
        for dl in (np.ones((B, H), np.float32), None):
            dx, dh0, dW_x, dW_h, db = backend.gru_backward(
                x, h0, W_x, W_h, hs, gates, hn, None, dl, reset_after, recurrent_mask=m)
            assert dx.shape == (B, T, D) and not dx.any()
            assert dh0.shape == (B, H) and dh0.dtype == np.float32
            # with no step, h_last is h0
            np.testing.assert_array_equal(dh0, dl if dl is not None else 0)
            assert dW_x.shape == W_x.shape and dW_h.shape == W_h.shape
            assert db.shape == bias_shape
            assert not dW_x.any() and not dW_h.any() and not db.any()


@pytest.mark.parametrize("backend", [fast, ref], ids=["cython", "reference"])
@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_propagates(backend, reset_after, dtype):
    B, T, D, H = 2, 4, 3, 5
    x = np.ones((B, T, D), dtype)
    x[0, 1, 2] = np.nan
    h0 = np.zeros((B, H), dtype)
    W_x = np.full((D, 3 * H), 0.1, dtype)
    W_h = np.full((H, 3 * H), 0.1, dtype)
    b = np.zeros((2, 3 * H) if reset_after else 3 * H, dtype)
    for acts in PAIRS:
        hs, gates, hn = backend.gru_forward(x, h0, W_x, W_h, b, reset_after, *acts)
        assert np.isnan(hs[0, 1:]).all(), acts  # from the NaN step on, sequence 0
        assert np.isnan(gates[0, 1:]).all(), acts
        assert np.isfinite(hs[0, :1]).all() and np.isfinite(hs[1]).all(), acts
        assert np.isfinite(gates[1]).all() and np.isfinite(hn[1]).all(), acts
        dx, dh0, _, _, _ = backend.gru_backward(x, h0, W_x, W_h, hs, gates, hn,
                                                np.ones((B, T, H), dtype), None,
                                                reset_after, *acts)
        assert np.isnan(dx[0]).any() and np.isfinite(dx[1]).all(), acts
        assert np.isnan(dh0[0]).all() and np.isfinite(dh0[1]).all(), acts


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reset_after", [True, False])
def test_default_activations_over_the_float_range(dtype, reset_after):
    # W_h = 0, h0 = 0, one step: h = (1 - sigmoid(a_z)) * tanh(a_h) with the
    # pre-activations a_z, a_h taken from x through an identity-like W_x, in rows long
    # enough for the vector loops, so that the float32 sigmoid and tanh (vectorised
    # approximations, see src/crnn/_simd.h) are held to the float64 formula everywhere.
    H = 64
    a = np.concatenate([np.linspace(-120, 120, 12800), np.geomspace(1e-30, 20, 1600),
                        -np.geomspace(1e-30, 20, 1600)])
    a_z = a.reshape(-1, H)
    a_h = np.roll(a, 7).reshape(-1, H)
    B = a_z.shape[0]
    x = np.concatenate([a_z, a_h], axis=1).astype(dtype).reshape(B, 1, 2 * H)
    W_x = np.zeros((2 * H, 3 * H), dtype)
    W_x[np.arange(H), np.arange(H)] = 1             # a_z -> z block
    W_x[H + np.arange(H), 2 * H + np.arange(H)] = 1  # a_h -> h block
    b = np.zeros((2, 3 * H) if reset_after else 3 * H, dtype)
    hs, gates, _ = fast.gru_forward(x, np.zeros((B, H), dtype), W_x,
                                    np.zeros((H, 3 * H), dtype), b, reset_after)
    x64 = x.astype(np.float64)[:, 0]
    z = scipy.special.expit(x64[:, :H])
    n = np.tanh(x64[:, H:])
    eps, tiny = np.finfo(dtype).eps, np.finfo(dtype).tiny
    np.testing.assert_allclose(gates[:, 0, :H], z, rtol=4 * eps, atol=tiny)
    np.testing.assert_allclose(gates[:, 0, 2 * H:], n, rtol=4 * eps, atol=tiny)
    np.testing.assert_allclose(hs[:, 0], (1 - z) * n, rtol=8 * eps, atol=8 * eps)


def good_args(reset_after=True, dtype=np.float32):
    B, T, D, H = 2, 3, 4, 5
    return dict(x=np.ones((B, T, D), dtype), h0=np.zeros((B, H), dtype),
                W_x=np.ones((D, 3 * H), dtype), W_h=np.ones((H, 3 * H), dtype),
                b=np.ones((2, 3 * H) if reset_after else 3 * H, dtype),
                reset_after=reset_after)


@pytest.mark.parametrize("backend", [fast, ref], ids=["cython", "reference"])
@pytest.mark.parametrize("name,bad,message", [
    ("x", np.ones((2, 3), np.float32), r"expected x of shape \(\?, \?, \?\), got \(2, 3\)"),
    ("x", np.ones((2, 3, 4), np.int64), "float32 or float64, got int64"),
    ("x", [[[1.0]]], "numpy.ndarray, got list"),
    ("x", np.ones((2, 4, 3), np.float32).transpose(0, 2, 1), "C-contiguous"),
    ("h0", np.zeros((3, 5), np.float32), r"expected h0 of shape \(2, 5\), got \(3, 5\)"),
    ("h0", np.zeros((2, 5), np.float64), "dtype float32"),
    ("W_x", np.ones((4, 5), np.float32), r"expected W_x of shape \(4, 15\), got \(4, 5\)"),
    ("W_h", np.ones((5, 5), np.float32), r"\(H, 3\*H\), got \(5, 5\)"),
    ("W_h", np.ones((5, 20), np.float32), r"\(H, 3\*H\), got \(5, 20\)"),
    ("b", np.ones(15, np.float32),
     r"expected b of shape \(2, 15\) \(reset_after=True\), got \(15,\)"),
    ("b", np.ones((2, 5), np.float32), r"expected b of shape \(2, 15\)"),
    ("b", np.ones((2, 15), np.float64), "dtype float32"),
    ("b", None, "got None"),
    ("reset_after", "False", "expected reset_after to be True or False"),
])
def test_forward_rejects_bad_arguments(backend, name, bad, message):
    args = good_args()
    args[name] = bad
    with pytest.raises(ValueError, match=message):
        backend.gru_forward(**args)


@pytest.mark.parametrize("backend", [fast, ref], ids=["cython", "reference"])
@pytest.mark.parametrize("bad,message", [
    (np.ones((2, 15), np.float32),
     r"expected b of shape \(15,\) \(reset_after=False\), got \(2, 15\)"),
    (np.ones(5, np.float32), r"expected b of shape \(15,\)"),
])
def test_forward_rejects_bias_without_reset_after(backend, bad, message):
    args = good_args(reset_after=False)
    args["b"] = bad
    with pytest.raises(ValueError, match=message):
        backend.gru_forward(**args)


@pytest.mark.parametrize("backend", [fast, ref], ids=["cython", "reference"])
@pytest.mark.parametrize("activation", ["activation", "recurrent_activation"])
def test_rejects_unknown_activation(backend, activation):
    args = good_args()
    with pytest.raises(ValueError, match="expected activation"):
        backend.gru_forward(**args, **{activation: "elu"})
    hs, gates, hn = backend.gru_forward(**args)
    del args["b"]
    with pytest.raises(ValueError, match="expected activation"):
        backend.gru_backward(**args, hs=hs, gates=gates, hn=hn, dhs=None, dh_last=None,
                             **{activation: "hard_sigmoid"})


@pytest.mark.parametrize("backend", [fast, ref], ids=["cython", "reference"])
def test_backward_rejects_bad_arguments(backend):
    a = good_args()
    hs, gates, hn = backend.gru_forward(**a)
    del a["b"]
    ok = dict(hs=hs, gates=gates, hn=hn, dhs=None, dh_last=None)
    cases = [
        (dict(hs=hs[:, :2].copy()), r"expected hs of shape \(2, 3, 5\)"),
        (dict(gates=gates[..., :10].copy()), r"expected gates of shape \(2, 3, 15\)"),
        (dict(gates=None), r"expected gates .* got None"),
        (dict(hn=np.ones((2, 3, 15), np.float32)), r"expected hn of shape \(2, 3, 5\)"),
        (dict(hn=hn.astype(np.float64)), "dtype float32"),
        (dict(dhs=np.ones((2, 3, 4), np.float32)), r"expected dhs of shape \(2, 3, 5\)"),
        (dict(dh_last=np.ones(5, np.float32)), r"expected dh_last of shape \(2, 5\)"),
        (dict(recurrent_mask=np.ones((5, 2), np.float32)),
         r"recurrent_mask of shape \(2, 5\)"),
        (dict(reset_after=None), "expected reset_after to be True or False"),
    ]
    for change, message in cases:
        kwargs = {**a, **ok, **change}
        with pytest.raises(ValueError, match=message):
            backend.gru_backward(**kwargs)


@pytest.fixture
def gru_path():
    """Restores the GRU's choice of products afterwards."""
    yield fast._force_path
    fast._force_path(None)


@pytest.mark.parametrize("path", ["packed", "blas", None])
@pytest.mark.parametrize("acts", PAIRS[:3], ids=["-".join(a) for a in PAIRS[:3]])
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (13, 4, 5, 70), (9, 30, 3, 20),
                                   (64, 3, 40, 64)])
def test_inference_matches_reference_and_forward(rng, gru_path, path, acts, padded, shape):
    # gru_inference: float32 reset_after on the packed products (forced, or by size:
    # (64, 3, 40, 64) is above PACKED_MIN_WORK); the same states as gru_forward on the
    # same path (bit for bit), and as the reference (within rounding)
    gru_path(path)
    B, T, D, H = shape
    x, h0, W_x, W_h, b, _ = gru_problem(rng, B, T, D, H, np.float32,
                                        recurrent_activation=acts[1])
    mask = rng.random((B, T)) < 0.7 if padded else None
    for sequences in (True, False):
        out, h_last = fast.gru_inference(x, h0, W_x, W_h, b, True, *acts, mask=mask,
                                         return_sequences=sequences)
        e_out, e_last = ref.gru_inference(x, h0, W_x, W_h, b, True, *acts, mask=mask,
                                          return_sequences=sequences)
        assert_close(h_last, e_last, np.float32)
        if sequences:
            assert_close(out, e_out, np.float32)
        else:
            assert out is None and e_out is None
        if path is not None:
            hs, _, _ = fast.gru_forward(x, h0, W_x, W_h, b, True, *acts, mask=mask)
            np.testing.assert_array_equal(h_last, hs[:, -1])


@pytest.mark.parametrize("backend", [fast, ref], ids=["cython", "reference"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_inference_of_empty_sequences_returns_the_initial_state(rng, backend, dtype):
    x, h0, W_x, W_h, b, _ = gru_problem(rng, 3, 0, 2, 5, dtype)
    out, h_last = backend.gru_inference(x, h0, W_x, W_h, b)
    assert out.shape == (3, 0, 5)
    np.testing.assert_array_equal(h_last, h0)
    assert h_last is not h0


def test_inference_on_the_packed_products_differs_from_blas_only_in_rounding(rng,
                                                                             gru_path):
    x, h0, W_x, W_h, b, _ = gru_problem(rng, 64, 5, 128, 256, np.float32)
    results = []
    for path in ("packed", "blas"):
        gru_path(path)
        results.append(fast.gru_inference(x, h0, W_x, W_h, b))
    for a, e in zip(*results):
        assert_close(a, e, np.float32)
