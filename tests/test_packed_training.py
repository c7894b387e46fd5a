"""The GRU's training passes on the packed GEMM (float32, reset_after): gru_forward's
products and gru_backward's per-step product with W_h^T run on _lstm's pool when forced
(_force_path("packed")) or, by size, while crnn computes (crnn.cores.computing); they must
match the NumPy reference forward and backward as the BLAS path does."""
import numpy as np
import pytest

from crnn import _gru as fast, cores
from crnn.reference import gru as ref


def problem(rng, B, T, D, H):
    f = np.float32
    return (rng.standard_normal((B, T, D)).astype(f), rng.standard_normal((B, H)).astype(f),
            (rng.standard_normal((D, 3 * H)) / np.sqrt(D)).astype(f),
            (rng.standard_normal((H, 3 * H)) / np.sqrt(H)).astype(f),
            (0.1 * rng.standard_normal((2, 3 * H))).astype(f))


def close(a, e, name):
    scale = max(1.0, float(np.abs(e).max()))
    np.testing.assert_allclose(a, e, rtol=2e-4, atol=2e-4 * scale, err_msg=name)


@pytest.fixture
def gru_path():
    yield fast._force_path
    fast._force_path(None)


@pytest.mark.parametrize("how", ["forced", "by size while computing"])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (13, 4, 5, 70), (64, 6, 40, 64)])
@pytest.mark.parametrize("dropout", [False, True])
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("grads", ["both", "sequence", "last"])
def test_packed_training_matches_reference(gru_path, how, shape, dropout, padded, grads):
    rng = np.random.default_rng(sum(shape) + 7 * dropout + 3 * padded)
    B, T, D, H = shape
    x, h0, W_x, W_h, b = problem(rng, B, T, D, H)
    m = ((rng.random((B, H)) < 0.8) / 0.8).astype(np.float32) if dropout else None
    mask = rng.random((B, T)) < 0.7 if padded else None
    dhs = rng.standard_normal((B, T, H)).astype(np.float32) if grads != "last" else None
    dl = rng.standard_normal((B, H)).astype(np.float32) if grads != "sequence" else None
    if how == "forced":
        gru_path("packed")
        out = fast.gru_forward(x, h0, W_x, W_h, b, True, recurrent_mask=m, mask=mask)
        g = fast.gru_backward(x, h0, W_x, W_h, *out, dhs, dl, True, recurrent_mask=m,
                              mask=mask)
    else:
        with cores.computing():
            assert fast._packed_product(B, H, False) == (B * 3 * H * H >= 2 ** 17)
            out = fast.gru_forward(x, h0, W_x, W_h, b, True, recurrent_mask=m, mask=mask)
            g = fast.gru_backward(x, h0, W_x, W_h, *out, dhs, dl, True, recurrent_mask=m,
                                  mask=mask)
    e_out = ref.gru_forward(x, h0, W_x, W_h, b, True, recurrent_mask=m, mask=mask)
    e_g = ref.gru_backward(x, h0, W_x, W_h, *e_out, dhs, dl, True, recurrent_mask=m,
                           mask=mask)
    for name, a, e in zip(["hs", "gates", "hn"], out, e_out):
        close(a, e, name)
    for name, a, e in zip(["dx", "dh0", "dW_x", "dW_h", "db"], g, e_g):
        assert a.shape == e.shape and a.dtype == np.float32, name
        close(a, e, name)


def test_packed_backward_differs_from_blas_only_in_rounding(gru_path):
    rng = np.random.default_rng(3)
    x, h0, W_x, W_h, b = problem(rng, 64, 5, 48, 128)
    dhs = rng.standard_normal((64, 5, 128)).astype(np.float32)
    results = []
    for path in ("packed", "blas"):
        gru_path(path)
        out = fast.gru_forward(x, h0, W_x, W_h, b)
        results.append(fast.gru_backward(x, h0, W_x, W_h, *out, dhs, None))
    for name, a, e in zip(["dx", "dh0", "dW_x", "dW_h", "db"], *results):
        close(a, e, name)


def test_outside_crnns_computations_training_stays_on_blas():
    # without computing(), OpenBLAS may run multi-threaded: its idle workers would spin
    # beside the pool, so only inference goes packed
    assert not fast._packed_product(64, 256, False)
    assert fast._packed_product(64, 256, True)
    with cores.computing():
        assert fast._packed_product(64, 256, False)
