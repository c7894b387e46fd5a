"""``compute_output_shape(input_shape)`` on every layer (Keras's semantics: batch axis
first, None where unknown), checked against the shapes a call returns; and
``reset_state()``, Keras 3's name for ``reset_states()``."""
import numpy as np
import pytest

import crnn
from crnn import layers
from test_rnn_cells import TwoStateCell


def _shapes(out):
    """Shapes (tuples) of arrays, nested in lists; a shape given stays as it is."""
    if isinstance(out, tuple) and all(d is None or isinstance(d, int) for d in out):
        return out
    if isinstance(out, (list, tuple)):
        return [_shapes(o) for o in out]
    return tuple(np.shape(out))


def _unknown(shape, axes):
    return tuple(None if i in axes else d for i, d in enumerate(shape))


def _with_none(expected, axes_of):
    """``expected`` (nested shapes) with the unknown axes set to None."""
    if isinstance(expected, list):
        return [_with_none(e, axes_of) for e in expected]
    return axes_of(expected)


# (layer factory, input, unknown input axes -> which output axes become unknown)
def _cases():
    ids = np.array([[1, 2, 0], [3, 4, 5]])
    x3 = np.ones((2, 3, 4), "float32")
    x2 = np.ones((2, 4), "float32")
    x4 = np.ones((2, 3, 5, 4), "float32")
    cases = {
        "Dense": (lambda: crnn.Dense(6), x3),
        "Embedding": (lambda: crnn.Embedding(7, 3), ids),
        "Dropout": (lambda: crnn.Dropout(0.5), x3),
        "Activation": (lambda: crnn.Activation("relu"), x3),
        "Masking": (lambda: crnn.Masking(), x3),
        "Flatten": (lambda: crnn.layers.Flatten(), x3),
        "RepeatVector": (lambda: crnn.layers.RepeatVector(5), x2),
        "SimpleRNN": (lambda: crnn.SimpleRNN(5), x3),
        "LSTM": (lambda: crnn.LSTM(5, return_sequences=True, return_state=True), x3),
        "GRU": (lambda: crnn.GRU(5, return_state=True), x3),
        "RNN": (lambda: layers.RNN(TwoStateCell(3), return_sequences=True,
                                   return_state=True), x3),
        "SimpleRNNCell": (lambda: crnn.SimpleRNNCell(3), x2),
        "LSTMCell": (lambda: crnn.LSTMCell(3), x2),
        "GRUCell": (lambda: crnn.GRUCell(3), x2),
        "StackedRNNCells": (lambda: layers.StackedRNNCells(
            [crnn.LSTMCell(3), crnn.GRUCell(2)]), x2),
        "TimeDistributed": (lambda: crnn.TimeDistributed(crnn.LSTM(2)), x4),
        "Bidirectional": (lambda: crnn.Bidirectional(
            crnn.LSTM(3, return_sequences=True, return_state=True)), x3),
        # layers called on a list of inputs take a list of shapes
        "Add": (lambda: crnn.Add(), [x3, x3[:, :1]]),
        "Subtract": (lambda: crnn.Subtract(), [x3, x3]),
        "Multiply": (lambda: crnn.Multiply(), [x3, x3, x3]),
        "Average": (lambda: crnn.Average(), [x3, x3]),
        "Concatenate": (lambda: crnn.Concatenate(axis=1), [x3, x3[:, :2]]),
        "Dot": (lambda: crnn.Dot(axes=2), [x3, np.ones((2, 5, 4), "float32")]),
        "Attention": (lambda: crnn.Attention(), [x3, np.ones((2, 5, 4), "float32")]),
        "AdditiveAttention": (lambda: crnn.AdditiveAttention(),
                              [x3, np.ones((2, 5, 6), "float32"),
                               np.ones((2, 5, 4), "float32")]),
        "LayerNormalization": (lambda: crnn.LayerNormalization(axis=[1, 2]), x3),
        "Reshape": (lambda: crnn.Reshape((2, -1)), x3),
        "Permute": (lambda: crnn.Permute((2, 1)), x3),
        "GlobalAveragePooling1D": (lambda: crnn.GlobalAveragePooling1D(), x3),
        "GlobalMaxPooling1D": (lambda: crnn.GlobalMaxPooling1D(keepdims=True), x3),
    }
    return cases


CASES = _cases()


def _call(layer, x):
    if isinstance(layer, (crnn.layers.RNNCell, layers.StackedRNNCells)):
        B = x.shape[0]
        states = layer.get_initial_state(B)
        return layer(x, states)
    return layer(x)


def test_every_layer_class_has_a_case():
    skip = {"Layer", "RNNCell"}   # bases
    classes = {n for n in crnn.layers.__all__ if n[0].isupper()}   # not add, dot, ...
    assert sorted(classes - skip) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_compute_output_shape_is_the_call_s(name):
    make, x = CASES[name]
    layer = make()
    multi = isinstance(x, list)
    shape = layer.compute_output_shape([a.shape for a in x] if multi else x.shape)
    assert _shapes(shape) == _shapes(_call(make(), x))
    # the batch axis unknown: None in every output (the time axis too where the output
    # keeps it)
    unknown = layer.compute_output_shape([(None,) + a.shape[1:] for a in x] if multi
                                         else (None,) + x.shape[1:])
    assert _with_none(_shapes(shape), lambda s: _unknown(s, {0})) == _shapes(unknown)


def test_recurrent_shapes_with_an_unknown_time_axis():
    for layer, want in [
            (crnn.LSTM(4, return_sequences=True, return_state=True),
             [(None, None, 4), (None, 4), (None, 4)]),
            (crnn.GRU(4), (None, 4)),
            (crnn.Bidirectional(crnn.GRU(4, return_sequences=True)), (None, None, 8)),
            (crnn.Bidirectional(crnn.GRU(4), merge_mode=None), [(None, 4), (None, 4)]),
            (crnn.TimeDistributed(crnn.Dense(3)), (None, None, 3)),
            (layers.RNN([crnn.LSTMCell(3), TwoStateCell(2)], return_state=True),
             [(None, 2), (None, 3), (None, 3), (None, 2), (None, 2)])]:
        assert _shapes(layer.compute_output_shape((None, None, 5))) == _shapes(want)


def test_compute_output_shape_does_not_build():
    for layer, shape in [(crnn.Dense(3), (None, 4)), (crnn.Embedding(5, 2), (None, 3)),
                         (crnn.LSTM(3), (None, 7, 4)), (crnn.GRUCell(2), (None, 4)),
                         (crnn.Bidirectional(crnn.GRU(2)), (None, 7, 4)),
                         (crnn.TimeDistributed(crnn.Dense(2)), (None, 7, 4))]:
        layer.compute_output_shape(shape)
        for inner in [layer, *crnn.layers.base.sublayers(layer)]:
            assert not inner.built, type(inner).__name__


def test_models_and_bad_shapes():
    model = crnn.Sequential([crnn.Embedding(9, 4), crnn.LSTM(3, return_sequences=True),
                             crnn.TimeDistributed(crnn.Dense(2))])
    assert model.compute_output_shape((None, 6)) == (None, 6, 2)
    inp = crnn.Input((6, 3))
    functional = crnn.Model(inp, crnn.Dense(1)(crnn.GRU(2)(inp)))
    assert functional.compute_output_shape((None, 6, 3)) == (None, 1)
    with pytest.raises(ValueError, match="batch, time, features"):
        crnn.LSTM(2).compute_output_shape((None, 4))
    with pytest.raises(ValueError, match="batch, ..., features"):
        crnn.Dense(2).compute_output_shape((4,))
    with pytest.raises(ValueError, match="input_shape"):
        crnn.Activation("relu").compute_output_shape("oops")


# -- reset_state ---------------------------------------------------------------------------
def test_reset_state_is_reset_states():
    x = np.ones((2, 3, 4), "float32")
    layer = crnn.GRU(3, stateful=True)
    layer(x)
    layer.reset_state()
    assert layer.states is None
    layer(x)
    layer.reset_state(np.array([True, False]))
    assert not layer.states[0][0].any() and layer.states[0][1].any()
    layer.reset_state([np.full((2, 3), 0.5, "float32")])
    np.testing.assert_array_equal(layer.states[0], 0.5)
    bi = crnn.Bidirectional(crnn.LSTM(2, stateful=True))
    bi(x)
    bi.reset_state()
    assert bi.forward_layer.states is None and bi.backward_layer.states is None
    model = crnn.Sequential([crnn.SimpleRNN(2, stateful=True)])
    model(x)
    model.reset_state()
    assert model.layers[0].states is None
    with pytest.raises(ValueError, match="stateful"):
        crnn.GRU(3).reset_state()
