"""Truncated backpropagation through time: ``fit(..., tbptt=k)`` and ``tbptt=(k1, k2)``."""
import numpy as np
import pytest

import crnn
from crnn.layers.recurrent import RNN

CELLS = [crnn.SimpleRNN, crnn.LSTM, crnn.GRU]


def _data(N=16, T=12, D=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, T, D))
    return x, np.cumsum(x[..., :1], axis=1) / 3      # the running sum at every step


def _model(cls=crnn.LSTM, optimizer="adam", units=6, D=3, stateful=False):
    model = crnn.Sequential([
        crnn.Input((None, D), dtype="float64"),
        cls(units, return_sequences=True, seed=0, dtype="float64", stateful=stateful),
        crnn.TimeDistributed(crnn.Dense(1, seed=0, dtype="float64")),
    ])
    model.compile(optimizer, "mse")
    return model


def _twins(cls=crnn.LSTM, optimizer="adam"):
    a, b = _model(cls, optimizer), _model(cls, optimizer)
    b.set_weights(a.get_weights())
    return a, b


@pytest.mark.parametrize("cls", CELLS)
@pytest.mark.parametrize("tbptt", [12, 50, (12, 12), (12, 24), (20, 40)])
def test_a_window_as_long_as_the_sequence_is_exactly_full_bptt(cls, tbptt):
    x, y = _data()
    full, trunc = _twins(cls)
    h_full = full.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, seed=1)
    h_trunc = trunc.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, seed=1,
                        tbptt=tbptt)
    for a, b in zip(full.get_weights(), trunc.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert h_full.history == h_trunc.history


def test_full_bptt_equality_holds_with_dropout_masks_and_sample_weights():
    x, y = _data()
    sw = np.random.default_rng(3).random((16, 12))
    make = lambda: crnn.Sequential([                     # noqa: E731
        crnn.Input((None, 3), dtype="float64"),
        crnn.GRU(5, return_sequences=True, dropout=0.2, recurrent_dropout=0.1, seed=0,
                 dtype="float64"),
        crnn.TimeDistributed(crnn.Dense(1, dtype="float64"))])
    full, trunc = make(), make()
    trunc.set_weights(full.get_weights())
    for m in (full, trunc):
        m.compile("rmsprop", "mse")
    lengths = np.random.default_rng(4).integers(1, 13, size=16)
    mask = np.arange(12)[None, :] < lengths[:, None]
    x = np.where(mask[..., None], x, 0.0)
    full.fit(x, y, sample_weight=sw * mask, batch_size=4, epochs=1, shuffle=True,
             verbose=0, seed=7)
    trunc.fit(x, y, sample_weight=sw * mask, batch_size=4, epochs=1, shuffle=True,
              verbose=0, seed=7, tbptt=12)
    for a, b in zip(full.get_weights(), trunc.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("tbptt", [3, (2, 6)])
def test_shorter_windows_train_differently_and_the_loss_falls(tbptt):
    x, y = _data(N=32)
    full, trunc = _twins()
    full.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0, seed=1)
    h = trunc.fit(x, y, batch_size=8, epochs=15, shuffle=False, verbose=0, seed=1,
                  tbptt=tbptt)
    assert not np.allclose(full.get_weights()[0], trunc.get_weights()[0])
    loss = h.history["loss"]
    assert loss[-1] < 0.5 * loss[0]
    # one optimizer update per window: 4 batches * 4 windows (12 steps, k1 = 3 or 2..)
    k1 = tbptt if isinstance(tbptt, int) else tbptt[0]
    assert int(trunc.optimizer.iterations) == 15 * 4 * (12 // k1)
    # the layers are as they were: not stateful, nothing stored
    for layer in trunc.layers_deep():
        if isinstance(layer, RNN):
            assert not layer.stateful and layer.states is None and not layer._tbptt


def test_k1_equal_k2_is_a_stateful_layer_trained_window_by_window():
    """tbptt=k on one batch == train_on_batch on each window of a stateful copy; the
    reported loss is the windows' losses weighted by their steps."""
    x, y = _data(N=4, T=10)
    trunc = _model(crnn.GRU, "sgd")
    st = _model(crnn.GRU, "sgd", stateful=True)
    st.set_weights(trunc.get_weights())
    loss = trunc.train_on_batch(x, y, tbptt=4)
    window_losses = [st.train_on_batch(x[:, a:a + 4], y[:, a:a + 4]) for a in (0, 4, 8)]
    for a, b in zip(trunc.get_weights(), st.get_weights()):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-13)
    np.testing.assert_allclose(loss, np.dot([4, 4, 2], window_losses) / 10, rtol=1e-13)


def test_k2_greater_than_k1_matches_a_hand_computed_update():
    """tbptt=(2, 4) over T=6 with plain SGD: window i has new steps [2i, 2i+2), starts at
    s = max(0, 2i - 2) from the state an earlier window left at s (computed with the
    weights of that time), and its update is the gradient of the mean loss over its new
    steps, backpropagated through the whole window."""
    lr, T = 0.1, 6
    x, y = _data(N=3, T=T, D=2, seed=5)
    model = _model(crnn.SimpleRNN, crnn.optimizers.SGD(learning_rate=lr), units=4, D=2)
    w0 = model.get_weights()
    model.train_on_batch(x, y, tbptt=(2, 4))

    rnn = crnn.SimpleRNN(4, return_sequences=True, return_state=True, dtype="float64")
    dense = crnn.TimeDistributed(crnn.Dense(1, dtype="float64"))
    rnn.build((3, T, 2))
    dense.build((3, T, 4))
    weights = [w.copy() for w in w0]
    states = {0: np.zeros((3, 4))}
    for a in (0, 2, 4):
        s, e = max(0, a - 2), a + 2
        rnn.set_weights(weights[:3])
        dense.set_weights(weights[3:])
        with crnn.GradientTape() as tape:
            hs, h_last = rnn(x[:, s:e], initial_state=[states[s]])
            pred = dense(hs)
            err = pred[:, a - s:] - y[:, a:e]                 # the new steps alone
            loss = crnn.ops.mean(crnn.ops.square(err))
        grads = tape.gradient(loss, rnn.trainable_weights + dense.trainable_weights)
        states[e] = np.asarray(h_last).copy()
        weights = [w - lr * g for w, g in zip(weights, grads)]
    for got, want in zip(model.get_weights(), weights):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    assert not np.allclose(weights[0], w0[0])


def test_a_stateful_layer_carries_its_states_across_batches_under_tbptt():
    x, y = _data(N=4, T=8)
    a = _model(crnn.SimpleRNN, "sgd")
    b = _model(crnn.SimpleRNN, "sgd", stateful=True)
    b.set_weights(a.get_weights())
    # two consecutive pieces of one stream: the stateful model continues into the second
    b.train_on_batch(x[:, :4], y[:, :4], tbptt=2)
    b.train_on_batch(x[:, 4:], y[:, 4:], tbptt=2)
    a.train_on_batch(x, y, tbptt=2)
    for p, q in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(p, q, rtol=0, atol=1e-13)
    layer = b.layers[0]
    assert layer.stateful and layer.states[0].shape == (4, 6) and not layer._tbptt


def test_multi_input_model_and_embedding_ids():
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 9, size=(8, 10))
    extra = rng.standard_normal((8, 10, 2))
    y = (ids % 2).astype("float64")[..., None]
    i1, i2 = crnn.Input((None,), dtype="int64"), crnn.Input((None, 2), dtype="float64")
    e = crnn.Embedding(10, 3, dtype="float64")(i1)
    h = crnn.LSTM(5, return_sequences=True, dtype="float64")(
        crnn.ops.concatenate([e, i2], axis=-1))
    out = crnn.TimeDistributed(crnn.Dense(1, activation="sigmoid", dtype="float64"))(h)
    model = crnn.Model([i1, i2], out)
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    h = model.fit([ids, extra], y, batch_size=4, epochs=3, verbose=0, tbptt=(5, 10))
    assert set(h.history) == {"loss", "accuracy"} and len(h.history["loss"]) == 3


def test_tbptt_errors():
    x, y = _data(N=4, T=6)
    model = _model()
    for bad, match in [(0, "1 <= k1 <= k2"), ((3, 2), "1 <= k1 <= k2"),
                       ((2, 5), "multiple of k1"), (True, "an int k"), ("4", "an int k"),
                       ((1, 2, 3), "an int k"), (2.0, "an int k")]:
        with pytest.raises(ValueError, match=match):
            model.fit(x, y, verbose=0, tbptt=bad)
    with pytest.raises(ValueError, match="per-step targets"):
        model.fit(x, y[:, -1], verbose=0, tbptt=2)
    with pytest.raises(ValueError, match=r"sample_weight per sample \(batch,\) or per step"):
        model.fit(x, y, sample_weight=np.ones((4, 3)), verbose=0, tbptt=2)

    many_to_one = crnn.Sequential([crnn.Input((None, 3)), crnn.LSTM(6), crnn.Dense(6)])
    many_to_one.compile("sgd", "mse")
    with pytest.raises(ValueError, match="per-step outputs"):
        many_to_one.fit(x, np.zeros((4, 6)), verbose=0, tbptt=2)

    bi = crnn.Sequential([crnn.Input((None, 3)),
                          crnn.Bidirectional(crnn.GRU(4, return_sequences=True)),
                          crnn.TimeDistributed(crnn.Dense(1))])
    bi.compile("sgd", "mse")
    with pytest.raises(ValueError, match="no Bidirectional layer"):
        bi.fit(x, y, verbose=0, tbptt=2)

    back = crnn.Sequential([crnn.Input((None, 3)),
                            crnn.GRU(4, return_sequences=True, go_backwards=True),
                            crnn.TimeDistributed(crnn.Dense(1))])
    back.compile("sgd", "mse")
    with pytest.raises(ValueError, match="go_backwards=True"):
        back.fit(x, y, verbose=0, tbptt=2)

    class Loop(crnn.Model):
        def __init__(self):
            super().__init__()
            self.cell = crnn.SimpleRNNCell(4)
            self.out = crnn.Dense(1)

        def call(self, inputs, training=None):
            state, outs = None, []
            for x_t in crnn.ops.unstack(inputs, axis=1):
                h, state = self.cell(x_t, state, training)
                outs.append(self.out(h))
            return crnn.ops.stack(outs, axis=1)
    loop = Loop()
    loop.compile("sgd", "mse")
    with pytest.raises(ValueError, match="the cell .* called in the model's own loop"):
        loop.fit(x, y, verbose=0, tbptt=2)

    inp = crnn.Input((None, 3))
    h0 = crnn.Input((4,))
    seq = crnn.SimpleRNN(4, return_sequences=True)(inp, initial_state=[h0])
    given = crnn.Model([inp, h0], crnn.TimeDistributed(crnn.Dense(1))(seq))
    given.compile("sgd", "mse")
    with pytest.raises(ValueError, match=r"every input to have a time axis.*got 6 and 4 "
                                         r"\(input 1 of shape \(4, 4\)\)"):
        given.fit([x, np.zeros((4, 4))], y, verbose=0, tbptt=2)

    inp2 = crnn.Input((None, 3))
    first = crnn.SimpleRNN(4, return_sequences=True, return_state=True)(inp2)
    second = crnn.SimpleRNN(4, return_sequences=True)(first[0], initial_state=first[1:])
    chained = crnn.Model(inp2, crnn.TimeDistributed(crnn.Dense(1))(second))
    chained.compile("sgd", "mse")
    w = chained.get_weights()
    with pytest.raises(ValueError, match="explicit initial_state"):
        chained.fit(x, y, verbose=0, tbptt=2)
    for a, b in zip(w, chained.get_weights()):      # raised before any update
        np.testing.assert_array_equal(a, b)
    for layer in chained.layers_deep():             # and restored
        if isinstance(layer, RNN):
            assert not layer.stateful and not layer._tbptt

    shared = crnn.SimpleRNN(3, return_sequences=True)
    inp3 = crnn.Input((None, 3))
    twice = crnn.Model(inp3, crnn.TimeDistributed(crnn.Dense(1))(shared(shared(inp3))))
    twice.compile("sgd", "mse")
    with pytest.raises(ValueError, match="called 2 times"):
        twice.fit(x, y, verbose=0, tbptt=2)

    a, b = crnn.Input((None, 3)), crnn.Input((None, 3))
    two = crnn.Model([a, b], crnn.TimeDistributed(crnn.Dense(1))(
        crnn.GRU(2, return_sequences=True)(a + b)))
    two.compile("sgd", "mse")
    with pytest.raises(ValueError, match="same number of steps"):
        two.fit([x, x[:, :5]], y, verbose=0, tbptt=2)
