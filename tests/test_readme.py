"""The README's code runs as written."""
import pathlib
import re

import numpy as np

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def block_after(marker):
    text = README.read_text(encoding="utf-8")
    match = re.search(re.escape(marker) + r"\s*```python\n(.*?)```", text, re.S)
    assert match, f"no python block after {marker!r} in the README"
    return match.group(1)


def test_the_textbook_models_run_and_learn(capsys):
    namespace = {}
    exec(compile(block_after("<!-- readme-example: models -->"), "README.md", "exec"),
         namespace)
    out = capsys.readouterr().out
    assert "Total params: 10,301" in out
    first, last = (float(v) for v in re.search(r"many-to-one MSE: (\S+) -> (\S+)",
                                               out).groups())
    assert last < first / 100
    # the last model: the hand-written loop over two cells, on held-out reviews
    loss, accuracy = namespace["model"].evaluate(namespace["ids"][1536:],
                                                 namespace["labels"][1536:], verbose=0)
    assert accuracy > 0.8 and np.isfinite(loss)


def test_the_quick_start_runs():
    blocks = re.findall(r"## Quick start.*?```python\n(.*?)```.*?```python\n(.*?)```",
                        README.read_text(encoding="utf-8"), re.S)
    assert blocks, "no Quick start blocks in the README"
    namespace = {}
    for block in blocks[0]:
        exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["dx"].shape == (32, 50, 8)


def test_the_streaming_example_runs():
    namespace = {}
    exec(compile(block_after("<!-- readme-example: streaming -->"), "README.md", "exec"),
         namespace)
    ids = namespace["ids"]
    assert ids.shape == (10,) and ids.min() >= 0 and ids.max() < 30
    assert namespace["h"].shape == namespace["c"].shape == (1, 64)


def test_the_stateful_example_runs():
    namespace = {}
    exec(compile(block_after("<!-- readme-example: stateful -->"), "README.md", "exec"),
         namespace)
    h = namespace["h_rows"]
    np.testing.assert_array_equal(h[[0, 3]], 0.0)
    assert np.abs(h[[1, 2]]).min() > 0 and namespace["lstm"].states is None
    assert np.concatenate(namespace["pieces"], axis=1).shape == (4, 1000, 32)


def test_the_interop_example_runs():
    """The "Bringing models in and out" block, where its referees are installed (CI
    installs them all)."""
    from conftest import require, require_onnx, require_torch
    require("h5py", "KERAS")
    require_onnx()
    torch = require_torch()
    namespace = {}
    exec(compile(block_after("<!-- readme-example: interop -->"), "README.md", "exec"),
         namespace)
    x = np.random.default_rng(1).standard_normal((2, 4, 3)).astype("float32")
    with torch.no_grad():
        expected = namespace["module"](torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(namespace["layers"].predict(x, verbose=0), expected,
                               rtol=1e-5, atol=1e-5)
    assert isinstance(namespace["back"], torch.nn.LSTM)


def test_the_reduced_precision_streaming_example_runs():
    namespace = {}
    exec(compile(block_after("<!-- readme-example: streaming-precision -->"), "README.md",
                 "exec"), namespace)
    assert namespace["h_t"].shape == (1, 1024) and namespace["fast"].precision == "int8"


def test_the_regularizers_example_runs(capsys):
    import crnn
    glove = np.random.default_rng(0).standard_normal((20000, 100)).astype(np.float32)
    namespace = {"crnn": crnn, "glove": glove}
    exec(compile(block_after("<!-- readme-example: regularizers -->"), "README.md", "exec"),
         namespace)
    out = capsys.readouterr().out
    assert "Non-trainable params: 2,000,000" in out
    model, emb = namespace["model"], namespace["emb"]
    ids = np.random.default_rng(1).integers(1, 20000, size=(8, 6))
    model.fit(ids, np.ones((8, 1)), verbose=0)
    assert np.array_equal(emb.get_weights()[0], glove)
