"""crnn.load_model on Keras's files (.keras and legacy .h5) and model.save("m.keras") for
Keras: models built and saved by Keras (on the torch backend) predict the same in crnn
(float32 within 1e-5) and back; compiled models continue training on the same losses;
hostile files raise ValueError and run nothing. Skipped without keras and h5py unless
CRNN_REQUIRE_KERAS=1."""
import json
import os
import zipfile

import numpy as np
import pytest

import crnn
from conftest import assert_close, require

os.environ.setdefault("KERAS_BACKEND", "torch")


def require_keras():
    require("h5py", "KERAS")
    keras = require("keras", "KERAS")
    if keras.backend.backend() != "torch":
        pytest.skip(f"Keras runs on {keras.backend.backend()}, these tests use torch")
    return keras


def _models(keras):
    """Six Keras models covering every layer and option the loader supports."""
    L = keras.layers
    rng = np.random.default_rng(0)
    x3 = rng.standard_normal((4, 6, 3)).astype(np.float32)
    out = {}
    out["many_to_one"] = (keras.Sequential([keras.Input((None, 3)),
                                            L.SimpleRNN(8, activation="relu"),
                                            L.Dense(1)]), x3)
    out["many_to_many"] = (keras.Sequential([
        keras.Input((None, 3)), L.LSTM(6, return_sequences=True, unit_forget_bias=False),
        L.TimeDistributed(L.Dense(2, activation="softmax"))]), x3)
    ids = rng.integers(1, 12, size=(4, 7))
    ids[0, 5:] = 0
    ids[1, :2] = 0
    out["embedding_mask_zero_bigru"] = (keras.Sequential([
        keras.Input((None,), dtype="int32"), L.Embedding(12, 5, mask_zero=True),
        L.Bidirectional(L.GRU(4, return_sequences=True)),
        L.TimeDistributed(L.Dense(3)), L.Activation("tanh")]), ids)
    enc_in, dec_in = keras.Input((None, 3)), keras.Input((None, 2))
    masked = L.Masking()(enc_in)
    _, h, c = L.LSTM(5, return_state=True)(masked)
    y = L.LSTM(5, return_sequences=True)(dec_in, initial_state=[h, c])
    y = L.TimeDistributed(L.Dense(2))(y)
    xe = x3.copy()
    xe[0, 4:] = 0
    out["encoder_decoder"] = (keras.Model([enc_in, dec_in], y),
                              [xe, rng.standard_normal((4, 5, 2)).astype(np.float32)])
    out["stacked_lstm_dropout"] = (keras.Sequential([
        keras.Input((None, 3)), L.LSTM(8, return_sequences=True, dropout=0.2,
                                       recurrent_dropout=0.1),
        L.Dropout(0.3), L.LSTM(4), L.Dense(1, activation="sigmoid")]), x3)
    inp = keras.Input((6, 3))
    z = L.GRU(5, reset_after=False, go_backwards=True)(inp)
    z = L.RepeatVector(3)(z)
    z = L.Bidirectional(L.SimpleRNN(2, return_sequences=True), merge_mode="sum")(z)
    z = L.Flatten()(z)
    out["gru_reset_before"] = (keras.Model(inp, L.Dense(2)(z)), x3)
    inner = keras.Sequential([keras.Input((None, 3)), L.LSTM(4, return_sequences=True),
                              L.Dense(2)])
    inp = keras.Input((None, 3))
    out["nested_sequential"] = (keras.Model(inp, L.Dense(1)(L.GRU(3)(inner(inp)))), x3)
    for model, _ in out.values():   # weights away from their initial values
        weights = model.get_weights()
        model.set_weights([w + rng.uniform(-0.3, 0.3, size=w.shape).astype(w.dtype)
                           for w in weights])
    return out


def _predict(model, x):
    y = model.predict(x, verbose=0)
    return [np.asarray(a) for a in y] if isinstance(y, list) else np.asarray(y)


@pytest.fixture(scope="module")
def keras_models():
    keras = require_keras()
    return keras, _models(keras)


@pytest.mark.parametrize("name", ["many_to_one", "many_to_many",
                                  "embedding_mask_zero_bigru", "encoder_decoder",
                                  "stacked_lstm_dropout", "gru_reset_before",
                                  "nested_sequential"])
def test_keras_models_load_and_predict_equally(name, keras_models, tmp_path):
    keras, models = keras_models
    model, x = models[name]
    expected = _predict(model, x)
    for ext in ("keras", "h5"):
        path = str(tmp_path / f"m.{ext}")
        model.save(path)
        loaded = crnn.load_model(path)
        assert_close(_predict(loaded, x), expected, np.float32,
                     err_msg=f"{name} from .{ext}")
    # and back: crnn writes a .keras that Keras opens and predicts equally from
    loaded.save(str(tmp_path / "back.keras"))
    again = keras.saving.load_model(str(tmp_path / "back.keras"))
    assert_close(_predict(again, x), expected, np.float32, err_msg=f"{name} back")


def test_a_crnn_model_saved_as_keras(tmp_path):
    keras = require_keras()
    inp = crnn.Input((None, 4))
    y = crnn.Masking()(inp)
    y = crnn.Bidirectional(crnn.LSTM(3, return_sequences=True, seed=0))(y)
    y = crnn.GRU(2, seed=1)(y)
    model = crnn.Model(inp, crnn.Dense(1, seed=2)(y))
    x = np.random.default_rng(1).standard_normal((3, 5, 4)).astype(np.float32)
    x[1, 3:] = 0
    model.save(str(tmp_path / "m.keras"))
    other = keras.saving.load_model(str(tmp_path / "m.keras"))
    assert_close(_predict(other, x), model.predict(x, verbose=0), np.float32)
    model.save(str(tmp_path / "m.crnn"))          # other extensions: crnn's own format
    with np.load(str(tmp_path / "m.crnn")) as npz:
        assert "__crnn__.npy" in npz.zip.namelist()


@pytest.mark.parametrize("ext,optimizer", [("keras", "adam"), ("h5", "sgd")])
def test_a_compiled_model_continues_training(ext, optimizer, tmp_path):
    """Keras trains a few steps and saves; crnn and Keras continue from the file on the
    same batches with the same losses."""
    keras = require_keras()
    L = keras.layers
    rng = np.random.default_rng(2)
    x = rng.standard_normal((16, 5, 3)).astype(np.float32)
    y = rng.standard_normal((16, 1)).astype(np.float32)
    model = keras.Sequential([keras.Input((None, 3)), L.GRU(6), L.Dense(1)])
    opt = (keras.optimizers.Adam(0.01) if optimizer == "adam"
           else keras.optimizers.SGD(0.05, momentum=0.9))
    model.compile(optimizer=opt, loss="mse")
    for _ in range(3):
        model.train_on_batch(x, y)
    path = str(tmp_path / f"m.{ext}")
    model.save(path)
    loaded = crnn.load_model(path)
    assert type(loaded.optimizer).__name__ == {"adam": "Adam", "sgd": "SGD"}[optimizer]
    theirs = [float(model.train_on_batch(x, y)) for _ in range(4)]
    ours = [float(np.atleast_1d(loaded.train_on_batch(x, y))[0]) for _ in range(4)]
    np.testing.assert_allclose(ours, theirs, rtol=1e-4)


def test_an_optimizer_crnn_lacks_loads_uncompiled_with_one_warning(tmp_path):
    keras = require_keras()
    model = keras.Sequential([keras.Input((None, 2)), keras.layers.LSTM(3)])
    model.compile(optimizer=keras.optimizers.Nadam(), loss="mse")
    model.save(str(tmp_path / "m.keras"))
    with pytest.warns(UserWarning, match="uncompiled.*Nadam") as record:
        loaded = crnn.load_model(str(tmp_path / "m.keras"))
    assert len(record) == 1 and getattr(loaded, "optimizer", None) is None


def test_unsupported_layers_and_options_are_named(tmp_path):
    keras = require_keras()
    L = keras.layers
    cases = [
        (keras.Sequential([keras.Input((None, 3)), L.LSTM(
            4, kernel_regularizer=keras.regularizers.OrthogonalRegularizer())]),
         "kernel_regularizer"),
        (keras.Sequential([keras.Input((None, 3)), L.Conv1D(2, 2)]), "Conv1D"),
        (keras.Sequential([keras.Input((None, 3)), L.LSTM(4, activation="elu")]),
         "activation='elu'"),
    ]
    for i, (model, message) in enumerate(cases):
        path = str(tmp_path / f"m{i}.keras")
        model.save(path)
        with pytest.raises(ValueError, match=message):
            crnn.load_model(path)


# -- hostile files ----------------------------------------------------------------------------
def _keras_zip(path, config, weights=b"", members=None):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("metadata.json", json.dumps({"keras_version": "3.0.0"}))
        z.writestr("config.json", json.dumps(config))
        z.writestr("model.weights.h5", weights)
        for name, data in (members or {}).items():
            z.writestr(name, data)


def _sequential(*layers):
    return {"module": "keras", "class_name": "Sequential",
            "config": {"name": "s", "layers": [
                {"module": "keras.layers", "class_name": "InputLayer",
                 "config": {"batch_shape": [None, None, 3], "dtype": "float32",
                            "name": "in"}}] + list(layers)}}


def test_hostile_files_raise_and_run_nothing(tmp_path):
    require_keras()
    marker = tmp_path / "ran"
    code = f"open({str(marker)!r}, 'w').write('x')"
    lam = {"module": "keras.layers", "class_name": "Lambda",
           "config": {"name": "l", "function": {"class_name": "__lambda__",
                                                "config": {"code": code}}}}
    unknown = {"module": "keras.layers", "class_name": "Attention", "config": {"name": "a"}}
    python_path = {"module": "os", "class_name": "system", "config": {"name": "x"}}
    custom = {"module": "keras.layers", "class_name": "Dense",
              "registered_name": "mypkg>Dense", "config": {"name": "d", "units": 2}}
    cases = [(lam, "Python code"), (unknown, "'Attention' is not supported"),
             (python_path, "Python module 'os'"), (custom, "registered custom object")]
    for i, (layer, message) in enumerate(cases):
        path = str(tmp_path / f"h{i}.keras")
        _keras_zip(path, _sequential(layer))
        with pytest.raises(ValueError, match=message):
            crnn.load_model(path)
    assert not marker.exists()

    # a truncated zip
    good = str(tmp_path / "good.keras")
    crnn.Sequential([crnn.Input((None, 3)), crnn.LSTM(2, seed=0)]).save(good)
    data = open(good, "rb").read()
    for cut in (len(data) // 2, len(data) - 30):
        bad = tmp_path / f"cut{cut}.keras"
        bad.write_bytes(data[:cut])
        with pytest.raises(ValueError):
            crnn.load_model(str(bad))

    # a zip bomb: a weights member far larger than the config's weights
    bomb = str(tmp_path / "bomb.keras")
    config = _sequential({"module": "keras.layers", "class_name": "Dense",
                          "config": {"name": "d", "units": 2}})
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("config.json", json.dumps(config))
        z.writestr("model.weights.h5", b"\0" * (64 << 20))
    assert os.path.getsize(bomb) < 1 << 20
    with pytest.raises(ValueError, match="zip bomb"):
        crnn.load_model(bomb)


def test_h5_with_wrong_shapes_is_refused(tmp_path):
    keras = require_keras()
    import h5py
    model = keras.Sequential([keras.Input((None, 3)), keras.layers.LSTM(4),
                              keras.layers.Dense(1)])
    path = str(tmp_path / "m.h5")
    model.save(path)
    with h5py.File(path, "r+") as f:
        group = f[f"model_weights/{model.layers[-1].name}"]
        name = [n.decode() if isinstance(n, bytes) else n
                for n in group.attrs["weight_names"]][0]
        del group[name]
        group.create_dataset(name, data=np.zeros((4000, 1000), dtype=np.float32))
    with pytest.raises(ValueError, match=r"expected shape \(4, 1\)"):
        crnn.load_model(path)
    keras_path = str(tmp_path / "m.keras")
    model.save(keras_path)
    # a .keras whose weights file holds an array of another shape
    with zipfile.ZipFile(keras_path) as z:
        config = z.read("config.json")
    import io
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        f.create_dataset("layers/lstm/cell/vars/0", data=np.zeros((3, 15), np.float32))
        f.create_dataset("layers/lstm/cell/vars/1", data=np.zeros((4, 16), np.float32))
        f.create_dataset("layers/lstm/cell/vars/2", data=np.zeros((16,), np.float32))
    _keras_zip(str(tmp_path / "w.keras"), json.loads(config), buffer.getvalue())
    with pytest.raises(ValueError, match=r"expected shape \(3, 16\)"):
        crnn.load_model(str(tmp_path / "w.keras"))
