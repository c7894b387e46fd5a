"""``crnn.layers.RNN(cell)`` (Keras's ``RNN``): a user's cell written in Python against a
NumPy loop and finite differences, built-in cells against their layers (on the fused
kernels), stacked cells against stacked layers, masks and ``go_backwards``, stateful
calls, saving, and the errors."""
import numpy as np
import pytest

import crnn
from crnn import ops
from crnn.layers import RNN, StackedRNNCells
from test_layers_basic import check_gradients, tape_gradients


class TwoStateCell(crnn.Layer):
    """A user's cell with two states, ``h`` (``units``) and ``c`` (``units``)::

        z = x_t @ kernel + h @ recurrent_kernel          (B, 2H)
        c' = sigmoid(z[:, :H]) * c + tanh(z[:, H:])
        h' = tanh(c') * 0.5 + h * 0.5
        output: h'
    """

    def __init__(self, units, seed=0, name=None, dtype="float32"):
        super().__init__(name=name, dtype=dtype)
        self.units = units
        self.seed = seed

    @property
    def state_size(self):
        return (self.units, self.units)

    def build(self, input_shape):
        rng = np.random.default_rng(self.seed)
        H = self.units
        self.params["kernel"] = (0.5 * rng.standard_normal((input_shape[-1], 2 * H))
                                 ).astype(self.dtype)
        self.params["recurrent_kernel"] = (0.5 * rng.standard_normal((H, 2 * H))
                                           ).astype(self.dtype)
        self.built = True

    def call(self, inputs, states, training=None):
        h, c = states
        H = self.units
        z = ops.matmul(inputs, self.params["kernel"]) + ops.matmul(
            h, self.params["recurrent_kernel"])
        c_new = ops.sigmoid(z[:, :H]) * c + ops.tanh(z[:, H:])
        h_new = ops.tanh(c_new) * 0.5 + h * 0.5
        return h_new, [h_new, c_new]


def numpy_loop(cell, x, h, c, mask=None, go_backwards=False, zero_output=False):
    """The cell's formula over the steps, by hand, with Keras's masking rules."""
    W, U = cell.params["kernel"], cell.params["recurrent_kernel"]
    H = cell.units
    B, T, _ = x.shape
    order = range(T - 1, -1, -1) if go_backwards else range(T)
    outs, prev = [], np.zeros((B, H))
    for t in order:
        z = x[:, t] @ W + h @ U
        c_new = 1 / (1 + np.exp(-z[:, :H])) * c + np.tanh(z[:, H:])
        h_new = np.tanh(c_new) * 0.5 + h * 0.5
        out = h_new
        if mask is not None:
            m = mask[:, t, None]
            h_new, c_new = np.where(m, h_new, h), np.where(m, c_new, c)
            out = np.where(m, out, prev)
        h, c, prev = h_new, c_new, out
        outs.append(out)
    seq = np.stack(outs, axis=1)
    if mask is not None and zero_output:
        m = mask[:, ::-1] if go_backwards else mask
        seq = seq * m[:, :, None]
    return seq, h, c


@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("zero_output", [False, True])
def test_user_two_state_cell_matches_a_numpy_loop(rng, go_backwards, masked, zero_output):
    B, T, D, H = 4, 6, 3, 5
    cell = TwoStateCell(H, dtype="float64")
    layer = RNN(cell, return_sequences=True, return_state=True, go_backwards=go_backwards,
                zero_output_for_mask=zero_output)
    x = rng.standard_normal((B, T, D))
    h0, c0 = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    # padding inside, at both ends, a row all real and a row all padding
    mask = np.array([[1, 1, 1, 1, 1, 1], [0, 1, 1, 0, 1, 0], [0, 0, 0, 0, 0, 0],
                     [1, 1, 1, 0, 0, 0]], bool) if masked else None
    out, h, c = layer(x, initial_state=[h0, c0], mask=mask)
    want = numpy_loop(cell, x, h0, c0, mask, go_backwards, zero_output)
    for a, e in zip((out, h, c), want):
        np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-12)
    # the last output is the last real step's, with zero_output_for_mask too (which
    # acts on returned sequences, as Keras's documentation says)
    last = RNN(cell, go_backwards=go_backwards, zero_output_for_mask=zero_output)(
        x, initial_state=[h0, c0], mask=mask)
    seq = numpy_loop(cell, x, h0, c0, mask, go_backwards, zero_output=False)[0]
    np.testing.assert_allclose(last, seq[:, -1], rtol=1e-12, atol=1e-12)
    if masked:
        assert not last[2].any()      # no real step: zeros (Keras)
        np.testing.assert_array_equal(h[2], h0[2])


@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_user_cell_gradients_finite_differences(rng, return_sequences, go_backwards):
    B, T, D, H = 3, 5, 2, 3
    cell = TwoStateCell(H, dtype="float64")
    layer = RNN(cell, return_sequences=return_sequences, return_state=True,
                go_backwards=go_backwards)
    x = rng.standard_normal((B, T, D))
    h0, c0 = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    mask = np.array([[1, 1, 1, 1, 1], [0, 1, 1, 0, 1], [1, 1, 0, 0, 0]], bool)
    layer.build(x.shape)

    def fn(x, h0, c0):
        return layer(x, initial_state=[h0, c0], mask=mask)
    check_gradients(fn, [x, h0, c0], layer.trainable_weights, rng)


def test_user_cell_trains_with_fit(rng):
    # BPTT through the user's cell inside fit: the loss falls
    x = rng.standard_normal((64, 5, 2)).astype("float32")
    y = x.sum(axis=(1, 2))[:, None]
    model = crnn.Sequential([RNN(TwoStateCell(8)), crnn.Dense(1)])
    model.compile(crnn.optimizers.Adam(0.02), "mse")
    model(x[:1])
    before = model.get_weights()
    history = model.fit(x, y, epochs=30, batch_size=16, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.5 * losses[0]
    assert not np.allclose(before[0], model.get_weights()[0])   # the cell's kernel moved


class ReferenceSimpleRNNCell(crnn.Layer):
    """SimpleRNN's formula as a user writes it, sharing a SimpleRNNCell's weights."""

    def __init__(self, twin, name=None, dtype="float64"):
        super().__init__(name=name, dtype=dtype)
        self.twin = twin
        self.state_size = twin.units

    @property
    def params(self):
        return self.twin.params

    @params.setter
    def params(self, value):
        pass

    @property
    def grads(self):
        return {}

    @grads.setter
    def grads(self, value):
        pass

    def call(self, inputs, states, training=None):
        p = self.params
        h = ops.tanh(ops.matmul(inputs, p["kernel"])
                     + ops.matmul(states[0], p["recurrent_kernel"]) + p["bias"])
        return h, [h]


@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("zero_output", [False, True])
def test_python_loop_equals_the_fused_kernels_with_masks(rng, return_sequences,
                                                          go_backwards, zero_output):
    """The same cell on both paths of RNN: a user's cell through the tape step by step, a
    built-in one on its kernels; outputs, states and gradients agree, masks included."""
    B, T, D, H = 4, 6, 3, 4
    fused = crnn.SimpleRNN(H, return_sequences=return_sequences, return_state=True,
                           go_backwards=go_backwards, zero_output_for_mask=zero_output,
                           dtype="float64", seed=3)
    x = rng.standard_normal((B, T, D))
    fused.build(x.shape)
    fused.cell.params["bias"][:] = rng.standard_normal(H)
    loop = RNN(ReferenceSimpleRNNCell(fused.cell), return_sequences=return_sequences,
               return_state=True, go_backwards=go_backwards,
               zero_output_for_mask=zero_output)
    h0 = rng.standard_normal((B, H))
    lengths = np.array([6, 0, 2, 4])
    Rs = [rng.standard_normal((B, T, H) if return_sequences else (B, H)),
          rng.standard_normal((B, H))]
    weights = fused.trainable_weights
    a = tape_gradients(lambda x, h: fused(x, initial_state=[h], lengths=lengths), [x, h0],
                       weights, Rs)
    b = tape_gradients(lambda x, h: loop(x, initial_state=[h], lengths=lengths), [x, h0],
                       weights, Rs)
    for u, v in zip(fused(x, initial_state=[h0], lengths=lengths),
                    loop(x, initial_state=[h0], lengths=lengths)):
        np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-12)
    for u, v in zip(a, b):
        np.testing.assert_allclose(u, v, rtol=1e-10, atol=1e-12)


# -- built-in cells ----------------------------------------------------------------------
CELLS = {"SimpleRNN": (crnn.SimpleRNNCell, crnn.SimpleRNN),
         "LSTM": (crnn.LSTMCell, crnn.LSTM), "GRU": (crnn.GRUCell, crnn.GRU)}


@pytest.mark.parametrize("kind", list(CELLS))
@pytest.mark.parametrize("go_backwards", [False, True])
def test_builtin_cell_in_rnn_equals_its_layer_on_the_fused_kernels(rng, kind, go_backwards):
    cell_cls, layer_cls = CELLS[kind]
    B, T, D, H = 3, 7, 4, 5
    x = rng.standard_normal((B, T, D))
    layer = layer_cls(H, return_sequences=True, return_state=True, go_backwards=go_backwards,
                      dtype="float64", seed=2)
    rnn = RNN(cell_cls(H, dtype="float64", seed=9), return_sequences=True,
              return_state=True, go_backwards=go_backwards)
    layer.build(x.shape)
    rnn.build(x.shape)
    rnn.set_weights(layer.get_weights())
    lengths = np.array([7, 3, 5])
    for u, v in zip(layer(x, lengths=lengths), rnn(x, lengths=lengths)):
        np.testing.assert_array_equal(u, v)
    # one record on the tape for the whole sequence: the kernels ran, not a step loop
    with crnn.GradientTape() as tape:
        rnn(x)
    assert len(tape.records) == 1 and tape.records[0][0] is rnn
    # and backward outside a tape, as the layers have it
    R = [rng.standard_normal(o.shape) for o in rnn(x)]
    layer(x)
    np.testing.assert_array_equal(rnn.backward(R), layer.backward(R))
    for u, v in zip(rnn.get_gradients(), layer.get_gradients()):
        np.testing.assert_array_equal(u, v)


def _stack_pair(rng, kinds, x, **kw):
    """RNN([cells]) and the stacked layers, with the same weights."""
    H = [4, 3, 5][:len(kinds)]
    cells = [CELLS[k][0](h, dtype="float64", seed=i) for i, (k, h) in enumerate(zip(kinds, H))]
    stacked = RNN(cells, **kw)
    layers = [CELLS[k][1](h, return_sequences=True, return_state=True, dtype="float64",
                          seed=10 + i) for i, (k, h) in enumerate(zip(kinds, H))]
    stacked.build(x.shape)
    shape = x.shape
    for layer, cell in zip(layers, cells):
        layer.build(shape)
        layer.set_weights(cell.get_weights())
        shape = shape[:2] + (layer.units,)
    return stacked, layers


def _run_layers(layers, x, states, mask, return_sequences, go_backwards, zero_output):
    finals, i = [], 0
    for k, layer in enumerate(layers):
        n = len(layer.cell.state_names)
        if k == 0 and go_backwards:
            layer.go_backwards = True
        m = mask
        if k > 0 and go_backwards and mask is not None:
            m = mask[:, ::-1]
        if k == len(layers) - 1:
            layer.return_sequences = return_sequences
            layer.zero_output_for_mask = zero_output
        out = layer(x, initial_state=states[i:i + n], mask=m)
        x = out[0]
        finals += list(out[1:])
        i += n
    return [x, *finals]


@pytest.mark.parametrize("kinds", [("LSTM", "GRU"), ("SimpleRNN", "LSTM", "SimpleRNN")])
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_stacked_cells_equal_stacked_layers(rng, kinds, return_sequences, go_backwards):
    B, T, D = 3, 6, 2
    x = rng.standard_normal((B, T, D))
    stacked, layers = _stack_pair(rng, kinds, x, return_sequences=return_sequences,
                                  return_state=True, go_backwards=go_backwards)
    assert isinstance(stacked.cell, StackedRNNCells)
    states = [rng.standard_normal((B, s)) for s in stacked.state_size]
    mask = np.array([[1, 1, 1, 1, 1, 1], [1, 0, 1, 1, 0, 0], [0, 0, 1, 1, 1, 0]], bool)
    got = stacked(x, initial_state=states, mask=mask)
    want = _run_layers(layers, x, states, mask, return_sequences, go_backwards, False)
    assert len(got) == len(want) == 1 + len(states)
    for u, v in zip(got, want):
        np.testing.assert_allclose(u, v, rtol=0, atol=1e-13)
    Rs = [rng.standard_normal(np.shape(o)) for o in got]
    g1 = tape_gradients(lambda x, *s: stacked(x, initial_state=list(s), mask=mask),
                        [x, *states], stacked.trainable_weights, Rs)
    weights = [w for layer in layers for w in layer.trainable_weights]
    g2 = tape_gradients(lambda x, *s: _run_layers(layers, x, list(s), mask,
                                                  return_sequences, go_backwards, False),
                        [x, *states], weights, Rs)
    for u, v in zip(g1, g2):
        np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-13)


def test_stacked_cells_step_by_step_equal_the_fused_stack(rng):
    # the same stacked cells, once on the kernels (all built-in) and once through the
    # step loop (StackedRNNCells.call, which a user's cell in the stack would take)
    B, T, D = 2, 5, 3
    x = rng.standard_normal((B, T, D))
    cells = [crnn.GRUCell(4, dtype="float64", seed=0), crnn.LSTMCell(3, dtype="float64",
                                                                     seed=1)]
    fused = RNN(cells, return_sequences=True, return_state=True)
    out_fused = fused(x, lengths=np.array([5, 3]), training=False)
    stack = fused.cell
    out_loop = [np.asarray(o) for o in crnn.layers.cells.run_loop(
        stack, x, crnn.layers.cells.initial_states(stack, B, np.float64),
        np.arange(T)[None, :] < np.array([5, 3])[:, None], False, False, True, False,
        np.float64)[:1]]
    np.testing.assert_allclose(out_fused[0], out_loop[0], rtol=0, atol=1e-13)
    # StackedRNNCells.call takes one list of states per cell, as Keras's
    out, new = stack(x[:, 0], stack.get_initial_state(B))
    assert [len(s) for s in new] == [1, 2]
    assert out.shape == (B, 3)


def test_stacked_cells_with_a_users_cell(rng):
    B, T, D = 3, 4, 2
    x = rng.standard_normal((B, T, D))
    user = TwoStateCell(3, dtype="float64")
    gru = crnn.GRUCell(2, dtype="float64", seed=0)
    layer = RNN([user, gru], return_sequences=True, return_state=True)
    out, h1, c1, h2 = layer(x)
    assert out.shape == (B, T, 2) and h1.shape == c1.shape == (B, 3) and h2.shape == (B, 2)
    assert layer.state_size == [3, 3, 2]
    # step by step by hand: the user's cell, then the GRU cell on its output
    s_user, s_gru = user_states = [np.zeros((B, 3)), np.zeros((B, 3))], [np.zeros((B, 2))]
    for t in range(T):
        o, s_user = user(x[:, t], s_user)
        o, s_gru = gru(o, s_gru)
    np.testing.assert_allclose(out[:, -1], o, rtol=1e-12, atol=1e-13)
    del user_states
    check_gradients(lambda x: layer(x), [x], layer.trainable_weights, rng)


# -- the layer around any cell -----------------------------------------------------------
def test_rnn_has_a_real_constructor():
    cell = crnn.LSTMCell(3)
    layer = RNN(cell)
    assert isinstance(layer.name, str) and layer.name.startswith("rnn")
    assert layer.cell is cell and layer.state_size == [3, 3]
    assert (layer.return_sequences, layer.return_state, layer.go_backwards, layer.stateful,
            layer.unroll, layer.zero_output_for_mask) == (False,) * 6
    assert RNN(cell, unroll=True).unroll is True    # accepted; no change to the results
    assert layer(np.ones((2, 4, 5), "float32")).shape == (2, 3)
    assert repr(RNN(crnn.GRUCell(2), return_sequences=True)) == \
        "RNN(GRUCell(2), return_sequences=True)"


@pytest.mark.parametrize("bad, message", [
    ("lstm", "crnn layer"),
    (crnn.Dense(3), "state_size"),
    ([], "non-empty list"),
])
def test_rnn_rejects_what_is_not_a_cell(bad, message):
    with pytest.raises(ValueError, match=message):
        RNN(bad)


def test_rnn_rejects_bad_flags_and_dtype():
    with pytest.raises(ValueError, match="return_sequences"):
        RNN(crnn.GRUCell(2), return_sequences="yes")
    with pytest.raises(ValueError, match="dtype"):
        RNN(crnn.GRUCell(2), dtype="float64")


def test_user_cell_errors_are_clear(rng):
    class Bad(TwoStateCell):
        def call(self, inputs, states, training=None):
            out, new = super().call(inputs, states)
            return out, new[:1]
    with pytest.raises(ValueError, match="2 new states"):
        RNN(Bad(2))(np.ones((1, 3, 2), "float32"))
    layer = RNN(TwoStateCell(2))
    with pytest.raises(ValueError, match=r"expected 2 states"):
        layer(np.ones((1, 3, 2), "float32"), initial_state=[np.zeros((1, 2))])
    with pytest.raises(ValueError, match=r"state 1 of shape \(1, 2\)"):
        layer(np.ones((1, 3, 2), "float32"),
              initial_state=[np.zeros((1, 2)), np.zeros((1, 3))])
    with pytest.raises(ValueError, match="GradientTape"):
        layer.backward(np.ones((1, 2)))


def test_user_cell_stateful_and_step(rng):
    B, T, D, H = 2, 6, 3, 4
    x = rng.standard_normal((B, T, D)).astype("float32")
    cell = TwoStateCell(H)
    whole = RNN(cell, return_sequences=True, return_state=True)(x)
    st = RNN(cell, return_sequences=True, stateful=True)
    pieces = [st(x[:, :2]), st(x[:, 2:])]
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), whole[0], rtol=1e-6,
                               atol=1e-6)
    for s, w in zip(st.states, whole[1:]):
        np.testing.assert_allclose(s, w, rtol=1e-6, atol=1e-6)
    st.reset_state()
    assert st.states is None
    # one step, Keras-cell style
    out, new = st.step(x[:, 0])
    np.testing.assert_allclose(out, whole[0][:, 0], rtol=1e-6, atol=1e-6)
    assert len(new) == 2
    with pytest.raises(ValueError, match="SimpleRNN, LSTM or GRU"):
        st.stepper()


def test_user_cell_in_a_functional_model_saves_and_loads(tmp_path, rng):
    inp = crnn.Input((5, 3))
    y = RNN(TwoStateCell(4, seed=7), return_sequences=True)(inp)
    y = RNN([crnn.LSTMCell(3, seed=0), crnn.GRUCell(2, seed=1)])(y)
    model = crnn.Model(inp, crnn.Dense(1)(y))
    x = rng.standard_normal((2, 5, 3)).astype("float32")
    want = model.predict(x, verbose=0)
    path = str(tmp_path / "m.crnn")
    model.save(path)
    with pytest.raises(ValueError, match="TwoStateCell"):
        crnn.load_model(path)
    loaded = crnn.load_model(path, custom_objects={"TwoStateCell": TwoStateCell})
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), want)
    assert isinstance(loaded.layers[1].cell, StackedRNNCells)
    assert len(model.get_weights()) == len(loaded.get_weights()) == 2 + 6 + 2


def test_bidirectional_around_a_users_cell(rng):
    x = rng.standard_normal((2, 4, 3))
    bi = crnn.Bidirectional(RNN(TwoStateCell(3, dtype="float64"), return_sequences=True))
    out = bi(x, mask=np.array([[1, 1, 1, 0], [1, 1, 0, 0]], bool))
    assert out.shape == (2, 4, 6)
    assert bi.forward_layer.cell is not bi.backward_layer.cell
    assert bi.forward_layer.zero_output_for_mask and bi.backward_layer.zero_output_for_mask
    assert not out[1, 2:].any()


def test_a_cell_built_before_keeps_its_weights():
    cell = crnn.LSTMCell(3, seed=0)
    cell.build((None, 2))
    weights = cell.get_weights()
    layer = RNN(cell)
    layer(np.ones((1, 4, 2), "float32"))
    for a, b in zip(layer.get_weights(), weights):
        np.testing.assert_array_equal(a, b)
