"""What only the SimpleRNN kernel has: each of its activations, alone between x and h,
over the whole float range. Everything it shares with the other cells is in
test_kernels.py."""
import numpy as np
import pytest
import scipy.special

from crnn import _simple_rnn as fast
from kernel_cases import BY_ID, DTYPES, float_range

ACTIVATIONS = [acts[0] for acts in BY_ID["simple_rnn"].acts]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_over_the_float_range(dtype, activation):
    # W_x = I, W_h = 0, b = 0: h = act(x) elementwise, in rows of 64 units (long enough
    # for the vector loops), so the kernel's own float32 tanh and sigmoid (vectorised
    # approximations, see src/crnn/_simd.h) are held to the float64 formula everywhere:
    # tails, tiny values, infinities and NaN.
    a = float_range(24000, 4000)
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
