"""crnn.no_grad (and predict/evaluate, which use it): the same outputs as a normal call
(bit for bit where the inference kernel takes the same path), with nothing kept for
backward; the LSTM's and GRU's inference kernels; tapes paused inside and recording again
after."""
import numpy as np
import pytest

import crnn
from conftest import assert_close
from crnn import _lstm, engine

CELLS = {"simple_rnn": crnn.SimpleRNN, "lstm": crnn.LSTM, "gru": crnn.GRU}


@pytest.fixture
def lstm_path():
    """Restores the LSTM's choice of path afterwards."""
    yield _lstm._force_path
    _lstm._force_path(None)


def make_layer(cell, H, **options):
    return CELLS[cell](H, seed=3, **options)


def call_both_ways(layer, x, **kwargs):
    """The layer's outputs (a list) from a normal call, then from one inside no_grad."""
    normal = layer(x, **kwargs)
    with crnn.no_grad():
        inside = layer(x, **kwargs)
    listify = (lambda o: list(o)) if isinstance(normal, list) else (lambda o: [o])
    return listify(normal), listify(inside)


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("path", ["packed", "blas"])
@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("return_state", [True, False])
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_outputs_equal_a_normal_call(rng, lstm_path, cell, path, return_sequences,
                                     return_state, padded, go_backwards):
    lstm_path(path)
    B, T, D, H = 5, 7, 3, 20
    layer = make_layer(cell, H, return_sequences=return_sequences,
                       return_state=return_state, go_backwards=go_backwards)
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    mask = rng.random((B, T)) < 0.7 if padded else None
    normal, inside = call_both_ways(layer, x, mask=mask)
    assert len(normal) == len(inside)
    for a, e in zip(inside, normal):
        assert a.shape == e.shape and a.dtype == e.dtype
        np.testing.assert_array_equal(a, e)


@pytest.mark.parametrize("return_sequences", [True, False])
def test_gru_at_a_packed_size_matches_a_normal_call(rng, return_sequences):
    # inside no_grad the float32 GRU's products run on the packed GEMM from
    # PACKED_MIN_WORK, outside on OpenBLAS: the same up to rounding
    from crnn import _gru
    B, T, D, H = 32, 5, 16, 64
    assert B * 3 * H * H >= _gru.PACKED_MIN_WORK
    layer = crnn.GRU(H, return_sequences=return_sequences, return_state=True, seed=1)
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    normal, inside = call_both_ways(layer, x)
    for a, e in zip(inside, normal):
        assert_close(a, e, np.float32)


@pytest.mark.parametrize("return_sequences", [True, False])
def test_lstm_at_a_packed_size_equals_a_normal_call(rng, return_sequences):
    # B * 4H * (D + H) above PACKED_MIN_WORK: the shape itself picks the packed path
    B, T, D, H = 64, 5, 64, 128
    assert B * 4 * H * (D + H) >= _lstm.PACKED_MIN_WORK
    layer = crnn.LSTM(H, return_sequences=return_sequences, return_state=True, seed=1)
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    normal, inside = call_both_ways(layer, x)
    for a, e in zip(inside, normal):
        np.testing.assert_array_equal(a, e)


@pytest.mark.parametrize("cell", list(CELLS))
def test_stateful_layers_carry_the_same_states(rng, cell):
    x = rng.standard_normal((2, 6, 3))
    layers = [make_layer(cell, 4, stateful=True, dtype="float64") for _ in range(2)]
    layers[1].build(x.shape)
    layers[0].build(x.shape)
    layers[1].set_weights(layers[0].get_weights())
    for window in (x[:, :3], x[:, 3:]):
        normal = layers[0](window)
        with crnn.no_grad():
            inside = layers[1](window)
        np.testing.assert_array_equal(inside, normal)


@pytest.mark.parametrize("cell", list(CELLS))
def test_backward_after_no_grad_raises(rng, cell):
    layer = make_layer(cell, 4)
    x = rng.standard_normal((2, 3, 3)).astype(np.float32)
    layer(x)
    with crnn.no_grad():
        layer(x)
    with pytest.raises(ValueError, match="no_grad"):
        layer.backward(np.ones((2, 4), np.float32))
    layer(x)                                   # a normal call: backward works again
    assert layer.backward(np.ones((2, 4), np.float32)).shape == x.shape


def test_dense_and_models_keep_nothing_either(rng):
    model = crnn.Sequential([crnn.Input((4, 3)), crnn.LSTM(5), crnn.Dense(2)])
    x = rng.standard_normal((6, 4, 3)).astype(np.float32)
    expected = model(x)
    out = model.predict(x, verbose=0)
    np.testing.assert_array_equal(out, expected)
    with pytest.raises(ValueError, match="no_grad"):
        model.layers[-1].backward(np.ones((6, 2), np.float32))


def test_dropout_while_training_inside_no_grad_runs_the_training_kernel(rng):
    # recurrent dropout needs the training kernel (the inference one has no mask);
    # the call still keeps nothing
    layer = crnn.LSTM(6, recurrent_dropout=0.5, dropout=0.2, seed=0)
    x = rng.standard_normal((3, 4, 2)).astype(np.float32)
    with crnn.no_grad():
        y = layer(x, training=True)
    assert y.shape == (3, 6) and np.all(np.isfinite(y))
    with pytest.raises(ValueError, match="no_grad"):
        layer.backward(np.ones((3, 6), np.float32))


def test_tapes_are_paused_inside_and_record_after(rng):
    layer = crnn.Dense(3)
    x = rng.standard_normal((2, 4))
    with crnn.GradientTape() as tape:
        with crnn.no_grad():
            assert not engine.recording() and not engine.grad_enabled()
            inner = layer(x)
            with crnn.GradientTape() as inner_tape:     # no_grad wins, as in torch
                layer(x)
            assert inner_tape.records == []
        assert engine.recording() and engine.grad_enabled()
        y = layer(x)
        loss = crnn.ops.sum(y)
    assert not isinstance(inner, crnn.Tensor)
    assert len(tape.records) >= 1 and all(r[1] is not None for r in tape.records)
    grads = tape.gradient(loss, layer.trainable_weights)
    np.testing.assert_allclose(grads[1], np.full(3, 2.0))


def test_nested_no_grad(rng):
    with crnn.no_grad():
        with crnn.no_grad():
            assert not engine.grad_enabled()
        assert not engine.grad_enabled()
    assert engine.grad_enabled()


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("merge_mode", ["concat", "sum"])
def test_bidirectional_with_lengths_equals_a_normal_call(rng, cell, merge_mode):
    # the backward direction starts at each sequence's last real step, inside no_grad too
    x = rng.standard_normal((6, 9, 5)).astype(np.float32)
    lengths = np.array([9, 3, 5, 1, 9, 7])
    layer = crnn.Bidirectional(make_layer(cell, 7, return_sequences=True),
                               merge_mode=merge_mode)
    normal, inside = call_both_ways(layer, x, lengths=lengths)
    np.testing.assert_array_equal(inside[0], normal[0])
