"""The SimpleRNN layer against hand-written expectations: Keras's formula and layout,
dropout, config, the backend switch. What every recurrent layer must do is tested for
all cell types in test_recurrent_layers.py."""
import numpy as np
import pytest

import crnn
from conftest import assert_close


def test_weights_in_keras_layout_and_order():
    layer = crnn.SimpleRNN(5, seed=0)
    layer.build((None, None, 3))
    kernel, recurrent, bias = layer.get_weights()
    assert kernel.shape == (3, 5) and recurrent.shape == (5, 5) and bias.shape == (5,)
    assert kernel.dtype == np.float32
    np.testing.assert_allclose(recurrent @ recurrent.T, np.eye(5), atol=1e-5)  # orthogonal
    assert not bias.any()
    new = [np.full((3, 5), 0.1), np.eye(5), np.arange(5.0)]
    layer.set_weights(new)
    for w, n in zip(layer.get_weights(), new):
        np.testing.assert_array_equal(w, n.astype(np.float32))
    assert layer.count_params() == 3 * 5 + 5 * 5 + 5
    # Keras computes h = tanh(x @ kernel + h @ recurrent_kernel + bias)
    x = np.ones((1, 1, 3), np.float32)
    np.testing.assert_allclose(layer(x), np.tanh(0.3 + np.arange(5.0))[None], rtol=1e-6)


def test_config_round_trip_and_repr():
    layer = crnn.SimpleRNN(8, activation="relu", return_sequences=True, dropout=0.25)
    assert repr(layer) == "SimpleRNN(8, activation='relu', return_sequences=True, dropout=0.25)"
    clone = crnn.SimpleRNN.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    assert repr(crnn.SimpleRNNCell(3)) == "SimpleRNNCell(3)"


@pytest.mark.parametrize("backend", ["cython", "reference"])
def test_dropout_masks_fixed_across_time(rng, backend):
    B, T, D, H = 4, 5, 6, 3
    layer = crnn.SimpleRNN(H, return_sequences=True, dropout=0.5, recurrent_dropout=0.4,
                           seed=3, dtype="float64", backend=backend)
    x = rng.standard_normal((B, T, D))
    out = layer(x, training=True)
    xm = layer.cell._dropout_mask
    hm = layer.cell._recurrent_dropout_mask
    assert xm.shape == (B, D) and hm.shape == (B, H)
    assert set(np.unique(xm)) <= {0.0, 2.0} and set(np.unique(hm)) <= {0.0, 1 / 0.6}
    # Keras: h_t = tanh((x_t * xm) @ W_x + (h_{t-1} * hm) @ W_h + b), same masks each step
    W_x, W_h, b = layer.get_weights()
    h = np.zeros((B, H))
    for t in range(T):
        h = np.tanh((x[:, t] * xm) @ W_x + (h * hm) @ W_h + b)
        np.testing.assert_allclose(out[:, t], h, rtol=1e-12)
    # backward goes through the same masks: compare with the reference kernels directly
    g = rng.standard_normal((B, T, H))
    dx = layer.backward(g)
    r = crnn.reference.simple_rnn_backward(x * xm[:, None], np.zeros((B, H)), W_x, W_h, out,
                                           g, None, "tanh", hm)
    np.testing.assert_allclose(dx, r[0] * xm[:, None], rtol=1e-12)
    np.testing.assert_allclose(layer.get_gradients()[1], r[3], rtol=1e-12)
    # inference ignores dropout; a new training call draws new masks
    plain = crnn.SimpleRNN(H, return_sequences=True, seed=3, dtype="float64", backend=backend)
    np.testing.assert_array_equal(layer(x), plain(x))
    layer(x, training=True)
    assert not np.array_equal(layer.cell._dropout_mask, xm)


def test_set_backend_switches_auto_layers(rng):
    x = rng.standard_normal((2, 3, 4))
    layer = crnn.SimpleRNN(3, seed=0)
    try:
        crnn.set_backend("reference")
        assert crnn.get_backend() == "reference"
        assert layer.cell.kernels() is crnn.reference.simple_rnn
        y_ref = layer(x)
    finally:
        crnn.set_backend("cython")
    assert layer.cell.kernels() is not crnn.reference.simple_rnn
    assert_close(layer(x), y_ref, np.float32)
    with pytest.raises(ValueError, match="backend"):
        crnn.set_backend("torch")
    with pytest.raises(ValueError, match="backend"):
        crnn.SimpleRNN(3, backend="gpu")

