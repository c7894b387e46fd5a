"""What only the SimpleRNN kernel has: each of its activations, alone between x and h,
over the whole float range. Everything it shares with the other cells is in
test_kernels.py."""
import numpy as np
import pytest
import scipy.special

from conftest import assert_close
from crnn import _lstm, _simple_rnn as fast
from crnn.reference import simple_rnn as ref
from kernel_cases import BY_ID, DTYPES, float_range, output_grads, problem

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


SIMPLE_RNN = BY_ID["simple_rnn"]


@pytest.fixture
def split_rows():
    """Restores the thread count and the time loop's split afterwards."""
    threads = _lstm._packed_threads()
    yield
    _lstm._packed_threads(threads)
    fast._force_split(None)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("B,T,D,H", [(1, 4, 3, 5), (7, 6, 4, 9), (40, 12, 5, 33)])
@pytest.mark.parametrize("mask", [False, True])
def test_time_loop_by_rows_matches_reference(rng, split_rows, dtype, threads, B, T, D, H,
                                             mask):
    # The time loop cut by rows over the threads (each thread a chunk of the batch
    # through every step; a chunk of none where B < threads), with masks of real steps
    # and recurrent dropout, forward and backward, against the NumPy twin; and against
    # the loop on one thread.
    _lstm._packed_threads(threads)
    args = problem(SIMPLE_RNN, rng, B, T, D, H, dtype, mask=mask)
    real = rng.random((B, T)) > 0.3 if mask else None
    grads = output_grads(SIMPLE_RNN, rng, B, T, H, dtype, (True, True))
    dhs, (dh_last,) = grads
    x, h0, W_x, W_h, b, m = (args[k] for k in ("x", "h0", "W_x", "W_h", "b",
                                               "recurrent_mask"))
    runs = []
    for split in (True, False):
        fast._force_split(split)
        hs = fast.simple_rnn_forward(x, h0, W_x, W_h, b, recurrent_mask=m, mask=real)
        runs.append([hs, *fast.simple_rnn_backward(x, h0, W_x, W_h, hs, dhs, dh_last,
                                                   recurrent_mask=m, mask=real)])
    hs_ref = ref.simple_rnn_forward(x, h0, W_x, W_h, b, recurrent_mask=m, mask=real)
    expected = [hs_ref, *ref.simple_rnn_backward(x, h0, W_x, W_h, hs_ref, dhs, dh_last,
                                                 recurrent_mask=m, mask=real)]
    names = ["hs", "dx", "dh0", "dW_x", "dW_h", "db"]
    for name, a, one, e in zip(names, *runs, expected):
        assert_close(a, e, dtype, err_msg=name)
        assert_close(a, one, dtype, err_msg=f"{name} (rows vs one thread)")
