import os

import numpy as np
import pytest

TOL = {np.float32: 1e-5, np.float64: 1e-10}


def require_torch():
    """Import torch for the cross-check tests: skip without it, unless
    CRNN_REQUIRE_TORCH=1, when its absence is a failure (CI sets it)."""
    try:
        import torch
    except ImportError:
        if os.environ.get("CRNN_REQUIRE_TORCH") == "1":
            pytest.fail("CRNN_REQUIRE_TORCH=1 but torch cannot be imported")
        pytest.skip("torch is not installed")
    return torch


def assert_close(actual, expected, dtype, scale=1.0, err_msg=""):
    """Relative agreement at the dtype's tolerance, measured against the largest entry
    (so entries near zero are judged on the array's scale, not their own)."""
    tol = TOL[np.dtype(dtype).type] * scale
    expected = np.asarray(expected)
    ref = max(float(np.max(np.abs(expected), initial=0.0)), 1.0)
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * ref, err_msg=err_msg)


def numeric_grad(f, a, eps=1e-6):
    """Central differences of the scalar f() with respect to every entry of a (perturbed
    in place, then restored)."""
    g = np.zeros_like(a)
    for i in np.ndindex(a.shape):
        old = a[i]
        a[i] = old + eps
        up = f()
        a[i] = old - eps
        down = f()
        a[i] = old
        g[i] = (up - down) / (2 * eps)
    return g


def random_problem(rng, B, T, D, H, dtype, mask=False, w_scale=0.5):
    """Arguments of the SimpleRNN kernels, with weights small enough that the recurrence
    contracts (so float32 rounding does not grow over long sequences)."""
    x = rng.standard_normal((B, T, D)).astype(dtype)
    h0 = (0.5 * rng.standard_normal((B, H))).astype(dtype)
    W_x = (rng.standard_normal((D, H)) / np.sqrt(D)).astype(dtype)
    W_h = (w_scale * rng.standard_normal((H, H)) / np.sqrt(H)).astype(dtype)
    b = (0.1 * rng.standard_normal(H)).astype(dtype)
    m = ((rng.random((B, H)) > 0.3) / 0.7).astype(dtype) if mask else None
    return x, h0, W_x, W_h, b, m


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
