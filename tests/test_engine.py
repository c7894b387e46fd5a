"""The tape (crnn.engine): gradients of ops, of layers called several times, and of the
three ways to build a model, against float64 finite differences."""
import numpy as np
import pytest

import crnn
from conftest import numeric_grad
from crnn import engine, ops


def check_grads(forward, arrays, rtol=1e-6):
    """forward(*Tensors or arrays) -> scalar; compare the tape's gradient of every array
    with finite differences."""
    with crnn.GradientTape() as tape:
        watched = [tape.watch(a) for a in arrays]
        loss = forward(*watched)
    grads = tape.gradient(loss, watched)
    for i, (a, g) in enumerate(zip(arrays, grads)):
        expected = numeric_grad(lambda: float(np.asarray(forward(*arrays))), a)
        assert g is not None, f"no gradient reached argument {i}"
        np.testing.assert_allclose(g, expected, rtol=rtol, atol=rtol * 10,
                                   err_msg=f"argument {i}")


def weights_grads_match(model, loss_of_model, rtol=1e-5):
    """The tape's gradient of every weight of ``model`` against finite differences."""
    with crnn.GradientTape() as tape:
        loss = loss_of_model(True)
    grads = tape.gradient(loss, model.trainable_weights)
    for i, (w, g) in enumerate(zip(model.trainable_weights, grads)):
        expected = numeric_grad(lambda: float(np.asarray(loss_of_model(False))), w)
        assert g is not None, f"no gradient for weight {i}"
        np.testing.assert_allclose(g, expected, rtol=rtol, atol=1e-8, err_msg=f"weight {i}")


@pytest.fixture
def R(rng):
    return lambda *shape: rng.standard_normal(shape)


# -- ops ---------------------------------------------------------------------------------
def test_arithmetic_with_broadcasting(R):
    a, b, w = R(3, 4), R(4), R(3, 4)
    check_grads(lambda a, b: ops.sum((a + b) * w - a / (b * b + 2) + (-a) * 3), [a, b])
    check_grads(lambda a, b: ops.sum(ops.square(2.0 - a) * b), [a, b])


@pytest.mark.parametrize("fn", [ops.sigmoid, ops.tanh, ops.relu, ops.exp,
                                lambda x: ops.softmax(x, axis=-1),
                                lambda x: ops.softmax(x, axis=0),
                                lambda x: ops.log(x * x + 1)])
def test_unary(R, fn):
    x, w = R(3, 5) + 0.05, R(3, 5)
    check_grads(lambda x: ops.sum(fn(x) * w), [x])


def test_reductions_and_reshapes(R):
    x, w2, w3 = R(2, 3, 4), R(2, 4), R(6, 4)
    check_grads(lambda x: ops.sum(ops.mean(x, axis=1) * w2), [x])
    check_grads(lambda x: ops.sum(ops.mean(x, axis=(0, 2), keepdims=True) * 3), [x])
    check_grads(lambda x: ops.mean(x) * 5, [x])
    check_grads(lambda x: ops.sum(ops.reshape(x, (6, 4)) * w3), [x])


def test_join_split_and_slice(R):
    x, y, w = R(2, 3, 4), R(2, 3, 2), R(2, 6)
    check_grads(lambda x, y: ops.sum(ops.concatenate([x, y], axis=-1)[:, 1] * w), [x, y])
    check_grads(lambda x: ops.sum(ops.stack(ops.unstack(x, axis=1)[::2], axis=0) * 2), [x])
    # the same step used twice: the gradients add
    check_grads(lambda x: ops.sum(x[:, 0] * x[:, 0] + x[:, -1]), [x])
    check_grads(lambda x, m: ops.sum(ops.matmul(x, m)), [x, R(4, 5)])


def test_unstack_gives_one_tensor_per_step(R):
    x = R(2, 5, 3)
    steps = ops.unstack(x, axis=1)
    assert len(steps) == 5 and all(s.shape == (2, 3) for s in steps)
    np.testing.assert_array_equal(steps[3], x[:, 3])


def test_without_a_tape_ops_return_plain_arrays(R):
    out = ops.sigmoid(R(2, 2))
    assert type(out) is np.ndarray


def test_tensors_refuse_iteration(R):
    with crnn.GradientTape() as tape:
        t = tape.watch(R(2, 3))
        with pytest.raises(TypeError, match="unstack"):
            list(t)


# -- layers called several times ---------------------------------------------------------
def test_a_layer_called_twice_keeps_two_caches(rng):
    dense = crnn.Dense(3, activation="tanh", dtype="float64", seed=0)
    a, b = rng.standard_normal((4, 2)), rng.standard_normal((4, 2))
    model = crnn.Sequential([])  # only to hold the weights for the check below
    model.add(dense)

    def loss(_):
        return ops.sum(dense(a) * dense(b))
    dense.build((None, 2))
    weights_grads_match(model, loss)


def test_weight_gradients_land_in_layer_grads(rng):
    dense = crnn.Dense(2, dtype="float64", seed=0)
    x = rng.standard_normal((3, 4))
    with crnn.GradientTape() as tape:
        y = dense(x)
        y2 = dense(x)
        loss = ops.sum(y) + ops.sum(y2)
    tape.gradient(loss)
    np.testing.assert_allclose(dense.grads["kernel"], 2 * np.tile(x.sum(0)[:, None], 2))
    np.testing.assert_allclose(dense.get_gradients()[1], [6.0, 6.0])


def test_gradient_of_an_unused_source_is_none(rng):
    with crnn.GradientTape() as tape:
        a, b = tape.watch(rng.standard_normal(3)), tape.watch(rng.standard_normal(3))
        loss = ops.sum(a * 2)
    ga, gb = tape.gradient(loss, [a, b])
    np.testing.assert_allclose(ga, 2.0)
    assert gb is None


def test_summing_gradients_leaves_the_arrays_it_sums_alone(rng):
    # y = t + t: Add's backward hands the same array (y's gradient) to both of its inputs,
    # so summing t's two gradients in place would double y's gradient too, and with an
    # output_gradient, the caller's own array.
    x = rng.standard_normal(3)
    with crnn.GradientTape() as tape:
        xt = tape.watch(x)
        t = xt * 3.0
        y = t + t
        loss = ops.sum(y * 1.0)
    gy, gt, gx = tape.gradient(loss, [y, t, xt])
    np.testing.assert_array_equal(gy, [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(gt, [2.0, 2.0, 2.0])
    np.testing.assert_array_equal(gx, [6.0, 6.0, 6.0])
    seed = np.array([1.0, 2.0, 3.0])
    gy, gt = tape.gradient(y, [y, t], output_gradient=seed)
    np.testing.assert_array_equal(seed, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(gy, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(gt, [2.0, 4.0, 6.0])


def test_gradient_arguments_are_checked(rng):
    with crnn.GradientTape() as tape:
        y = crnn.Dense(2, seed=0)(rng.standard_normal((3, 4)))
    with pytest.raises(ValueError, match="expected target to be a Tensor"):
        tape.gradient(np.zeros(2))
    with pytest.raises(ValueError, match=r"expected an output gradient of shape \(3, 2\)"):
        tape.gradient(y, output_gradient=np.ones((2, 2)))


# -- the three ways to build a model -----------------------------------------------------
def test_functional_many_to_one_with_a_shared_layer(rng):
    x = crnn.Input(shape=(5, 3))
    rnn = crnn.SimpleRNN(4, dtype="float64", seed=1)
    head = crnn.Dense(1, dtype="float64", seed=2)
    y1 = head(rnn(x))
    y2 = head(rnn(x[:, ::-1]))   # the same layers on a second branch
    model = crnn.Model(x, y1 + y2 * 0.5)
    assert model.layers[:2] == [rnn, head] or set(map(id, model.layers)) >= {id(rnn),
                                                                              id(head)}
    xs, target = rng.standard_normal((2, 5, 3)), rng.standard_normal((2, 1))
    assert model(xs).shape == (2, 1)
    weights_grads_match(model, lambda _: ops.sum(ops.square(model(xs) - target)))


def test_functional_many_to_many_with_states(rng):
    enc_in, dec_in = crnn.Input(shape=(4, 2)), crnn.Input(shape=(3, 2))
    _, h, c = crnn.LSTM(3, return_state=True, dtype="float64", seed=0)(enc_in)
    seq = crnn.GRU(3, return_sequences=True, dtype="float64", seed=1)(dec_in,
                                                                       initial_state=h + c)
    model = crnn.Model([enc_in, dec_in], crnn.Dense(2, dtype="float64", seed=2)(seq))
    a, b = rng.standard_normal((2, 4, 2)), rng.standard_normal((2, 3, 2))
    w = rng.standard_normal((2, 3, 2))
    assert model([a, b]).shape == (2, 3, 2)
    weights_grads_match(model, lambda _: ops.sum(model([a, b]) * w))


def test_sequential_stack(rng):
    model = crnn.Sequential([crnn.SimpleRNN(4, return_sequences=True, dtype="float64",
                                            seed=0),
                             crnn.LSTM(3, dtype="float64", seed=1),
                             crnn.Dense(1, activation="sigmoid", dtype="float64", seed=2)])
    xs = rng.standard_normal((3, 6, 2))
    assert model(xs).shape == (3, 1)
    weights_grads_match(model, lambda _: ops.sum(ops.log(model(xs))))


class TwoCells(crnn.Model):
    """The textbook's model that loops over two stacked cells by hand."""

    def __init__(self, units):
        super().__init__()
        self.cell0 = crnn.SimpleRNNCell(units, dtype="float64", seed=0)
        self.cell1 = crnn.SimpleRNNCell(units, dtype="float64", seed=1)
        self.out = crnn.Dense(1, dtype="float64", seed=2)

    def call(self, inputs, training=None):
        state0 = state1 = None
        for word in crnn.ops.unstack(inputs, axis=1):
            out0, state0 = self.cell0(word, state0, training)
            out1, state1 = self.cell1(out0, state1, training)
        return crnn.ops.sigmoid(self.out(out1))


def test_subclassed_model_loops_over_cells(rng):
    model = TwoCells(4)
    xs = rng.standard_normal((2, 5, 3))
    y = model(xs)
    assert y.shape == (2, 1) and model.count_params() == (3 * 4 + 16 + 4) + 36 + 5
    assert [type(layer).__name__ for layer in model.layers] == ["SimpleRNNCell",
                                                                 "SimpleRNNCell", "Dense"]
    weights_grads_match(model, lambda _: ops.sum(ops.log(model(xs))))


def test_subclassed_loop_equals_the_layer(rng):
    """BPTT across the user's loop gives what the fused layer's kernel gives."""
    cell = crnn.LSTMCell(3, dtype="float64", seed=0)
    layer = crnn.LSTM(3, return_sequences=True, dtype="float64", seed=0)
    xs, w = rng.standard_normal((2, 4, 2)), rng.standard_normal((2, 4, 3))
    with crnn.GradientTape() as tape:
        states, outs = None, []
        for x_t in crnn.ops.unstack(xs, axis=1):
            h, states = cell(x_t, states)
            outs.append(h)
        loss = crnn.ops.sum(crnn.ops.stack(outs, axis=1) * w)
    g_loop = tape.gradient(loss, cell.trainable_weights)
    with crnn.GradientTape() as tape:
        loss2 = crnn.ops.sum(layer(xs) * w)
    g_layer = tape.gradient(loss2, layer.trainable_weights)
    np.testing.assert_allclose(float(loss), float(loss2), rtol=1e-12)
    for a, b in zip(g_loop, g_layer):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_symbolic_shapes():
    x = crnn.Input(shape=(None, 3))
    seq = crnn.GRU(5, return_sequences=True)(x)
    assert seq.shape == (None, None, 5)
    out, h = crnn.SimpleRNN(2, return_state=True)(seq)
    assert out.shape == h.shape == (None, 2)
    assert (seq[:, 0] + 1).shape == (None, 5)
    assert crnn.ops.concatenate([seq, seq], axis=-1).shape == (None, None, 10)
    with pytest.raises(ValueError, match="known length along axis 1"):
        crnn.ops.unstack(x, axis=1)


def test_model_argument_errors(rng):
    x = crnn.Input(shape=(4, 2))
    model = crnn.Model(x, crnn.Dense(1)(crnn.SimpleRNN(3)(x)))
    with pytest.raises(ValueError, match=r"expected input  ?of shape \(None, 4, 2\)"):
        model(np.zeros((2, 5, 2)))
    with pytest.raises(ValueError, match="not among the model's inputs"):
        crnn.Model(crnn.Input(shape=(1,)), crnn.Dense(1)(x[:, 0]))
    with pytest.raises(ValueError, match="crnn.Input placeholders"):
        crnn.Model(np.zeros(3), crnn.Dense(1)(x[:, 0]))
    with pytest.raises(NotImplementedError, match="must implement call"):
        crnn.Model()(np.zeros((1, 2)))


def test_dropout_masks_change_between_outermost_calls_only(rng):
    class Loop(crnn.Model):
        def __init__(self):
            super().__init__()
            self.cell = crnn.SimpleRNNCell(8, dropout=0.5, seed=3, dtype="float64")

        def call(self, inputs, training=None):
            state, masks = None, []
            for x_t in crnn.ops.unstack(inputs, axis=1):
                _, state = self.cell(x_t, state, training)
                masks.append(self.cell._dropout_mask)
            return state[0], masks

    model = Loop()
    xs = np.ones((2, 3, 4))
    _, masks1 = model(xs, training=True)
    _, masks2 = model(xs, training=True)
    assert all(m is masks1[0] for m in masks1)    # fixed across the steps of a sequence
    assert not np.array_equal(masks1[0], masks2[0])  # new for the next batch


def test_engine_flatten_and_pack():
    s = [1, (2, [3, 4]), 5]
    assert engine.flatten(s) == [1, 2, 3, 4, 5]
    assert engine.pack_like(s, "abcde") == ["a", ("b", ["c", "d"]), "e"]


def test_functional_embedding_bidirectional_dropout(rng):
    """Repeated ids, both directions and dropout masks (drawn from a re-seeded generator
    so every finite-difference evaluation sees the same masks)."""
    ids_in = crnn.Input(shape=(5,), dtype="int64")
    emb = crnn.Embedding(6, 3, dtype="float64", seed=0)
    bi = crnn.Bidirectional(crnn.LSTM(2, return_sequences=True, dropout=0.3,
                                      recurrent_dropout=0.3, dtype="float64", seed=1),
                            merge_mode="concat")
    out = crnn.TimeDistributed(crnn.Dense(1, dtype="float64", seed=2))(bi(emb(ids_in)))
    model = crnn.Model(ids_in, out)
    ids = np.array([[1, 1, 2, 5, 1], [0, 3, 3, 3, 4]])   # repeated ids
    w = rng.standard_normal((2, 5, 1))
    cells = [layer for layer in model.layers_deep() if isinstance(layer, crnn.layers.RNNCell)]
    assert len(cells) == 2

    def loss(_):
        for i, cell in enumerate(cells):
            cell._rng = np.random.default_rng(10 + i)
        return ops.sum(model(ids, training=True) * w)
    weights_grads_match(model, loss)


def test_weight_arrays_read_by_ops_get_their_gradients(rng):
    # a user's layer computing with its own weight arrays through crnn.ops: the tape
    # sums the gradient over every op that read the array (here twice)
    W = rng.standard_normal((3, 2))
    b = rng.standard_normal(2)
    x = rng.standard_normal((4, 3))
    with crnn.GradientTape() as tape:
        y = crnn.ops.tanh(crnn.ops.matmul(x, W) + b)
        y2 = crnn.ops.matmul(x, W)
        loss = crnn.ops.sum(y) + crnn.ops.sum(y2)
    gW, gb = tape.gradient(loss, [W, b])
    t = np.tanh(x @ W + b)
    np.testing.assert_allclose(gW, x.T @ (1 - t ** 2) + x.T @ np.ones((4, 2)), rtol=1e-12)
    np.testing.assert_allclose(gb, (1 - t ** 2).sum(axis=0), rtol=1e-12)
    assert tape.gradient(loss, [rng.standard_normal(2)]) == [None]   # an unread array


def test_where_gradient_goes_to_the_chosen_side(rng):
    a, b = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    c = np.array([[True], [False], [True]])
    with crnn.GradientTape() as tape:
        ta, tb = tape.watch(a), tape.watch(b)
        y = crnn.ops.where(c, ta, tb) * 2
        loss = crnn.ops.sum(y)
    ga, gb = tape.gradient(loss, [ta, tb])
    np.testing.assert_array_equal(ga, np.where(c, 2.0, 0.0) * np.ones((3, 2)))
    np.testing.assert_array_equal(gb, np.where(c, 0.0, 2.0) * np.ones((3, 2)))
    np.testing.assert_array_equal(crnn.ops.where(c, a, 0.0), np.where(c, a, 0.0))
    with pytest.raises(ValueError, match="bool condition"):
        crnn.ops.where(np.ones((3, 1)), a, b)
