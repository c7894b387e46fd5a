"""The fused Adam step (crnn._optim.adam_update) against its NumPy twin
(crnn.reference.optim): bit for bit in both dtypes, with AMSGrad, over many steps and
special values; bad input raises before the compiled loop."""
import numpy as np
import pytest

import crnn
from crnn import _optim
from crnn.reference import optim as reference


def run(module, p, grads, amsgrad, dtype):
    p = p.copy()
    m, v = np.zeros_like(p), np.zeros_like(p)
    v_hat = np.zeros_like(p) if amsgrad else None
    for t, g in enumerate(grads, start=1):
        one = dtype(1)
        alpha = dtype(0.01) * np.sqrt(one - dtype(0.999) ** dtype(t)) / (one - dtype(0.9) ** dtype(t))
        module.adam_update(p, g, m, v, v_hat, alpha, 0.9, 0.999, 1e-7)
    return p, m, v, v_hat


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("shape", [(0,), (1,), (7, 33), (3, 4, 5)])
def test_equals_reference_bit_for_bit(dtype, amsgrad, shape):
    rng = np.random.default_rng(len(shape) + amsgrad)
    p = rng.standard_normal(shape).astype(dtype)
    grads = [(rng.standard_normal(shape) * 10.0 ** rng.integers(-6, 3)).astype(dtype)
             for _ in range(6)]
    fast = run(_optim, p, grads, amsgrad, dtype)
    slow = run(reference, p, grads, amsgrad, dtype)
    for a, e in zip(fast, slow):
        if e is None:
            assert a is None
        else:
            np.testing.assert_array_equal(a, e)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_values_propagate_as_in_numpy(dtype):
    p = np.array([1.0, 2.0, 3.0, 0.0, -1.0], dtype=dtype)
    g = np.array([np.nan, np.inf, 0.0, -0.0, 1e30], dtype=dtype)
    with np.errstate(all="ignore"):  # the NumPy twin warns of the inf and NaN it makes
        fast = run(_optim, p, [g, g[::-1].copy()], True, dtype)
        slow = run(reference, p, [g, g[::-1].copy()], True, dtype)
    for a, e in zip(fast, slow):
        np.testing.assert_array_equal(a, e)


def test_strided_gradient_is_accepted():
    rng = np.random.default_rng(1)
    p = rng.standard_normal((4, 6)).astype(np.float32)
    g = rng.standard_normal((4, 12)).astype(np.float32)[:, ::2]
    fast = run(_optim, p, [g], False, np.float32)
    slow = run(reference, p, [g], False, np.float32)
    for a, e in zip(fast[:3], slow[:3]):
        np.testing.assert_array_equal(a, e)


def test_bad_input_raises():
    p = np.zeros((3, 2), np.float32)
    z = np.zeros_like(p)
    cases = [
        ((p.astype(np.int64), z, z, z, None), "expected p a float32 or float64 ndarray"),
        ((p, z, z.astype(np.float64), z, None), "expected m an ndarray of p's shape"),
        ((p, z, z, np.zeros((2, 3), np.float32), None), "expected v an ndarray of p's shape"),
        ((p, z, z, z, np.zeros(6, np.float32)), "expected v_hat an ndarray of p's shape"),
        ((p, np.zeros((3, 3), np.float32), z, z, None), "expected g of p's shape"),
        ((np.zeros((2, 6), np.float32)[:, ::2], np.zeros((2, 3), np.float32),
          np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float32), None),
         "expected p C-contiguous and writeable"),
    ]
    for args, message in cases:
        with pytest.raises(ValueError, match=message):
            _optim.adam_update(*args, 0.01, 0.9, 0.999, 1e-7)
    ro = np.zeros_like(p)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match="expected m C-contiguous and writeable"):
        _optim.adam_update(p, z, ro, z, None, 0.01, 0.9, 0.999, 1e-7)


def test_adam_on_a_strided_parameter_uses_the_twin():
    rng = np.random.default_rng(2)
    base = rng.standard_normal((4, 10))
    strided, dense = base[:, ::2], base[:, ::2].copy()
    g = rng.standard_normal((4, 5))
    for params in ([strided], [dense]):
        opt = crnn.optimizers.Adam(0.01, amsgrad=True)
        for _ in range(3):
            opt.apply(params, [g])
    np.testing.assert_array_equal(strided, dense)
