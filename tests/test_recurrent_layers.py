"""What every recurrent layer and cell must do, for each cell type: options against the
reference backend, the cell against the layer, weights, config, inputs and every bad
input. Cell-specific formulas live in test_<cell>_layer.py."""
import numpy as np
import pytest

import crnn
from conftest import assert_close

DTYPES = [np.float32, np.float64]

# id: (layer class, cell class, extra constructor arguments, state names, gates)
CELLS = {
    "simple_rnn": (crnn.SimpleRNN, crnn.SimpleRNNCell, {}, ("h",), 1),
    "lstm": (crnn.LSTM, crnn.LSTMCell, {}, ("h", "c"), 4),
    "gru": (crnn.GRU, crnn.GRUCell, {}, ("h",), 3),
    "gru_reset_before": (crnn.GRU, crnn.GRUCell, {"reset_after": False}, ("h",), 3),
}


@pytest.fixture(params=list(CELLS))
def cell_type(request):
    return CELLS[request.param]


def make(cell_type, *args, **kwargs):
    layer_cls, _, extra, _, _ = cell_type
    return layer_cls(*args, **{**extra, **kwargs})


def make_cell(cell_type, *args, **kwargs):
    _, cell_cls, extra, _, _ = cell_type
    return cell_cls(*args, **{**extra, **kwargs})


def flat(out):
    return out if isinstance(out, list) else [out]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("return_state", [False, True])
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("initial_state", [False, True])
def test_layer_options_match_reference(rng, cell_type, dtype, return_sequences,
                                       return_state, go_backwards, initial_state):
    B, T, D, H = 3, 6, 4, 5
    names = cell_type[3]
    kw = dict(units=H, return_sequences=return_sequences, return_state=return_state,
              go_backwards=go_backwards, dtype=np.dtype(dtype).name, seed=7)
    fast, slow = make(cell_type, backend="cython", **kw), make(cell_type, backend="reference", **kw)
    x = rng.standard_normal((B, T, D))
    s0 = [rng.standard_normal((B, H)) for _ in names] if initial_state else None
    out_f, out_s = flat(fast(x, initial_state=s0)), flat(slow(x, initial_state=s0))
    assert len(out_f) == (1 + len(names) if return_state else 1)
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
        assert a.shape == e.shape
        assert_close(a, e, dtype)
    assert len(fast.initial_state_grad) == len(names)
    for a, e in zip(fast.initial_state_grad, slow.initial_state_grad):
        assert_close(a, e, dtype)


@pytest.mark.parametrize("backend", ["cython", "reference"])
def test_dropout_matches_masked_inputs(rng, cell_type, backend):
    # Keras: the input mask multiplies x_t, the recurrent mask multiplies the h_{t-1}
    # fed to the recurrent matrix product, both fixed across steps; backward goes
    # through both. Checked against the kernels called on the masked input directly.
    B, T, D, H = 4, 5, 6, 3
    layer = make(cell_type, H, return_sequences=True, dropout=0.5, recurrent_dropout=0.4,
                 seed=3, dtype="float64", backend=backend)
    x = rng.standard_normal((B, T, D))
    out = layer(x, training=True)
    xm, hm = layer.cell._dropout_mask, layer.cell._recurrent_dropout_mask
    assert xm.shape == (B, D) and hm.shape == (B, H)
    assert set(np.unique(xm)) <= {0.0, 2.0} and set(np.unique(hm)) <= {0.0, 1 / 0.6}
    states = layer.cell.get_initial_state(B)
    hs, saved = layer.cell.run(x * xm[:, None], states, hm)
    np.testing.assert_allclose(out, hs, rtol=1e-12)
    g = rng.standard_normal((B, T, H))
    dx = layer.backward(g)
    r = layer.cell.run_backward(x * xm[:, None], states, hm, hs, saved, g,
                                [None] * len(states))
    np.testing.assert_allclose(dx, r[0] * xm[:, None], rtol=1e-12)
    np.testing.assert_allclose(layer.get_gradients()[1], r[3], rtol=1e-12)
    # ... and a recurrent mask changes the result (it is really applied)
    assert not np.allclose(hs, layer.cell.run(x * xm[:, None], states, None)[0])
    # inference ignores dropout; a new training call draws new masks
    plain = make(cell_type, H, return_sequences=True, seed=3, dtype="float64",
                 backend=backend)
    np.testing.assert_array_equal(layer(x), plain(x))
    layer(x, training=True)
    assert not np.array_equal(layer.cell._dropout_mask, xm)


def test_go_backwards_is_the_reversed_sequence(rng, cell_type):
    x = rng.standard_normal((2, 7, 3)).astype(np.float32)
    fwd = make(cell_type, 4, return_sequences=True, seed=1)
    bwd = make(cell_type, 4, return_sequences=True, go_backwards=True, seed=1)
    # Keras: the output of go_backwards is in processing order, i.e. reversed.
    np.testing.assert_array_equal(bwd(x), fwd(x[:, ::-1]))
    g = rng.standard_normal((2, 7, 4)).astype(np.float32)
    np.testing.assert_array_equal(bwd.backward(g), fwd.backward(g)[:, ::-1])


def test_many_to_one_output_is_last_state_of_sequence(rng, cell_type):
    x = rng.standard_normal((2, 5, 3))
    seq = make(cell_type, 4, return_sequences=True, return_state=True, seed=3)
    last = make(cell_type, 4, seed=3)
    out, h, *_ = seq(x)
    np.testing.assert_array_equal(last(x), out[:, -1])
    np.testing.assert_array_equal(h, out[:, -1])


def test_step_by_step_cell_equals_layer(rng, cell_type):
    x = rng.standard_normal((3, 6, 4)).astype(np.float32)
    layer = make(cell_type, 5, return_sequences=True, return_state=True, seed=11)
    out, *finals = layer(x)
    cell = make_cell(cell_type, 5)
    cell.build((3, 4))
    cell.set_weights(layer.get_weights())
    states = cell.get_initial_state(3)
    assert len(states) == len(cell_type[3])
    for t in range(6):
        y, states = cell(x[:, t], states)
        np.testing.assert_allclose(y, out[:, t], rtol=1e-6, atol=1e-7)
        assert states[0] is y
    for s, f in zip(states, finals):
        np.testing.assert_allclose(s, f, rtol=1e-6, atol=1e-7)


def test_cell_backward_matches_one_step_layer(rng, cell_type):
    names = cell_type[3]
    x = rng.standard_normal((3, 4))
    s0 = [rng.standard_normal((3, 5)) for _ in names]
    layer = make(cell_type, 5, return_state=True, seed=2, dtype="float64")
    cell = make_cell(cell_type, 5, seed=2, dtype="float64")
    out, *finals = layer(x[:, None], initial_state=s0)
    y, new = cell(x, s0)
    np.testing.assert_allclose(y, out, rtol=1e-12)
    g = rng.standard_normal((3, 5))
    gs = [rng.standard_normal((3, 5)) for _ in names]
    dx, d_prev = cell.backward(g, gs)
    np.testing.assert_allclose(dx, layer.backward([g, *gs])[:, 0], rtol=1e-12)
    for a, e in zip(d_prev, layer.initial_state_grad):
        np.testing.assert_allclose(a, e, rtol=1e-12)
    for a, e in zip(cell.get_gradients(), layer.get_gradients()):
        np.testing.assert_allclose(a, e, rtol=1e-12)


def test_weight_shapes_and_set_weights(cell_type):
    G = cell_type[4]
    layer = make(cell_type, 5, seed=0)
    layer.build((None, None, 3))
    kernel, recurrent, bias = layer.get_weights()
    assert kernel.shape == (3, G * 5) and recurrent.shape == (5, G * 5)
    assert bias.shape == layer.cell.bias_shape() and kernel.dtype == np.float32
    new = [np.full(w.shape, 0.1 * i) for i, w in enumerate(layer.get_weights())]
    layer.set_weights(new)
    for w, n in zip(layer.get_weights(), new):
        np.testing.assert_array_equal(w, n.astype(np.float32))
    assert layer.count_params() == kernel.size + recurrent.size + bias.size


def test_get_weights_returns_copies_and_params_are_the_arrays(cell_type):
    layer = make(cell_type, 2, seed=0)
    layer(np.ones((1, 2, 3)))
    w = layer.get_weights()
    w[0][...] = 99
    assert not (layer.get_weights()[0] == 99).any()
    assert layer.params["kernel"] is layer.cell.params["kernel"]
    layer.backward(np.ones((1, 2)))
    assert set(layer.grads) == {"kernel", "recurrent_kernel", "bias"}


def test_use_bias_false(cell_type):
    G = cell_type[4]
    layer = make(cell_type, 3, use_bias=False, seed=0)
    layer(np.ones((2, 4, 2)))
    assert [w.shape for w in layer.get_weights()] == [(2, G * 3), (3, G * 3)]
    layer.backward(np.ones((2, 3)))
    assert [g.shape for g in layer.get_gradients()] == [(2, G * 3), (3, G * 3)]


def test_seed_makes_weights_reproducible(cell_type):
    a, b = make(cell_type, 4, seed=5), make(cell_type, 4, seed=5)
    a.build((1, 1, 3))
    b.build((1, 1, 3))
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def test_config_round_trip(cell_type):
    layer = make(cell_type, 8, activation="relu", return_sequences=True, dropout=0.25)
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    assert repr(clone) == repr(layer)
    assert "activation='relu'" in repr(layer) and "dropout=0.25" in repr(layer)
    cell = make_cell(cell_type, 3)
    assert repr(type(cell).from_config(cell.get_config())) == repr(cell)


def test_inputs_are_converted(cell_type):
    layer = make(cell_type, 2, seed=0)
    y = layer([[[1.0, 2.0], [3.0, 4.0]]])
    assert y.dtype == np.float32 and y.shape == (1, 2)
    strided = np.ones((1, 2, 4))[:, :, ::2]
    np.testing.assert_array_equal(layer(strided), layer(np.ones((1, 2, 2))))
    np.testing.assert_array_equal(layer(np.ones((1, 2, 2), np.int32)),
                                  layer(np.ones((1, 2, 2))))


def test_empty_batch_and_empty_sequence(cell_type):
    n = len(cell_type[3])
    layer = make(cell_type, 3, return_sequences=True, return_state=True, seed=0)
    out, *finals = layer(np.ones((0, 4, 2)))
    assert out.shape == (0, 4, 3) and all(f.shape == (0, 3) for f in finals)
    s0 = [np.full((2, 3), 0.5 + i, np.float32) for i in range(n)]
    out, *finals = layer(np.ones((2, 0, 2)), initial_state=s0)
    assert out.shape == (2, 0, 3)
    for f, s in zip(finals, s0):
        np.testing.assert_array_equal(f, s)  # no step: the last states are the initial ones
    dx = layer.backward([np.ones((2, 0, 3))] + [np.full((2, 3), 1.0 + i) for i in range(n)])
    assert dx.shape == (2, 0, 2)
    for i, d in enumerate(layer.initial_state_grad):
        np.testing.assert_array_equal(d, np.full((2, 3), 1.0 + i))


def test_nan_input_propagates(cell_type):
    layer = make(cell_type, 3, return_sequences=True, seed=0)
    x = np.ones((2, 4, 2))
    x[1, 2, 0] = np.nan
    y = layer(x)
    assert np.isnan(y[1, 2:]).all() and np.isfinite(y[1, :2]).all() and np.isfinite(y[0]).all()


def test_bad_inputs_raise(cell_type):
    names = cell_type[3]
    layer = make(cell_type, 6, seed=0)
    layer.build((None, None, 4))
    good = [np.ones((2, 6))] * len(names)
    cases = [
        (lambda: layer(np.ones((2, 3))), r"\(batch, time, features\) \(3-D\), got shape \(2, 3\)"),
        (lambda: layer(np.ones((2, 3, 4, 5))), r"got shape \(2, 3, 4, 5\)"),
        (lambda: layer(np.ones((2, 3, 5))), r"expected input with 4 features .* got shape \(2, 3, 5\)"),
        (lambda: layer(np.ones((2, 3, 4)), initial_state=[np.ones((3, 6))] + good[1:]),
         r"expected state h of shape \(2, 6\), got \(3, 6\)"),
        (lambda: layer(np.ones((2, 3, 4)), initial_state=good + [np.ones((2, 6))]),
         f"list of {len(names)} array"),
        (lambda: layer([["a"]]), "convertible"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()


def test_bad_backward_calls_raise(cell_type):
    names = cell_type[3]
    layer = make(cell_type, 6, return_sequences=True, seed=0)
    with pytest.raises(ValueError, match="before any forward"):
        layer.backward(np.ones((2, 3, 6)))
    layer(np.ones((2, 3, 4)))
    with pytest.raises(ValueError, match=r"expected d_output of shape \(2, 3, 6\).*got shape \(2, 6\)"):
        layer.backward(np.ones((2, 6)))
    stateful = make(cell_type, 6, return_state=True, seed=0)
    stateful(np.ones((2, 3, 4)))
    what = ", ".join(["d_output"] + [f"d_{s}_last" for s in names])
    with pytest.raises(ValueError, match=r"list \[" + what + r"\]"):
        stateful.backward(np.ones((2, 6)))
    with pytest.raises(ValueError, match=r"expected d_h_last of shape \(2, 6\)"):
        stateful.backward([None, np.ones((2, 5))] + [None] * (len(names) - 1))
    cell = make_cell(cell_type, 6)
    with pytest.raises(ValueError, match="before any forward"):
        cell.backward(np.ones((2, 6)))
    with pytest.raises(ValueError, match="call backward first"):
        make(cell_type, 2, seed=0).get_gradients()
    with pytest.raises(ValueError, match="no weights yet"):
        make(cell_type, 2).set_weights([])
    G = cell_type[4]
    with pytest.raises(ValueError, match=rf"expected kernel of shape \(4, {6 * G}\), got \(6, 4\)"):
        layer.set_weights([np.ones((6, 4)), np.ones((6, 6 * G)), np.ones(layer.cell.bias_shape())])
    with pytest.raises(ValueError, match="expected 3 weight arrays"):
        layer.set_weights([np.ones((4, 6 * G))])


@pytest.mark.parametrize("kwargs,message", [
    (dict(units=0), "positive int"),
    (dict(units=2.5), "positive int"),
    (dict(units=2, activation="elu"), "activation"),
    (dict(units=2, dropout=1.0), r"dropout in \[0, 1\)"),
    (dict(units=2, recurrent_dropout=-0.1), r"recurrent_dropout in \[0, 1\)"),
    (dict(units=2, dtype="float16"), "float32' or 'float64"),
    (dict(units=2, kernel_initializer="nope"), "initializer"),
    (dict(units=2, backend="gpu"), "backend"),
])
def test_bad_constructor_arguments_raise(cell_type, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make(cell_type, **kwargs)
