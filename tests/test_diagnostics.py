"""gradient_flow: the total gradient dL/dh_t at every step, against finite differences of
the loss with h_t perturbed (the sequence cut at t and resumed from the perturbed state,
with the layer's own kernels), in float64, for SimpleRNN, LSTM (h and c) and GRU."""
import numpy as np
import pytest

import crnn
from crnn.diagnostics import gradient_flow, recurrent_layers

B, T, D, H = 3, 6, 2, 4
CELLS = {"SimpleRNN": crnn.SimpleRNN, "LSTM": crnn.LSTM, "GRU": crnn.GRU}


def make_model(cls, return_sequences, seed=0):
    inp = crnn.Input(shape=(T, D))
    rnn = cls(H, return_sequences=return_sequences, dtype="float64", seed=seed, name="rnn")
    head = crnn.Dense(2, dtype="float64", seed=seed + 1)
    model = crnn.Model(inp, head(rnn(inp)))
    model.compile(optimizer="sgd", loss="mse")
    return model, rnn, head


def loss_with_perturbed_state(cls, rnn, head, x, y, t, state, delta):
    """The mse loss with ``delta (B, H)`` added to state ``state`` after step ``t``."""
    twin = cls(H, return_sequences=True, return_state=True, dtype="float64")
    twin.build((None, None, D))
    twin.set_weights(rnn.get_weights())
    first = twin(x[:, :t + 1])
    seq, finals = first[0].copy(), [s.copy() for s in first[1:]]
    finals[state] = finals[state] + delta
    seq[:, -1] = finals[0]                  # the output at step t is h_t
    if t + 1 < x.shape[1]:
        rest = twin(x[:, t + 1:], initial_state=finals)[0]
        seq = np.concatenate([seq, rest], axis=1)
    out = seq if rnn.return_sequences else seq[:, -1]
    kernel, bias = head.get_weights()
    return float(np.mean((out @ kernel + bias - y) ** 2))


def finite_difference_grads(cls, rnn, head, x, y, state, eps=1e-6):
    grads = np.zeros((x.shape[1], B, H))
    for t in range(x.shape[1]):
        for index in np.ndindex(B, H):
            delta = np.zeros((B, H))
            delta[index] = eps
            plus = loss_with_perturbed_state(cls, rnn, head, x, y, t, state, delta)
            minus = loss_with_perturbed_state(cls, rnn, head, x, y, t, state, -delta)
            grads[(t,) + index] = (plus - minus) / (2 * eps)
    return grads


@pytest.mark.parametrize("name,state", [("SimpleRNN", 0), ("LSTM", 0), ("LSTM", 1),
                                        ("GRU", 0)])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_gradient_flow_matches_finite_differences(name, state, return_sequences):
    cls = CELLS[name]
    rng = np.random.default_rng(1)
    x = rng.standard_normal((B, T, D))
    model, rnn, head = make_model(cls, return_sequences)
    y = rng.standard_normal((B, T, 2) if return_sequences else (B, 2))
    # the reconstruction of the loss is the model's own
    assert loss_with_perturbed_state(cls, rnn, head, x, y, 2, state, 0.0) == pytest.approx(
        model.evaluate(x, y, verbose=0), rel=1e-12)
    expected = finite_difference_grads(cls, rnn, head, x, y, state)
    grads = gradient_flow(model, x, y, state=state, norm=False)
    assert grads.shape == (T, B, H)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(grads, expected, rtol=1e-6, atol=1e-8 * scale)
    norms = gradient_flow(model, x, y, state=state)
    np.testing.assert_allclose(norms, np.linalg.norm(expected.reshape(T, -1), axis=1),
                               rtol=1e-6, atol=1e-8 * scale)
    if not return_sequences:    # only h_T reaches the loss directly: the rest is BPTT
        assert np.all(norms[:-1] > 0)
        # c_T after the last step feeds nothing (h_T was computed from it within the step)
        assert (norms[-1] > 0) == (state == 0)


def test_gradient_flow_leaves_the_model_unchanged():
    model, rnn, head = make_model(crnn.SimpleRNN, True)
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((B, T, D)), rng.standard_normal((B, T, 2))
    before = model.predict(x)
    gradient_flow(model, x, y, layer="rnn")
    assert "call" not in vars(rnn)
    np.testing.assert_array_equal(model.predict(x), before)
    with crnn.GradientTape() as tape:   # the tape still sees the compiled layer
        model(x, training=True)
    assert any(rec[0] is rnn for rec in tape.records)


def test_gradient_flow_in_a_sequential_model_with_an_explicit_loss():
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 5, size=(B, T))
    model = crnn.Sequential([crnn.Embedding(5, 3, dtype="float64", seed=0),
                             crnn.GRU(H, dtype="float64", seed=0),
                             crnn.Dense(1, activation="sigmoid", dtype="float64", seed=0)])
    y = rng.integers(0, 2, size=(B, 1)).astype("float64")
    norms = gradient_flow(model, ids, y, loss="binary_crossentropy")
    assert norms.shape == (T,) and np.all(np.isfinite(norms)) and np.all(norms > 0)
    assert recurrent_layers(model) == [model.layers[1]]


def test_gradient_flow_errors():
    model = crnn.Sequential([crnn.Dense(1)])
    with pytest.raises(ValueError, match="recurrent layer"):
        gradient_flow(model, np.zeros((2, 3)), np.zeros((2, 1)), loss="mse")
    model, rnn, head = make_model(crnn.SimpleRNN, False)
    x, y = np.zeros((B, T, D)), np.zeros((B, 2))
    with pytest.raises(ValueError, match="recurrent layers"):
        gradient_flow(model, x, y, layer="nope")
    with pytest.raises(ValueError, match="state"):
        gradient_flow(model, x, y, state=1)
    uncompiled = crnn.Sequential([crnn.SimpleRNN(2)])
    with pytest.raises(ValueError, match="loss"):
        gradient_flow(uncompiled, x, np.zeros((B, 2)))


@pytest.mark.parametrize("name", ["SimpleRNN", "LSTM", "GRU"])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_stepwise_loop_is_the_layer_with_padding(name, return_sequences):
    """With masked (padded) steps, the step-by-step loop computes the layer's outputs, and
    its backward pass the layer's weight gradients (so every dL/dh_t on the way is the
    layer's)."""
    from crnn.diagnostics import _stepwise
    rng = np.random.default_rng(4)
    x = rng.standard_normal((B, T, D))
    mask = np.ones((B, T), dtype=bool)
    mask[0, :2] = False                    # pre-padded
    mask[1, -3:] = False                   # post-padded
    layer = CELLS[name](H, return_sequences=return_sequences, dtype="float64", seed=0)
    g = rng.standard_normal((B, T, H) if return_sequences else (B, H))
    expected = layer(x, mask=mask)
    with crnn.GradientTape() as tape:
        out = layer(x, mask=mask)
        loss = crnn.ops.sum(out * g)
    expected_grads = tape.gradient(loss, layer.trainable_weights)
    record = []
    with crnn.GradientTape() as tape:
        out = _stepwise(layer, record)(x, mask=mask)
        loss = crnn.ops.sum(out * g)
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-12, atol=1e-12)
    for got, want in zip(tape.gradient(loss, layer.trainable_weights), expected_grads):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    assert len(record) == 1 and len(record[0]) == T
