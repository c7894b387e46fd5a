"""A tiny configuration of each example (crnn/examples/) runs end to end, writes its
plots and reports a falling loss; plus the examples' own helpers (encodings,
generation, the adding problem)."""
import os

import numpy as np
import pytest

from crnn.examples import EXAMPLES, ExampleError, Result, load

pytest.importorskip("matplotlib")

def check_result(result, name, tmp_path):
    assert isinstance(result, Result) and result.name == name
    assert np.isfinite(result.value) and result.metric and result.baseline
    assert result.plots and all(os.path.isfile(p) and p.endswith(".png")
                                for p in result.plots)
    assert all(os.path.dirname(p) == str(tmp_path) for p in result.plots)


@pytest.mark.parametrize("name", EXAMPLES)
def test_module_interface(name):
    module = load(name)
    assert name in EXAMPLES and module.NAME == name and module.TITLE
    # the docstring names the textbook's model type
    assert module.__doc__ and any(kind in module.__doc__.lower() for kind in (
        "many-to-one", "one-to-many", "many-to-many", "encoder-decoder"))


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


def test_charlm_tiny(tmp_path):
    result = load("charlm").run(tmp_path, tiny=True, verbose=0)
    check_result(result, "charlm", tmp_path)
    model_row, unigram_row = result.rows
    assert model_row["train bits/char"] < model_row["first quarter bits/char"]
    assert 3.0 < unigram_row["held-out bits/char"] < 6.6     # log2(96) = 6.58
    assert len(result.samples) == 4
    assert all(s.split("] ", 1)[1].startswith(("Return the ", "The default "))
               for s in result.samples)


def test_seq2seq_tiny(tmp_path):
    result = load("seq2seq").run(tmp_path, tiny=True, verbose=0)
    check_result(result, "seq2seq", tmp_path)
    row = result.rows[0]
    assert row["last loss"] < row["first loss"]
    assert 0.0 <= result.value <= 1.0 and result.samples


def test_seq2seq_encoding():
    from crnn.examples.seq2seq import ALPHABET, encode
    q, d_in, d_out, mask = encode([(12, 7)], 2)
    text = lambda ids: "".join(ALPHABET[i] for i in ids)   # noqa: E731
    assert text(q[0]) == " 7+21"                   # "12+7 " reversed
    assert text(d_in[0]) == "^19 " and text(d_out[0]) == "19$ "
    np.testing.assert_array_equal(mask, [[1, 1, 1, 0]])


def write_tiny_npz(path, rng):
    def part(n):
        y = rng.integers(0, 2, n)
        x = np.empty(n, dtype=object)
        for i in range(n):
            words = rng.integers(10, 150, size=rng.integers(5, 30))
            words[rng.random(words.size) < 0.3] = 4 if y[i] else 5   # the sentiment words
            x[i] = words.tolist()
        return x, y
    (x, y), (x_t, y_t) = part(400), part(200)
    np.savez(path, x_train=x, y_train=y, x_test=x_t, y_test=y_t)
    return str(path)


def test_sentiment_tiny(tmp_path):
    data = write_tiny_npz(tmp_path / "imdb.npz", np.random.default_rng(0))
    out = tmp_path / "out"
    out.mkdir()
    result = load("sentiment").run(out, tiny=True, verbose=0, data=data)
    check_result(result, "sentiment", out)
    row = result.rows[0]
    assert row["last loss"] < row["first loss"]
    assert result.rows[-1]["model"] == "majority class"


def test_sentiment_without_data_is_one_line():
    with pytest.raises(ExampleError, match="pass data=PATH"):
        load("sentiment").run(".", tiny=True, verbose=0)


def test_gradients_tiny(tmp_path):
    result = load("gradients").run(tmp_path, tiny=True, verbose=0)
    check_result(result, "gradients", tmp_path)
    assert len(result.rows) == 6                      # 3 cells x 2 lengths
    for row in result.rows:
        assert row["last loss"] < row["first loss"]
        assert 0 < row["grad h_0/h_T init"] and 0 < row["grad h_0/h_T trained"]


def test_adding_problem():
    from crnn.examples.gradients import adding_problem
    x, y = adding_problem(50, 20, np.random.default_rng(0))
    assert x.shape == (50, 20, 2) and y.shape == (50, 1)
    np.testing.assert_array_equal(x[:, :10, 1].sum(axis=1), 1)
    np.testing.assert_array_equal(x[:, 10:, 1].sum(axis=1), 1)
    np.testing.assert_allclose(y[:, 0], (x[:, :, 0] * x[:, :, 1]).sum(axis=1), rtol=1e-6)
