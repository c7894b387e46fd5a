"""TimeDistributed and Bidirectional: forward against the inner layers run by hand,
gradients through the tape against finite differences in float64, PyTorch's
bidirectional RNN/LSTM/GRU as referee, models, config round trips and bad arguments."""
import numpy as np
import pytest

import crnn
from conftest import assert_close, require_torch
from crnn.layers.basic import Embedding, Flatten
from crnn.layers.gru import weights_from_torch, weights_to_torch
from crnn.layers.wrappers import Bidirectional, TimeDistributed
from crnn.models import sublayers
from test_layers_basic import check_gradients, round_trip, tape_gradients

CELLS = {"simple_rnn": crnn.SimpleRNN, "lstm": crnn.LSTM, "gru": crnn.GRU}
MERGE_MODES = ["concat", "sum", "mul", "ave", None]


# -- TimeDistributed ----------------------------------------------------------------------
def test_time_distributed_dense_equals_dense_on_3d_input(rng):
    x = rng.standard_normal((3, 5, 4))
    td = TimeDistributed(crnn.Dense(2, activation="tanh", seed=0, dtype="float64"))
    dense = crnn.Dense(2, activation="tanh", dtype="float64")
    y = td(x)
    dense.build(x.shape)
    dense.set_weights(td.get_weights())
    assert y.shape == (3, 5, 2)
    np.testing.assert_allclose(y, dense(x), rtol=1e-14)
    np.testing.assert_allclose(y, np.tanh(x @ td.layer.params["kernel"]
                                          + td.layer.params["bias"]), rtol=1e-14)
    R = [rng.standard_normal((3, 5, 2))]
    a = tape_gradients(lambda x: td(x), [x], td.trainable_weights, R)
    b = tape_gradients(lambda x: dense(x), [x], dense.trainable_weights, R)
    for ga, gb in zip(a, b):
        np.testing.assert_allclose(ga, gb, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(td.get_gradients()[0], a[1])  # the inner layer's grads


@pytest.mark.parametrize("shape", [(2, 3, 4), (2, 3, 2, 4), (1, 1, 4)])
def test_time_distributed_gradients_match_finite_differences(shape, rng):
    x = rng.standard_normal(shape)
    td = TimeDistributed(crnn.Dense(3, activation="sigmoid", seed=1, dtype="float64"))
    assert td(x).shape == shape[:-1] + (3,)
    check_gradients(lambda x: td(x), [x], td.trainable_weights, rng)


def test_time_distributed_rnn_equals_a_loop_over_steps(rng):
    x = rng.standard_normal((2, 3, 4, 5))      # (B, T, T2, D): an RNN at every outer step
    td = TimeDistributed(crnn.LSTM(3, seed=2, dtype="float64"))
    y = td(x)
    assert y.shape == (2, 3, 3)
    for t in range(3):
        np.testing.assert_allclose(y[:, t], td.layer(x[:, t]), rtol=1e-13)
    check_gradients(lambda x: td(x), [x], td.trainable_weights, rng, entries=4)


def test_time_distributed_embedding_and_specs(rng):
    ids = rng.integers(0, 6, size=(2, 3, 4))
    td = TimeDistributed(Embedding(6, 2, seed=0))
    np.testing.assert_array_equal(td(ids), td.layer.embeddings[ids])
    inp = crnn.Input((5, 4))
    assert TimeDistributed(crnn.Dense(3))(inp).shape == (None, 5, 3)
    assert TimeDistributed(Flatten())(crnn.Input((None, 2, 3))).shape == (None, None, 6)
    assert TimeDistributed(crnn.SimpleRNN(2))(crnn.Input((5, 7, 3))).shape == (None, 5, 2)


def test_time_distributed_weights_config_and_repr(rng):
    td = TimeDistributed(crnn.Dense(4, use_bias=False, seed=3), name="td")
    with pytest.raises(ValueError, match="has no weights yet"):
        td.count_params()
    td.build((None, 7, 5))
    assert td.count_params() == 20 and td.layer.input_dim == 5
    assert td.trainable_weights[0] is td.layer.params["kernel"]
    assert td.params is td.layer.params                     # documented: shared dicts
    assert repr(td) == "TimeDistributed(Dense(4, use_bias=False, seed=3))"
    copy = round_trip(td)
    assert copy.name == "td" and copy.get_config()["layer"]["class_name"] == "Dense"
    copy.build((None, 7, 5))
    copy.set_weights(td.get_weights())
    x = rng.standard_normal((2, 7, 5)).astype(np.float32)
    np.testing.assert_array_equal(copy(x), td(x))
    with pytest.raises(ValueError, match="expected 1 weight arrays"):
        td.set_weights([])


def test_time_distributed_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match="expected layer to be a crnn layer, got str"):
        TimeDistributed("dense")
    td = TimeDistributed(crnn.Dense(2))
    with pytest.raises(ValueError, match=r"expected input of shape \(batch, time, \.\.\.\) "
                                         r"with at least 3 dimensions, got shape \(2, 3\)"):
        td(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="at least 3 dimensions"):
        td(crnn.Input((3,)))
    with pytest.raises(ValueError, match="expected the wrapped layer to return one tensor"):
        TimeDistributed(crnn.SimpleRNN(2, return_state=True))(np.zeros((2, 3, 4, 5)))
    with pytest.raises(ValueError, match="return one tensor"):
        TimeDistributed(crnn.SimpleRNN(2, return_state=True))(crnn.Input((3, 4, 5)))


# -- Bidirectional: forward wiring and gradients ------------------------------------------
def bidirectional(cell, merge_mode="concat", return_sequences=True, return_state=False,
                  seed=0, dtype="float64", units=3):
    layer = CELLS[cell](units, return_sequences=return_sequences, return_state=return_state,
                        seed=seed, dtype=dtype)
    return Bidirectional(layer, merge_mode=merge_mode)


def expected_bidirectional(bi, x, states=None):
    """The merged output computed by hand from the two inner layers, in NumPy."""
    f, b = bi.forward_layer, bi.backward_layer
    nf = len(f.cell.state_names)
    fs, bs = (None, None) if states is None else (states[:nf], states[nf:])
    yf, yb = f(x, initial_state=fs), b(x, initial_state=bs)
    sf = sb = []
    if bi.return_state:
        (yf, *sf), (yb, *sb) = yf, yb
    if bi.return_sequences:
        yb = yb[:, ::-1]
    merged = {"concat": lambda: [np.concatenate([yf, yb], axis=-1)],
              "sum": lambda: [yf + yb], "mul": lambda: [yf * yb],
              "ave": lambda: [(yf + yb) / 2], None: lambda: [yf, yb]}[bi.merge_mode]()
    return merged + list(sf) + list(sb)


@pytest.mark.parametrize("return_state", [False, True])
@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("merge_mode", MERGE_MODES, ids=str)
@pytest.mark.parametrize("cell", list(CELLS))
def test_bidirectional_forward_and_gradients(cell, merge_mode, return_sequences,
                                             return_state, rng):
    B, T, D, H = 2, 4, 3, 3
    bi = bidirectional(cell, merge_mode, return_sequences, return_state)
    x = rng.standard_normal((B, T, D))
    out = bi(x)
    outs = out if isinstance(out, list) else [out]
    n_states = len(bi.forward_layer.cell.state_names)
    n_main = 2 if merge_mode is None else 1
    assert isinstance(out, list) == (return_state or merge_mode is None)
    assert len(outs) == n_main + (2 * n_states if return_state else 0)
    width = 2 * H if merge_mode == "concat" else H
    assert outs[0].shape == ((B, T, width) if return_sequences else (B, width))
    for a, e in zip(outs, expected_bidirectional(bi, x)):
        np.testing.assert_allclose(a, e, rtol=1e-14, atol=1e-15)
    # the symbolic call says the same shapes
    spec = bi(crnn.Input((T, D)))
    spec = spec if isinstance(spec, list) else [spec]
    assert [s.shape for s in spec] == [(None,) + o.shape[1:] for o in outs]
    check_gradients(lambda x: bi(x), [x], bi.trainable_weights, rng, entries=3)


@pytest.mark.parametrize("cell", list(CELLS))
def test_bidirectional_backward_direction_is_the_reversed_sequence(cell, rng):
    """The backward half equals a plain forward layer with the backward weights run on
    the time-reversed sequence, re-reversed: step t of both halves lines up."""
    bi = bidirectional(cell, merge_mode=None, return_state=True)
    x = rng.standard_normal((2, 5, 3))
    yf, yb, *states = bi(x)
    plain = CELLS[cell](3, return_sequences=True, return_state=True, dtype="float64")
    plain.build(x.shape)
    plain.set_weights(bi.backward_layer.get_weights())
    ys, *finals = plain(np.ascontiguousarray(x[:, ::-1]))
    np.testing.assert_allclose(yb, ys[:, ::-1], rtol=1e-14)
    n = len(finals)
    for a, e in zip(states[n:], finals):
        np.testing.assert_allclose(a, e, rtol=1e-14)
    # the last backward output in time order is at t = 0 (it has read the whole sequence)
    np.testing.assert_allclose(yb[:, 0], states[n], rtol=1e-14)
    np.testing.assert_allclose(yf[:, -1], states[0], rtol=1e-14)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_bidirectional_initial_state_values_and_gradients(cell, rng):
    bi = bidirectional(cell, "ave", return_sequences=True, return_state=True)
    x = rng.standard_normal((2, 4, 3))
    n = 2 * len(bi.forward_layer.cell.state_names)
    states = [0.5 * rng.standard_normal((2, 3)) for _ in range(n)]
    outs = bi(x, initial_state=states)
    for a, e in zip(outs, expected_bidirectional(bi, x, states)):
        np.testing.assert_allclose(a, e, rtol=1e-14)
    assert not np.allclose(outs[0], bi(x)[0])          # the states are used
    check_gradients(lambda x, *s: bi(x, initial_state=list(s)), [x, *states],
                    bi.trainable_weights, rng, entries=3)
    with pytest.raises(ValueError, match=rf"expected initial_state to be a list of {n} "
                                         r"arrays \['forward h'"):
        bi(x, initial_state=states[:-1])


def test_bidirectional_float32_and_training_dropout(rng):
    bi = Bidirectional(crnn.GRU(4, dropout=0.3, recurrent_dropout=0.2, seed=1,
                                return_sequences=True))
    x = rng.standard_normal((3, 6, 2)).astype(np.float32)
    y = bi(x)
    assert y.shape == (3, 6, 8) and y.dtype == np.float32
    np.testing.assert_array_equal(bi(x), y)                 # inference: deterministic
    assert not np.allclose(bi(x, training=True), y)         # dropout while training


# -- Bidirectional: weights, config, errors -----------------------------------------------
def test_bidirectional_layers_weights_and_seeds(rng):
    lstm = crnn.LSTM(4, seed=7, name="enc")
    bi = Bidirectional(lstm)
    f, b = bi.forward_layer, bi.backward_layer
    assert (f.name, b.name) == ("forward_enc", "backward_enc")
    assert f is not lstm and not f.go_backwards and b.go_backwards   # as Keras 3: a copy
    assert (f.seed, b.seed) == (7, 8)
    bi.build((None, 5, 3))
    assert bi.count_params() == 2 * lstm_params(3, 4)
    fw, bw = f.get_weights(), b.get_weights()
    assert not np.allclose(fw[0], bw[0])                    # own weights per direction
    again = Bidirectional(crnn.LSTM(4, seed=7))
    again.build((None, 5, 3))
    for a, e in zip(again.get_weights(), bi.get_weights()):  # seeded: reproducible
        np.testing.assert_array_equal(a, e)
    assert [w.shape for w in bi.get_weights()] == [(3, 16), (4, 16), (16,)] * 2
    assert bi.trainable_weights[0] is f.params["kernel"]
    assert bi.trainable_weights[3] is b.params["kernel"]
    assert list(bi.params) == ["forward/kernel", "forward/recurrent_kernel", "forward/bias",
                               "backward/kernel", "backward/recurrent_kernel",
                               "backward/bias"]
    new = [rng.standard_normal(w.shape) for w in bi.get_weights()]
    bi.set_weights(new)
    for a, e in zip(bi.get_weights(), new):
        np.testing.assert_allclose(a, e, rtol=1e-7)
    with pytest.raises(ValueError, match="expected 6 weight arrays"):
        bi.set_weights(new[:3])
    bad = list(new)
    bad[5] = np.zeros(3)
    with pytest.raises(ValueError, match=r"expected backward/bias of shape \(16,\)"):
        bi.set_weights(bad)
    np.testing.assert_allclose(bi.get_weights()[0], new[0], rtol=1e-7)  # nothing written
    # unseeded: the two directions still differ
    free = Bidirectional(crnn.SimpleRNN(3))
    free.build((None, 2, 3))
    assert not np.allclose(free.get_weights()[0], free.get_weights()[3])


def lstm_params(D, H):
    return D * 4 * H + H * 4 * H + 4 * H


def test_bidirectional_config_round_trip_and_repr(rng):
    bi = Bidirectional(crnn.GRU(3, return_sequences=True, seed=4), merge_mode="mul",
                       name="bi")
    # (Bidirectional sets zero_output_for_mask on its layers, as Keras does)
    assert repr(bi) == "Bidirectional(GRU(3, return_sequences=True, seed=4, " \
                       "zero_output_for_mask=True), merge_mode='mul')"
    copy = round_trip(bi)
    assert copy.name == "bi" and copy.merge_mode == "mul"
    assert copy.backward_layer.go_backwards and copy.backward_layer.seed == 5
    x = rng.standard_normal((2, 3, 2)).astype(np.float32)
    y = bi(x)
    copy(x)
    copy.set_weights(bi.get_weights())
    np.testing.assert_array_equal(copy(x), y)
    custom = Bidirectional(crnn.LSTM(2), merge_mode=None,
                           backward_layer=crnn.LSTM(2, activation="relu", go_backwards=True))
    assert repr(custom).startswith("Bidirectional(LSTM(2), merge_mode=None, "
                                   "backward_layer=LSTM(2, activation='relu', ")
    assert round_trip(custom).backward_layer.activation == "relu"


def test_bidirectional_custom_backward_layer_of_another_type(rng):
    bi = Bidirectional(crnn.LSTM(3, return_sequences=True, return_state=True, seed=0,
                                 dtype="float64"),
                       backward_layer=crnn.GRU(2, return_sequences=True, return_state=True,
                                               go_backwards=True, seed=1, dtype="float64"))
    x = rng.standard_normal((2, 4, 3))
    out, hf, cf, hb = bi(x)
    assert out.shape == (2, 4, 5) and hb.shape == (2, 2)
    assert [s.shape for s in bi(crnn.Input((4, 3)))] == [(None, 4, 5), (None, 3),
                                                          (None, 3), (None, 2)]
    check_gradients(lambda x: bi(x), [x], bi.trainable_weights, rng, entries=3)


@pytest.mark.parametrize("make, match", [
    (lambda: Bidirectional(crnn.Dense(3)), "expected layer to be a recurrent layer"),
    (lambda: Bidirectional(crnn.SimpleRNNCell(3)), "recurrent layer.*SimpleRNNCell"),
    (lambda: Bidirectional(crnn.LSTM(3), backward_layer=crnn.Dense(3)),
     "expected backward_layer to be a recurrent layer"),
    (lambda: Bidirectional(crnn.LSTM(3), merge_mode="avg"), "expected merge_mode"),
    (lambda: Bidirectional(crnn.LSTM(3), merge_mode=["sum"]), "expected merge_mode"),
    (lambda: Bidirectional(crnn.LSTM(3), backward_layer=crnn.LSTM(3)),
     "different go_backwards"),
    (lambda: Bidirectional(crnn.LSTM(3), backward_layer=crnn.LSTM(
        3, go_backwards=True, return_sequences=True)), "same return_sequences"),
    (lambda: Bidirectional(crnn.LSTM(3), backward_layer=crnn.LSTM(
        3, go_backwards=True, dtype="float64")), "same dtype"),
    (lambda: Bidirectional(crnn.LSTM(3), merge_mode="sum",
                           backward_layer=crnn.LSTM(4, go_backwards=True)), "same units"),
])
def test_bidirectional_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bidirectional_bad_inputs():
    bi = Bidirectional(crnn.SimpleRNN(2))
    with pytest.raises(ValueError, match=r"expected input of shape \(batch, time, features"
                                         r"\), got shape \(2, 3\)"):
        bi(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"got shape \(None, 2, 3, 4\)"):
        bi(crnn.Input((2, 3, 4)))
    with pytest.raises(ValueError, match="has no weights yet"):
        bi.count_params()
    with pytest.raises(ValueError, match="has no weights yet"):
        bi.set_weights([])
    bi(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="expected input with 4 features"):
        bi(np.zeros((2, 3, 5)))
    with pytest.raises(ValueError, match=r"expected initial_state to be a list of 2"):
        bi(np.zeros((2, 3, 4)), initial_state=[np.zeros((2, 2))] * 3)


# -- in models ------------------------------------------------------------------------------
def test_bidirectional_stack_in_sequential(rng):
    T, D = 5, 3
    model = crnn.Sequential([
        crnn.Input((T, D)),
        Bidirectional(crnn.LSTM(3, return_sequences=True, seed=0, dtype="float64")),
        Bidirectional(crnn.GRU(2, seed=1, dtype="float64"), merge_mode="sum"),
        crnn.Dense(2, seed=2, dtype="float64"),
    ])
    bi1, bi2, dense = model.layers
    assert bi1.count_params() == 2 * lstm_params(3, 3)
    deep = model.layers_deep()
    for layer in (bi1.forward_layer, bi1.backward_layer, bi2.forward_layer,
                  bi2.backward_layer):
        assert any(layer is d for d in deep)
    inner = sublayers(bi1)                                  # depth first: layer, cell
    assert inner == [bi1.forward_layer, bi1.forward_layer.cell, bi1.backward_layer,
                     bi1.backward_layer.cell]
    x = rng.standard_normal((4, T, D))
    y = model(x)
    assert y.shape == (4, 2)
    np.testing.assert_allclose(y, dense(bi2(bi1(x))), rtol=1e-14)
    grads = check_gradients(lambda x: model(x), [x], model.trainable_weights, rng,
                            entries=2)
    assert len(model.trainable_weights) == 6 + 6 + 2
    # Model.get_gradients reaches the wrapped layers (their params views are not empty)
    got = model.get_gradients()
    assert len(got) == len(model.get_weights())
    for a, e in zip(got, grads[1:]):
        np.testing.assert_allclose(a, e, rtol=1e-12)


def test_functional_model_with_wrappers(rng):
    T, D, V = 6, 4, 9
    ids = crnn.Input((T,), dtype="int32")
    emb = Embedding(V, D, seed=0, dtype="float64")(ids)
    seq, hf, cf, hb, cb = Bidirectional(crnn.LSTM(3, return_sequences=True,
                                                  return_state=True, seed=1,
                                                  dtype="float64"))(emb)
    assert (seq.shape, hf.shape, cb.shape) == ((None, T, 6), (None, 3), (None, 3))
    per_step = TimeDistributed(crnn.Dense(2, seed=2, dtype="float64"))(seq)
    assert per_step.shape == (None, T, 2)
    model = crnn.Model(ids, [per_step, hb])
    x = rng.integers(0, V, size=(3, T))
    out, h_back = model(x)
    emb_l, bi, td = model.layers
    e = emb_l(x)
    ref_seq, _, _, ref_hb, _ = bi(e)
    np.testing.assert_allclose(out, td(ref_seq), rtol=1e-14)
    np.testing.assert_allclose(h_back, ref_hb, rtol=1e-14)
    check_gradients(lambda: model(x), [], model.trainable_weights, rng, entries=2)


def test_merge_mode_none_in_a_functional_model(rng):
    inp = crnn.Input((4, 2))
    fwd, bwd = Bidirectional(crnn.SimpleRNN(3, return_sequences=True, seed=0),
                             merge_mode=None)(inp)
    model = crnn.Model(inp, crnn.ops.concatenate([fwd, bwd], axis=-1))
    x = rng.standard_normal((2, 4, 2)).astype(np.float32)
    bi = model.layers[0]
    np.testing.assert_allclose(model(x), np.concatenate(bi(x), axis=-1), rtol=1e-6)


# -- PyTorch as referee -------------------------------------------------------------------
def _torch_module(torch, cell, D, H, dtype):
    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    kw = dict(batch_first=True, bidirectional=True, dtype=tdtype)
    if cell == "lstm":
        return torch.nn.LSTM(D, H, **kw)
    if cell == "gru":
        return torch.nn.GRU(D, H, **kw)
    return torch.nn.RNN(D, H, nonlinearity="tanh", **kw)


def _to_torch(cell, weights):
    """crnn/Keras ``[kernel, recurrent_kernel, bias]`` as torch's ``(w_ih, w_hh, b_ih,
    b_hh)`` (one bias where torch has two: the other is zero)."""
    if cell == "gru":
        return weights_to_torch(weights)
    kernel, recurrent, bias = weights
    return kernel.T, recurrent.T, bias, np.zeros_like(bias)


def _from_torch(cell, grads):
    if cell == "gru":
        return weights_from_torch(*grads)
    return [grads[0].T, grads[1].T, grads[2]]


@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(3, 6, 4, 5), (1, 1, 2, 1)],
                         ids=lambda s: "B%d-T%d-D%d-H%d" % s)
@pytest.mark.parametrize("cell", ["lstm", "gru", "simple_rnn"])
def test_bidirectional_matches_torch(cell, shape, dtype, return_sequences):
    torch = require_torch()
    B, T, D, H = shape
    rng = np.random.default_rng(sum(shape) + len(cell))
    bi = Bidirectional(CELLS[cell](H, return_sequences=return_sequences, return_state=True,
                                   seed=3, dtype=np.dtype(dtype).name))
    bi.build((B, T, D))
    bi.set_weights([0.9 * w if w.ndim == 2 else 0.1 * rng.standard_normal(w.shape)
                    for w in bi.get_weights()])
    module = _torch_module(torch, cell, D, H, dtype)
    for suffix, layer in (("", bi.forward_layer), ("_reverse", bi.backward_layer)):
        names = [f"{n}_l0{suffix}" for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        with torch.no_grad():
            for n, a in zip(names, _to_torch(cell, layer.get_weights())):
                getattr(module, n).copy_(torch.from_numpy(np.ascontiguousarray(a)))

    n = 2 if cell == "lstm" else 1                     # states per direction
    x = rng.standard_normal((B, T, D)).astype(dtype)
    states = [rng.standard_normal((B, H)).astype(dtype) for _ in range(2 * n)]
    width = (B, T, 2 * H) if return_sequences else (B, 2 * H)
    R = [rng.standard_normal(width).astype(dtype)] + [
        rng.standard_normal((B, H)).astype(dtype) for _ in range(2 * n)]

    # crnn, through the tape: [out, h_f, (c_f), h_b, (c_b)]
    outs = bi(x, initial_state=states)
    grads = tape_gradients(lambda x, *s: bi(x, initial_state=list(s)), [x, *states],
                           bi.trainable_weights, R)
    dx, d_states, d_weights = grads[0], grads[1:1 + 2 * n], grads[1 + 2 * n:]

    # torch: states (2 directions, B, H); out (B, T, 2H) already in time order
    tx = torch.from_numpy(x).requires_grad_(True)
    ts = [torch.from_numpy(np.stack([states[k], states[n + k]])).requires_grad_(True)
          for k in range(n)]
    t_out, t_fin = module(tx, ts[0] if n == 1 else tuple(ts))
    t_fin = [t_fin] if n == 1 else list(t_fin)
    t_main = t_out if return_sequences else torch.cat([t_fin[0][0], t_fin[0][1]], dim=-1)
    t_states = [t_fin[k][0] for k in range(n)] + [t_fin[k][1] for k in range(n)]
    loss = (t_main * torch.from_numpy(R[0])).sum()
    for s, r in zip(t_states, R[1:]):
        loss = loss + (s * torch.from_numpy(r)).sum()
    loss.backward()

    assert_close(outs[0], t_main.detach().numpy(), dtype, scale=10)
    for a, e in zip(outs[1:], t_states):
        assert_close(a, e.detach().numpy(), dtype, scale=10)
    assert_close(dx, tx.grad.numpy(), dtype, scale=10)
    t_dstates = [ts[k].grad[0] for k in range(n)] + [ts[k].grad[1] for k in range(n)]
    for a, e in zip(d_states, t_dstates):
        assert_close(a, e.numpy(), dtype, scale=10)
    for i, suffix in enumerate(("", "_reverse")):
        t_grads = [getattr(module, f"{p}_l0{suffix}").grad.numpy()
                   for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        for name, a, e in zip(["kernel", "recurrent_kernel", "bias"],
                              d_weights[3 * i:3 * i + 3], _from_torch(cell, t_grads)):
            assert_close(a, e, dtype, scale=10, err_msg=f"{name}{suffix}")


# -- TimeDistributed passes each step's mask on -------------------------------------------
@pytest.mark.parametrize("return_sequences", [False, True])
def test_time_distributed_gives_each_step_its_mask(rng, return_sequences):
    B, T, T2, D = 2, 3, 5, 4
    inner = crnn.LSTM(3, return_sequences=return_sequences, seed=0, dtype="float64")
    td = TimeDistributed(inner)
    x = rng.standard_normal((B, T, T2, D))
    mask = rng.random((B, T, T2)) < 0.7
    got = td(x, mask=mask)
    for t in range(T):
        np.testing.assert_allclose(got[:, t], inner(x[:, t], mask=mask[:, t]), rtol=0,
                                   atol=1e-13)
    assert not np.allclose(got, td(x))          # the mask was used
    # gradients through the tape with the mask, against the loop over the steps
    R = rng.standard_normal(got.shape)
    a = tape_gradients(lambda x: td(x, mask=mask), [x], td.trainable_weights, [R])
    b = tape_gradients(lambda x: crnn.ops.stack(
        [inner(x[:, t], mask=mask[:, t]) for t in range(T)], axis=1), [x],
        inner.trainable_weights, [R])
    for u, v in zip(a, b):
        np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-13)


def test_time_distributed_mask_for_a_layer_without_one(rng):
    dense = crnn.Dense(2, seed=0)
    td = TimeDistributed(dense)
    x = rng.standard_normal((2, 3, 4)).astype("float32")
    np.testing.assert_array_equal(td(x, mask=np.ones((2, 3), bool)), td(x))
    # in a model: Masking's mask reaches TimeDistributed and goes on to the loss
    inp = crnn.Input((3, 4))
    y = crnn.TimeDistributed(crnn.Dense(1))(crnn.Masking(0.0)(inp))
    model = crnn.Model(inp, y)
    x[0, 2] = 0
    model(x)
    np.testing.assert_array_equal(model.output_mask, [[True, True, False], [True] * 3])


@pytest.mark.parametrize("mask, message", [
    (np.ones((2,), bool), "2-D|1-D"),
    (np.ones((2, 4), bool), r"match the input's \(2, 3\)"),
    (np.ones((3, 3, 5), bool), r"match the input's \(2, 3\)"),
    (np.ones((2, 3), np.float32), "dtype bool"),
])
def test_time_distributed_checks_the_mask_shape(mask, message):
    td = TimeDistributed(crnn.GRU(2))
    with pytest.raises(ValueError, match=message):
        td(np.ones((2, 3, 5, 4), "float32"), mask=mask)
