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


def require(module, name):
    """Import ``module`` for the tests that use referee ``name`` (KERAS, ONNX): skip
    without it, unless CRNN_REQUIRE_<name>=1, when its absence is a failure (CI sets
    it)."""
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get(f"CRNN_REQUIRE_{name}") == "1":
            pytest.fail(f"CRNN_REQUIRE_{name}=1 but {module} cannot be imported")
        pytest.skip(f"{module} is not installed")


def require_onnx():
    """``(onnx, onnxruntime)`` for the export tests (CRNN_REQUIRE_ONNX=1 in CI)."""
    return require("onnx", "ONNX"), require("onnxruntime", "ONNX")


def require_keras():
    """Keras 3 on its torch backend (there is no TensorFlow here) for the referee tests:
    skip without it, unless CRNN_REQUIRE_KERAS=1, when its absence (or another backend)
    is a failure."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = require("keras", "KERAS")
    if keras.backend.backend() != "torch":
        why = f"keras runs on {keras.backend.backend()}, these tests need KERAS_BACKEND=torch"
        if os.environ.get("CRNN_REQUIRE_KERAS") == "1":
            pytest.fail(why)
        pytest.skip(why)
    return keras


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


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def kernel_paths():
    """Restores the compiled kernels' path choices afterwards (``_force_path`` of the LSTM
    and the GRU, and the LSTM's packed-GEMM instruction set, thread count and split)."""
    from crnn import _gru, _lstm
    threads = _lstm._packed_threads()
    yield
    _lstm._packed_isa(-1)
    _lstm._packed_threads(threads)
    _lstm._force_path(None)
    _lstm._force_split(None)
    _gru._force_path(None)
