"""Streaming inference (crnn.streaming, crnn._step): a layer or model run one step at a
time equals its full forward pass; bad input raises ValueError saying what was expected;
generation from a tiny trained model."""
import numpy as np
import pytest
from conftest import assert_close

import crnn
from crnn import _step
from crnn.streaming import ModelStepper, ReferenceStepper, generate

CELLS = {
    "simple_rnn": (crnn.SimpleRNN, {}),
    "lstm": (crnn.LSTM, {}),
    "gru": (crnn.GRU, {"reset_after": True}),
    "gru_before": (crnn.GRU, {"reset_after": False}),
}
# (activation, recurrent_activation): the default pair takes the vectorised float32
# passes, the others the generic loops
ACTIVATIONS = [("tanh", "sigmoid"), ("relu", "sigmoid"), ("sigmoid", "tanh"),
               ("linear", "sigmoid")]


def make_layer(name, units, act, ract, dtype, seed=0, **extra):
    cls, kw = CELLS[name]
    kw = dict(kw, activation=act, dtype=dtype, seed=seed, return_sequences=True,
              return_state=True, **extra)
    if name != "simple_rnn":
        kw["recurrent_activation"] = ract
    else:
        kw["recurrent_initializer"] = "glorot_uniform"   # scaled down below
    layer = cls(units, **kw)
    return layer


def random_weights(layer, rng, D):
    layer.build((1, None, D))
    ws = []
    for w in layer.get_weights():
        fan = w.shape[0] if w.ndim == 2 and w.shape[0] > 2 else 1
        ws.append(0.8 * rng.standard_normal(w.shape) / np.sqrt(fan))
    layer.set_weights(ws)


def stepped(layer, x, init):
    """Run layer.step over x's time axis from the states init; (hs, final states)."""
    states, hs = init, []
    for t in range(x.shape[1]):
        h, states = layer.step(x[:, t], states)
        hs.append(h)
    return np.stack(hs, axis=1), states


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(CELLS))
@pytest.mark.parametrize("act,ract", ACTIVATIONS)
@pytest.mark.parametrize("B", [1, 3])
def test_steps_equal_full_forward(dtype, name, act, ract, B):
    rng = np.random.default_rng(B + 7 * len(name))
    T, D, H = 9, 5, 13
    layer = make_layer(name, H, act, ract, dtype)
    random_weights(layer, rng, D)
    x = rng.standard_normal((B, T, D)).astype(dtype)
    n = 2 if name == "lstm" else 1
    init = [(0.5 * rng.standard_normal((B, H))).astype(dtype) for _ in range(n)]
    out = layer(x, initial_state=init)
    hs, finals = stepped(layer, x, init)
    assert hs.dtype == dtype and hs.shape == (B, T, H)
    assert_close(hs, out[0], dtype, scale=10)
    assert len(finals) == n
    for got, want in zip(finals, out[1:]):
        assert_close(got, want, dtype, scale=10)


@pytest.mark.parametrize("name", list(CELLS))
@pytest.mark.parametrize("B", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stepper_equals_layer_and_paths_agree(name, B, dtype):
    """The stateful stepper, on its own vector-matrix product and on BLAS, and the
    reference twin, all equal the layer; the no-allocation out= path too."""
    rng = np.random.default_rng(3)
    T, D, H = 6, 71, 67     # rows and widths not multiples of 4
    layer = make_layer(name, H, "tanh", "sigmoid", dtype)
    random_weights(layer, rng, D)
    x = rng.standard_normal((B, T, D)).astype(dtype)
    n = 2 if name == "lstm" else 1
    init = [(0.5 * rng.standard_normal((B, H))).astype(dtype) for _ in range(n)]
    out = layer(x, initial_state=init)
    for vm_max in (1 << 40, 0):
        old = _step._set_vm_max(vm_max)
        try:
            s = layer.stepper(batch_size=B, states=init)
        finally:
            _step._set_vm_max(old)
        buf = np.empty((B, H), dtype)
        hs = []
        for t in range(T):
            r = s.step(x[:, t], out=buf)
            assert r is buf
            hs.append(buf.copy())
        assert_close(np.stack(hs, axis=1), out[0], dtype, scale=10)
        for got, want in zip(s.states, out[1:]):
            assert_close(got, want, dtype, scale=10)
    cell = layer.cell
    ref = ReferenceStepper(cell.family, cell.kernel, cell.recurrent_kernel, cell.bias, B,
                           states=init, activation="tanh", recurrent_activation="sigmoid",
                           reset_after=getattr(cell, "reset_after", True))
    hs = np.stack([ref.step(x[:, t]) for t in range(T)], axis=1)
    assert_close(hs, out[0], dtype, scale=10)


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_large_step_equals_layer(name):
    """H = 1024 at batch 1: the step's product (one pass over 8M weights, the GIL
    released) against the layer's forward pass (the LSTM's packed GEMM)."""
    rng = np.random.default_rng(8)
    layer = make_layer(name, 1024, "tanh", "sigmoid", np.float32)
    x = rng.standard_normal((1, 3, 1024)).astype(np.float32)
    out = layer(x)
    hs, finals = stepped(layer, x, None)
    assert_close(hs, out[0], np.float32, scale=10)
    for got, want in zip(finals, out[1:]):
        assert_close(got, want, np.float32, scale=10)


def test_reference_backend_steps_with_the_twin():
    rng = np.random.default_rng(0)
    layer = crnn.LSTM(4, return_sequences=True, backend="reference", seed=0)
    x = rng.standard_normal((2, 5, 3))
    out = layer(x)
    assert isinstance(layer.stepper(2), ReferenceStepper)
    hs, _ = stepped(layer, x, None)
    assert_close(hs, out, np.float32)


def test_stepper_state_and_reset():
    rng = np.random.default_rng(1)
    layer = crnn.LSTM(6, return_sequences=True, seed=0)
    x = rng.standard_normal((1, 4, 3)).astype(np.float32)
    out = layer(x)
    s = layer.stepper()
    assert s.state_names == ("h", "c")
    first = [s.step(x[:, t]) for t in range(4)]
    states = s.states
    states[0][...] = 99          # copies: the stepper's own state is untouched
    assert not np.any(s.states[0] == 99)
    s.reset()
    assert all(np.all(a == 0) for a in s.states)
    again = [s.step(x[:, t]) for t in range(4)]
    np.testing.assert_array_equal(np.stack(first, 1), np.stack(again, 1))
    assert_close(np.stack(again, 1), out, np.float32)
    # a returned output is the caller's: writing into it does not touch the state
    h = s.step(x[:, 0])
    h[...] = 0
    assert not np.all(s.states[0] == 0)


def test_weights_changed_in_place_and_rebuilt():
    rng = np.random.default_rng(2)
    layer = crnn.GRU(5, return_sequences=True, seed=0)
    x = rng.standard_normal((1, 3, 4)).astype(np.float32)
    layer(x)
    s = layer.stepper()
    new = [rng.standard_normal(w.shape) for w in layer.get_weights()]
    layer.set_weights(new)                       # in place: the stepper sees it
    out = layer(x)
    hs = np.stack([s.step(x[:, t]) for t in range(3)], 1)
    assert_close(hs, out, np.float32)
    layer.build((1, 3, 4))                       # new arrays: layer.step notices
    out = layer(x)
    hs, _ = stepped(layer, x, None)
    assert_close(hs, out, np.float32)
    assert not s.uses(layer.cell.kernel, layer.cell.recurrent_kernel, layer.cell.bias)


def test_step_builds_an_unbuilt_layer():
    layer = crnn.SimpleRNN(3)
    h, states = layer.step(np.ones((2, 4), np.float32))
    assert h.shape == (2, 3) and states[0] is h
    assert layer.cell.input_dim == 4


def test_bad_input_raises_value_error():
    layer = crnn.LSTM(4, seed=0)
    layer.build((1, None, 3))
    s = layer.stepper(batch_size=2)
    with pytest.raises(ValueError, match=r"expected x_t of shape \(batch, features\) = "
                                         r"\(2, 3\), got shape \(2, 4\)"):
        s.step(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"got shape \(3,\)"):
        s.step(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="expected x_t convertible"):
        s.step("abc")
    with pytest.raises(ValueError, match=r"expected x_t of shape"):
        s.step(np.zeros((1, 3), np.float32))      # wrong batch size
    with pytest.raises(ValueError, match=r"expected state c of shape \(2, 4\), got "
                                         r"\(2, 5\)"):
        s.reset([np.zeros((2, 4)), np.zeros((2, 5))])
    with pytest.raises(ValueError, match="expected states to be a list of 2 arrays"):
        s.reset(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="expected out to be a writable"):
        s.step(np.zeros((2, 3), np.float32), out=np.zeros((2, 4), np.float64))
    with pytest.raises(ValueError, match="expected out to be a writable"):
        s.step(np.zeros((2, 3), np.float32), out=np.zeros((2, 4), np.float32)[:, ::2])
    with pytest.raises(ValueError, match="expected x_t of shape"):
        layer.step(np.zeros((2, 3, 1), np.float32))
    with pytest.raises(ValueError, match="expected batch_size to be a positive int"):
        layer.stepper(batch_size=0)
    with pytest.raises(ValueError, match="expected family"):
        _step.Stepper("rnn", *layer.get_weights())


def test_other_dtypes_and_layouts_are_converted_nan_propagates():
    """x_t in float64 (to a float32 layer), strided, a list: converted as a layer's call
    converts; NaN is no error."""
    rng = np.random.default_rng(4)
    layer = crnn.SimpleRNN(4, return_sequences=True, seed=0)
    x = rng.standard_normal((2, 3, 6))
    out = layer(x)
    s = layer.stepper(2)
    h0 = s.step(x[:, 0])                                   # float64, strided
    h1 = s.step(np.asfortranarray(x[:, 1].astype(np.float32)))
    h2 = s.step(x[:, 2].tolist())
    assert h0.dtype == np.float32
    assert_close(np.stack([h0, h1, h2], 1), out, np.float32)
    bad = np.zeros((2, 6), np.float32)
    bad[0, 0] = np.nan
    h = s.step(bad)
    assert np.isnan(h[0]).all() and np.isfinite(h[1]).all()


def test_state_list_or_array_for_one_state_cells():
    layer = crnn.GRU(3, seed=0)
    x = np.ones((1, 2), np.float32)
    h0 = np.full((1, 3), 0.5, np.float32)
    a, _ = layer.step(x, h0)
    b, _ = layer.step(x, [h0])
    np.testing.assert_array_equal(a, b)


# -- models -----------------------------------------------------------------------------

def char_model(V=5, E=4, H=8, cell=crnn.LSTM, seed=0):
    return crnn.Sequential([
        crnn.Embedding(V, E, seed=seed),
        cell(H, return_sequences=True, seed=seed),
        crnn.Dropout(0.5),
        crnn.TimeDistributed(crnn.Dense(V, activation="softmax", seed=seed)),
    ])


def step_through(model, x):
    """model.step over the time axis of x from fresh states: (outputs stacked on axis 1,
    the final states)."""
    states, ys = None, []
    for t in range(x.shape[1]):
        y_t, states = model.step(x[:, t], states)
        ys.append(y_t)
    return np.stack(ys, 1), states


@pytest.mark.parametrize("cell", [crnn.SimpleRNN, crnn.LSTM, crnn.GRU])
def test_sequential_model_steps_equal_full_forward(cell):
    rng = np.random.default_rng(5)
    model = char_model(cell=cell)
    ids = rng.integers(0, 5, size=(3, 7))
    y = model(ids)
    stepped, states = step_through(model, ids)
    assert_close(stepped, y, np.float32)
    name = model.layers[1].name
    assert list(states) == [name]
    # a stepper from a state dict, continuing
    s = model.stepper(batch_size=3, states=None)
    for t in range(4):
        s.step(ids[:, t])
    mid = s.states
    s2 = model.stepper(batch_size=3, states=mid)
    tail = np.stack([s2.step(ids[:, t]) for t in range(4, 7)], 1)
    assert_close(tail, y[:, 4:], np.float32)


def test_functional_model_two_recurrent_layers_and_activation():
    rng = np.random.default_rng(6)
    inp = crnn.Input(shape=(None, 3))
    h = crnn.GRU(6, return_sequences=True, seed=1, reset_after=False)(inp)
    h = crnn.Activation("relu")(h)
    h, h_last, c_last = crnn.LSTM(5, return_sequences=True, return_state=True,
                                  seed=2)(h)
    out = crnn.Dense(2, seed=3)(h)
    model = crnn.Model(inp, out)
    x = rng.standard_normal((2, 6, 3)).astype(np.float32)
    y = model(x)
    stepped, states = step_through(model, x)
    assert_close(stepped, y, np.float32)
    assert len(states) == 2


def test_models_that_cannot_step():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 4, 3)).astype(np.float32)
    cases = [
        (crnn.Sequential([crnn.Bidirectional(crnn.SimpleRNN(3, return_sequences=True)),
                          crnn.Dense(1)]), "Bidirectional"),
        (crnn.Sequential([crnn.SimpleRNN(3), crnn.Dense(1)]), "many-to-one"),
        (crnn.Sequential([crnn.SimpleRNN(3, return_sequences=True, go_backwards=True)]),
         "go_backwards"),
        (crnn.Sequential([crnn.Flatten(), crnn.Dense(1)]), "time axis"),
    ]
    for model, what in cases:
        model(x)
        with pytest.raises(ValueError, match=what):
            model.step(x[:, 0])

    class Sub(crnn.Model):
        def __init__(self):
            super().__init__()
            self.rnn = crnn.SimpleRNN(3, return_sequences=True)

        def call(self, inputs, training=None):
            return self.rnn(inputs)

    sub = Sub()
    sub(x)
    with pytest.raises(ValueError, match="subclassed"):
        sub.step(x[:, 0])
    model = char_model()
    model(np.zeros((1, 3), np.int64))
    with pytest.raises(ValueError, match="unknown names"):
        model.step(np.zeros(1, np.int64), {"nope": [np.zeros((1, 8))]})


# -- generation -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def abc_model():
    """A tiny char model trained to continue "abcabc..." (ids 0, 1, 2)."""
    rng = np.random.default_rng(0)
    V, T = 3, 12
    starts = rng.integers(0, V, size=256)
    seqs = (starts[:, None] + np.arange(T + 1)[None, :]) % V
    x, y = seqs[:, :-1], seqs[:, 1:]
    model = crnn.Sequential([
        crnn.Embedding(V, 8, seed=0),
        crnn.GRU(16, return_sequences=True, seed=0),
        crnn.TimeDistributed(crnn.Dense(V, activation="softmax", seed=0)),
    ])
    model.compile(optimizer=crnn.optimizers.Adam(0.02),
                  loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=15, batch_size=32, verbose=0)
    return model


def test_generate_greedy_repeats_the_pattern(abc_model):
    out = generate(abc_model, [0, 1, 2, 0], 12)          # "abca" -> "bcabcabcabca"
    assert out.shape == (12,) and out.dtype == np.int64
    np.testing.assert_array_equal(out, (np.arange(12) + 1) % 3)
    batch = generate(abc_model, np.array([[0, 1], [2, 0]]), 5)
    np.testing.assert_array_equal(batch, [[(2 + k) % 3 for k in range(5)],
                                          [(1 + k) % 3 for k in range(5)]])


def test_generate_sampling_is_seeded_and_mostly_right(abc_model):
    a = generate(abc_model, [1, 2], 30, temperature=1.0, seed=3)
    b = generate(abc_model, [1, 2], 30, temperature=1.0, seed=3)
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a)) <= {0, 1, 2}
    # the pattern is learnt: each sampled id is mostly the one after the previous
    prev = np.r_[2, a[:-1]]
    assert np.mean(a == (prev + 1) % 3) > 0.8
    hot = generate(abc_model, [1, 2], 200, temperature=50.0, seed=0)
    assert len(np.unique(hot)) == 3                      # a high temperature spreads out


def test_generate_one_hot_inputs():
    """Without an Embedding the fed-back ids become one-hot rows."""
    V = 4
    model = crnn.Sequential([crnn.SimpleRNN(6, return_sequences=True, seed=0),
                             crnn.TimeDistributed(crnn.Dense(V, seed=0))])
    model(np.zeros((1, 2, V), np.float32))
    out = generate(model, [1, 3], 6)
    eye = np.eye(V, dtype=np.float32)
    seq = [1, 3]
    for k in range(6):
        y = model(eye[np.array(seq)][None])
        seq.append(int(y[0, -1].argmax()))
    np.testing.assert_array_equal(out, seq[2:])


def test_generate_bad_arguments(abc_model):
    with pytest.raises(ValueError, match="expected prompt to be integer ids"):
        generate(abc_model, [0.5], 3)
    with pytest.raises(ValueError, match="expected prompt"):
        generate(abc_model, [], 3)
    with pytest.raises(ValueError, match="temperature"):
        generate(abc_model, [0], 3, temperature=-1)
    assert generate(abc_model, [0], 0).shape == (0,)


def test_model_stepper_is_exported():
    assert crnn.generate is generate
    assert crnn.streaming.ModelStepper is ModelStepper


@pytest.mark.parametrize("name", list(CELLS))
def test_layer_step_fast_path_equals_general_path(name):
    """layer.step's fast path (the last compiled stepper, arrays taken as they are)
    against the general one (a fresh stepper per call): states None, list, tuple, one
    array, float64 (converted), the batch size changing, the weights replaced, the
    backend switched to the reference."""
    rng = np.random.default_rng(5)
    layer = make_layer(name, 6, "tanh", "sigmoid", np.float32)
    random_weights(layer, rng, 4)
    n = 2 if name == "lstm" else 1

    def general(x, states):
        s = layer.stepper(batch_size=len(x), states=states)
        h = s.step(x)
        return h, s.states

    for B in (1, 3, 1, 2):
        x = rng.standard_normal((B, 4)).astype(np.float32)
        st = [rng.standard_normal((B, 6)).astype(np.float32) for _ in range(n)]
        cases = [None, st, tuple(st), [s.astype(np.float64) for s in st]]
        if n == 1:
            cases.append(st[0])
        for states in cases:
            h, new = layer.step(x, states)
            h_ref, new_ref = general(x, states)
            assert_close(h, h_ref, np.float32)
            assert new[0] is h and len(new) == n
            for a, b in zip(new, new_ref):
                assert_close(a, b, np.float32)
        h, _ = layer.step(x.tolist(), st)           # a list: converted
        assert_close(h, general(x, st)[0], np.float32)
    layer.set_weights([w * 0.5 for w in layer.get_weights()])    # in place
    assert_close(layer.step(x, st)[0], general(x, st)[0], np.float32)
    layer.build((1, None, 4))                                      # new arrays
    assert_close(layer.step(x, st)[0], general(x, st)[0], np.float32)
    layer.cell.backend = "reference"
    h, _ = layer.step(x, st)
    ref = ReferenceStepper(layer.cell.family, layer.cell.kernel, layer.cell.recurrent_kernel,
                           layer.cell.bias, len(x), states=st,
                           reset_after=getattr(layer.cell, "reset_after", True))
    np.testing.assert_array_equal(h, ref.step(x))
