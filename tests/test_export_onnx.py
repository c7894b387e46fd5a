"""model.export(path, format="onnx"): standard ONNX operators that onnx.checker accepts
and ONNX Runtime runs to crnn's predictions (float32 within 1e-5), for every layer kind,
masked and unmasked, at batch sizes and lengths other than any seen before the export.
Skipped without onnx/onnxruntime unless CRNN_REQUIRE_ONNX=1."""
import inspect
import subprocess
import sys

import numpy as np
import pytest

import crnn
from conftest import assert_close, require_onnx

# every operator an exported model may hold: ONNX's standard domain only
STANDARD = {"Add", "Cast", "Concat", "CumSum", "Equal", "Expand", "Flatten", "Gather",
            "GatherElements", "Greater", "GRU", "Identity", "LSTM", "MatMul", "Mul", "Not",
            "Range", "ReduceMax", "ReduceSum", "Relu", "Reshape", "RNN", "Shape", "Sigmoid",
            "Slice", "Softmax", "Squeeze", "Sub", "Tanh", "Tile", "TopK", "Transpose",
            "Unsqueeze", "Where", "Div", "Exp", "Log", "Neg"}


def _export(model, tmp_path, name="m.onnx"):
    onnx, ort = require_onnx()
    path = str(tmp_path / name)
    model.export(path, format="onnx")
    proto = onnx.load(path)
    onnx.checker.check_model(proto, full_check=True)
    ops = {n.op_type for n in proto.graph.node}
    assert ops <= STANDARD, ops - STANDARD
    assert all(n.domain in ("", "ai.onnx") for n in proto.graph.node)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return proto, session


def _run(session, *arrays):
    names = [i.name for i in session.get_inputs()]
    return session.run(None, dict(zip(names, arrays)))


def _check(model, session, *arrays, scale=1.0):
    expected = model.predict(list(arrays) if len(arrays) > 1 else arrays[0], verbose=0)
    expected = expected if isinstance(expected, list) else [expected]
    got = _run(session, *arrays)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.shape == np.shape(e)
        assert_close(g, e, np.asarray(e).dtype, scale=scale)
    return got


def _padded(rng, B, T, D, lengths=None, interior=False, left=False):
    """A float batch padded with zero steps: right-padded to ``lengths``, plus
    (``interior``) one zero step inside row 1, plus (``left``) leading zeros in row 2."""
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    if lengths is not None:
        x[np.arange(T)[None, :] >= np.asarray(lengths)[:, None]] = 0
    if interior and B > 1 and T > 3:
        x[1, 1] = 0
    if left and B > 2 and T > 3:
        x[2, :2] = 0
    return x


def _recurrent(kind, units, **options):
    cls = {"simple_rnn": crnn.SimpleRNN, "simple_rnn_relu": crnn.SimpleRNN,
           "lstm": crnn.LSTM, "gru": crnn.GRU, "gru_before": crnn.GRU}[kind]
    if kind == "simple_rnn_relu":
        options["activation"] = "relu"
    if kind == "gru_before":
        options["reset_after"] = False
    return cls(units, bias_initializer="random_normal", **options)


KINDS = ["simple_rnn", "simple_rnn_relu", "lstm", "gru", "gru_before"]


@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
@pytest.mark.parametrize("kind", KINDS)
def test_recurrent_layers(kind, masked, tmp_path, rng):
    """Every cell, with return_sequences, return_state, go_backwards and without a bias:
    one model returns all of them."""
    x = inp = crnn.Input((None, 3))
    if masked:
        x = crnn.Masking()(x)
    seq = _recurrent(kind, 4, return_sequences=True, seed=1)(x)
    backwards = _recurrent(kind, 3, return_sequences=True, go_backwards=True, seed=2)(x)
    last = _recurrent(kind, 5, return_state=True, use_bias=False, seed=3)(seq)
    back_last = _recurrent(kind, 2, go_backwards=True, seed=4)(backwards)
    model = crnn.Model(inp, [seq, backwards, back_last] + list(last))
    model.predict(rng.standard_normal((2, 4, 3)).astype(np.float32), verbose=0)
    proto, session = _export(model, tmp_path)
    op = {"simple_rnn": "RNN", "simple_rnn_relu": "RNN", "lstm": "LSTM"}.get(kind, "GRU")
    nodes = [n for n in proto.graph.node if n.op_type == op]
    assert len(nodes) == 4
    attrs = {a.name: a for a in nodes[0].attribute}
    if op == "GRU":
        assert attrs["linear_before_reset"].i == (kind == "gru")
    if kind == "simple_rnn_relu":
        assert attrs["activations"].strings == [b"Relu"]
    directions = [{a.name: a for a in n.attribute}["direction"].s for n in nodes]
    assert directions.count(b"reverse") == 2
    for B, T in ((3, 6), (1, 1), (5, 11)):       # none of them the batch seen above
        x = (_padded(rng, B, T, 3, lengths=rng.integers(0, T + 1, size=B), interior=True,
                     left=True) if masked else rng.standard_normal((B, T, 3)).astype(
                         np.float32))
        _check(model, session, x)


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave", None])
@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
def test_bidirectional(merge_mode, masked, tmp_path, rng):
    x = inp = crnn.Input((None, 4))
    if masked:
        x = crnn.Masking(mask_value=-1.0)(x)
    out = crnn.Bidirectional(crnn.LSTM(3, return_sequences=True, return_state=True,
                                       seed=0), merge_mode=merge_mode)(x)
    last = crnn.Bidirectional(crnn.GRU(2, seed=5), merge_mode=merge_mode)(
        out[0] if merge_mode is not None else out[0] + out[1])
    outputs = (list(out) if merge_mode is not None else list(out)) + engine_flat(last)
    model = crnn.Model(inp, outputs)
    proto, session = _export(model, tmp_path)
    directions = [{a.name: a for a in n.attribute}["direction"].s
                  for n in proto.graph.node if n.op_type in ("LSTM", "GRU")]
    assert directions == [b"bidirectional", b"bidirectional"]
    for B, T in ((3, 5), (2, 9)):
        x = rng.standard_normal((B, T, 4)).astype(np.float32)
        if masked:
            x[0, T - 2:] = -1.0
            x[1, :2] = -1.0
            x[-1, 2] = -1.0
        _check(model, session, x)


def engine_flat(out):
    return list(out) if isinstance(out, (list, tuple)) else [out]


def test_bidirectional_with_a_different_backward_layer(tmp_path, rng):
    """Two layers of different kinds or sizes: two operators, forward and reverse."""
    inp = crnn.Input((None, 3))
    masked = crnn.Masking()(inp)
    y = crnn.Bidirectional(crnn.LSTM(4, return_sequences=True, seed=0),
                           backward_layer=crnn.GRU(2, return_sequences=True,
                                                   go_backwards=True, seed=1))(masked)
    model = crnn.Model(inp, y)
    proto, session = _export(model, tmp_path)
    kinds = [(n.op_type, {a.name: a for a in n.attribute}["direction"].s)
             for n in proto.graph.node if n.op_type in ("LSTM", "GRU")]
    assert kinds == [("LSTM", b"forward"), ("GRU", b"reverse")]
    _check(model, session, _padded(rng, 4, 7, 3, lengths=[7, 3, 5, 1], interior=True,
                                   left=True))


def test_embedding_with_mask_zero_into_a_bidirectional_gru(tmp_path, rng):
    """The text model: ids padded with 0 (at the end, at the start, inside), the mask
    from Embedding(mask_zero=True), a softmax at every step."""
    model = crnn.Sequential([
        crnn.Input((None,), dtype="int64"),
        crnn.Embedding(20, 6, mask_zero=True, seed=0),
        crnn.Bidirectional(crnn.GRU(5, return_sequences=True, seed=1)),
        crnn.TimeDistributed(crnn.Dense(4, activation="softmax", seed=2)),
        crnn.Dropout(0.5),
    ])
    proto, session = _export(model, tmp_path)
    assert "Gather" in {n.op_type for n in proto.graph.node}
    inputs = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
              for i in proto.graph.input}
    assert list(inputs.values()) == [["batch", "time"]]
    for B, T in ((4, 8), (2, 3)):
        ids = rng.integers(1, 20, size=(B, T))
        ids[0, T - 2:] = 0          # right-padded
        ids[1, :1] = 0              # left-padded
        if B > 2:
            ids[2, 1] = 0           # a padded step inside
            ids[3] = 0              # nothing real
        _check(model, session, ids)
    # int32 ids reach it as the model's declared int64 after a cast by the caller
    _check(model, session, rng.integers(0, 20, size=(3, 5)).astype(np.int64))


def test_encoder_decoder_with_two_inputs(tmp_path, rng):
    """A functional encoder-decoder: the encoder's final states start the decoder."""
    enc_in = crnn.Input((None, 3), name="source")
    dec_in = crnn.Input((None, 2), name="target")
    _, h, c = crnn.LSTM(6, return_state=True, seed=0)(crnn.Masking()(enc_in))
    y = crnn.LSTM(6, return_sequences=True, seed=1)(dec_in, initial_state=[h, c])
    y = crnn.TimeDistributed(crnn.Dense(2, seed=2))(y)
    model = crnn.Model([enc_in, dec_in], y)
    proto, session = _export(model, tmp_path)
    assert [i.name for i in proto.graph.input] == ["source", "target"]
    for B, T1, T2 in ((3, 5, 4), (1, 2, 7)):
        src = _padded(rng, B, T1, 3, lengths=rng.integers(1, T1 + 1, size=B))
        _check(model, session, src, rng.standard_normal((B, T2, 2)).astype(np.float32))


def test_one_to_many_and_the_small_layers(tmp_path, rng):
    """RepeatVector, Flatten (which fixes the length), Activation, Dropout, Dense on a
    vector, and the ops of a functional graph."""
    inp = crnn.Input((5,))
    x = crnn.RepeatVector(4)(inp)
    x = crnn.SimpleRNN(3, return_sequences=True, seed=0)(x)
    x = crnn.Activation("sigmoid")(x)
    flat = crnn.Flatten()(x)
    y = crnn.Dense(2, activation="tanh", seed=1)(crnn.Dropout(0.3)(flat))
    z = crnn.ops.concatenate([y * 2.0 + 1.0, crnn.ops.relu(y - x[:, -1, :2])], axis=-1)
    z = crnn.ops.softmax(z / 3.0)
    model = crnn.Model(inp, [z, x[:, 1:3]])
    proto, session = _export(model, tmp_path)
    for B in (1, 6):
        _check(model, session, rng.standard_normal((B, 5)).astype(np.float32))


def test_nested_models_and_a_sequential_built_by_a_call(tmp_path, rng):
    inner = crnn.Sequential([crnn.GRU(4, return_sequences=True, seed=0),
                             crnn.TimeDistributed(crnn.Dense(3, seed=1))])
    model = crnn.Sequential([crnn.Masking(), inner, crnn.LSTM(2, seed=2)])
    model.predict(rng.standard_normal((2, 3, 5)).astype(np.float32), verbose=0)
    _, session = _export(model, tmp_path)
    _check(model, session, _padded(rng, 3, 6, 5, lengths=[6, 2, 4], interior=True))


@pytest.mark.parametrize("kind", ["simple_rnn", "lstm", "gru"])
def test_float64_models(kind, tmp_path, rng):
    """float64 stays float64 (a valid graph; ONNX Runtime's CPU RNN, LSTM and GRU kernels
    are float32 only), or is written as float32 with dtype="float32" and runs there."""
    onnx, ort = require_onnx()
    model = crnn.Sequential([crnn.Input((None, 3), dtype="float64"),
                             crnn.Masking(),
                             crnn.Bidirectional(_recurrent(kind, 4, return_sequences=True,
                                                           dtype="float64", seed=0)),
                             crnn.Dense(1, dtype="float64", seed=1)])
    model.export(str(tmp_path / "d.onnx"))
    proto = onnx.load(str(tmp_path / "d.onnx"))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    model.export(str(tmp_path / "f.onnx"), dtype="float32")
    session = ort.InferenceSession(str(tmp_path / "f.onnx"),
                                   providers=["CPUExecutionProvider"])
    x = _padded(rng, 3, 7, 3, lengths=[7, 4, 1])
    (got,) = _run(session, x)
    assert got.dtype == np.float32
    assert_close(got, model.predict(x.astype(np.float64), verbose=0), np.float32)


def _fill_forward(y, real, go_backwards):
    """Keras's plain masked output: at a padded step the previous output in processing
    order (zeros before the first real step), from crnn's zero-filled output."""
    y = np.array(y)
    order = range(y.shape[1] - 1, -1, -1) if go_backwards else range(y.shape[1])
    for b in range(y.shape[0]):
        prev = np.zeros(y.shape[2], dtype=y.dtype)
        for k, t in enumerate(order):
            pos = k if go_backwards else t      # go_backwards: outputs in processing order
            if real[b, t]:
                prev = y[b, pos]
            else:
                y[b, pos] = prev
    return y


@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("kind", ["simple_rnn", "lstm", "gru"])
def test_masked_outputs_that_repeat_the_previous_step(kind, go_backwards, tmp_path, rng):
    """zero_output_for_mask=False (Keras's default for plain layers): a padded step
    repeats the previous output; the export gathers it (checked against NumPy)."""
    layer = _recurrent(kind, 3, return_sequences=True, go_backwards=go_backwards, seed=0)
    model = crnn.Sequential([crnn.Input((None, 2)), crnn.Masking(), layer])
    x = _padded(rng, 4, 6, 2, lengths=[6, 3, 5, 0], interior=True, left=True)
    zeros = model.predict(x, verbose=0)
    real = np.any(x != 0, axis=-1)
    if "zero_output_for_mask" in inspect.signature(type(layer)).parameters:
        layer.zero_output_for_mask = True
        zeros = model.predict(x, verbose=0)
        layer.zero_output_for_mask = False
        assert_close(model.predict(x, verbose=0), _fill_forward(zeros, real, go_backwards),
                     np.float32)
    else:
        layer.zero_output_for_mask = False    # what the export reads
    _, session = _export(model, tmp_path)
    (got,) = _run(session, x)
    assert_close(got, _fill_forward(zeros, real, go_backwards), np.float32)


def test_what_cannot_be_exported(tmp_path, rng):
    require_onnx()
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)

    class Sub(crnn.Model):
        def __init__(self):
            super().__init__()
            self.rnn = crnn.LSTM(2)

        def call(self, inputs, training=None):
            return self.rnn(inputs)

    sub = Sub()
    sub(x)
    with pytest.raises(ValueError, match="subclassed model"):
        sub.export(str(tmp_path / "s.onnx"))
    stateful = crnn.Sequential([crnn.Input((None, 4)), crnn.LSTM(2, stateful=True)])
    with pytest.raises(ValueError, match="stateful"):
        stateful.export(str(tmp_path / "t.onnx"))
    model = crnn.Sequential([crnn.Input((None, 4)), crnn.LSTM(2)])
    with pytest.raises(ValueError, match="format to be one of"):
        model.export(str(tmp_path / "m.tf"), format="tf_saved_model")
    inp = crnn.Input((None, 4))
    stacked = crnn.Model(inp, crnn.ops.sum(crnn.LSTM(2, return_sequences=True)(inp),
                                           axis=1))
    with pytest.raises(ValueError, match="cannot export Sum"):
        stacked.export(str(tmp_path / "u.onnx"))
    unbuilt = crnn.Sequential([crnn.LSTM(2)])
    with pytest.raises(ValueError, match="no input shape|no weights"):
        unbuilt.export(str(tmp_path / "v.onnx"))
    assert not any(p.suffix == ".onnx" for p in tmp_path.iterdir())


def test_export_without_onnx_says_what_to_install():
    code = ("import sys; sys.modules['onnx'] = None\n"
            "import crnn\n"
            "m = crnn.Sequential([crnn.Input((None, 2)), crnn.GRU(2)])\n"
            "try:\n"
            "    m.export('never.onnx')\n"
            "except ImportError as e:\n"
            "    print('IMPORT', e)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "IMPORT" in done.stdout and "crnn[onnx]" in done.stdout
