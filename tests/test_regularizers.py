"""Regularizers, constraints and frozen layers (issue 15, part B, items 4 and 5): the
penalties equal their formulas and their gradients finite differences, training adds
them to the loss (one SGD step equals a hand computation), constraints hold after fit,
a frozen layer is left alone, and all of it is saved with the model."""
import os

import numpy as np
import pytest

import crnn
from crnn import constraints, regularizers
from tests.conftest import assert_close, numeric_grad, require

RECURRENT = [crnn.SimpleRNN, crnn.LSTM, crnn.GRU]


def keras_or_skip(h5=False):
    """Keras 3 on the torch backend as a referee (and h5py for its files), or a skip (a
    failure with CRNN_REQUIRE_KERAS=1)."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    if h5:
        require("h5py", "KERAS")
    keras = require("keras", "KERAS")
    if keras.backend.backend() != "torch":
        pytest.skip(f"Keras runs on {keras.backend.backend()}, these tests use torch")
    return keras


# -- the regularizers themselves ----------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_penalties_equal_their_formulas(dtype, rng):
    x = rng.standard_normal((4, 5)).astype(dtype)
    cases = [(regularizers.L1(0.3), 0.3 * np.abs(x).sum()),
             (regularizers.L2(0.2), 0.2 * np.square(x).sum()),
             (regularizers.L1L2(0.1, 0.4), 0.1 * np.abs(x).sum() + 0.4 * np.square(x).sum()),
             (regularizers.L1L2(), 0.0)]
    for reg, expected in cases:
        got = reg(x)
        assert got.shape == () and got.dtype == dtype
        assert_close(got, expected, dtype)


def test_defaults_and_strings_are_keras():
    assert regularizers.L1().l1 == 0.01 and regularizers.L2().l2 == 0.01
    assert (regularizers.L1L2().l1, regularizers.L1L2().l2) == (0.0, 0.0)
    assert regularizers.get("l1").get_config() == {"l1": 0.01}
    assert regularizers.get("l2").get_config() == {"l2": 0.01}
    assert regularizers.get("l1_l2").get_config() == {"l1": 0.01, "l2": 0.01}
    assert regularizers.get("l1l2").get_config() == {"l1": 0.0, "l2": 0.0}
    assert regularizers.get(None) is None
    assert constraints.MaxNorm().get_config() == {"max_value": 2, "axis": 0}
    assert constraints.UnitNorm().get_config() == {"axis": 0}
    assert constraints.MinMaxNorm().get_config() == {"min_value": 0.0, "max_value": 1.0,
                                                     "rate": 1.0, "axis": 0}
    assert isinstance(constraints.get("non_neg"), constraints.NonNeg)


@pytest.mark.parametrize("obj", [regularizers.L1(0.5), regularizers.L2(0.25),
                                 regularizers.L1L2(0.125, 2.0), constraints.MaxNorm(3, 1),
                                 constraints.NonNeg(), constraints.UnitNorm([0, 1]),
                                 constraints.MinMaxNorm(0.5, 2.0, 0.5, 1)])
def test_config_round_trip(obj):
    module = regularizers if isinstance(obj, regularizers.Regularizer) else constraints
    data = module.serialize(obj)
    assert data["class_name"] == type(obj).__name__
    back = module.deserialize(data)
    assert type(back) is type(obj) and back.get_config() == obj.get_config()
    assert type(obj).from_config(obj.get_config()).get_config() == obj.get_config()
    assert module.get(data).get_config() == obj.get_config()


@pytest.mark.parametrize("make", [
    lambda: regularizers.L1(-1), lambda: regularizers.L2(float("nan")),
    lambda: regularizers.L1L2(l1="x"), lambda: regularizers.L2(True),
    lambda: regularizers.get("l3"), lambda: regularizers.get(3),
    lambda: regularizers.deserialize({"class_name": "Nope", "config": {}}),
    lambda: constraints.MaxNorm(-1), lambda: constraints.MaxNorm(axis="0"),
    lambda: constraints.MinMaxNorm(2.0, 1.0), lambda: constraints.get("max"),
    lambda: crnn.Dense(2, kernel_regularizer="l3"),
    lambda: crnn.LSTM(2, recurrent_constraint="nope"),
    lambda: crnn.Embedding(4, 2, embeddings_regularizer=5),
])
def test_bad_arguments_raise_value_error(make):
    with pytest.raises(ValueError, match="expected"):
        make()


def test_constraint_axis_outside_the_weight_raises():
    with pytest.raises(ValueError, match="axis"):
        constraints.MaxNorm(axis=3)(np.ones((2, 2)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_constraints_equal_keras_formulas(dtype, rng):
    w = (rng.standard_normal((6, 4)) * 3).astype(dtype)
    eps = 1e-7
    n0 = np.sqrt((w ** 2).sum(axis=0, keepdims=True))
    n1 = np.sqrt((w ** 2).sum(axis=1, keepdims=True))
    assert_close(constraints.MaxNorm(2)(w), w * np.clip(n0, 0, 2) / (eps + n0), dtype)
    assert_close(constraints.MaxNorm(1.5, axis=1)(w), w * np.clip(n1, 0, 1.5) / (eps + n1),
                 dtype)
    assert_close(constraints.NonNeg()(w), np.where(w >= 0, w, 0), dtype)
    assert_close(constraints.UnitNorm()(w), w / (eps + n0), dtype)
    desired = 0.3 * np.clip(n0, 0.5, 1.5) + 0.7 * n0
    assert_close(constraints.MinMaxNorm(0.5, 1.5, 0.3)(w), w * desired / (eps + n0), dtype)
    for c in (constraints.MaxNorm(), constraints.NonNeg(), constraints.UnitNorm(),
              constraints.MinMaxNorm()):
        assert c(w).dtype == dtype


def test_values_equal_keras():
    keras = keras_or_skip()
    x = np.random.default_rng(3).standard_normal((5, 4)).astype(np.float32)
    for ours, theirs in [(regularizers.L1(0.3), keras.regularizers.L1(0.3)),
                         (regularizers.L2(0.2), keras.regularizers.L2(0.2)),
                         (regularizers.L1L2(0.1, 0.4), keras.regularizers.L1L2(0.1, 0.4))]:
        assert_close(ours(x), keras.ops.convert_to_numpy(theirs(x)), np.float32, 10)
    for ours, theirs in [(constraints.MaxNorm(1.5), keras.constraints.MaxNorm(1.5)),
                         (constraints.NonNeg(), keras.constraints.NonNeg()),
                         (constraints.UnitNorm(1), keras.constraints.UnitNorm(1)),
                         (constraints.MinMaxNorm(0.2, 0.9, 0.5),
                          keras.constraints.MinMaxNorm(0.2, 0.9, 0.5))]:
        assert_close(ours(x), keras.ops.convert_to_numpy(theirs(x)), np.float32)


# -- layer.losses -------------------------------------------------------------------------
def test_dense_losses_are_keras_docstring_numbers():
    # keras.regularizers.Regularizer's docstring: kernel term 0.25, activity term 5.0
    layer = crnn.Dense(5, kernel_initializer="ones", kernel_regularizer=regularizers.L1(0.01),
                       activity_regularizer=regularizers.L2(0.01))
    layer(np.ones((5, 5), dtype=np.float32) * 2.0)
    assert_close(sum(float(v) for v in layer.losses), 5.25, np.float32)
    assert sorted(round(float(v), 5) for v in layer.losses) == [0.25, 5.0]


@pytest.mark.parametrize("cls", RECURRENT)
def test_recurrent_losses_equal_their_formulas(cls, rng):
    layer = cls(3, kernel_regularizer=regularizers.L1(0.1),
                recurrent_regularizer=regularizers.L2(0.2),
                bias_regularizer=regularizers.L1L2(0.3, 0.4),
                activity_regularizer=regularizers.L2(0.5), dtype="float64",
                bias_initializer="random_normal")
    x = rng.standard_normal((4, 5, 2))
    y = layer(x)
    k, r, b = layer.get_weights()
    expected = [0.5 * np.square(y).sum() / 4, 0.1 * np.abs(k).sum(),
                0.2 * np.square(r).sum(), 0.3 * np.abs(b).sum() + 0.4 * np.square(b).sum()]
    assert_close(np.array([float(v) for v in layer.losses]), np.array(expected), np.float64)
    # the cell holds the weight penalties; the layer shows them once
    assert len(layer.cell.losses) == 3


def test_activity_losses_are_those_of_the_last_call(rng):
    dense = crnn.Dense(2, activity_regularizer="l2", dtype="float64")
    model = crnn.Sequential([crnn.Input((3,), dtype="float64"), dense])
    x1, x2 = rng.standard_normal((4, 3)), rng.standard_normal((6, 3))
    model(x1)
    model(x2)
    y2 = dense(x2)
    assert len(model.losses) == 1
    assert_close(float(model.losses[0]), 0.01 * np.square(y2).sum() / 6, np.float64)


def _penalized_model(dtype="float64", seed=0):
    inp = crnn.Input((5,), dtype="int64")
    x = crnn.Embedding(7, 3, embeddings_regularizer=regularizers.L2(0.3), dtype=dtype,
                       seed=seed)(inp)
    x = crnn.LSTM(4, kernel_regularizer=regularizers.L1L2(0.05, 0.2),
                  recurrent_regularizer="l2", bias_regularizer=regularizers.L2(0.7),
                  activity_regularizer=regularizers.L1(0.02), return_sequences=True,
                  dtype=dtype, seed=seed)(x)
    x = crnn.GRU(3, recurrent_regularizer=regularizers.L1(0.04), dtype=dtype,
                 seed=seed)(x)
    y = crnn.Dense(2, kernel_regularizer=regularizers.L2(0.6),
                   kernel_constraint=constraints.MaxNorm(1.5),
                   bias_regularizer=regularizers.L1(0.1), activity_regularizer="l2",
                   dtype=dtype, seed=seed, bias_initializer="random_normal")(x)
    return crnn.Model(inp, y)


def test_penalty_gradients_equal_finite_differences(rng):
    model = _penalized_model()
    ids = rng.integers(1, 7, size=(3, 5))
    model(ids)

    def total():
        model(ids)
        return sum(float(v) for v in model.losses)

    with crnn.GradientTape() as tape:
        model(ids)
        loss = None
        for v in model.losses:
            loss = v if loss is None else loss + v
    grads = tape.gradient(loss, model.trainable_weights)
    for w, g in zip(model.trainable_weights, grads):
        assert_close(g, numeric_grad(total, w), np.float64, scale=10)


def test_activity_penalty_gradient_reaches_the_input(rng):
    dense = crnn.Dense(3, activity_regularizer=regularizers.L1L2(0.2, 0.3), dtype="float64",
                       activation="tanh")
    x = rng.standard_normal((4, 2))
    dense(x)
    with crnn.GradientTape() as tape:
        xt = tape.watch(x)
        dense(xt)
        loss = dense.losses[0]
    dx = tape.gradient(loss, xt)

    def f():
        dense(x)
        return float(dense.losses[0])
    assert_close(dx, numeric_grad(f, x), np.float64, scale=10)


# -- training with penalties ----------------------------------------------------------------
def test_one_sgd_step_equals_a_hand_computation(rng):
    x = rng.standard_normal((6, 4))
    y = rng.standard_normal((6, 2))
    l1, l2, lr = 0.05, 0.3, 0.1
    dense = crnn.Dense(2, kernel_regularizer=regularizers.L1L2(l1, l2),
                       bias_regularizer=regularizers.L2(l2), dtype="float64",
                       bias_initializer="random_normal")
    model = crnn.Sequential([crnn.Input((4,), dtype="float64"), dense])
    model.compile(crnn.optimizers.SGD(lr), "mse")
    W, b = [w.copy() for w in dense.get_weights()]
    err = x @ W + b - y
    mse = np.mean(err ** 2)
    penalty = l1 * np.abs(W).sum() + l2 * (W ** 2).sum() + l2 * (b ** 2).sum()
    dW = x.T @ (2 * err / err.size) + l1 * np.sign(W) + 2 * l2 * W
    db = (2 * err / err.size).sum(axis=0) + 2 * l2 * b
    loss = model.train_on_batch(x, y)
    assert_close(loss, mse + penalty, np.float64)      # reported as Keras does
    assert_close(dense.get_weights()[0], W - lr * dW, np.float64)
    assert_close(dense.get_weights()[1], b - lr * db, np.float64)


def test_fit_with_a_regularizer_differs_by_the_penalty_gradient(rng):
    x = rng.standard_normal((8, 5, 3)).astype(np.float32)
    y = rng.standard_normal((8, 2)).astype(np.float32)
    lr, l2 = 0.05, 0.1

    def trained(reg):
        layer = crnn.LSTM(4, recurrent_regularizer=reg, seed=1)
        model = crnn.Sequential([crnn.Input((5, 3)), layer, crnn.Dense(2, seed=2)])
        model.compile(crnn.optimizers.SGD(lr), "mse")
        before = layer.get_weights()[1].copy()
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
        return before, layer.get_weights()[1]

    before, plain = trained(None)
    _, penalized = trained(regularizers.L2(l2))
    assert_close(penalized, plain - lr * 2 * l2 * before, np.float32, scale=10)


def test_evaluate_reports_the_penalty_too(rng):
    x, y = rng.standard_normal((5, 3)), rng.standard_normal((5, 1))
    dense = crnn.Dense(1, kernel_regularizer=regularizers.L2(0.5), dtype="float64")
    model = crnn.Sequential([crnn.Input((3,), dtype="float64"), dense])
    model.compile("sgd", "mse")
    W, b = dense.get_weights()
    expected = np.mean((x @ W + b - y) ** 2) + 0.5 * (W ** 2).sum()
    assert_close(model.evaluate(x, y, verbose=0), expected, np.float64)


@pytest.mark.parametrize("cls", RECURRENT)
def test_constraints_hold_after_fit(cls, rng):
    x = rng.standard_normal((16, 6, 3)).astype(np.float32) * 3
    y = rng.standard_normal((16, 6, 2)).astype(np.float32) * 5
    layer = cls(5, return_sequences=True, kernel_constraint=constraints.MaxNorm(0.5),
                recurrent_constraint=constraints.UnitNorm(), bias_constraint="non_neg",
                seed=0)
    dense = crnn.Dense(2, kernel_constraint=constraints.MinMaxNorm(0.2, 0.4), seed=0)
    model = crnn.Sequential([crnn.Input((6, 3)), layer, dense])
    model.compile(crnn.optimizers.SGD(0.5), "mse")
    model.fit(x, y, batch_size=4, epochs=2, verbose=0)
    k, r, b = layer.get_weights()
    assert np.all(np.sqrt((k ** 2).sum(axis=0)) <= 0.5 + 1e-5)
    assert_close(np.sqrt((r ** 2).sum(axis=0)), np.ones(r.shape[1]), np.float32, 10)
    assert np.all(b >= 0)
    norms = np.sqrt((dense.get_weights()[0] ** 2).sum(axis=0))
    assert np.all((norms >= 0.2 - 1e-5) & (norms <= 0.4 + 1e-5))


def test_cell_in_a_python_loop_is_regularized(rng):
    cell = crnn.LSTMCell(3, kernel_regularizer=regularizers.L2(0.2), dtype="float64")
    x = rng.standard_normal((2, 4, 2))

    def run():
        states = None
        for t in range(x.shape[1]):
            h, states = cell(x[:, t], states)
        return h

    run()
    with crnn.GradientTape() as tape:
        h = run()
        loss = crnn.ops.sum(h) + cell.losses[0]
    g = tape.gradient(loss, cell.params["kernel"])

    def f():
        return float(np.sum(run()) + cell.losses[0])
    assert_close(g, numeric_grad(f, cell.params["kernel"]), np.float64, scale=10)


# -- freezing -----------------------------------------------------------------------------
def _tagger(table=None, trainable=True):
    inp = crnn.Input((6,), dtype="int64")
    emb = crnn.Embedding(9, 4, weights=None if table is None else [table],
                         trainable=trainable, seed=0)
    x = crnn.GRU(5, return_sequences=True, seed=0)(emb(inp))
    return crnn.Model(inp, crnn.Dense(3, activation="softmax", seed=0)(x)), emb


def test_frozen_pretrained_embedding_is_unchanged_by_fit(rng):
    table = rng.standard_normal((9, 4)).astype(np.float32)
    model, emb = _tagger(table, trainable=False)
    assert np.array_equal(emb.get_weights()[0], table)
    model.compile("adam", "sparse_categorical_crossentropy")
    rest = [w.copy() for w in model.trainable_weights]
    assert len(rest) == len(model.weights) - 1
    ids = rng.integers(1, 9, size=(12, 6))
    model.fit(ids, rng.integers(0, 3, size=(12, 6)), epochs=2, batch_size=4, verbose=0)
    assert np.array_equal(emb.get_weights()[0], table)               # frozen
    assert all(not np.array_equal(a, b) for a, b in zip(rest, model.trainable_weights))
    assert emb.trainable_weights == [] and len(emb.non_trainable_weights) == 1


def test_freezing_after_compile_takes_effect_and_unfreezing_needs_a_new_optimizer(rng):
    model, emb = _tagger()
    model.compile("sgd", "sparse_categorical_crossentropy")
    ids, tags = rng.integers(1, 9, size=(8, 6)), rng.integers(0, 3, size=(8, 6))
    emb.trainable = False                                # after compile (Keras 3 honours it)
    before = emb.get_weights()[0].copy()
    model.fit(ids, tags, epochs=1, batch_size=4, verbose=0)
    assert np.array_equal(emb.get_weights()[0], before)
    emb.trainable = True                                 # Keras 3: "Unknown variable"
    with pytest.raises(ValueError, match="new optimizer"):
        model.fit(ids, tags, epochs=1, batch_size=4, verbose=0)
    model.compile(crnn.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    model.fit(ids, tags, epochs=1, batch_size=4, verbose=0)
    assert not np.array_equal(emb.get_weights()[0], before)


def test_model_trainable_false_freezes_everything(rng):
    model, _ = _tagger()
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.trainable = False
    assert model.trainable_weights == [] and all(not layer.trainable
                                                 for layer in model.layers_deep())
    before = model.get_weights()
    model.fit(rng.integers(1, 9, size=(4, 6)), rng.integers(0, 3, size=(4, 6)), verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_frozen_layers_have_no_weight_penalty():
    dense = crnn.Dense(2, kernel_regularizer="l2")
    dense.build((None, 3))
    assert len(dense.losses) == 1
    dense.trainable = False
    assert dense.losses == []


def test_summary_counts_trainable_and_non_trainable(rng):
    model, emb = _tagger(rng.standard_normal((9, 4)), trainable=False)
    lines = []
    model.summary(print_fn=lines.append)
    total = model.count_params()
    frozen = 9 * 4
    assert f"Total params: {total:,}" in lines
    assert f"Trainable params: {total - frozen:,}" in lines
    assert f"Non-trainable params: {frozen:,}" in lines


@pytest.mark.parametrize("weights, match", [
    ([np.ones((9, 5))], r"\(input_dim, output_dim\) = \(9, 4\)"),
    ([np.ones((9, 4)), np.ones((9, 4))], "one array"),
    ([np.array([["a"] * 4] * 9)], "numeric"),
    ([np.full((9, 4), np.nan)], "finite"),
    ([np.ones((9, 4)) * 1j], "complex"),
])
def test_pretrained_table_is_checked(weights, match):
    with pytest.raises(ValueError, match=match):
        crnn.Embedding(9, 4, weights=weights)


def test_pretrained_table_as_one_array_and_dtype():
    table = np.arange(12.0).reshape(4, 3)
    emb = crnn.Embedding(4, 3, weights=table, dtype="float64")
    assert np.array_equal(emb(np.array([[3, 0]]))[0], table[[3, 0]])
    assert "weights" not in emb.get_config()


# -- saved with the model -----------------------------------------------------------------
def test_regularizers_constraints_and_freezing_survive_save_and_load(tmp_path, rng):
    model = _penalized_model(dtype="float32")
    model.layers[1].trainable = False                       # the Embedding
    ids = rng.integers(1, 7, size=(3, 5))
    model(ids)
    path = tmp_path / "m.crnn"
    model.save(path)
    back = crnn.load_model(path)
    back(ids)
    assert [float(v) for v in back.losses] == pytest.approx([float(v) for v in
                                                             model.losses], rel=1e-6)
    assert [layer.trainable for layer in back.layers] == [layer.trainable
                                                           for layer in model.layers]
    assert len(back.trainable_weights) == len(model.trainable_weights)
    for a, b in zip(model.layers, back.layers):
        assert a.get_config() == b.get_config()


def test_a_function_regularizer_trains_but_cannot_be_saved(tmp_path, rng):
    def penalty(w):
        return crnn.ops.sum(w * w) * 0.5
    dense = crnn.Dense(1, kernel_regularizer=penalty, dtype="float64")
    model = crnn.Sequential([crnn.Input((2,), dtype="float64"), dense])
    model.compile(crnn.optimizers.SGD(0.1), "mse")
    x, y = rng.standard_normal((4, 2)), rng.standard_normal((4, 1))
    W, b = dense.get_weights()
    err = x @ W + b - y
    model.train_on_batch(x, y)
    assert_close(dense.get_weights()[0], W - 0.1 * (x.T @ (2 * err / 4) + W), np.float64)
    with pytest.raises(ValueError):
        model.save(tmp_path / "f.crnn")


def test_frozen_wrappers_and_recurrent_layers_survive_save_and_load(tmp_path):
    lstm = crnn.LSTM(3, return_sequences=True)
    bidi = crnn.Bidirectional(crnn.GRU(2, return_sequences=True))
    dense = crnn.Dense(2)
    model = crnn.Sequential([crnn.Input((4, 3)), lstm, bidi,
                             crnn.TimeDistributed(dense)])
    lstm.trainable = bidi.trainable = False
    model.save(tmp_path / "f.crnn")
    back = crnn.load_model(tmp_path / "f.crnn")
    assert [layer.trainable for layer in back.layers_deep()] == [
        layer.trainable for layer in model.layers_deep()]
    assert len(back.trainable_weights) == 2 and len(back.weights) == len(model.weights)


def test_keras_files_carry_regularizers_constraints_and_freezing(tmp_path, rng):
    keras = keras_or_skip(h5=True)
    L = keras.layers
    kmodel = keras.Sequential([
        keras.Input((None,), dtype="int32"),
        L.Embedding(9, 3, embeddings_regularizer="l2", trainable=False),
        L.LSTM(4, kernel_regularizer=keras.regularizers.L1L2(0.1, 0.2),
               recurrent_constraint=keras.constraints.MaxNorm(1.5),
               activity_regularizer=keras.regularizers.L1(0.05)),
        L.Dense(2, bias_constraint=keras.constraints.NonNeg())])
    ids = rng.integers(1, 9, size=(4, 6))
    kmodel(ids)
    kmodel.save(str(tmp_path / "k.keras"))
    model = crnn.load_model(str(tmp_path / "k.keras"))
    emb, lstm, dense = model.layers
    assert not emb.trainable and lstm.trainable
    assert lstm.cell.kernel_regularizer.get_config() == {"l1": 0.1, "l2": 0.2}
    assert isinstance(lstm.activity_regularizer, regularizers.L1)
    assert lstm.cell.recurrent_constraint.get_config()["max_value"] == 1.5
    assert isinstance(dense.bias_constraint, constraints.NonNeg)
    model(ids)
    kmodel(ids)
    # the frozen Embedding has no penalty, in both
    assert sorted(float(v) for v in model.losses) == pytest.approx(
        sorted(float(keras.ops.convert_to_numpy(v)) for v in kmodel.losses), rel=1e-5)
    model.save(str(tmp_path / "c.keras"))
    back = keras.saving.load_model(str(tmp_path / "c.keras"))
    assert [layer.trainable for layer in back.layers] == [False, True, True]
    assert type(back.layers[1].cell.kernel_regularizer).__name__ == "L1L2"
    assert type(back.layers[2].bias_constraint).__name__ == "NonNeg"


def test_a_users_regularizer_cannot_go_to_a_keras_file(tmp_path):
    keras_or_skip(h5=True)
    model = crnn.Sequential([crnn.Input((3,)),
                             crnn.Dense(2, kernel_regularizer=lambda w: crnn.ops.sum(w))])
    with pytest.raises(ValueError, match="built-in regularizers"):
        model.save(str(tmp_path / "f.keras"))


class _UserCell(crnn.layers.Layer):
    """A user's cell written with crnn.ops, its weights made by add_weight with a
    regularizer and a constraint."""

    def __init__(self, units, dtype="float64", name=None):
        super().__init__(name=name, dtype=dtype)
        self.units = units
        self.state_size = units

    def build(self, input_shape):
        self.add_weight(name="kernel", shape=(input_shape[-1], self.units),
                        regularizer=regularizers.L2(0.3))
        self.add_weight(name="recurrent_kernel", shape=(self.units, self.units),
                        initializer="orthogonal", constraint=constraints.UnitNorm())
        self.built = True

    def call(self, inputs, states, training=None):
        h = crnn.ops.tanh(inputs @ self.params["kernel"]
                          + states[0] @ self.params["recurrent_kernel"])
        return h, [h]


def test_a_users_cell_in_rnn_is_regularized_and_constrained(rng):
    layer = crnn.RNN(_UserCell(3), dtype="float64")
    x = rng.standard_normal((2, 4, 2))
    layer(x)
    kernel = layer.cell.params["kernel"]

    def total():
        return float(np.sum(layer(x))) + float(layer.losses[0])

    with crnn.GradientTape() as tape:
        loss = crnn.ops.sum(layer(x)) + layer.losses[0]
    g = tape.gradient(loss, kernel)
    assert_close(g, numeric_grad(total, kernel), np.float64, scale=10)
    model = crnn.Sequential([crnn.Input((4, 2), dtype="float64"), layer])
    model.compile(crnn.optimizers.SGD(0.5), "mse")
    model.fit(x, rng.standard_normal((2, 3)) * 4, epochs=3, verbose=0)
    r = layer.cell.params["recurrent_kernel"]
    assert_close(np.sqrt((r ** 2).sum(axis=0)), np.ones(3), np.float64, scale=1e4)
