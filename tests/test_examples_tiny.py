"""A tiny configuration of each of the examples digits, captions and forecast runs end to end
(seconds each), writes its plots and reports a falling loss."""
import os

import numpy as np
import pytest

from crnn.examples import EXAMPLES, Result, load

pytest.importorskip("matplotlib")


def check_result(result, name, tmp_path):
    assert isinstance(result, Result) and result.name == name
    assert np.isfinite(result.value) and result.metric and result.baseline
    assert result.plots and all(os.path.isfile(p) and p.endswith(".png")
                                for p in result.plots)
    assert all(os.path.dirname(p) == str(tmp_path) for p in result.plots)
    assert result.seconds > 0


@pytest.mark.parametrize("name", ["digits", "captions", "forecast"])
def test_module_interface(name):
    module = load(name)
    assert name in EXAMPLES and module.NAME == name and module.TITLE
    assert module.__doc__ and "Model type" in module.__doc__


def test_digits_tiny(tmp_path):
    pytest.importorskip("sklearn")
    result = load("digits").run(tmp_path, tiny=True, verbose=0)
    check_result(result, "digits", tmp_path)
    assert [r["model"] for r in result.rows] == ["SimpleRNN", "LSTM", "GRU"]
    for row in result.rows:
        assert row["last loss"] < row["first loss"]
        assert 0 <= row["held-out accuracy"] <= 1
    assert result.value == result.rows[1]["held-out accuracy"]      # the LSTM's


def test_captions_encoding():
    captions = load("captions")
    x, y, w = captions.encode([7, 1])
    chars = lambda ids: "".join(captions.CHARS[i] for i in ids)
    assert chars(x[0]) == "^seven" and chars(y[0]) == "seven$"
    assert chars(x[1]) == "^one__" and chars(y[1]) == "one$__"
    assert w[1].tolist() == [1, 1, 1, 1, 0, 0]


def test_captions_tiny(tmp_path):
    pytest.importorskip("sklearn")
    result = load("captions").run(tmp_path, tiny=True, verbose=0)
    check_result(result, "captions", tmp_path)
    row, = result.rows
    assert row["last loss"] < row["first loss"]
    assert 0 <= result.value <= 1
    assert len(result.plots) == 2


@pytest.mark.parametrize("cell", ["GRU", "LSTM"])
def test_captions_generate_matches_teacher_forcing(cell):
    """Greedy generation one step at a time with the shared layers gives what the training
    model gives when fed the generated characters all at once."""
    captions = load("captions")
    model, encoder, step = captions.build(cell, units=8, seed=1)
    images = np.random.default_rng(0).random((5, 64)).astype("float32")
    words = captions.generate(encoder, step, images)
    chars = np.zeros((5, captions.STEPS), dtype="int32")
    chars[:, 0] = captions.CHARS.index(captions.START)
    for t in range(captions.STEPS - 1):           # feed back the model's own argmax
        chars[:, t + 1] = model.predict([images, chars], batch_size=5)[:, t].argmax(axis=-1)
    probs = model.predict([images, chars], batch_size=5)
    expected = ["".join(captions.CHARS[i] for i in p.argmax(axis=-1)).split(captions.END)[0]
                for p in probs]
    assert words == expected


def test_forecast_tiny(tmp_path):
    pytest.importorskip("statsmodels")
    result = load("forecast").run(tmp_path, tiny=True, verbose=0)
    check_result(result, "forecast", tmp_path)
    rmse = {r["forecast"]: r["held-out RMSE (ppm)"] for r in result.rows}
    assert result.rows[0]["last loss"] < result.rows[0]["first loss"]
    # the baselines do not depend on the model: the monthly series' known values
    assert rmse["last value"] == pytest.approx(1.264, abs=1e-3)
    assert rmse["seasonal naive"] == pytest.approx(1.703, abs=1e-3)
