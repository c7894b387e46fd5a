"""Callbacks (crnn.callbacks) and the progress bar (crnn.progress)."""
import io
import os

import numpy as np
import pytest

from crnn import Dense, Input, Sequential, SimpleRNN, optimizers, saving
from crnn.callbacks import (Callback, CallbackList, EarlyStopping, History, LambdaCallback,
                            ModelCheckpoint, TerminateOnNaN)
from crnn.progress import Progbar, format_duration, format_rate


def data(n=24, T=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, T, 1)).astype("float32")
    return x, x.sum(axis=(1, 2))[:, None]


def model(seed=0, lr=0.01):
    m = Sequential([Input((5, 1)), SimpleRNN(4, seed=seed), Dense(1, seed=seed + 1)])
    m.compile(optimizers.Adam(lr), "mse", metrics=["mae"])
    return m


class Recorder(Callback):
    """Notes every hook called, with its argument."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __getattribute__(self, name):
        if name.startswith("on_") and name not in ("on_batch_begin", "on_batch_end"):
            calls = object.__getattribute__(self, "calls")

            def hook(*args, **kwargs):
                calls.append((name,) + tuple(a for a in args if isinstance(a, int)))
            return hook
        return object.__getattribute__(self, name)


# -- the order of the hooks ------------------------------------------------------------------
def test_fit_calls_the_hooks_in_keras_order():
    x, y = data(n=24)
    rec = Recorder()
    m = model()
    m.fit(x, y, batch_size=8, epochs=2, validation_data=(x[:8], y[:8]), callbacks=[rec],
          verbose=0)
    epoch = [("on_train_batch_begin", 0), ("on_train_batch_end", 0),
             ("on_train_batch_begin", 1), ("on_train_batch_end", 1),
             ("on_train_batch_begin", 2), ("on_train_batch_end", 2),
             ("on_test_begin",), ("on_test_batch_begin", 0), ("on_test_batch_end", 0),
             ("on_test_end",)]
    assert rec.calls == ([("on_train_begin",), ("on_epoch_begin", 0)] + epoch
                         + [("on_epoch_end", 0), ("on_epoch_begin", 1)] + epoch
                         + [("on_epoch_end", 1), ("on_train_end",)])
    assert rec.model is m
    assert rec.params == {"epochs": 2, "steps": 3, "samples": 24, "batch_size": 8,
                          "verbose": 0}


def test_evaluate_and_predict_call_their_hooks():
    x, y = data(n=10)
    rec = Recorder()
    m = model()
    m.evaluate(x, y, batch_size=6, callbacks=[rec], verbose=0)
    m.predict(x, batch_size=6, callbacks=[rec])
    assert rec.calls == [("on_test_begin",), ("on_test_batch_begin", 0),
                         ("on_test_batch_end", 0), ("on_test_batch_begin", 1),
                         ("on_test_batch_end", 1), ("on_test_end",),
                         ("on_predict_begin",), ("on_predict_batch_begin", 0),
                         ("on_predict_batch_end", 0), ("on_predict_batch_begin", 1),
                         ("on_predict_batch_end", 1), ("on_predict_end",)]


def test_batch_logs_are_running_means_and_epoch_logs_add_validation():
    x, y = data(n=24)
    batch_logs, epoch_logs = [], []
    cb = LambdaCallback(on_train_batch_end=lambda b, logs: batch_logs.append(logs),
                        on_epoch_end=lambda e, logs: epoch_logs.append(logs))
    m = model()
    m.fit(x, y, batch_size=8, epochs=1, validation_split=0.25, callbacks=[cb], verbose=0)
    assert [set(logs) for logs in batch_logs] == [{"loss", "mae"}] * 3
    assert set(epoch_logs[0]) == {"loss", "mae", "val_loss", "val_mae"}
    assert epoch_logs[0]["loss"] == batch_logs[-1]["loss"]
    assert all(isinstance(v, float) for v in epoch_logs[0].values())


def test_a_callback_stops_training_mid_epoch():
    x, y = data(n=24)
    seen = []

    class StopAfterTwoBatches(Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(batch)
            if batch == 1:
                self.model.stop_training = True

    h = model().fit(x, y, batch_size=4, epochs=5, callbacks=[StopAfterTwoBatches()],
                    verbose=0)
    assert seen == [0, 1] and h.epoch == [0]


def test_callback_list_checks_its_entries_and_adds_history():
    with pytest.raises(ValueError, match=r"expected callbacks\[1\] to be a crnn.callbacks"):
        CallbackList([History(), print])
    with pytest.raises(ValueError, match="expected callbacks to be a list"):
        CallbackList(History())
    cbs = CallbackList([], add_history=True)
    assert isinstance(cbs.history, History) and cbs.callbacks == [cbs.history]


# -- History -------------------------------------------------------------------------------------
def test_history_is_returned_and_kept_on_the_model():
    x, y = data()
    m = model()
    h = m.fit(x, y, epochs=3, batch_size=8, verbose=0, initial_epoch=1)
    assert m.history is h and h.epoch == [1, 2] and h.model is m
    assert set(h.history) == {"loss", "mae"} and len(h.history["loss"]) == 2
    h2 = m.fit(x, y, epochs=1, verbose=0)
    assert h2 is not h and len(h2.history["loss"]) == 1


# -- EarlyStopping -------------------------------------------------------------------------------
class FakeModel:
    """Just what the callbacks use: weights, and the stop flag."""

    def __init__(self):
        self.stop_training = False
        self.w = 0
        self.metrics = []

    def get_weights(self):
        return [np.array(self.w)]

    def set_weights(self, weights):
        self.w = int(weights[0])


def run_early_stopping(cb, values, monitor="val_loss"):
    """Feed ``values`` as the monitored number of successive epochs (the fake model's
    weight is the epoch); return the epoch at which training stopped (or None)."""
    fake = FakeModel()
    cb.set_model(fake)
    cb.on_train_begin()
    stopped = None
    for epoch, v in enumerate(values):
        fake.w = epoch
        cb.on_epoch_end(epoch, {monitor: v})
        if fake.stop_training:
            stopped = epoch
            break
    cb.on_train_end()
    return stopped, fake


def test_early_stopping_patience():
    assert run_early_stopping(EarlyStopping(patience=0), [3, 2, 2.5, 1])[0] == 2
    assert run_early_stopping(EarlyStopping(patience=2), [3, 2, 2.5, 2.1, 1])[0] == 3
    assert run_early_stopping(EarlyStopping(patience=2), [3, 2, 2.5, 1, 1.5])[0] is None
    # equal is no improvement
    assert run_early_stopping(EarlyStopping(patience=1), [1, 1, 1])[0] == 1


def test_early_stopping_min_delta_mode_baseline_and_start():
    # an improvement by less than min_delta does not count
    assert run_early_stopping(EarlyStopping(patience=1, min_delta=0.5),
                              [3, 2.8, 2.6])[0] == 1
    assert run_early_stopping(EarlyStopping(patience=1, min_delta=-0.5),
                              [3, 2.8, 2.6])[0] == 1          # the sign is ignored
    # higher is better for accuracies ("auto") or with mode="max"
    assert run_early_stopping(EarlyStopping(monitor="val_accuracy", patience=0),
                              [0.5, 0.6, 0.55], "val_accuracy")[0] == 2
    assert run_early_stopping(EarlyStopping(monitor="score", mode="max", patience=0),
                              [1, 2, 1], "score")[0] == 2
    assert run_early_stopping(EarlyStopping(monitor="score", mode="min", patience=0),
                              [1, 2, 1], "score")[0] == 1
    # a baseline not beaten: improvements do not restart the counter
    assert run_early_stopping(EarlyStopping(patience=2), [3, 2, 2.5, 1.2])[0] is None
    assert run_early_stopping(EarlyStopping(patience=2, baseline=1.0),
                              [3, 2, 2.5, 1.2])[0] == 2
    assert run_early_stopping(EarlyStopping(patience=2, baseline=1.0),
                              [3, 0.9, 0.8, 0.7])[0] is None
    # nothing is monitored before start_from_epoch
    assert run_early_stopping(EarlyStopping(patience=0, start_from_epoch=2),
                              [1, 2, 3, 2.5, 2.9])[0] == 4
    with pytest.raises(ValueError, match="expected mode"):
        EarlyStopping(mode="up")
    with pytest.raises(ValueError, match="expected patience"):
        EarlyStopping(patience=-1)


def test_early_stopping_restores_the_best_weights_and_warns_on_a_missing_monitor():
    cb = EarlyStopping(patience=2, restore_best_weights=True)
    stopped, fake = run_early_stopping(cb, [3, 2, 2.5, 2.6, 1])
    assert stopped == 3 and fake.w == 1 and cb.best_epoch == 1 and cb.best == 2
    # also when training ran to the end (Keras 3)
    _, fake = run_early_stopping(EarlyStopping(patience=5, restore_best_weights=True),
                                 [3, 1, 2])
    assert fake.w == 1
    with pytest.warns(UserWarning, match="not available"):
        assert run_early_stopping(EarlyStopping(), [1, 2], monitor="loss")[0] is None


def test_early_stopping_in_fit_restores_the_weights_of_the_best_epoch():
    x, y = data()
    m = model(lr=0.05)
    scores = [3.0, 2.0, 2.5, 2.6, 1.0, 0.5]
    weights = []

    def inject(epoch, logs):
        logs["score"] = scores[epoch]        # seen by the callbacks after this one
        weights.append(m.get_weights())

    h = m.fit(x, y, batch_size=8, epochs=6, verbose=0,
              callbacks=[LambdaCallback(on_epoch_end=inject),
                         EarlyStopping(monitor="score", patience=2,
                                       restore_best_weights=True)])
    assert h.epoch == [0, 1, 2, 3] and h.history["score"] == scores[:4]
    for w, best in zip(m.get_weights(), weights[1]):
        np.testing.assert_array_equal(w, best)
    assert not all(np.array_equal(a, b) for a, b in zip(weights[1], weights[3]))


def test_early_stopping_on_val_loss_in_fit():
    x, y = data()
    m = model(lr=0.05)
    # validation targets opposite to the training ones: val_loss rises as training works
    h = m.fit(x, y, batch_size=8, epochs=50, verbose=0, validation_data=(x, -y),
              callbacks=[EarlyStopping(patience=1)])
    assert len(h.epoch) < 50
    val = h.history["val_loss"]
    assert val[-1] >= min(val) and val[-2] >= min(val)


# -- ModelCheckpoint -----------------------------------------------------------------------------
def patch_saving(monkeypatch, m):
    saved = []
    monkeypatch.setattr(m, "save", lambda path: saved.append(("save", path)), raising=False)
    monkeypatch.setattr(m, "save_weights", lambda path: saved.append(("weights", path)),
                        raising=False)
    return saved


def test_model_checkpoint_formats_the_path_every_epoch(monkeypatch, tmp_path):
    x, y = data()
    m = model()
    saved = patch_saving(monkeypatch, m)
    path = os.path.join(tmp_path, "ckpt-{epoch:02d}-{val_loss:.2f}.keras")
    h = m.fit(x, y, batch_size=8, epochs=3, verbose=0, validation_split=0.25,
              callbacks=[ModelCheckpoint(path, monitor="val_loss")])
    assert saved == [("save", os.path.join(tmp_path, f"ckpt-{e + 1:02d}-{v:.2f}.keras"))
                     for e, v in enumerate(h.history["val_loss"])]


def test_model_checkpoint_save_best_only_and_weights_only(monkeypatch):
    m = FakeModel()
    saved = patch_saving(monkeypatch, m)
    cb = ModelCheckpoint("w{epoch}.weights", monitor="val_loss", save_best_only=True,
                         save_weights_only=True)
    cb.set_model(m)
    for epoch, v in enumerate([3.0, 2.0, 2.5, 1.0]):
        cb.on_epoch_end(epoch, {"val_loss": v})
    assert saved == [("weights", "w1.weights"), ("weights", "w2.weights"),
                     ("weights", "w4.weights")]
    assert cb.best == 1.0
    saved.clear()
    cb = ModelCheckpoint("m{epoch}", monitor="val_accuracy", save_best_only=True)
    cb.set_model(m)
    for epoch, v in enumerate([0.5, 0.4, 0.7]):
        cb.on_epoch_end(epoch, {"val_accuracy": v})
    assert saved == [("save", "m1"), ("save", "m3")]
    saved.clear()
    cb = ModelCheckpoint("m", save_best_only=True, initial_value_threshold=1.5)
    cb.set_model(m)
    cb.on_epoch_end(0, {"val_loss": 2.0})
    assert saved == []
    with pytest.warns(UserWarning, match="Can save best model only with val_loss"):
        cb.on_epoch_end(1, {"loss": 1.0})
    with pytest.raises(KeyError, match="failed to format the checkpoint path"):
        ModelCheckpoint("m{nope}").on_epoch_end(0, {"loss": 1.0})


def test_model_checkpoint_files_load_back_and_continue_training(tmp_path):
    x, y = data(n=32)
    m = model()
    path = os.path.join(tmp_path, "m-{epoch}.crnn")
    m.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[ModelCheckpoint(path)])
    assert sorted(os.listdir(tmp_path)) == ["m-1.crnn", "m-2.crnn"]
    loaded = saving.load_model(os.path.join(tmp_path, "m-2.crnn"))  # the final state
    assert loaded.get_compile_config() == m.get_compile_config()
    assert loaded.evaluate(x, y, verbose=0) == m.evaluate(x, y, verbose=0)
    m.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    loaded.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(m.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)      # the optimizer's state came back too


# -- LambdaCallback and TerminateOnNaN -------------------------------------------------------------
def test_lambda_callback():
    x, y = data(n=16)
    calls = []
    cb = LambdaCallback(on_train_begin=lambda logs: calls.append("begin"),
                        on_epoch_end=lambda epoch, logs: calls.append(("epoch", epoch)),
                        on_train_batch_end=lambda batch, logs: calls.append(("batch", batch)),
                        on_train_end=lambda logs: calls.append("end"))
    model().fit(x, y, batch_size=8, epochs=2, callbacks=[cb], verbose=0)
    assert calls == ["begin", ("batch", 0), ("batch", 1), ("epoch", 0), ("batch", 0),
                     ("batch", 1), ("epoch", 1), "end"]
    with pytest.raises(ValueError, match="expected hook names"):
        LambdaCallback(on_epoch_finish=print)
    with pytest.raises(ValueError, match="expected on_epoch_end to be callable"):
        LambdaCallback(on_epoch_end=3)


def test_terminate_on_nan_stops_after_the_first_bad_batch(capsys):
    x, y = data(n=24)
    y = y.copy()
    y[9] = np.nan                            # in the second batch of 8
    batches = []
    h = model().fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0,
                    callbacks=[TerminateOnNaN(),
                               LambdaCallback(on_train_batch_end=lambda b, l: batches.append(b))])
    assert batches == [0, 1] and h.epoch == [0] and np.isnan(h.history["loss"][0])
    assert "Batch 1: Invalid loss, terminating training" in capsys.readouterr().out


# -- the progress bar ------------------------------------------------------------------------------
class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progbar_redraws_on_a_terminal():
    out = Terminal()
    bar = Progbar(100, file=out, interval=0.0)
    bar.update(40, {"loss": 0.5})
    bar.update(100, {"loss": 0.25, "val_loss": 0.0001}, finalize=True)
    bar.update(100, {"loss": 1.0})             # after the end: ignored
    text = out.getvalue()
    first, last = text.split("\r")[1:]
    assert first.startswith(" 40/100 [===========>..................] - ETA: ")
    assert first.rstrip().endswith(" - loss: 0.5000")
    assert last.startswith("100/100 [==============================] - ")
    assert last.endswith("/sample - loss: 0.2500 - val_loss: 1.0000e-04\n")


def test_progbar_prints_only_the_final_line_elsewhere():
    out = io.StringIO()
    bar = Progbar(10, file=out, interval=0.0)
    bar.update(5, {"loss": 1.0})
    assert out.getvalue() == ""
    bar.update(10, {"loss": 1.0})
    assert out.getvalue().startswith("10/10 [==============================] - ")
    assert out.getvalue().count("\n") == 1
    out2 = io.StringIO()
    bar = Progbar(10, verbose=2, file=out2)
    bar.update(10, {"loss": 1.0})
    assert out2.getvalue().startswith("10/10 - ") and out2.getvalue().endswith(" - loss: 1.0000\n")
    out3 = io.StringIO()
    Progbar(10, verbose=0, file=out3).update(10, {"loss": 1.0})
    assert out3.getvalue() == ""


def test_duration_and_rate_formatting_of_given_numbers():
    assert format_duration(7.4) == "7s" and format_duration(125) == "2:05"
    assert format_duration(3725) == "1:02:05"
    assert format_rate(2.0, "step") == "2s/step" and format_rate(0.012, "step") == "12ms/step"
    assert format_rate(5e-5, "sample") == "50us/sample"
