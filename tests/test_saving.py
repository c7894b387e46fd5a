"""Saving and loading (crnn.saving): round trips of every kind of model, resumed training,
weights-only files, and every way a file can be wrong."""
import io
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import crnn
from crnn import losses, ops, optimizers, saving
from crnn.layers import basic, wrappers
from crnn.saving import codec
from crnn.layers.base import Layer


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "model.crnn")


@pytest.fixture
def x(rng):
    return rng.standard_normal((3, 5, 4)).astype("float32")


def same_predictions(a, b, *inputs):
    ya, yb = crnn.engine.flatten(a(*inputs)), crnn.engine.flatten(b(*inputs))
    assert len(ya) == len(yb)
    for u, v in zip(ya, yb):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


def same_weights(a, b):
    wa, wb = a.get_weights(), b.get_weights()
    assert len(wa) == len(wb) and len(wa) > 0
    for u, v in zip(wa, wb):
        np.testing.assert_array_equal(u, v)


def load_error(path, **kwargs):
    with pytest.raises(ValueError) as info:
        saving.load_model(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message, message
    return message


# -- round trips ---------------------------------------------------------------------------
def test_sequential_with_input_round_trip(path, x):
    model = crnn.Sequential([crnn.Input((5, 4)),
                             crnn.SimpleRNN(6, return_sequences=True, seed=1),
                             crnn.LSTM(5, return_sequences=True, seed=2),
                             crnn.GRU(4, seed=3),
                             crnn.Dense(2, activation="tanh", seed=4)], name="stack")
    saving.save_model(model, path)
    loaded = saving.load_model(path)
    assert type(loaded) is crnn.Sequential and loaded.name == "stack"
    assert list(map(type, loaded.layers)) == list(map(type, model.layers))
    assert [layer.get_config() for layer in loaded.layers] == \
        [layer.get_config() for layer in model.layers]
    same_weights(model, loaded)
    same_predictions(model, loaded, x)


def test_sequential_built_by_a_call_round_trip(path, x):
    model = crnn.Sequential([crnn.GRU(6, return_sequences=True, reset_after=False, seed=1),
                             crnn.Dense(3, seed=2)])
    model(x)  # built by its first call: no Input records the shape
    saving.save_model(model, path)
    loaded = saving.load_model(path)
    same_weights(model, loaded)
    same_predictions(model, loaded, x)


def test_unbuilt_sequential_saves_its_architecture(path, x):
    model = crnn.Sequential([crnn.SimpleRNN(3), crnn.Dense(1)])
    saving.save_model(model, path)
    loaded = saving.load_model(path)
    assert [type(layer) for layer in loaded.layers] == [crnn.SimpleRNN, crnn.Dense]
    assert loaded(x).shape == (3, 1)


def test_path_is_written_exactly_as_given(tmp_path, x):
    model = crnn.Sequential([crnn.Input((5, 4)), crnn.Dense(2, seed=0)])
    target = tmp_path / "no_extension"
    saving.save_model(model, target)  # os.PathLike accepted
    assert sorted(os.listdir(tmp_path)) == ["no_extension"]
    same_predictions(model, saving.load_model(target), x)
    saving.save_model(model, str(target), compressed=True)  # overwrites in place
    assert sorted(os.listdir(tmp_path)) == ["no_extension"]
    same_predictions(model, saving.load_model(target), x)


def two_input_model():
    a = crnn.Input((5, 4), name="a")
    b = crnn.Input((5, 4), name="b")
    shared = crnn.SimpleRNN(6, return_sequences=True, seed=1)
    ha, hb = shared(a), shared(b)                      # one layer, two calls
    both = ops.add(ha, hb)
    last = both[:, -1]                                 # getitem on a time step
    out1 = crnn.Dense(1, seed=2)(last)
    lstm = crnn.LSTM(3, return_state=True, seed=3)
    seq, h, c = lstm(ha[..., 1:5] * 2.0, initial_state=[last[:, :3], hb[:, 0, :3]])
    out2 = ops.concatenate([seq, h, c], axis=-1)
    return crnn.Model([a, b], [out1, (out2, ops.tanh(out1))], name="two")


def test_functional_shared_layer_two_inputs_and_outputs(path, rng):
    model = two_input_model()
    saving.save_model(model, path)
    loaded = saving.load_model(path)
    assert type(loaded) is crnn.Model and loaded.name == "two"
    assert len(loaded.layers) == len(model.layers)
    a = rng.standard_normal((2, 5, 4)).astype("float32")
    b = rng.standard_normal((2, 5, 4)).astype("float32")
    ya, yb = model([a, b]), loaded([a, b])
    assert isinstance(yb, list) and isinstance(yb[1], tuple) and len(yb[1]) == 2
    for u, v in zip(crnn.engine.flatten(ya), crnn.engine.flatten(yb)):
        np.testing.assert_array_equal(u, v)
    # the shared layer is one layer again, called twice
    assert len(loaded.layers) == len({id(layer) for layer in loaded.layers})
    rnns = [layer for layer in loaded.layers if isinstance(layer, crnn.SimpleRNN)]
    assert len(rnns) == 1
    assert sum(node.layer is rnns[0] for node in loaded._nodes) == 2


def test_functional_model_inside_a_model(path, x):
    inner = crnn.Sequential([crnn.Input((5, 4)),
                             crnn.GRU(3, return_sequences=True, seed=1)], name="inner")
    inp = crnn.Input((5, 4))
    y = crnn.Dense(2, seed=2)(inner(inp)[:, -1])
    model = crnn.Model(inp, y)
    saving.save_model(model, path)
    with np.load(path) as npz:
        assert "layers/0/layers/0/kernel" in npz.files
    loaded = saving.load_model(path)
    same_weights(model, loaded)
    same_predictions(model, loaded, x)


def test_config_round_trip_through_get_model_config(x):
    model = two_input_model()
    data = saving.get_model_config(model)
    json.dumps(data)  # JSON as it stands
    clone = saving.model_from_config(json.loads(json.dumps(data)))
    assert saving.get_model_config(clone) == data
    clone.set_weights(model.get_weights())
    same_predictions(model, clone, [x, x])


def test_model_saving_methods(path, x):
    cls = crnn.Sequential
    model = cls([crnn.Input((5, 4)), crnn.LSTM(3, seed=1), crnn.Dense(1, seed=2)])
    config = model.get_config()
    clone = cls.from_config(json.loads(json.dumps(config)))
    assert clone.get_config() == config
    model.save(path)
    loaded = saving.load_model(path, custom_objects={cls.__name__: cls})
    assert type(loaded) is cls
    same_predictions(model, loaded, x)
    clone.load_weights(path)
    same_predictions(model, clone, x)
    weights_path = path + ".weights"
    model.save_weights(weights_path)
    clone = cls.from_config(config)
    clone.load_weights(weights_path)
    same_predictions(model, clone, x)


class Scale(Layer):
    """A user's layer: one weight per feature."""

    def __init__(self, factor, name=None, dtype="float32"):
        super().__init__(name=name, dtype=dtype)
        self.factor = factor

    def build(self, input_shape):
        self.params["scale"] = np.full(input_shape[-1], self.factor, dtype=self.dtype)
        self.built = True

    def call(self, inputs, training=False):
        return ops.multiply(inputs, self.params["scale"])

    def compute_output_spec(self, inputs, training=False):
        self._maybe_build(inputs.shape)
        return crnn.engine.SymbolicTensor(inputs.shape, self.dtype)


def test_custom_layers_need_custom_objects(path, x):
    inp = crnn.Input((5, 4))
    model = crnn.Model(inp, crnn.SimpleRNN(2, seed=0)(Scale(0.5)(inp)))
    model.layers[0].params["scale"][:] = [1, 2, 3, 4]
    saving.save_model(model, path)
    message = load_error(path)
    assert "'Scale'" in message and "custom_objects" in message
    loaded = saving.load_model(path, custom_objects={"Scale": Scale})
    np.testing.assert_array_equal(loaded.layers[0].params["scale"], [1, 2, 3, 4])


def test_models_with_embedding_and_wrappers(path, rng):
    ids = rng.integers(0, 20, size=(3, 6))
    model = crnn.Sequential([
        crnn.Input((6,), dtype="int64"),
        basic.Embedding(20, 4, seed=1),
        basic.Dropout(0.3, seed=2),
        wrappers.Bidirectional(crnn.LSTM(5, return_sequences=True, seed=3)),
        wrappers.TimeDistributed(crnn.Dense(2, seed=4)),
    ])
    saving.save_model(model, path)
    with np.load(path) as npz:
        assert {"layers/0/embeddings", "layers/2/forward/kernel", "layers/2/backward/bias",
                "layers/3/kernel"} <= set(npz.files)
    loaded = saving.load_model(path)
    same_weights(model, loaded)
    same_predictions(model, loaded, ids)
    # built by a call, starting with ids: found again without an Input
    called = crnn.Sequential([
        basic.Embedding(20, 4, seed=1),
        wrappers.Bidirectional(crnn.GRU(3, seed=2), merge_mode="sum")])
    called(ids)
    saving.save_model(called, path)
    loaded = saving.load_model(path)
    same_weights(called, loaded)
    same_predictions(called, loaded, ids)


def test_loads_in_a_fresh_process(path, rng):
    model = crnn.Sequential([crnn.Input((6,), dtype="int64"), basic.Embedding(9, 3, seed=1),
                             wrappers.Bidirectional(crnn.SimpleRNN(2, seed=2))])
    saving.save_model(model, path)
    ids = rng.integers(0, 9, size=(2, 6))
    np.save(path + ".ids.npy", ids)
    code = ("import sys, numpy as np\n"
            "from crnn import saving\n"
            "m = saving.load_model(sys.argv[1])\n"
            "np.save(sys.argv[1] + '.out.npy', m(np.load(sys.argv[1] + '.ids.npy')))\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(crnn.__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", code, path], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(np.load(path + ".out.npy"), model(ids))


def test_a_users_class_named_like_a_crnn_layer_does_not_replace_it(path, x, monkeypatch):
    from crnn import registry
    # restored after the test
    monkeypatch.setitem(registry._classes["layer"], "Dense", registry.lookup("Dense"))
    model = crnn.Sequential([crnn.Input((5, 4)), crnn.GRU(3, seed=1), crnn.Dense(2, seed=2)])
    saving.save_model(model, path)

    class Dense(Layer):  # registers itself under "Dense"
        def __init__(self, n):
            super().__init__()
    loaded = saving.load_model(path)
    assert type(loaded.layers[1]) is crnn.Dense
    same_predictions(model, loaded, x)


# -- resumed training ----------------------------------------------------------------------
def test_optimizer_state_and_dropout_resume_identically(path, x, rng):
    # A Sequential with dropout, clipped Adam and a metric: after loading, its optimizer
    # state and random generators continue training exactly where the saved one is.
    y = rng.standard_normal((3, 2)).astype("float32")
    model = crnn.Sequential([crnn.Input((5, 4)),
                             crnn.SimpleRNN(6, dropout=0.3, recurrent_dropout=0.2, seed=1),
                             crnn.Dense(2, seed=2)])
    model.compile(optimizers.Adam(learning_rate=0.01, clipnorm=1.0), "mse", ["mae"])
    for _ in range(3):
        model.train_on_batch(x, y)
    saving.save_model(model, path)
    with np.load(path) as npz:
        assert "optimizer/iterations" in npz.files and "optimizer/m/0" in npz.files
    loaded = saving.load_model(path)
    assert type(loaded.optimizer) is optimizers.Adam
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert loaded.get_compile_config()["metrics"] == ["mae"]
    assert loaded.optimizer.iterations == model.optimizer.iterations == 3
    for _ in range(3):
        model.train_on_batch(x, y)
        loaded.train_on_batch(x, y)
    same_weights(model, loaded)
    # without compile: the same weights, no optimizer
    plain = saving.load_model(path, compile=False)
    assert getattr(plain, "optimizer", None) is None


def test_train_on_batch_resumes_identically(path, rng):
    x = rng.standard_normal((4, 5, 3)).astype("float32")
    y = [rng.standard_normal((4, 2)).astype("float32"),
         (rng.random((4, 1)) > 0.5).astype("float32")]
    inp = crnn.Input((5, 3))
    h = crnn.LSTM(6, return_sequences=True, dropout=0.2, recurrent_dropout=0.1, seed=1)(inp)
    out1 = crnn.Dense(2, name="reg", seed=2)(h[:, -1])
    out2 = crnn.Dense(1, name="cls", seed=3)(crnn.GRU(3, seed=4)(h))
    model = crnn.Model(inp, [out1, out2])
    model.compile(optimizer=optimizers.Adam(optimizers.ExponentialDecay(0.01, 10, 0.9)),
                  loss={"reg": "mse", "cls": losses.BinaryCrossentropy(from_logits=True)},
                  metrics={"reg": ["mae"], "cls": ["accuracy"]}, loss_weights=[1.0, 0.5])
    for _ in range(3):
        model.train_on_batch(x, y)
    saving.save_model(model, path)
    loaded = saving.load_model(path)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert loaded.optimizer.iterations == 3
    assert loaded.loss == {"reg": "mse", "cls": losses.BinaryCrossentropy(from_logits=True)}
    for _ in range(3):
        logs = model.train_on_batch(x, y, return_dict=True)
        assert loaded.train_on_batch(x, y, return_dict=True) == logs
    same_weights(model, loaded)
    assert loaded.metrics_names == model.metrics_names


def test_a_loss_function_of_the_users_saves_uncompiled(path, x, rng):

    def my_loss(y_true, y_pred, sample_weight=None):
        d = y_pred - y_true
        return float(np.mean(d * d)), 2 * d / d.size
    model = crnn.Sequential([crnn.Input((5, 4)), crnn.GRU(2, seed=1)])
    model.compile("sgd", loss=my_loss)
    model.train_on_batch(x, rng.standard_normal((3, 2)).astype("float32"))
    with pytest.warns(UserWarning, match="without its compile configuration"):
        saving.save_model(model, path)
    loaded = saving.load_model(path)
    assert not getattr(loaded, "compiled", False)
    same_predictions(model, loaded, x)


# -- weights only --------------------------------------------------------------------------
class CellLoop(crnn.Model):
    """A subclassed model looping over two SimpleRNNCells."""

    def __init__(self, seed=0):
        super().__init__()
        self.first = crnn.SimpleRNNCell(5, seed=seed)
        self.second = crnn.SimpleRNNCell(5, seed=seed + 1)
        self.head = crnn.Dense(1, seed=seed + 2)

    def call(self, inputs, training=False):
        B, T = inputs.shape[0], inputs.shape[1]
        s1 = self.first.get_initial_state(B)
        s2 = self.second.get_initial_state(B)
        for t in range(T):
            h1, s1 = self.first(inputs[:, t], s1, training=training)
            h2, s2 = self.second(h1, s2, training=training)
        return self.head(h2)


def test_subclassed_model_weights_round_trip(path, x):
    model = CellLoop()
    model(x)
    with pytest.raises(ValueError, match="save_weights") as info:
        saving.save_model(model, path)
    assert "\n" not in str(info.value)
    assert not os.path.exists(path)
    saving.save_weights(model, path)
    with np.load(path) as npz:
        assert {"layers/0/kernel", "layers/1/recurrent_kernel", "layers/2/bias"} <= \
            set(npz.files)
    other = CellLoop(seed=10)
    with pytest.raises(ValueError, match="not built yet"):
        saving.load_weights(other, path)   # nothing built yet: says so
    other(x)
    assert not np.array_equal(np.asarray(other(x)), np.asarray(model(x)))
    saving.load_weights(other, path)
    same_weights(model, other)
    same_predictions(model, other, x)
    message = load_error(path)
    assert "save_weights" in message and "load_weights" in message


def test_load_weights_accepts_a_model_file(path, x):
    model = crnn.Sequential([crnn.Input((5, 4)), crnn.LSTM(3, seed=1),
                             crnn.Dense(1, seed=2)])
    saving.save_model(model, path)
    other = crnn.Sequential([crnn.Input((5, 4)), crnn.LSTM(3, seed=7),
                             crnn.Dense(1, seed=8)])
    saving.load_weights(other, path)
    same_predictions(model, other, x)


def test_load_weights_names_every_mismatch(path, x):
    model = crnn.Sequential([crnn.Input((5, 4)), crnn.SimpleRNN(3, seed=1),
                             crnn.Dense(2, seed=2)])
    saving.save_weights(model, path)
    wider = crnn.Sequential([crnn.Input((5, 4)), crnn.SimpleRNN(4), crnn.Dense(2)])
    before = wider.get_weights()
    with pytest.raises(ValueError) as info:
        saving.load_weights(wider, path)
    message = str(info.value)
    assert "\n" not in message
    assert "different shapes (model vs file): layers/0/kernel (4, 4) vs (4, 3)" in message
    assert "layers/1/kernel (4, 2) vs (3, 2)" in message
    for u, v in zip(before, wider.get_weights()):   # all or nothing
        np.testing.assert_array_equal(u, v)
    longer = crnn.Sequential([crnn.Input((5, 4)), crnn.SimpleRNN(3), crnn.Dense(2),
                              crnn.Dense(1)])
    with pytest.raises(ValueError, match=r"missing from the file: layers/2/kernel \(2, 1"):
        saving.load_weights(longer, path)
    no_bias = crnn.Sequential([crnn.Input((5, 4)), crnn.SimpleRNN(3, use_bias=False),
                               crnn.Dense(2)])
    with pytest.raises(ValueError, match=r"not in the model: layers/0/bias \(3,\)"):
        saving.load_weights(no_bias, path)


def test_float64_model_takes_float32_weights(path, x):
    model = crnn.Sequential([crnn.Input((5, 4)), crnn.GRU(3, seed=1)])
    saving.save_weights(model, path)
    wide = crnn.Sequential([crnn.Input((5, 4), dtype="float64"),
                            crnn.GRU(3, dtype="float64")])
    saving.load_weights(wide, path)
    for u, v in zip(model.get_weights(), wide.get_weights()):
        assert v.dtype == np.float64
        np.testing.assert_array_equal(u, v)


# -- files that are not crnn files ---------------------------------------------------------
def small_model():
    return crnn.Sequential([crnn.Input((5, 4)), crnn.Dense(2, seed=0)])


def rewrite(path, change):
    """Rewrite a saved file with ``change(meta)`` applied to its JSON."""
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(arrays["config.json"].tobytes())
    change(meta)
    arrays["config.json"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def test_empty_text_and_npy_files(path):
    open(path, "wb").close()
    assert "empty file" in load_error(path)
    with open(path, "w") as f:
        f.write("layers: 3\n")
    assert "not a zip archive" in load_error(path)
    np.save(open(path, "wb"), np.zeros(3))
    assert "not a zip archive" in load_error(path)
    with pytest.raises(FileNotFoundError):
        saving.load_model(path + ".missing")


def test_foreign_archives(path):
    np.savez(open(path, "wb"), weights=np.zeros(3))
    assert "without '__crnn__'" in load_error(path)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", "hello")
    assert "without '__crnn__'" in load_error(path)
    np.savez(open(path, "wb"), __crnn__=np.array(["keras", "1", "model"]))
    assert "header" in load_error(path)


def test_truncated_and_damaged_files(path):
    saving.save_model(small_model(), path)
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[:len(data) // 2])
    assert "damaged or truncated" in load_error(path)
    damaged = bytearray(data)
    start = data.index(b"layers/0/kernel.npy") + 200   # inside the kernel's bytes
    damaged[start:start + 8] = b"\xff" * 8
    with open(path, "wb") as f:
        f.write(bytes(damaged))
    assert "damaged" in load_error(path)


def test_malformed_json_and_unknown_classes(path):
    saving.save_model(small_model(), path)
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["config.json"] = np.frombuffer(b'{"kind": "model", ', dtype=np.uint8)
    np.savez(open(path, "wb"), **arrays)
    assert "not valid JSON" in load_error(path)
    arrays["config.json"] = np.frombuffer(b"\xff\xfe", dtype=np.uint8)
    np.savez(open(path, "wb"), **arrays)
    assert "not valid JSON" in load_error(path)

    saving.save_model(small_model(), path)
    rewrite(path, lambda m: m["model"]["config"]["layers"][0].update(class_name="Nope"))
    message = load_error(path)
    assert "unknown layer class 'Nope'" in message
    saving.save_model(small_model(), path)   # a class that exists but is not a layer
    rewrite(path, lambda m: m["model"].update(class_name="TemporaryDirectory"))
    assert "unknown layer class 'TemporaryDirectory'" in load_error(path)
    saving.save_model(small_model(), path)
    rewrite(path, lambda m: m["model"]["config"]["layers"][0]["config"].update(units="x"))
    assert "could not rebuild" in load_error(path)
    saving.save_model(small_model(), path)
    rewrite(path, lambda m: m["weights"].append("layers/9/kernel"))
    assert "layers/9/kernel" in load_error(path)
    saving.save_model(small_model(), path)
    rewrite(path, lambda m: m.update(kind="something"))
    assert "'kind'" in load_error(path)


def test_functional_graph_references_are_checked(path):
    saving.save_model(two_input_model(), path)
    rewrite(path, lambda m: m["model"]["config"]["nodes"][0].update(
        args={"__tuple__": [{"__tensor__": [5, 0]}]}))
    assert "earlier node" in load_error(path)
    saving.save_model(two_input_model(), path)
    rewrite(path, lambda m: m["model"]["config"]["nodes"][0].update(layer=99))
    assert "node 0" in load_error(path)


_unpickled = []


def _record_unpickling(*args):
    _unpickled.append(args)
    return args


class Trap:
    """Unpickling this calls _record_unpickling: the test checks it is never called."""

    def __reduce__(self):
        return _record_unpickling, ("ran",)


def test_pickled_arrays_are_refused_unread(path):
    saving.save_model(small_model(), path)
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["layers/0/kernel"] = np.array([Trap()], dtype=object)
    with open(path, "wb") as f:
        np.savez(f, **arrays)       # np.savez pickles object arrays
    message = load_error(path)
    assert "Python objects" in message and "pickl" in message
    with pytest.raises(ValueError, match="Python objects"):
        saving.load_weights(small_model(), path)
    assert _unpickled == []


def test_newer_format_versions_are_refused(path):
    saving.save_model(small_model(), path)
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["__crnn__"] = np.array(["crnn", "99", "model"])
    np.savez(open(path, "wb"), **arrays)
    assert "newer crnn" in load_error(path)


# -- writing -------------------------------------------------------------------------------
def test_a_failed_write_leaves_the_old_file(path, x, monkeypatch):
    model = small_model()
    saving.save_model(model, path)
    before = open(path, "rb").read()

    def broken(f, **arrays):
        f.write(b"PK\x03\x04 half an archive")
        raise OSError("disk full")
    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        saving.save_model(crnn.Sequential([crnn.Input((5, 4)), crnn.Dense(7)]), path)
    monkeypatch.undo()
    assert open(path, "rb").read() == before
    assert os.listdir(os.path.dirname(path)) == [os.path.basename(path)]
    same_predictions(model, saving.load_model(path), x)


def test_unstorable_configs_raise_before_writing(path):
    def init(shape, dtype, rng):
        return np.ones(shape, dtype)
    model = crnn.Sequential([crnn.Input((5, 4)), crnn.Dense(2, kernel_initializer=init)])
    with pytest.raises(ValueError, match="kernel_initializer.*function.*never code"):
        saving.save_model(model, path)
    assert not os.path.exists(path)
    saving.save_weights(model, path)   # weights alone are fine
    saving.load_weights(model, path)


def test_encoding_round_trip():
    value = {"t": (1, (2.5, None)), "s": slice(None, -1, 2), "e": Ellipsis,
             "key": (Ellipsis, slice(1, 3), None, -1), "nan": float("nan"),
             "inf": (float("inf"), -float("inf")), "dt": np.dtype("float64"),
             "a": np.arange(6, dtype=np.int32).reshape(2, 3), "ints": {1: "one", (2, 3): 4},
             "escaped": {"__tuple__": [1]}, "np": np.float32(0.5), "b": np.bool_(True),
             "list": [1, "two", [3]]}
    encoded = json.loads(json.dumps(codec.encode(value, "value"), allow_nan=False))
    back = codec.decode(encoded)
    assert back.keys() == value.keys()
    assert back["t"] == (1, (2.5, None)) and back["s"] == slice(None, -1, 2)
    assert back["e"] is Ellipsis and back["key"] == (Ellipsis, slice(1, 3), None, -1)
    assert np.isnan(back["nan"]) and back["inf"] == (float("inf"), -float("inf"))
    assert back["dt"] == np.float64
    assert back["a"].dtype == np.int32
    np.testing.assert_array_equal(back["a"], value["a"])
    assert back["ints"] == {1: "one", (2, 3): 4}
    assert back["escaped"] == {"__tuple__": [1]}
    assert back["np"] == 0.5 and back["b"] is True and back["list"] == [1, "two", [3]]
    with pytest.raises(ValueError, match="value\\['f'\\] is a BytesIO object"):
        codec.encode({"f": io.BytesIO()}, "value")
    with pytest.raises(ValueError, match="__slice__"):
        codec.decode({"__slice__": [1]})
