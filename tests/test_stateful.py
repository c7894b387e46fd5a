"""``stateful=True`` on the recurrent layers (Keras's semantics), ``reset_states`` by layer
and by model, whole or per sample, and stateful models in fit/evaluate/predict."""
import numpy as np
import pytest

import crnn

CELLS = [crnn.SimpleRNN, crnn.LSTM, crnn.GRU]
SPLITS = [(0, 3), (3, 4), (4, 9), (9, 10)]    # uneven windows, one of a single step


def _x(B=3, T=10, D=4, seed=0):
    return np.random.default_rng(seed).standard_normal((B, T, D))


def _pair(cls, **kwargs):
    """A plain layer and a stateful one with the same weights (float64)."""
    kwargs = dict(dtype="float64", seed=1, **kwargs)
    return cls(5, **kwargs), cls(5, stateful=True, **kwargs)


@pytest.mark.parametrize("cls", CELLS)
@pytest.mark.parametrize("return_sequences", [True, False])
def test_stateful_windows_equal_one_call_over_the_whole_sequence(cls, return_sequences):
    x = _x()
    full, st = _pair(cls, return_sequences=return_sequences, return_state=True)
    whole = full(x)
    pieces = [st(x[:, a:b]) for a, b in SPLITS]
    if return_sequences:
        np.testing.assert_allclose(np.concatenate([p[0] for p in pieces], axis=1),
                                   whole[0], rtol=0, atol=1e-12)
    else:
        np.testing.assert_allclose(pieces[-1][0], whole[0], rtol=0, atol=1e-12)
    for got, want in zip(pieces[-1][1:], whole[1:]):          # the final states
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    for got, want in zip(st.states, whole[1:]):               # and the stored ones
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("cls", CELLS)
def test_stateful_windows_with_lengths_equal_one_masked_call(cls):
    x = _x(B=4)
    lengths = np.array([10, 0, 4, 7])
    # zeros at the padded steps: with Keras's default (a padded step repeats the previous
    # output of the same call) a window that starts on padding outputs zeros until its
    # first real step, where one call repeats the output of the window before, as in Keras
    full, st = _pair(cls, return_sequences=True, return_state=True,
                     zero_output_for_mask=True)
    whole = full(x, lengths=lengths)
    outs = []
    for a, b in SPLITS:
        out = st(x[:, a:b], lengths=np.clip(lengths - a, 0, b - a))
        outs.append(out[0])
    np.testing.assert_allclose(np.concatenate(outs, axis=1), whole[0], rtol=0, atol=1e-12)
    for got, want in zip(st.states, whole[1:]):   # each row's state after its last real step
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("cls", CELLS)
def test_explicit_initial_state_overrides_the_stored_states_and_is_stored_after(cls):
    x = _x()
    full, st = _pair(cls, return_state=True)
    n = len(st.cell.state_names)
    st(x[:, :5])
    init = [np.full((3, 5), 0.3) for _ in range(n)]
    got = st(x[:, 5:], initial_state=init)
    want = full(x[:, 5:], initial_state=init)
    np.testing.assert_allclose(got[0], want[0], rtol=0, atol=1e-12)
    for s, w in zip(st.states, want[1:]):
        np.testing.assert_allclose(s, w, rtol=0, atol=1e-12)


def test_states_are_none_before_a_call_and_after_reset():
    layer = crnn.LSTM(5, stateful=True)
    assert layer.states is None
    layer(np.ones((2, 3, 4), dtype="float32"))
    assert [s.shape for s in layer.states] == [(2, 5), (2, 5)]
    layer.reset_states()
    assert layer.states is None


@pytest.mark.parametrize("cls", CELLS)
@pytest.mark.parametrize("how", ["mask", "indices"])
def test_per_sample_reset_zeros_only_those_rows(cls, how):
    x = _x(B=4)
    full, st = _pair(cls, return_sequences=True)
    st(x[:, :5])
    before = st.states
    which = np.array([False, True, False, True])
    st.reset_states(which if how == "mask" else [1, 3])
    after = st.states
    for b, a in zip(before, after):
        np.testing.assert_array_equal(a[which], 0)
        np.testing.assert_array_equal(a[~which], b[~which])
    # the reset rows start afresh, the others continue their sequences
    out = st(x[:, 5:])
    np.testing.assert_allclose(out[which], full(x[which][:, 5:]), rtol=0, atol=1e-12)
    np.testing.assert_allclose(out[~which], full(x[~which])[:, 5:], rtol=0, atol=1e-12)


def test_reset_states_with_values_sets_them_as_keras_does():
    layer = crnn.LSTM(3, stateful=True, dtype="float64", seed=0)
    h, c = np.full((2, 3), 0.1), np.full((2, 3), -0.2)
    layer.reset_states([h, c])
    x = _x(B=2, D=4)
    want = crnn.LSTM(3, dtype="float64", seed=0)(x, initial_state=[h, c])
    np.testing.assert_allclose(layer(x), want, rtol=0, atol=1e-12)
    one = crnn.SimpleRNN(3, stateful=True)
    one.reset_states(np.ones((2, 3)))        # one array alone for a one-state cell
    np.testing.assert_array_equal(one.states[0], 1)


def test_a_per_sample_reset_before_any_call_does_nothing():
    layer = crnn.GRU(3, stateful=True)
    layer.reset_states(np.array([True, False]))
    layer.reset_states([0])
    assert layer.states is None


def test_a_reset_after_a_call_does_not_change_its_backward():
    layer = crnn.SimpleRNN(3, stateful=True, dtype="float64", seed=0)
    plain = crnn.SimpleRNN(3, dtype="float64", seed=0)
    x = _x(B=2, D=4)
    layer(x)
    layer(x)                          # started from the stored states
    layer.reset_states([0, 1])
    plain(x, initial_state=[plain(x)])
    np.testing.assert_allclose(layer.backward(np.ones((2, 3))),
                               plain.backward(np.ones((2, 3))), rtol=0, atol=1e-12)
    np.testing.assert_allclose(layer.initial_state_grad[0], plain.initial_state_grad[0],
                               rtol=0, atol=1e-12)


def test_another_batch_size_raises_until_a_full_reset():
    layer = crnn.SimpleRNN(4, stateful=True)
    layer(np.ones((3, 5, 2), dtype="float32"))
    with pytest.raises(ValueError, match=r"expected a batch of 3 sequences .* got 2; call "
                                         r"reset_states\(\)"):
        layer(np.ones((2, 5, 2), dtype="float32"))
    layer.reset_states(np.array([True, False, True]))      # keeps the batch size
    with pytest.raises(ValueError, match="expected a batch of 3"):
        layer(np.ones((2, 5, 2), dtype="float32"))
    layer.reset_states()
    assert layer(np.ones((2, 5, 2), dtype="float32")).shape == (2, 4)


def test_reset_states_errors():
    plain = crnn.SimpleRNN(4)
    with pytest.raises(ValueError, match="expected a stateful layer.*stateful=True"):
        plain.reset_states()
    layer = crnn.LSTM(4, stateful=True)
    layer(np.ones((3, 5, 2), dtype="float32"))
    with pytest.raises(ValueError, match=r"reset mask of shape \(3,\).*got shape \(2,\)"):
        layer.reset_states(np.array([True, False]))
    with pytest.raises(ValueError, match=r"row indices in \[0, 3\)"):
        layer.reset_states([0, 3])
    with pytest.raises(ValueError, match="bool mask"):
        layer.reset_states(np.array([0.5, 1.0, 0.0]))
    with pytest.raises(ValueError, match=r"bool mask.*got bool of shape \(3, 1\)"):
        layer.reset_states(np.ones((3, 1), dtype=bool))
    with pytest.raises(ValueError, match="list of 2 arrays"):
        layer.reset_states([np.zeros((3, 4))])
    with pytest.raises(ValueError, match=r"expected state h of shape \(3, 4\)"):
        layer.reset_states([np.zeros((3, 5)), np.zeros((3, 5))])
    with pytest.raises(ValueError, match="expected stateful to be True or False"):
        crnn.GRU(3, stateful="yes")


def test_no_gradient_flows_from_one_call_into_the_previous_one():
    layer = crnn.SimpleRNN(3, stateful=True, dtype="float64", seed=0)
    x = _x(B=2, D=4)
    with crnn.GradientTape() as tape:
        x1, x2 = tape.watch(x[:, :5]), tape.watch(x[:, 5:])
        layer(x1)
        y = layer(x2)
        loss = crnn.ops.sum(y)
    g1, g2 = tape.gradient(loss, [x1, x2])
    assert g1 is None and g2 is not None


@pytest.mark.parametrize("cls", CELLS)
def test_config_and_saving_keep_stateful_but_not_the_states(cls, tmp_path):
    layer = cls(4, stateful=True, return_sequences=True)
    config = layer.get_config()
    assert config["stateful"] is True
    assert cls.from_config(config).stateful
    assert "stateful=True" in repr(layer) and "stateful" not in repr(cls(4))
    model = crnn.Sequential([crnn.Input((None, 2)), layer,
                             crnn.TimeDistributed(crnn.Dense(1))])
    model.compile("sgd", "mse")
    x = np.ones((3, 4, 2), dtype="float32")
    model.predict(x)
    assert layer.states is not None
    model.save(tmp_path / "m.crnn")
    loaded = crnn.load_model(tmp_path / "m.crnn")
    inner = loaded.layers[0]
    assert inner.stateful and inner.states is None     # a loaded model starts from zeros
    model.reset_states()
    np.testing.assert_allclose(loaded.predict(x), model.predict(x), rtol=1e-6)


def test_model_reset_states_reaches_every_nested_stateful_layer():
    inner = crnn.Sequential([crnn.GRU(3, stateful=True, return_sequences=True)])
    model = crnn.Sequential([
        crnn.Input((None, 2)),
        crnn.Bidirectional(crnn.LSTM(3, stateful=True, return_sequences=True)),
        inner,
        crnn.SimpleRNN(2, return_sequences=True),                 # not stateful
    ])
    from crnn.layers.recurrent import RNN
    stateful = [layer for layer in model.layers_deep()
                if isinstance(layer, RNN) and layer.stateful]
    assert len(stateful) == 3      # forward, backward, GRU
    model2 = crnn.Sequential([crnn.Input((None, 5, 2)),
                              crnn.TimeDistributed(crnn.SimpleRNN(2, stateful=True))])
    x = np.random.default_rng(0).standard_normal((4, 6, 2)).astype("float32")
    model(x)
    model2(np.ones((2, 3, 5, 2), dtype="float32"))
    td = model2.layers[0].layer
    assert td.states[0].shape == (6, 2)           # B*T rows
    model.reset_states(np.array([True, False, False, True]))
    for layer in stateful:
        for s in layer.states:
            np.testing.assert_array_equal(s[[0, 3]], 0)
            assert np.abs(s[[1, 2]]).sum() > 0
    model.reset_states([1])
    for layer in stateful:
        np.testing.assert_array_equal(layer.states[0][1], 0)
    model.reset_states()
    assert all(layer.states is None for layer in stateful)
    model2.reset_states()
    assert td.states is None
    with pytest.raises(ValueError, match="model.reset_states.*state arrays"):
        model.reset_states([np.zeros((4, 3))])
    crnn.Sequential([crnn.Dense(2)]).reset_states()   # nothing stateful: nothing to do


def test_bidirectional_with_a_stateful_layer_carries_each_direction():
    x = _x(B=2, T=8, D=3)
    bi = crnn.Bidirectional(crnn.SimpleRNN(4, stateful=True, dtype="float64", seed=0,
                                           return_state=True))
    f, b = bi.forward_layer, bi.backward_layer
    assert f.stateful and b.stateful
    out = bi(x[:, :4])
    h_f, h_b = out[1], out[2]
    bi(x[:, 4:])
    # each direction started the second call from its own final state of the first
    want_f = crnn.SimpleRNN(4, dtype="float64", return_state=True)
    want_f.build((2, 4, 3))
    want_f.set_weights(f.get_weights())
    np.testing.assert_allclose(f.states[0], want_f(x[:, 4:], initial_state=[h_f])[1],
                               rtol=0, atol=1e-12)
    want_b = crnn.SimpleRNN(4, dtype="float64", return_state=True, go_backwards=True)
    want_b.build((2, 4, 3))
    want_b.set_weights(b.get_weights())
    np.testing.assert_allclose(b.states[0], want_b(x[:, 4:], initial_state=[h_b])[1],
                               rtol=0, atol=1e-12)
    bi.reset_states(np.array([True, False]))
    assert not f.states[0][0].any() and not b.states[0][0].any()
    bi.reset_states([np.ones((2, 4)), 2 * np.ones((2, 4))])
    assert (f.states[0] == 1).all() and (b.states[0] == 2).all()
    bi.reset_states()
    assert f.states is None and b.states is None


def _stream_model(stateful, batch_size=None):
    model = crnn.Sequential([
        crnn.Input((None, 3), dtype="float64", batch_size=batch_size),
        crnn.LSTM(4, return_sequences=True, stateful=stateful, seed=0, dtype="float64"),
        crnn.TimeDistributed(crnn.Dense(1, dtype="float64")),
    ])
    model.compile("sgd", "mse")
    return model


def test_stateful_model_predicts_a_stream_in_chunks_as_one_call():
    x = _x(B=4, T=12, D=3)
    plain, st = _stream_model(False), _stream_model(True)
    st.set_weights(plain.get_weights())
    whole = plain.predict(x, batch_size=4)
    chunks = [st.predict(x[:, a:a + 3], batch_size=4) for a in range(0, 12, 3)]
    np.testing.assert_allclose(np.concatenate(chunks, axis=1), whole, rtol=0, atol=1e-12)
    st.reset_states()
    np.testing.assert_allclose(st.predict(x[:, :3], batch_size=4), whole[:, :3],
                               rtol=0, atol=1e-12)


def test_stateful_model_rejects_a_short_last_batch():
    model = _stream_model(True)
    x, y = _x(B=5, T=4, D=3), np.zeros((5, 4, 1))
    with pytest.raises(ValueError, match=r"multiple of batch_size \(2\) for a model with "
                                         r"stateful layers.*last batch would hold 1"):
        model.fit(x, y, batch_size=2, shuffle=False, verbose=0)
    with pytest.raises(ValueError, match="multiple of batch_size"):
        model.predict(x, batch_size=2)
    with pytest.raises(ValueError, match="multiple of batch_size"):
        model.evaluate(x, y, batch_size=2, verbose=0)
    with pytest.raises(ValueError, match="validation data"):
        model.fit(x[:4], y[:4], batch_size=2, validation_data=(x, y), verbose=0)
    # one batch of any size is fine (it fixes the batch size), as are equal batches
    assert model.predict(x, batch_size=8).shape == (5, 4, 1)
    model.reset_states()
    model.fit(x[:4], y[:4], batch_size=2, shuffle=False, verbose=0)
    assert model.layers[0].states[0].shape == (2, 4)
    with pytest.raises(ValueError, match="expected a batch of 2 sequences"):
        model.predict(x[:4], batch_size=4)
