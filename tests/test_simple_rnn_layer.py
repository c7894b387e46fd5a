"""The SimpleRNN layer and cell: options against the reference backend and against
hand-written expectations, weight exchange, dropout, and every bad input."""
import numpy as np
import pytest

import crnn
from conftest import assert_close

DTYPES = [np.float32, np.float64]


def pair(dtype, **kwargs):
    """The same layer on both backends, with the same weights."""
    fast = crnn.SimpleRNN(backend="cython", dtype=np.dtype(dtype).name, seed=7, **kwargs)
    slow = crnn.SimpleRNN(backend="reference", dtype=np.dtype(dtype).name, seed=7, **kwargs)
    return fast, slow


def flat(out):
    return out if isinstance(out, list) else [out]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("return_state", [False, True])
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("initial_state", [False, True])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_layer_options_match_reference(rng, dtype, return_sequences, return_state,
                                       go_backwards, initial_state, activation):
    B, T, D, H = 3, 6, 4, 5
    fast, slow = pair(dtype, units=H, activation=activation,
                      return_sequences=return_sequences, return_state=return_state,
                      go_backwards=go_backwards)
    x = rng.standard_normal((B, T, D))
    h0 = [rng.standard_normal((B, H))] if initial_state else None
    out_f, out_s = flat(fast(x, initial_state=h0)), flat(slow(x, initial_state=h0))
    assert len(out_f) == (2 if return_state else 1)
    assert out_f[0].shape == ((B, T, H) if return_sequences else (B, H))
    for a, e in zip(out_f, out_s):
        assert a.dtype == dtype
        assert_close(a, e, dtype)
    grads = [rng.standard_normal(o.shape) for o in out_f]
    g = grads if return_state else grads[0]
    dx_f, dx_s = fast.backward(g), slow.backward(g)
    assert dx_f.shape == (B, T, D)
    assert_close(dx_f, dx_s, dtype)
    for a, e in zip(fast.get_gradients(), slow.get_gradients()):
        assert_close(a, e, dtype)
    assert_close(fast.initial_state_grad[0], slow.initial_state_grad[0], dtype)


def test_go_backwards_is_the_reversed_sequence(rng):
    x = rng.standard_normal((2, 7, 3)).astype(np.float32)
    fwd = crnn.SimpleRNN(4, return_sequences=True, seed=1)
    bwd = crnn.SimpleRNN(4, return_sequences=True, go_backwards=True, seed=1)
    # Keras: the output of go_backwards is in processing order, i.e. reversed.
    np.testing.assert_array_equal(bwd(x), fwd(x[:, ::-1]))
    g = rng.standard_normal((2, 7, 4)).astype(np.float32)
    np.testing.assert_array_equal(bwd.backward(g), fwd.backward(g)[:, ::-1])


def test_many_to_one_output_is_last_state_of_sequence(rng):
    x = rng.standard_normal((2, 5, 3))
    seq = crnn.SimpleRNN(4, return_sequences=True, return_state=True, seed=3)
    last = crnn.SimpleRNN(4, seed=3)
    out, h = seq(x)
    np.testing.assert_array_equal(last(x), out[:, -1])
    np.testing.assert_array_equal(h, out[:, -1])


def test_step_by_step_cell_equals_layer(rng):
    x = rng.standard_normal((3, 6, 4)).astype(np.float32)
    layer = crnn.SimpleRNN(5, return_sequences=True, seed=11)
    out = layer(x)
    cell = crnn.SimpleRNNCell(5)
    cell.build((3, 4))
    cell.set_weights(layer.get_weights())
    states = cell.get_initial_state(3)
    for t in range(6):
        y, states = cell(x[:, t], states)
        np.testing.assert_allclose(y, out[:, t], rtol=1e-6, atol=1e-7)
        assert states[0] is y


def test_cell_backward_matches_one_step_layer(rng):
    x = rng.standard_normal((3, 4))
    h = rng.standard_normal((3, 5))
    layer = crnn.SimpleRNN(5, seed=2, dtype="float64")
    cell = crnn.SimpleRNNCell(5, seed=2, dtype="float64")
    out = layer(x[:, None], initial_state=[h])
    y, _ = cell(x, [h])
    np.testing.assert_allclose(y, out, rtol=1e-12)
    g = rng.standard_normal((3, 5))
    dx, (dh,) = cell.backward(g)
    np.testing.assert_allclose(dx, layer.backward(g)[:, 0], rtol=1e-12)
    np.testing.assert_allclose(dh, layer.initial_state_grad[0], rtol=1e-12)
    for a, e in zip(cell.get_gradients(), layer.get_gradients()):
        np.testing.assert_allclose(a, e, rtol=1e-12)


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


def test_get_weights_returns_copies_and_params_are_the_arrays():
    layer = crnn.SimpleRNN(2, seed=0)
    layer(np.ones((1, 2, 3)))
    w = layer.get_weights()
    w[0][...] = 99
    assert not (layer.get_weights()[0] == 99).any()
    assert layer.params["kernel"] is layer.cell.params["kernel"]
    layer.backward(np.ones((1, 2)))
    assert set(layer.grads) == {"kernel", "recurrent_kernel", "bias"}


def test_use_bias_false():
    layer = crnn.SimpleRNN(3, use_bias=False, seed=0)
    layer(np.ones((2, 4, 2)))
    assert [w.shape for w in layer.get_weights()] == [(2, 3), (3, 3)]
    layer.backward(np.ones((2, 3)))
    assert [g.shape for g in layer.get_gradients()] == [(2, 3), (3, 3)]


def test_seed_makes_weights_reproducible():
    a, b = crnn.SimpleRNN(4, seed=5), crnn.SimpleRNN(4, seed=5)
    a.build((1, 1, 3))
    b.build((1, 1, 3))
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


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


def test_inputs_are_converted():
    layer = crnn.SimpleRNN(2, seed=0)
    as_list = [[[1.0, 2.0], [3.0, 4.0]]]
    y = layer(as_list)
    assert y.dtype == np.float32 and y.shape == (1, 2)
    strided = np.ones((1, 2, 4))[:, :, ::2]
    np.testing.assert_array_equal(layer(strided), layer(np.ones((1, 2, 2))))
    np.testing.assert_array_equal(layer(np.ones((1, 2, 2), np.int32)),
                                  layer(np.ones((1, 2, 2))))


def test_empty_batch_and_empty_sequence():
    layer = crnn.SimpleRNN(3, return_sequences=True, return_state=True, seed=0)
    out, h = layer(np.ones((0, 4, 2)))
    assert out.shape == (0, 4, 3) and h.shape == (0, 3)
    h0 = np.full((2, 3), 0.5, np.float32)
    out, h = layer(np.ones((2, 0, 2)), initial_state=[h0])
    assert out.shape == (2, 0, 3)
    np.testing.assert_array_equal(h, h0)  # no step: the last state is the initial one
    dx = layer.backward([np.ones((2, 0, 3)), np.ones((2, 3))])
    assert dx.shape == (2, 0, 2)
    np.testing.assert_array_equal(layer.initial_state_grad[0], np.ones((2, 3)))


def test_nan_input_propagates():
    layer = crnn.SimpleRNN(3, return_sequences=True, seed=0)
    x = np.ones((2, 4, 2))
    x[1, 2, 0] = np.nan
    y = layer(x)
    assert np.isnan(y[1, 2:]).all() and np.isfinite(y[1, :2]).all() and np.isfinite(y[0]).all()


@pytest.mark.parametrize("call,message", [
    (lambda l: l(np.ones((2, 3))), r"\(batch, time, features\) \(3-D\), got shape \(2, 3\)"),
    (lambda l: l(np.ones((2, 3, 4, 5))), r"got shape \(2, 3, 4, 5\)"),
    (lambda l: l(np.ones((2, 3, 5))), r"expected input with 4 features .* got shape \(2, 3, 5\)"),
    (lambda l: l(np.ones((2, 3, 4)), initial_state=[np.ones((3, 6))]),
     r"expected state h of shape \(2, 6\), got \(3, 6\)"),
    (lambda l: l(np.ones((2, 3, 4)), initial_state=[np.ones((2, 6))] * 2),
     "list of 1 array"),
    (lambda l: l([["a"]]), "convertible"),
])
def test_bad_inputs_raise(call, message):
    layer = crnn.SimpleRNN(6, seed=0)
    layer.build((None, None, 4))
    with pytest.raises(ValueError, match=message):
        call(layer)


def test_bad_backward_calls_raise():
    layer = crnn.SimpleRNN(6, return_sequences=True, seed=0)
    with pytest.raises(ValueError, match="before any forward"):
        layer.backward(np.ones((2, 3, 6)))
    layer(np.ones((2, 3, 4)))
    with pytest.raises(ValueError, match=r"expected d_output of shape \(2, 3, 6\).*got shape \(2, 6\)"):
        layer.backward(np.ones((2, 6)))
    stateful = crnn.SimpleRNN(6, return_state=True, seed=0)
    stateful(np.ones((2, 3, 4)))
    with pytest.raises(ValueError, match=r"list \[d_output, d_h_last\]"):
        stateful.backward(np.ones((2, 6)))
    with pytest.raises(ValueError, match=r"expected d_h_last of shape \(2, 6\)"):
        stateful.backward([None, np.ones((2, 5))])
    with pytest.raises(ValueError, match="call backward first"):
        crnn.SimpleRNN(2, seed=0).get_gradients()
    with pytest.raises(ValueError, match="no weights yet"):
        crnn.SimpleRNN(2).set_weights([])
    with pytest.raises(ValueError, match=r"expected kernel of shape \(4, 6\), got \(6, 4\)"):
        layer.set_weights([np.ones((6, 4)), np.ones((6, 6)), np.ones(6)])
    with pytest.raises(ValueError, match="expected 3 weight arrays"):
        layer.set_weights([np.ones((4, 6))])


@pytest.mark.parametrize("kwargs,message", [
    (dict(units=0), "positive int"),
    (dict(units=2.5), "positive int"),
    (dict(units=2, activation="elu"), "activation"),
    (dict(units=2, dropout=1.0), r"dropout in \[0, 1\)"),
    (dict(units=2, recurrent_dropout=-0.1), r"recurrent_dropout in \[0, 1\)"),
    (dict(units=2, dtype="float16"), "float32' or 'float64"),
    (dict(units=2, kernel_initializer="nope"), "initializer"),
])
def test_bad_constructor_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        crnn.SimpleRNN(**kwargs)
