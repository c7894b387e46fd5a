"""compile / fit / evaluate / predict / *_on_batch / summary (crnn.training)."""
import io

import numpy as np
import pytest

import crnn
from crnn import (Dense, GradientTape, Input, Model, Sequential, SimpleRNN, SimpleRNNCell,
                  losses, ops, optimizers)
from crnn.training import LossOp


def sum_task(n=128, T=5, seed=0):
    """x uniform in [-1, 1] of shape (n, T, 1); y its sum over time, (n, 1)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, T, 1)).astype("float32")
    return x, x.sum(axis=(1, 2))[:, None]


def rnn_regressor(seed=0, dropout=0.0):
    """SimpleRNN(8) -> Dense(1), built at once from an Input."""
    return Sequential([Input((5, 1)), SimpleRNN(8, dropout=dropout, seed=seed),
                       Dense(1, seed=seed + 1)])


def two_headed(seed=0):
    """A functional model with two outputs: 'total' (linear) and 'sign' (sigmoid)."""
    inp = Input((5, 1), name="seq")
    h = SimpleRNN(8, seed=seed, name="rnn")(inp)
    total = Dense(1, seed=seed + 1, name="total")(h)
    sign = Dense(1, activation="sigmoid", seed=seed + 2, name="sign")(h)
    return Model(inp, [total, sign], name="two_headed")


class LoopRNN(Model):
    """A subclassed model that runs a cell over the time steps in Python."""

    def __init__(self, units=8, seed=0):
        super().__init__()
        self.cell = SimpleRNNCell(units, seed=seed, name="cell")
        self.head = Dense(1, seed=seed + 1, name="head")

    def call(self, inputs, training=False):
        states = None
        for x_t in ops.unstack(inputs, axis=1):
            h, states = self.cell(x_t, states, training=training)
        return self.head(h)


# -- learning --------------------------------------------------------------------------------
def test_sequential_fit_learns_the_sum_of_a_sequence():
    x, y = sum_task()
    model = rnn_regressor()
    model.compile(optimizers.Adam(0.02), "mse")
    before = model.evaluate(x, y, verbose=0)
    history = model.fit(x, y, batch_size=16, epochs=30, verbose=0, seed=0)
    after = model.evaluate(x, y, verbose=0)
    assert after < before / 20          # the MSE falls by more than a factor of 20
    assert len(history.history["loss"]) == 30 and history.epoch == list(range(30))
    assert history.history["loss"][-1] < history.history["loss"][0] / 10


def test_functional_fit_learns_the_sign_of_a_sum():
    x, y = sum_task()
    y = (y > 0).astype("float32")
    inp = Input((5, 1))
    model = Model(inp, Dense(1, activation="sigmoid", seed=1)(SimpleRNN(8, seed=0)(inp)))
    model.compile(optimizers.Adam(0.02), "binary_crossentropy", metrics=["accuracy"])
    loss0, _ = model.evaluate(x, y, verbose=0)
    model.fit(x, y, batch_size=16, epochs=20, verbose=0, seed=0)
    loss, acc = model.evaluate(x, y, verbose=0)
    assert loss < loss0 / 4             # cross-entropy falls by more than a factor of 4
    assert acc >= 0.9
    assert model.metrics_names == ["loss", "accuracy"]
    assert type(model.metrics[0]).__name__ == "BinaryAccuracy"   # from the loss


def test_subclassed_model_with_a_python_time_loop_learns():
    x, y = sum_task()
    model = LoopRNN()
    model.compile(optimizers.Adam(0.02), "mse")
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, batch_size=16, epochs=20, verbose=0, seed=0)
    assert model.evaluate(x, y, verbose=0) < before / 10


# -- what fit reports --------------------------------------------------------------------------
def test_epoch_loss_is_the_batch_size_weighted_mean_of_train_on_batch_losses():
    x, y = sum_task(n=50)              # batches of 16, 16, 16 and 2
    a, b = rnn_regressor(), rnn_regressor(seed=5)
    b.set_weights(a.get_weights())
    a.compile(optimizers.SGD(0.05), "mse")
    b.compile(optimizers.SGD(0.05), "mse")
    history = a.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    losses_, sizes = [], []
    for start in range(0, 50, 16):
        losses_.append(b.train_on_batch(x[start:start + 16], y[start:start + 16]))
        sizes.append(len(x[start:start + 16]))
    assert sizes == [16, 16, 16, 2]
    expected = np.average(losses_, weights=sizes)
    assert history.history["loss"][0] == pytest.approx(expected, rel=1e-6)
    assert history.history["loss"][0] != pytest.approx(np.mean(losses_), rel=1e-3)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-6, atol=1e-7)


def test_train_step_gradient_is_the_tape_gradient_of_the_loss():
    x, y = sum_task(n=20)
    model = rnn_regressor()
    model.compile(optimizers.SGD(0.1), "mse")
    w0 = model.get_weights()
    with GradientTape() as tape:
        loss = LossOp(losses.mean_squared_error)([y, model(x, training=True), None])
    grads = tape.gradient(loss, model.trainable_weights)
    model.train_on_batch(x, y)
    for w, g, w1 in zip(w0, grads, model.get_weights()):
        np.testing.assert_allclose(w1, w - 0.1 * g, rtol=1e-5, atol=1e-6)


def test_loss_op_passes_the_loss_gradient_to_y_pred_only():
    rng = np.random.default_rng(0)
    y_true = rng.standard_normal((4, 3))
    y_pred = rng.standard_normal((4, 3))
    with GradientTape() as tape:
        t_pred = tape.watch(y_pred)
        t_true = tape.watch(y_true)
        loss = LossOp(losses.mean_squared_error)([t_true, t_pred, None]) * 3.0
    d_pred, d_true = tape.gradient(loss, [t_pred, t_true])
    value, grad = losses.mean_squared_error(y_true, y_pred)
    assert float(loss) == pytest.approx(3 * float(value))
    np.testing.assert_allclose(d_pred, 3 * grad, rtol=1e-12)
    assert d_true is None


def test_loss_op_checks_what_the_loss_returns():
    with pytest.raises(ValueError, match="expected the loss .* to return a gradient"):
        LossOp(lambda t, p, w: (np.float64(1.0), np.zeros(3)))([np.zeros((2, 1)),
                                                               np.zeros((2, 1)), None])
    with pytest.raises(ValueError, match=r"\(loss, d_loss/d_y_pred\)"):
        LossOp(lambda t, p, w: 1.0)([np.zeros((2, 1)), np.zeros((2, 1)), None])


def test_evaluate_and_predict_agree_with_direct_calls():
    x, y = sum_task(n=70)
    model = rnn_regressor()
    model.compile("sgd", "mse", metrics=["mae"])
    direct = model(x)
    pred = model.predict(x, batch_size=32)
    np.testing.assert_allclose(pred, direct, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(model.predict_on_batch(x), direct, rtol=1e-6, atol=1e-6)
    mse = float(np.mean((direct - y) ** 2))
    mae = float(np.mean(np.abs(direct - y)))
    loss, m = model.evaluate(x, y, batch_size=70, verbose=0)
    assert loss == pytest.approx(mse, rel=1e-5) and m == pytest.approx(mae, rel=1e-5)
    # in batches: the loss is the batch-size-weighted mean, the metric the sample mean
    loss_b, m_b = model.evaluate(x, y, batch_size=32, verbose=0)
    assert loss_b == pytest.approx(mse, rel=1e-5) and m_b == pytest.approx(mae, rel=1e-5)
    assert model.evaluate(x, y, verbose=0, return_dict=True) == pytest.approx(
        {"loss": mse, "mae": mae}, rel=1e-5)
    assert model.test_on_batch(x, y) == pytest.approx([mse, mae], rel=1e-5)


def test_predict_records_nothing_on_an_open_tape():
    x, _ = sum_task(n=8)
    model = rnn_regressor()
    with GradientTape() as tape:
        out = model.predict(x)
        model.predict_on_batch(x)
    assert tape.records == [] and isinstance(out, np.ndarray)


def test_validation_split_holds_out_the_last_samples():
    x, y = sum_task(n=40)
    model = rnn_regressor()
    model.compile(optimizers.Adam(0.01), "mse", metrics=["mae"])
    model.fit(x, y, batch_size=8, epochs=1, validation_split=0.25, verbose=0)
    history = model.history.history
    assert set(history) == {"loss", "mae", "val_loss", "val_mae"}
    # the validation numbers are those of the last 10 samples with the final weights
    loss, mae = model.evaluate(x[30:], y[30:], verbose=0)
    assert history["val_loss"][0] == pytest.approx(loss, rel=1e-6)
    assert history["val_mae"][0] == pytest.approx(mae, rel=1e-6)


def test_validation_split_trains_on_the_first_samples_only():
    x, y = sum_task(n=40)
    a, b = rnn_regressor(), rnn_regressor(seed=3)
    b.set_weights(a.get_weights())
    for m in (a, b):
        m.compile(optimizers.SGD(0.05), "mse")
    a.fit(x, y, batch_size=8, epochs=2, validation_split=0.25, verbose=0, seed=1)
    y_other = y.copy()
    y_other[30:] = 100.0                  # the held-out targets never reach training
    b.fit(x, y_other, batch_size=8, epochs=2, validation_split=0.25, verbose=0, seed=1)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def test_validation_data_with_sample_weights():
    x, y = sum_task(n=32)
    model = rnn_regressor()
    model.compile("adam", "mse", metrics=["mae"])
    h = model.fit(x, y, epochs=2, batch_size=8, verbose=0,
                  validation_data=(x[:8], y[:8], np.ones(8)))
    assert len(h.history["val_loss"]) == 2 and len(h.history["val_mae"]) == 2
    w = np.zeros(8)
    h = model.fit(x, y, epochs=1, verbose=0, validation_data=(x[:8], y[:8], w))
    assert h.history["val_loss"] == [0.0]


# -- reproducibility and sample weights --------------------------------------------------------
def test_shuffle_and_dropout_reproducible_with_a_seed():
    x, y = sum_task(n=48)
    a = rnn_regressor(seed=0, dropout=0.3)
    b = rnn_regressor(seed=7, dropout=0.3)   # other initial dropout generators
    b.set_weights(a.get_weights())
    w0 = a.get_weights()
    for m in (a, b):
        m.compile(optimizers.Adam(0.01), "mse")
    a.fit(x, y, batch_size=8, epochs=2, seed=11, verbose=0)
    b.fit(x, y, batch_size=8, epochs=2, seed=11, verbose=0)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    c = rnn_regressor(seed=0, dropout=0.3)
    c.set_weights(w0)
    c.compile(optimizers.Adam(0.01), "mse")
    c.fit(x, y, batch_size=8, epochs=2, seed=12, verbose=0)
    assert not all(np.array_equal(wa, wc) for wa, wc in zip(a.get_weights(), c.get_weights()))


class BatchRecorder(Model):
    """Dense(1) over sample ids (x[i] = i), recording the ids of every training batch."""

    def __init__(self):
        super().__init__()
        self.head = Dense(1, seed=0)
        self.seen = []

    def call(self, inputs, training=False):
        if training:
            self.seen.extend(np.asarray(inputs)[:, 0].astype(int).tolist())
        return self.head(inputs)


@pytest.mark.parametrize("shuffle", [True, False])
def test_fit_shuffles_each_epoch_only_when_asked(shuffle):
    n, epochs = 32, 3
    x = np.arange(n, dtype="float32")[:, None]
    model = BatchRecorder()
    model.compile(optimizers.SGD(0.0), "mse")
    model.fit(x, np.zeros((n, 1), "float32"), batch_size=5, epochs=epochs, shuffle=shuffle,
              seed=3, verbose=0)
    orders = [model.seen[e * n:(e + 1) * n] for e in range(epochs)]
    assert len(model.seen) == epochs * n
    for order in orders:
        assert sorted(order) == list(range(n))      # every sample once an epoch
    if shuffle:  # a new order each epoch (seeded: the same on every run of the test)
        assert all(order != list(range(n)) for order in orders)
        assert len({tuple(order) for order in orders}) == epochs
    else:
        assert all(order == list(range(n)) for order in orders)


def test_model_level_seed_is_used_when_fit_has_none():
    x, y = sum_task(n=48)
    runs = []
    for init_seed in (0, 4):
        m = rnn_regressor(seed=init_seed, dropout=0.3)
        if runs:
            m.set_weights(runs[0][1])
        m.seed = 21
        m.compile(optimizers.Adam(0.01), "mse")
        w0 = m.get_weights()
        m.fit(x, y, batch_size=8, epochs=1, verbose=0)
        runs.append((m.get_weights(), w0))
    for wa, wb in zip(runs[0][0], runs[1][0]):
        np.testing.assert_array_equal(wa, wb)


def test_samples_with_zero_weight_do_not_train():
    x, y = sum_task(n=32)
    w = np.ones(32)
    w[::2] = 0.0
    a, b = rnn_regressor(), rnn_regressor(seed=9)
    b.set_weights(a.get_weights())
    for m in (a, b):
        m.compile(optimizers.Adam(0.01), "mse")
    a.fit(x, y, batch_size=8, epochs=2, sample_weight=w, verbose=0, seed=0)
    y_other = y.copy()
    y_other[::2] = -50.0                  # changes only the zero-weighted samples
    b.fit(x, y_other, batch_size=8, epochs=2, sample_weight=w, verbose=0, seed=0)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    # all weights zero: the loss and every gradient are zero, SGD leaves the weights
    c = rnn_regressor()
    c.compile(optimizers.SGD(0.1), "mse")
    w0 = c.get_weights()
    h = c.fit(x, y, batch_size=8, epochs=1, sample_weight=np.zeros(32), verbose=0)
    assert h.history["loss"] == [0.0]
    for a0, a1 in zip(w0, c.get_weights()):
        np.testing.assert_array_equal(a0, a1)


# -- several outputs -----------------------------------------------------------------------------
def test_two_outputs_with_two_losses_and_loss_weights():
    x, y = sum_task(n=64)
    sign = (y > 0).astype("float32")
    model = two_headed()
    model.compile(optimizers.Adam(0.02), loss={"total": "mse", "sign": "binary_crossentropy"},
                  loss_weights={"total": 1.0, "sign": 0.5}, metrics={"sign": ["accuracy"]})
    logs = model.test_on_batch(x, [y, sign], return_dict=True)
    assert set(logs) == {"loss", "total_loss", "sign_loss", "sign_accuracy"}
    assert logs["loss"] == pytest.approx(logs["total_loss"] + 0.5 * logs["sign_loss"],
                                         rel=1e-6)
    total, s = model.predict(x)
    assert logs["total_loss"] == pytest.approx(float(np.mean((total - y) ** 2)), rel=1e-5)
    h = model.fit(x, {"total": y, "sign": sign}, batch_size=16, epochs=15, verbose=0, seed=0)
    assert h.history["total_loss"][-1] < h.history["total_loss"][0] / 5
    assert h.history["sign_loss"][-1] < h.history["sign_loss"][0]
    assert model.metrics_names == ["loss", "total_loss", "sign_loss", "sign_accuracy"]
    assert len(model.evaluate(x, [y, sign], verbose=0)) == 4


def test_a_zero_loss_weight_leaves_that_head_untrained():
    x, y = sum_task(n=32)
    model = two_headed()
    model.compile(optimizers.SGD(0.1), loss=["mse", "binary_crossentropy"],
                  loss_weights=[1.0, 0.0])
    before = {layer.name: layer.get_weights() for layer in model.layers}
    model.fit(x, [y, (y > 0)], batch_size=8, epochs=1, verbose=0)
    for layer in model.layers:
        name = layer.name
        same = all(np.array_equal(p, q) for p, q in zip(before[name], layer.get_weights()))
        assert same == (name == "sign"), name


def test_one_loss_for_every_output_and_a_list_of_metric_lists():
    x, y = sum_task(n=32)
    model = two_headed()
    model.compile("adam", loss="mse", metrics=[["mae"], []])
    logs = model.evaluate(x, [y, y], verbose=0, return_dict=True)
    assert set(logs) == {"loss", "total_loss", "sign_loss", "total_mae"}
    assert logs["loss"] == pytest.approx(logs["total_loss"] + logs["sign_loss"], rel=1e-6)


def test_predict_returns_a_list_for_two_outputs():
    x, _ = sum_task(n=40)
    model = two_headed()
    out = model.predict(x, batch_size=16)
    direct = model(x)
    assert isinstance(out, list) and len(out) == 2
    for o, d in zip(out, direct):
        np.testing.assert_allclose(o, d, rtol=1e-6, atol=1e-6)


def test_two_inputs_given_as_a_list():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((40, 3)).astype("float32")
    b = rng.standard_normal((40, 2)).astype("float32")
    y = a.sum(axis=1, keepdims=True) - b.sum(axis=1, keepdims=True)
    ia, ib = Input((3,)), Input((2,))
    model = Model([ia, ib], Dense(1, seed=0)(ops.concatenate([ia, ib])))
    model.compile(optimizers.Adam(0.05), "mse")
    before = model.evaluate([a, b], y, verbose=0)
    model.fit([a, b], y, batch_size=8, epochs=20, verbose=0, seed=0)
    assert model.evaluate([a, b], y, verbose=0) < before / 10
    assert model.predict([a, b]).shape == (40, 1)


# -- bad arguments -----------------------------------------------------------------------------
def test_bad_arguments_raise_value_errors():
    x, y = sum_task(n=20)
    model = rnn_regressor()
    with pytest.raises(ValueError, match="expected a compiled model before fit"):
        model.fit(x, y, verbose=0)
    with pytest.raises(ValueError, match="expected a compiled model before evaluate"):
        model.evaluate(x, y, verbose=0)
    with pytest.raises(ValueError, match="expected a loss name"):
        model.compile("adam", "no_such_loss")
    with pytest.raises(ValueError, match="expected an optimizer name"):
        model.compile("no_such_optimizer", "mse")
    model.compile("adam", "mse")
    with pytest.raises(ValueError, match=r"same number of samples.*got 20 \(x\), 19 \(y\)"):
        model.fit(x, y[:19], verbose=0)
    with pytest.raises(ValueError, match=r"20 \(x\), 20 \(y\), 5 \(sample_weight\)"):
        model.fit(x, y, sample_weight=np.ones(5), verbose=0)
    for split in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=rf"expected validation_split in \[0, 1\), got "
                                             rf"{split}"):
            model.fit(x, y, validation_split=split, verbose=0)
    with pytest.raises(ValueError, match="enough samples to split"):
        model.fit(x[:1], y[:1], validation_split=0.5, verbose=0)
    with pytest.raises(ValueError, match="expected batch_size to be an int >= 1, got 0"):
        model.fit(x, y, batch_size=0, verbose=0)
    with pytest.raises(ValueError, match="expected epochs"):
        model.fit(x, y, epochs=-1, verbose=0)
    with pytest.raises(ValueError, match="expected verbose"):
        model.fit(x, y, verbose=3)
    with pytest.raises(ValueError, match="expected validation_data to be a tuple"):
        model.fit(x, y, validation_data=(x,), verbose=0)
    with pytest.raises(ValueError, match="expected targets y for fit"):
        model.fit(x, verbose=0)
    with pytest.raises(ValueError, match="expected seed"):
        model.fit(x, y, seed=-1, verbose=0)
    with pytest.raises(ValueError, match="expected callbacks"):
        model.fit(x, y, callbacks=[object()], verbose=0)
    uncompiled_loss = rnn_regressor()
    uncompiled_loss.compile("adam")
    with pytest.raises(ValueError, match="expected a loss for fit"):
        uncompiled_loss.fit(x, y, verbose=0)


def test_bad_per_output_arguments():
    x, y = sum_task(n=16)
    model = two_headed()
    with pytest.raises(ValueError, match=r"expected one loss per output \(2"):
        model.compile("adam", loss=["mse"])
    with pytest.raises(ValueError, match="expected loss keys among the output names"):
        model.compile("adam", loss={"nope": "mse"})
    with pytest.raises(ValueError, match="expected loss_weights keys"):
        model.compile("adam", loss="mse", loss_weights={"nope": 1.0})
    with pytest.raises(ValueError, match="expected one loss weight per output"):
        model.compile("adam", loss="mse", loss_weights=[1.0])
    with pytest.raises(ValueError, match="expected metrics keys"):
        model.compile("adam", loss="mse", metrics={"nope": ["mae"]})
    model.compile("adam", loss="mse")
    with pytest.raises(ValueError, match=r"expected y to be a list of 2 arrays"):
        model.fit(x, y, verbose=0)
    with pytest.raises(ValueError, match=r"expected y to be a list of 2 arrays .* got 3"):
        model.fit(x, [y, y, y], verbose=0)
    with pytest.raises(ValueError, match="expected the keys of y to be output names"):
        model.fit(x, {"total": y, "other": y}, verbose=0)


# -- progress display ----------------------------------------------------------------------------
def test_verbose_output_is_one_line_per_epoch_when_not_a_terminal(capsys):
    x, y = sum_task(n=40)
    model = rnn_regressor()
    model.compile("adam", "mse", metrics=["mae"])
    model.fit(x, y, batch_size=16, epochs=2, validation_split=0.2, verbose=1)
    out = capsys.readouterr().out
    assert "\r" not in out
    lines = out.splitlines()
    assert lines[0] == "Epoch 1/2" and lines[2] == "Epoch 2/2" and len(lines) == 4
    assert lines[1].startswith("32/32 [==============================] - ")
    assert "/sample - loss: " in lines[1] and " - mae: " in lines[1]
    assert " - val_loss: " in lines[1] and " - val_mae: " in lines[1]
    model.fit(x, y, batch_size=16, epochs=1, verbose=2)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Epoch 1/1" and lines[1].startswith("40/40 - ") and len(lines) == 2
    model.evaluate(x, y, verbose=1)
    assert capsys.readouterr().out.startswith("40/40 [====")
    model.evaluate(x, y, verbose=0)
    model.predict(x)
    assert capsys.readouterr().out == ""


# -- summary ---------------------------------------------------------------------------------------
def test_summary_of_a_sequential_started_with_an_input():
    model = Sequential([Input((7, 3)), SimpleRNN(4, return_sequences=True, name="rnn"),
                        SimpleRNN(5, name="rnn_2"), Dense(2, name="out")])
    lines = []
    model.summary(print_fn=lines.append)
    expected = """\
Model: "{name}"
_________________________________________________________________
 Layer (type)                Output Shape              Param #
=================================================================
 rnn (SimpleRNN)             (None, 7, 4)              32

 rnn_2 (SimpleRNN)           (None, 5)                 50

 out (Dense)                 (None, 2)                 12
=================================================================
Total params: 94
Trainable params: 94
Non-trainable params: 0
_________________________________________________________________""".format(name=model.name)
    assert "\n".join(lines) == expected
    assert model.count_params() == 94 == 4 * (3 + 4 + 1) + 5 * (4 + 5 + 1) + 2 * (5 + 1)


def test_summary_of_a_functional_model_with_branches():
    model = two_headed()
    out = io.StringIO()
    model.summary(print_fn=lambda line: print(line, file=out))
    text = out.getvalue()
    assert text.splitlines()[0] == 'Model: "two_headed"'
    assert text.splitlines()[2].split() == ["Layer", "(type)", "Output", "Shape", "Param",
                                            "#", "Connected", "to"]
    rows = {line.split()[0]: line for line in text.splitlines()
            if line.startswith(" ") and "(" in line}
    assert rows["seq"].split()[1:] == ["(InputLayer)", "(None,", "5,", "1)", "0"]
    assert rows["rnn"].split()[1:] == ["(SimpleRNN)", "(None,", "8)", "80", "['seq[0][0]']"]
    assert rows["total"].split()[1:] == ["(Dense)", "(None,", "1)", "9", "['rnn[0][0]']"]
    assert rows["sign"].split()[1:] == ["(Dense)", "(None,", "1)", "9", "['rnn[0][0]']"]
    assert f"Total params: {model.count_params():,}" in text
    assert model.count_params() == 98


def test_summary_of_a_sequential_built_by_a_call_and_of_an_unbuilt_model():
    model = Sequential([SimpleRNN(6, name="r"), Dense(1, name="d")])
    with pytest.raises(ValueError, match="call the model on a batch"):
        model.summary()
    model(np.zeros((2, 4, 3), dtype="float32"))
    lines = []
    model.summary(print_fn=lines.append)
    assert " r (SimpleRNN)               (None, 6)                 60" in lines
    assert " d (Dense)                   (None, 1)                 7" in lines
    assert "Total params: 67" in lines


def test_summary_of_a_subclassed_model_after_fit():
    x, y = sum_task(n=16)
    model = LoopRNN(units=3)
    with pytest.raises(ValueError, match="call the model on a batch"):
        model.summary()
    model.compile("adam", "mse")
    model.fit(x, y, epochs=1, verbose=0)
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    # the cell is called once per step: Keras's "multiple"
    assert " cell (SimpleRNNCell)        multiple                  15" in lines
    assert " head (Dense)                (None, 1)                 4" in lines
    assert f"Total params: {model.count_params()}" in text and model.count_params() == 19


def test_summary_wraps_long_connection_lists():
    a, b = Input((3,), name="a"), Input((3,), name="b")
    da, db = Dense(2, name="da")(a), Dense(2, name="db")(b)
    model = Model([a, b], ops.concatenate([da, db]))
    lines = []
    model.summary(print_fn=lines.append)
    # (the op's own name, concatenate_<n>, may wrap too: find the row by its links)
    i = next(k for k, line in enumerate(lines) if line.endswith("['da[0][0]',"))
    assert lines[i + 1].strip() == "'db[0][0]']" or lines[i + 1].endswith("'db[0][0]']")
    assert lines[i].split()[1:4] == ["(None,", "4)", "0"] or "(None, 4)" in lines[i]


def test_compile_from_config_rebuilds_loss_objects_and_optimizer():
    def make():
        return crnn.Sequential([crnn.Input((3, 2)), crnn.SimpleRNN(2, seed=0),
                                crnn.Dense(1, seed=1)])
    m = make()
    m.compile(crnn.optimizers.Adam(learning_rate=0.01),
              loss=crnn.losses.BinaryCrossentropy(from_logits=True))
    m2 = make()
    m2.compile_from_config(m.get_compile_config())
    assert isinstance(m2.loss, crnn.losses.BinaryCrossentropy) and m2.loss.from_logits
    assert isinstance(m2.optimizer, crnn.optimizers.Adam)
    assert m2.optimizer.get_config() == m.optimizer.get_config()
