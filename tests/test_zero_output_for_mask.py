"""``zero_output_for_mask`` on the recurrent layers: Keras's default (False: a padded step
repeats the previous output, zeros before a sequence's first real step) against Keras 3's
own numbers, True (zeros at the padded steps), gradients by finite differences, the
inference path, and ``Bidirectional``, which sets it as Keras does."""
import numpy as np
import pytest

import crnn
from conftest import require_keras
from test_layers_basic import check_gradients

LAYERS = {"SimpleRNN": crnn.SimpleRNN, "LSTM": crnn.LSTM, "GRU": crnn.GRU}

# -- Keras's numbers, hard-coded --------------------------------------------------------
# Printed by Keras 3.15.1 on its torch backend (torch 2.13.0, CPU), float32:
#   keras.layers.SimpleRNN(2, return_sequences=True, return_state=True,
#                          go_backwards=...), set_weights([K, R, B]),
#   layer(X, mask=MASK); and keras.layers.LSTM(2, ...) with [LK, LR, LB].
X = (np.arange(2 * 5 * 2).reshape(2, 5, 2) / 10.0 - 0.9).astype("float32")
MASK = np.array([[False, True, True, False, False], [True, False, True, True, False]])
K = np.array([[0.5, -0.3], [0.2, 0.8]], "float32")
R = np.array([[0.1, 0.4], [-0.6, 0.3]], "float32")
B = np.array([0.05, -0.1], "float32")
KERAS_SIMPLE_RNN = {
    False: (np.array([[[0., 0.], [-0.39693043, -0.35399172], [-0.10688812, -0.48917076],
                       [-0.10688812, -0.48917076], [-0.10688812, -0.48917076]],
                      [[0.13909245, 0.02999101], [0.13909245, 0.02999101],
                       [0.39348316, 0.28639463], [0.40323958, 0.5177872],
                       [0.40323958, 0.5177872]]]),
            np.array([[-0.10688812, -0.48917076], [0.40323958, 0.5177872]])),
    True: (np.array([[[0., 0.], [0., 0.], [-0.27290508, -0.26362485],
                      [-0.2813206, -0.50667745], [-0.2813206, -0.50667745]],
                     [[0., 0.], [0.5079774, 0.31852078], [0.2726138, 0.48442286],
                      [0.2726138, 0.48442286], [-0.12276991, 0.276947]]]),
           np.array([[-0.2813206, -0.50667745], [-0.12276991, 0.276947]])),
}   # keyed by go_backwards: (output sequence, final h)
LK = np.array([[0.14, -0.23, -0.46, -0.48, 0.31, 0.41, 0.11, 0.23],
               [0.04, 0.44, 0.32, -0.5, 0.36, -0.47, 0.23, -0.32]], "float32")
LR = np.array([[0.36, 0.04, -0.2, -0.08, -0.47, -0.38, 0.17, 0.15],
               [0.12, -0.12, 0.5, 0.48, 0.19, 0.15, 0.19, -0.11]], "float32")
LB = np.array([-0.36, 0.22, 0.03, -0.19, -0.01, 0.39, 0.43, -0.14], "float32")
KERAS_LSTM = (np.array([[[0., 0.], [-0.08720869, 0.09069654], [-0.10267317, 0.14495316],
                         [-0.10267317, 0.14495316], [-0.10267317, 0.14495316]],
                        [[0.02389957, 0.08337353], [0.02389957, 0.08337353],
                         [0.11233635, 0.10564085], [0.1861812, 0.10056249],
                         [0.1861812, 0.10056249]]]),
              np.array([[-0.10267317, 0.14495316], [0.1861812, 0.10056249]]),
              np.array([[-0.18183124, 0.32428297], [0.28322628, 0.23113105]]))


@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("backend", ["cython", "reference"])
def test_simple_rnn_repeats_the_previous_output_as_keras(go_backwards, backend):
    layer = crnn.SimpleRNN(2, return_sequences=True, return_state=True,
                           go_backwards=go_backwards, backend=backend)
    layer.build(X.shape)
    layer.set_weights([K, R, B])
    out, h = layer(X, mask=MASK)
    want_out, want_h = KERAS_SIMPLE_RNN[go_backwards]
    np.testing.assert_allclose(out, want_out, rtol=0, atol=1e-6)
    np.testing.assert_allclose(h, want_h, rtol=0, atol=1e-6)


@pytest.mark.parametrize("backend", ["cython", "reference"])
def test_lstm_repeats_the_previous_output_as_keras(backend):
    layer = crnn.LSTM(2, return_sequences=True, return_state=True, backend=backend)
    layer.build(X.shape)
    layer.set_weights([LK, LR, LB])
    for got, want in zip(layer(X, mask=MASK), KERAS_LSTM):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    with crnn.no_grad():          # the inference kernels, the same outputs
        for got, want in zip(layer(X, mask=MASK), KERAS_LSTM):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_zero_output_for_mask_true_gives_zeros_at_the_padding():
    layer = crnn.SimpleRNN(2, return_sequences=True, zero_output_for_mask=True)
    layer.build(X.shape)
    layer.set_weights([K, R, B])
    out = layer(X, mask=MASK)
    want = KERAS_SIMPLE_RNN[False][0] * MASK[:, :, None]
    np.testing.assert_allclose(out, want, rtol=0, atol=1e-6)


# -- against Keras itself ----------------------------------------------------------------
def _keras_run(keras, kind, weights, x, mask, R_out, R_states, **kw):
    """Keras's outputs and the gradients of sum(out * R_out) + sum(state * R_state) with
    respect to x and the weights (torch autograd under Keras's torch backend)."""
    import torch
    layer = getattr(keras.layers, kind)(weights[1].shape[0], return_state=True, **kw)
    layer.build((None,) + x.shape[1:])
    layer.set_weights(weights)
    tx = torch.tensor(x, requires_grad=True)
    outs = layer(tx, mask=torch.tensor(mask))
    loss = (outs[0] * torch.tensor(R_out)).sum()
    for s, r in zip(outs[1:], R_states):
        loss = loss + (s * torch.tensor(r)).sum()
    variables = [v.value for v in layer.trainable_weights]
    grads = torch.autograd.grad(loss, [tx] + variables)
    return ([o.detach().numpy() for o in outs], [g.numpy() for g in grads])


@pytest.mark.parametrize("kind", list(LAYERS))
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("zero_output", [False, True])
def test_outputs_states_and_gradients_match_keras(rng, kind, go_backwards,
                                                   return_sequences, zero_output):
    keras = require_keras()
    Bn, T, D, H = 4, 6, 3, 5
    layer = LAYERS[kind](H, return_sequences=return_sequences, return_state=True,
                         go_backwards=go_backwards, zero_output_for_mask=zero_output,
                         seed=3)
    x = rng.standard_normal((Bn, T, D)).astype("float32")
    # padding inside, at both ends, a row all real, a row with one real step
    mask = np.array([[1, 1, 1, 1, 1, 1], [0, 1, 1, 0, 1, 0], [0, 0, 0, 1, 0, 0],
                     [1, 1, 1, 0, 0, 0]], bool)
    layer.build(x.shape)
    layer.set_weights([w + 0.1 * rng.standard_normal(w.shape).astype("float32")
                       for w in layer.get_weights()])   # a bias that is not zero
    outs = layer(x, mask=mask)
    R_out = rng.standard_normal(outs[0].shape).astype("float32")
    R_states = [rng.standard_normal(s.shape).astype("float32") for s in outs[1:]]
    with crnn.GradientTape() as tape:
        tx = tape.watch(x)
        o = layer(tx, mask=mask)
        loss = crnn.ops.sum(o[0] * R_out)
        for s, r in zip(o[1:], R_states):
            loss = loss + crnn.ops.sum(s * r)
    grads = tape.gradient(loss, [tx] + layer.trainable_weights)
    k_outs, k_grads = _keras_run(keras, kind, layer.get_weights(), x, mask, R_out,
                                 R_states, return_sequences=return_sequences,
                                 go_backwards=go_backwards,
                                 zero_output_for_mask=zero_output)
    if zero_output and not return_sequences:
        # Keras's torch loop returns the last *masked* output (zeros where the last step
        # is padding) although its documentation says the flag only acts on returned
        # sequences; crnn returns the last real step's output, as with False
        k_outs[0] = np.where(mask[:, -1:] if not go_backwards else mask[:, :1],
                             k_outs[0], outs[1])
        k_grads = None
    for a, e in zip(outs, k_outs):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-5)
    if k_grads is not None:
        for a, e in zip(grads, k_grads):
            np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-5)


# -- gradients ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(LAYERS))
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("zero_output", [False, True])
def test_gradients_finite_differences(rng, kind, go_backwards, zero_output):
    Bn, T, D, H = 3, 5, 2, 3
    layer = LAYERS[kind](H, return_sequences=True, return_state=True,
                         go_backwards=go_backwards, zero_output_for_mask=zero_output,
                         dtype="float64", seed=1)
    x = rng.standard_normal((Bn, T, D))
    mask = np.array([[0, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], bool)
    layer.build(x.shape)
    check_gradients(lambda x: layer(x, mask=mask), [x], layer.trainable_weights, rng)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_inference_kernels_follow_the_same_rule(rng, kind):
    layer = LAYERS[kind](4, return_sequences=True, seed=0)
    x = rng.standard_normal((3, 6, 2)).astype("float32")
    mask = np.array([[0, 1, 1, 0, 1, 0], [1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0]], bool)
    want = layer(x, mask=mask)
    with crnn.no_grad():
        got = layer(x, mask=mask)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert not want[2].any() and not want[0, 0].any()
    np.testing.assert_array_equal(want[0, 3], want[0, 2])


def test_bidirectional_sets_it_as_keras_does(rng):
    bi = crnn.Bidirectional(crnn.LSTM(3, return_sequences=True))
    assert bi.forward_layer.zero_output_for_mask and bi.backward_layer.zero_output_for_mask
    many_to_one = crnn.Bidirectional(crnn.GRU(3, zero_output_for_mask=True))
    assert not many_to_one.forward_layer.zero_output_for_mask   # = return_sequences
    x = rng.standard_normal((2, 4, 2)).astype("float32")
    out = bi(x, mask=np.array([[1, 1, 0, 0], [1, 1, 1, 1]], bool))
    assert not out[0, 2:].any()


def test_config_round_trip():
    layer = crnn.GRU(2, zero_output_for_mask=True, unroll=True)
    config = layer.get_config()
    assert config["zero_output_for_mask"] is True and config["unroll"] is True
    assert crnn.GRU.from_config(config).zero_output_for_mask is True
    assert "zero_output_for_mask=True" in repr(layer)
    with pytest.raises(ValueError, match="zero_output_for_mask"):
        crnn.LSTM(2, zero_output_for_mask=None)
