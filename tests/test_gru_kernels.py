"""What only the GRU kernel has: Keras's reset gate and recurrent dropout written out for
one step, and its default activations over the whole float range. Everything it shares
with the other cells is in test_kernels.py."""
import numpy as np
import pytest
import scipy.special

from conftest import assert_close
from crnn import _gru as fast, _lstm, cores
from crnn.reference import gru as ref
from kernel_cases import BY_ID, DTYPES, float_range, problem


@pytest.mark.parametrize("reset_after", [True, False])
def test_reference_is_keras_reset_gate_and_mask(rng, reset_after):
    # One step written out: the mask scales only the state entering the products with
    # W_h; the interpolation uses h_{t-1} itself (Keras's GRUCell, implementation 1).
    B, D, H = 3, 2, 4
    kernel = BY_ID["gru" if reset_after else "gru-reset_before"]
    x, h0, W_x, W_h, b, m = problem(kernel, rng, B, 1, D, H, np.float64, mask=True).values()
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


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reset_after", [True, False])
def test_default_activations_over_the_float_range(dtype, reset_after):
    # W_h = 0, h0 = 0, one step: h = (1 - sigmoid(a_z)) * tanh(a_h) with the
    # pre-activations a_z, a_h taken from x through an identity-like W_x, in rows long
    # enough for the vector loops, so that the float32 sigmoid and tanh (vectorised
    # approximations, see src/crnn/_simd.h) are held to the float64 formula everywhere.
    H = 64
    a = float_range(12800, 1600, specials=False)
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


GRU = BY_ID["gru"]


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("B,T,D,H", [(1, 4, 3, 5), (7, 6, 4, 9), (40, 12, 5, 33)])
@pytest.mark.parametrize("mask", [False, True])
def test_packed_loop_by_rows_matches_reference(rng, kernel_paths, threads, B, T, D, H,
                                               mask):
    # The packed path's time loop (float32, reset_after) cut by rows over the threads
    # (each thread a chunk of the batch through every step; a chunk of none where
    # B < threads), with masks of real steps and recurrent dropout, in training and
    # inference, against the NumPy twin, and bit for bit against the loop not cut (each
    # step's product on the pool, the gate passes on the calling thread).
    _lstm._packed_threads(threads)
    fast._force_path("packed")
    args = problem(GRU, rng, B, T, D, H, np.float32, mask=mask)
    x, h0, W_x, W_h, b, m = (args[k] for k in ("x", "h0", "W_x", "W_h", "b",
                                               "recurrent_mask"))
    real = rng.random((B, T)) > 0.3 if mask else None
    runs = []
    try:
        for split in (True, False):
            fast._force_split(split)
            with cores.computing():   # (the training forward packs only while crnn computes)
                out = fast.gru_forward(x, h0, W_x, W_h, b, recurrent_mask=m, mask=real)
                inf = fast.gru_inference(x, h0, W_x, W_h, b, mask=real)
            runs.append([*out, *inf])
    finally:
        fast._force_split(None)
    expected = ref.gru_forward(x, h0, W_x, W_h, b, recurrent_mask=m, mask=real)
    for name, a, e in zip(["hs", "gates", "hn"], runs[0], expected):
        assert_close(a, e, np.float32, err_msg=name)
    for a, e in zip(*runs):
        if a is not None:
            np.testing.assert_array_equal(a, e)
