"""Fast kernels against the reference over many shapes, edge sizes included."""
import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import assert_close, random_problem
from crnn import _simple_rnn as fast
from crnn import reference as ref

sizes = st.integers(min_value=1, max_value=12)


def check_shape(B, T, D, H, dtype, activation, seed, scale=1.0):
    rng = np.random.default_rng(seed)
    x, h0, W_x, W_h, b, _ = random_problem(rng, B, T, D, H, dtype)
    hs_r = ref.simple_rnn_forward(x, h0, W_x, W_h, b, activation)
    hs_f = fast.simple_rnn_forward(x, h0, W_x, W_h, b, activation)
    assert_close(hs_f, hs_r, dtype, scale)
    dhs = rng.standard_normal((B, T, H)).astype(dtype)
    dl = rng.standard_normal((B, H)).astype(dtype)
    for a, e in zip(fast.simple_rnn_backward(x, h0, W_x, W_h, hs_r, dhs, dl, activation),
                    ref.simple_rnn_backward(x, h0, W_x, W_h, hs_r, dhs, dl, activation)):
        assert a.shape == e.shape
        assert_close(a, e, dtype, scale)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(B=sizes, T=sizes, D=sizes, H=sizes, dtype=st.sampled_from([np.float32, np.float64]),
       activation=st.sampled_from(["tanh", "relu", "sigmoid", "linear"]),
       seed=st.integers(0, 2**32 - 1))
def test_any_small_shape(B, T, D, H, dtype, activation, seed):
    check_shape(B, T, D, H, dtype, activation, seed)


@settings(max_examples=6, deadline=None)
@given(B=st.sampled_from([1, 3]), D=st.sampled_from([1, 7]), H=st.sampled_from([1, 16]),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**32 - 1))
def test_long_sequences(B, D, H, dtype, seed):
    # T = 300: the float32 gradients sum 300 steps of rounding, hence the wider margin.
    check_shape(B, 300, D, H, dtype, "tanh", seed, scale=10)


def test_edge_sizes_one():
    for dtype in (np.float32, np.float64):
        check_shape(1, 1, 1, 1, dtype, "tanh", 0)
        check_shape(1, 1, 5, 3, dtype, "relu", 1)
        check_shape(7, 1, 1, 1, dtype, "sigmoid", 2)
