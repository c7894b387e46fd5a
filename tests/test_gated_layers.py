"""LSTM and GRU layers against Keras's formulas written out by hand in NumPy (float64),
Keras's layout and initial bias, and their own arguments."""
import numpy as np
import pytest
from scipy.special import expit as sigmoid

import crnn


def keras_lstm(x, h, c, kernel, recurrent, bias):
    H = h.shape[1]
    out = []
    for t in range(x.shape[1]):
        z = x[:, t] @ kernel + h @ recurrent + bias
        i, f, g, o = (z[:, k * H:(k + 1) * H] for k in range(4))   # Keras order i, f, c, o
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        out.append(h)
    return np.stack(out, axis=1), h, c


def keras_gru(x, h, kernel, recurrent, bias, reset_after):
    H = h.shape[1]
    out = []
    b_in, b_rec = (bias[0], bias[1]) if reset_after else (bias, np.zeros_like(bias))
    for t in range(x.shape[1]):
        xz, xr, xh = np.split(x[:, t] @ kernel + b_in, 3, axis=1)   # Keras order z, r, h
        if reset_after:
            hz, hr, hh = np.split(h @ recurrent + b_rec, 3, axis=1)
            z, r = sigmoid(xz + hz), sigmoid(xr + hr)
            n = np.tanh(xh + r * hh)
        else:
            z = sigmoid(xz + h @ recurrent[:, :H])
            r = sigmoid(xr + h @ recurrent[:, H:2 * H])
            n = np.tanh(xh + (r * h) @ recurrent[:, 2 * H:])
        h = z * h + (1 - z) * n
        out.append(h)
    return np.stack(out, axis=1), h


@pytest.mark.parametrize("backend", ["cython", "reference"])
def test_lstm_is_keras_formula(rng, backend):
    B, T, D, H = 3, 5, 4, 6
    layer = crnn.LSTM(H, return_sequences=True, return_state=True, seed=0,
                      dtype="float64", backend=backend)
    layer.build((B, T, D))
    w = [rng.standard_normal(a.shape) * 0.5 for a in layer.get_weights()]
    layer.set_weights(w)
    x = rng.standard_normal((B, T, D))
    h0, c0 = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    out, h, c = layer(x, initial_state=[h0, c0])
    e_out, e_h, e_c = keras_lstm(x, h0, c0, *w)
    for a, e in ((out, e_out), (h, e_h), (c, e_c)):
        np.testing.assert_allclose(a, e, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", ["cython", "reference"])
@pytest.mark.parametrize("reset_after", [True, False])
def test_gru_is_keras_formula(rng, backend, reset_after):
    B, T, D, H = 3, 5, 4, 6
    layer = crnn.GRU(H, return_sequences=True, return_state=True, reset_after=reset_after,
                     seed=0, dtype="float64", backend=backend)
    layer.build((B, T, D))
    w = [rng.standard_normal(a.shape) * 0.5 for a in layer.get_weights()]
    layer.set_weights(w)
    x = rng.standard_normal((B, T, D))
    h0 = rng.standard_normal((B, H))
    out, h = layer(x, initial_state=h0)
    e_out, e_h = keras_gru(x, h0, *w, reset_after)
    np.testing.assert_allclose(out, e_out, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(h, e_h, rtol=1e-10, atol=1e-12)


def test_lstm_layout_and_unit_forget_bias():
    layer = crnn.LSTM(5, seed=0)
    layer.build((None, None, 3))
    kernel, recurrent, bias = layer.get_weights()
    assert kernel.shape == (3, 20) and recurrent.shape == (5, 20) and bias.shape == (20,)
    np.testing.assert_array_equal(bias, np.r_[np.zeros(5), np.ones(5), np.zeros(10)])
    # Keras's orthogonal recurrent initialiser on (H, 4H): orthonormal rows
    np.testing.assert_allclose(recurrent @ recurrent.T, np.eye(5), atol=1e-5)
    plain = crnn.LSTM(5, unit_forget_bias=False, seed=0)
    plain.build((None, None, 3))
    assert not plain.get_weights()[2].any()
    assert repr(plain) == "LSTM(5, unit_forget_bias=False, seed=0)"


def test_gru_bias_shape_follows_reset_after():
    after, before = crnn.GRU(4, seed=0), crnn.GRU(4, reset_after=False, seed=0)
    after.build((None, None, 2))
    before.build((None, None, 2))
    assert [w.shape for w in after.get_weights()] == [(2, 12), (4, 12), (2, 12)]
    assert [w.shape for w in before.get_weights()] == [(2, 12), (4, 12), (12,)]
    with pytest.raises(ValueError, match=r"expected bias of shape \(2, 12\), got \(12,\)"):
        after.set_weights(before.get_weights())


def test_lstm_state_list_is_checked():
    layer = crnn.LSTM(3, seed=0)
    with pytest.raises(ValueError, match=r"list of 2 arrays \['h', 'c'\], got ndarray"):
        layer(np.ones((2, 4, 2)), initial_state=np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"expected state c of shape \(2, 3\), got \(2, 4\)"):
        layer(np.ones((2, 4, 2)), initial_state=[np.zeros((2, 3)), np.zeros((2, 4))])


@pytest.mark.parametrize("Layer", [crnn.LSTM, crnn.GRU])
def test_recurrent_activation_is_checked(Layer):
    with pytest.raises(ValueError, match="activation"):
        Layer(3, recurrent_activation="softmax")
