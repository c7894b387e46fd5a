"""Embedding, Dropout, Activation, RepeatVector, Flatten: forward against NumPy formulas,
gradients through the tape against central finite differences in float64, use in
Sequential and functional models, config round trips, and bad arguments and inputs."""
import numpy as np
import pytest

import crnn
from crnn.layers.base import deserialize_layer, serialize_layer
from crnn.layers.basic import Activation, Dropout, Embedding, Flatten, RepeatVector


# -- gradient checking through the tape (also used by test_wrappers.py) -----------------
def _as_list(out):
    return list(out) if isinstance(out, (list, tuple)) else [out]


def tape_gradients(fn, xs, weights, Rs):
    """Gradients of ``sum_i sum(out_i * R_i)``, ``out = fn(*xs)``, through the tape:
    one per array in ``xs`` (watched), then one per weight."""
    with crnn.GradientTape() as tape:
        watched = [tape.watch(x) for x in xs]
        outs = _as_list(fn(*watched))
        assert len(outs) == len(Rs)
        loss = crnn.ops.sum(outs[0] * Rs[0])
        for o, r in zip(outs[1:], Rs[1:]):
            loss = loss + crnn.ops.sum(o * r)
    return tape.gradient(loss, watched + list(weights))


def numeric_loss(fn, xs, Rs):
    outs = _as_list(fn(*xs))
    return sum(float(np.sum(np.asarray(o, dtype=np.float64) * r)) for o, r in zip(outs, Rs))


def random_weights_like(fn, xs, rng):
    """One fixed random array per output of ``fn(*xs)``: the R of the loss."""
    return [rng.standard_normal(np.shape(o)) for o in _as_list(fn(*xs))]


def check_gradients(fn, xs, weights, rng, entries=6, eps=1e-6, rtol=1e-6, atol=1e-7):
    """Tape gradients of every array of ``xs`` and every weight against central finite
    differences: on up to ``entries`` single entries each, and along one random
    direction over the whole array. ``xs`` and ``weights`` are float64 arrays that
    ``fn`` reads (they are perturbed in place and restored)."""
    Rs = random_weights_like(fn, xs, rng)
    grads = tape_gradients(fn, xs, weights, Rs)
    for k, (a, g) in enumerate(zip(list(xs) + list(weights), grads)):
        what = f"source {k} of shape {a.shape}"
        assert g is not None, what
        assert g.shape == a.shape, what
        saved = a.copy()
        idx = (np.arange(a.size) if a.size <= entries
               else rng.choice(a.size, entries, replace=False))
        num = []
        for i in idx:
            a.flat[i] = saved.flat[i] + eps
            lp = numeric_loss(fn, xs, Rs)
            a.flat[i] = saved.flat[i] - eps
            lm = numeric_loss(fn, xs, Rs)
            a.flat[i] = saved.flat[i]
            num.append((lp - lm) / (2 * eps))
        np.testing.assert_allclose(num, np.asarray(g).flat[idx], rtol=rtol, atol=atol,
                                   err_msg=what)
        v = rng.standard_normal(a.shape)
        a[...] = saved + eps * v
        lp = numeric_loss(fn, xs, Rs)
        a[...] = saved - eps * v
        lm = numeric_loss(fn, xs, Rs)
        a[...] = saved
        np.testing.assert_allclose((lp - lm) / (2 * eps), float(np.sum(g * v)),
                                   rtol=rtol, atol=atol, err_msg=what + " (direction)")
    return grads


def round_trip(layer):
    """A new layer from ``layer``'s config (through serialize/deserialize): same config."""
    copy = deserialize_layer(serialize_layer(layer))
    assert type(copy) is type(layer)
    assert copy.get_config() == layer.get_config()
    return copy


# -- Embedding ----------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(4,), (3, 5), (2, 3, 4)])
def test_embedding_forward_is_a_row_lookup(shape, rng):
    layer = Embedding(7, 3, seed=0, dtype="float64")
    ids = rng.integers(0, 7, size=shape)
    y = layer(ids)
    W = layer.get_weights()[0]
    assert y.shape == shape + (3,) and y.dtype == np.float64
    np.testing.assert_array_equal(y, W[ids])
    for index in np.ndindex(*shape):
        np.testing.assert_array_equal(y[index], W[ids[index]])


def test_embedding_default_initializer_is_keras_uniform():
    layer = Embedding(50, 8, seed=3)
    layer.build()
    W = layer.embeddings
    assert W.shape == (50, 8) and W.dtype == np.float32
    assert np.all(np.abs(W) <= 0.05) and W.std() > 0.02
    again = Embedding(50, 8, seed=3)
    again.build()
    np.testing.assert_array_equal(again.embeddings, W)  # the seed fixes the weights
    assert layer.count_params() == 400


def test_embedding_gradient_adds_up_repeated_ids(rng):
    layer = Embedding(5, 3, seed=1, dtype="float64")
    ids = np.array([[1, 1, 3], [3, 0, 1]])
    R = rng.standard_normal((2, 3, 3))
    with crnn.GradientTape() as tape:
        loss = crnn.ops.sum(layer(ids) * R)
    (dW,) = tape.gradient(loss, layer.trainable_weights)
    expected = np.zeros((5, 3))
    for b in range(2):
        for t in range(3):
            expected[ids[b, t]] += R[b, t]
    np.testing.assert_allclose(dW, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dW[1], R[0, 0] + R[0, 1] + R[1, 2], rtol=1e-12)
    assert np.all(dW[[2, 4]] == 0)                      # rows not used get nothing
    np.testing.assert_array_equal(layer.get_gradients()[0], dW)
    # and against finite differences
    check_gradients(lambda: layer(ids), [], layer.trainable_weights, rng, entries=15)


def test_embedding_backward_outside_a_tape(rng):
    layer = Embedding(4, 2, dtype="float64")
    ids = np.array([0, 2, 2])
    layer(ids)
    g = rng.standard_normal((3, 2))
    assert layer.backward(g) is None                    # ids have no gradient
    np.testing.assert_allclose(layer.get_gradients()[0], [g[0], [0, 0], g[1] + g[2],
                                                          [0, 0]])


def test_embedding_accepts_whole_floats_and_rejects_other_ids():
    layer = Embedding(10, 2, seed=0)
    np.testing.assert_array_equal(layer(np.array([[1.0, 9.0]])), layer(np.array([[1, 9]])))
    with pytest.raises(ValueError, match=r"expected ids in \[0, 10\).*got ids from -1"):
        layer(np.array([[1, -1]]))                      # never wraps around to row 9
    with pytest.raises(ValueError, match=r"expected ids in \[0, 10\).*to 10"):
        layer(np.array([10]))
    with pytest.raises(ValueError, match="expected integer ids.*1.5"):
        layer(np.array([1.5, 2.0]))
    with pytest.raises(ValueError, match="expected integer ids"):
        layer(np.array([np.nan]))
    with pytest.raises(ValueError, match="expected an array of integer ids, got dtype bool"):
        layer(np.array([True, False]))
    with pytest.raises(ValueError, match="integer ids"):
        layer(np.array(["a"]))
    assert layer(np.zeros((2, 0), dtype=int)).shape == (2, 0, 2)


def test_embedding_mask_zero():
    ids = np.array([[0, 3, 0], [2, 0, 1]])
    assert Embedding(5, 2).compute_mask(ids) is None
    np.testing.assert_array_equal(Embedding(5, 2, mask_zero=True).compute_mask(ids),
                                  ids != 0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(input_dim=0, output_dim=2), "input_dim to be a positive int"),
    (dict(input_dim=3.0, output_dim=2), "input_dim to be a positive int"),
    (dict(input_dim=3, output_dim=True), "output_dim to be a positive int"),
    (dict(input_dim=3, output_dim=2, embeddings_initializer="nope"), "initializer"),
    (dict(input_dim=3, output_dim=2, dtype="float16"), "dtype"),
])
def test_embedding_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Embedding(**kwargs)


def test_embedding_config_weights_and_repr():
    layer = Embedding(6, 4, embeddings_initializer="glorot_uniform", mask_zero=True, seed=2)
    assert repr(layer) == ("Embedding(6, 4, embeddings_initializer='glorot_uniform', "
                           "mask_zero=True, seed=2)")
    assert repr(Embedding(6, 4)) == "Embedding(6, 4)"
    copy = round_trip(layer)
    ids = np.array([[1, 5, 0]])
    y = layer(ids)
    copy(ids)
    copy.set_weights(layer.get_weights())
    np.testing.assert_array_equal(copy(ids), y)
    with pytest.raises(ValueError, match=r"expected embeddings of shape \(6, 4\)"):
        copy.set_weights([np.zeros((4, 6))])
    with pytest.raises(ValueError, match="has no weights yet"):
        Embedding(3, 2).count_params()


# -- Dropout ------------------------------------------------------------------------------
def expected_mask(seed, shape, rate):
    rng = np.random.default_rng(seed)
    return (rng.random(shape) >= rate) / (1 - rate)


def test_dropout_is_the_identity_unless_training(rng):
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)
    layer = Dropout(0.5, seed=0)
    np.testing.assert_array_equal(layer(x), x)
    np.testing.assert_array_equal(layer(x, training=False), x)
    np.testing.assert_array_equal(Dropout(0.0)(x, training=True), x)
    assert layer.backward(np.ones_like(x)).tolist() == np.ones_like(x).tolist()


def test_dropout_training_is_keras_inverted_dropout(rng):
    x = rng.standard_normal((4, 6, 5))
    layer = Dropout(0.3, seed=11, dtype="float64")
    y = layer(x, training=True)
    m = expected_mask(11, x.shape, 0.3)
    np.testing.assert_allclose(y, x * m, rtol=1e-15)
    # kept entries are scaled by 1 / (1 - rate), about `rate` of them zeroed
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / 0.7, rtol=1e-15)
    big = Dropout(0.3, seed=1)(np.ones((200, 200)), training=True)
    assert abs(np.mean(big == 0) - 0.3) < 0.01
    assert abs(big.mean() - 1.0) < 0.02
    # a new mask every call; backward uses the last call's
    y2 = layer(x, training=True)
    assert not np.array_equal(y2 != 0, kept)
    g = rng.standard_normal(x.shape)
    np.testing.assert_allclose(layer.backward(g), g * (y2 != 0) / 0.7, rtol=1e-15)


def test_dropout_gradient_matches_finite_differences(rng):
    x = rng.standard_normal((3, 4, 2))

    def fn(x):  # a layer seeded identically each time: the same mask in every call
        return Dropout(0.4, seed=5, dtype="float64")(x, training=True)
    (dx,) = check_gradients(fn, [x], [], rng, entries=24)
    R = random_weights_like(fn, [x], np.random.default_rng(0))  # dx = R * m
    (dx,) = tape_gradients(fn, [x], [], R)
    np.testing.assert_allclose(dx, R[0] * expected_mask(5, x.shape, 0.4), rtol=1e-15)


@pytest.mark.parametrize("rate", [1.0, -0.1, "0.5", True, None])
def test_dropout_bad_rate(rate):
    with pytest.raises(ValueError, match=r"expected rate in \[0, 1\)"):
        Dropout(rate)


def test_dropout_config_and_repr():
    layer = Dropout(0.25, seed=3, dtype="float64")
    assert repr(layer) == "Dropout(0.25, seed=3, dtype='float64')"
    assert round_trip(layer).rate == 0.25
    assert layer.count_params() == 0 and layer.get_weights() == []
    assert layer.trainable_weights == []


# -- Activation ---------------------------------------------------------------------------
def _softmax(a):
    e = np.exp(a - a.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


FORMULAS = {
    "tanh": np.tanh,
    "relu": lambda a: np.maximum(a, 0),
    "sigmoid": lambda a: 1 / (1 + np.exp(-a)),
    "linear": lambda a: a,
    None: lambda a: a,
    "softmax": _softmax,
}


@pytest.mark.parametrize("name", list(FORMULAS), ids=str)
def test_activation_forward_and_gradients(name, rng):
    x = rng.standard_normal((3, 4, 5))
    layer = Activation(name, dtype="float64")
    np.testing.assert_allclose(layer(x), FORMULAS[name](x), rtol=1e-12, atol=1e-15)
    check_gradients(lambda x: layer(x), [x], [], rng, entries=20)
    assert layer(x.astype(np.float32)).dtype == np.float64   # the layer's dtype


def test_activation_bad_name_and_config():
    with pytest.raises(ValueError, match="expected activation to be one of"):
        Activation("gelu")
    with pytest.raises(ValueError, match="expected activation"):
        Activation(np.tanh)
    layer = Activation("softmax")
    assert repr(layer) == "Activation('softmax')"
    assert round_trip(layer).activation == "softmax"
    assert layer.count_params() == 0


# -- RepeatVector and Flatten -------------------------------------------------------------
def test_repeat_vector_forward_and_gradients(rng):
    x = rng.standard_normal((3, 4))
    layer = RepeatVector(5, dtype="float64")
    y = layer(x)
    assert y.shape == (3, 5, 4)
    np.testing.assert_array_equal(y, np.stack([x] * 5, axis=1))
    (dx,) = check_gradients(lambda x: layer(x), [x], [], rng, entries=12)
    g = rng.standard_normal((3, 5, 4))
    layer(x)
    np.testing.assert_allclose(layer.backward(g), g.sum(axis=1), rtol=1e-14)


def test_repeat_vector_bad_arguments_and_inputs():
    for n in (0, -1, 2.0, True, "3"):
        with pytest.raises(ValueError, match="expected n to be a positive int"):
            RepeatVector(n)
    layer = RepeatVector(2)
    with pytest.raises(ValueError, match=r"expected input of shape \(batch, features\).*"
                                         r"got shape \(2, 3, 4\)"):
        layer(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"\(batch, features\)"):
        layer(crnn.Input((3, 4)))
    assert repr(layer) == "RepeatVector(2)"
    assert round_trip(layer).n == 2


@pytest.mark.parametrize("shape, out", [((3, 4, 5), (3, 20)), ((2, 3), (2, 3)),
                                        ((4,), (4, 1)), ((2, 1, 3, 2), (2, 6))])
def test_flatten_forward_and_gradients(shape, out, rng):
    x = rng.standard_normal(shape)
    layer = Flatten(dtype="float64")
    y = layer(x)
    assert y.shape == out
    np.testing.assert_array_equal(y, x.reshape(out))
    check_gradients(lambda x: layer(x), [x], [], rng)


def test_flatten_bad_input_and_specs():
    with pytest.raises(ValueError, match=r"expected input of shape \(batch, \.\.\.\), got "
                                         r"shape \(\)"):
        Flatten()(np.float32(3.0))
    assert Flatten()(crnn.Input((3, 4))).shape == (None, 12)
    assert Flatten()(crnn.Input((None, 4))).shape == (None, None)
    assert repr(Flatten()) == "Flatten()"
    round_trip(Flatten(name="f"))


def test_weightless_layers_cast_to_their_dtype():
    x = np.arange(6).reshape(2, 3)
    for layer in (Dropout(0.5), Activation("relu"), RepeatVector(2), Flatten()):
        assert layer(x).dtype == np.float32, layer
        assert layer(x, training=True).dtype == np.float32, layer
    with pytest.raises(ValueError, match="convertible to a float32 array"):
        Activation("tanh")(np.array(["a", "b"]))


# -- in models ------------------------------------------------------------------------------
def test_text_model_in_sequential_with_placeholder_shapes(rng):
    V, E, T, H = 12, 4, 6, 5
    model = crnn.Sequential([
        crnn.Input((T,), dtype="int64"),
        Embedding(V, E, seed=0, dtype="float64"),
        Dropout(0.5, seed=1, dtype="float64"),
        crnn.SimpleRNN(H, return_sequences=True, seed=2, dtype="float64"),
        Flatten(dtype="float64"),
        crnn.Dense(3, seed=3, dtype="float64"),
        Activation("softmax", dtype="float64"),
    ])
    shapes = []
    out = crnn.Input((T,), dtype="int64")
    for layer in model.layers:
        out = layer(out)
        shapes.append(out.shape)
    assert shapes == [(None, T, E), (None, T, E), (None, T, H), (None, T * H), (None, 3),
                      (None, 3)]
    ids = rng.integers(0, V, size=(4, T))
    y = model(ids)
    assert y.shape == (4, 3)
    np.testing.assert_allclose(y.sum(axis=1), 1, rtol=1e-12)
    # not training: dropout is the identity, so the model is the plain composition
    emb, _, rnn, _, dense, _ = model.layers
    expected = _softmax(dense(rnn(emb(ids)).reshape(4, -1)))
    np.testing.assert_allclose(y, expected, rtol=1e-12)
    # gradients of every weight through the model (eval mode: deterministic)
    check_gradients(lambda: model(ids), [], model.trainable_weights, rng)
    assert len(model.get_gradients()) == len(model.get_weights()) == 1 + 3 + 2


def test_one_to_many_functional_model(rng):
    D, T, H = 3, 4, 5
    inp = crnn.Input((D,))
    seq = RepeatVector(T, dtype="float64")(inp)
    assert seq.shape == (None, T, D)
    hs = crnn.SimpleRNN(H, return_sequences=True, seed=0, dtype="float64")(seq)
    out = Activation("tanh", dtype="float64")(crnn.Dense(2, seed=1, dtype="float64")(hs))
    assert out.shape == (None, T, 2)
    model = crnn.Model(inp, out)
    x = rng.standard_normal((2, D))
    y = model(x)
    _, rnn, dense, _ = model.layers
    np.testing.assert_allclose(y, np.tanh(dense(rnn(np.repeat(x[:, None], T, axis=1)))),
                               rtol=1e-12)
    check_gradients(lambda x: model(x), [x], model.trainable_weights, rng)


def test_dropout_in_a_model_trains_only_when_asked(rng):
    model = crnn.Sequential([Dropout(0.5, seed=0, dtype="float64")])
    x = rng.standard_normal((5, 8))
    np.testing.assert_array_equal(model(x), x)
    y = model(x, training=True)
    np.testing.assert_allclose(y, x * expected_mask(0, x.shape, 0.5), rtol=1e-15)
