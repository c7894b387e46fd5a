"""Model.get_layer, model.to_json and crnn.models.model_from_json (Keras's API, crnn's
safe architecture codec)."""
import json

import numpy as np
import pytest

import crnn
from crnn.models import model_from_json


def functional():
    ids = crnn.Input((None,), dtype="int64", name="ids")
    e = crnn.Embedding(20, 4, mask_zero=True, seed=0, name="emb")(ids)
    h = crnn.LSTM(5, return_sequences=True, seed=0, name="enc")(e)
    last = crnn.GRU(3, seed=0, name="dec")(h)
    out = crnn.Dense(1, activation="sigmoid", seed=0, name="head")(last)
    return crnn.Model(ids, out, name="classifier")


def test_get_layer():
    model = functional()
    assert model.get_layer("enc") is model.layers[1]
    assert model.get_layer(index=0).name == "emb"
    assert model.get_layer(index=-1).name == "head"
    with pytest.raises(ValueError, match="not both"):
        model.get_layer("enc", 1)
    with pytest.raises(ValueError, match=r"no layer named 'x'.*\['emb', 'enc'"):
        model.get_layer("x")
    with pytest.raises(ValueError, match="index"):
        model.get_layer(index=4)
    with pytest.raises(ValueError, match="neither"):
        model.get_layer()
    seq = crnn.Sequential([crnn.Input((3, 2)), crnn.SimpleRNN(2, name="r"), crnn.Dense(1)])
    assert seq.get_layer("r") is seq.layers[0]


@pytest.mark.parametrize("make", [
    functional,
    lambda: crnn.Sequential([crnn.Input((None, 3)), crnn.Bidirectional(crnn.LSTM(4)),
                             crnn.Dense(2, activation="softmax")]),
])
def test_to_json_round_trip(make):
    model = make()
    text = model.to_json()
    assert isinstance(json.loads(text), dict)
    assert model.to_json(indent=2).count("\n") > 10
    again = model_from_json(text)
    assert type(again) is type(model)
    assert again.to_json() == text
    assert [w.shape for w in again.get_weights()] == [w.shape for w in model.get_weights()]
    again.set_weights(model.get_weights())
    x = (np.array([[1, 2, 3, 0], [4, 5, 0, 0]]) if make is functional
         else np.random.default_rng(0).normal(size=(2, 5, 3)).astype("float32"))
    np.testing.assert_allclose(again.predict(x), model.predict(x), rtol=1e-6)
    assert crnn.saving.model_from_json(text.encode()).count_params() == model.count_params()


def test_model_from_json_is_safe_and_checked():
    with pytest.raises(ValueError, match="not valid JSON"):
        model_from_json("{not json")
    with pytest.raises(ValueError, match="a str"):
        model_from_json(3)
    text = functional().to_json()
    evil = text.replace('"LSTM"', '"os.system"')
    with pytest.raises(ValueError, match="unknown layer class 'os.system'"):
        model_from_json(evil)
    with pytest.raises(ValueError, match="model"):
        model_from_json("[1, 2]")

    class Sub(crnn.Model):
        def call(self, x):
            return x
    with pytest.raises(ValueError, match="subclassed"):
        Sub().to_json()


def test_custom_objects():
    class Scale(crnn.layers.Layer):
        def __init__(self, k=2.0, dtype="float32", name=None):
            super().__init__(name=name, dtype=dtype)
            self.k = k
            self.built = True

        def call(self, x):
            return x * self.k

        def compute_output_spec(self, x):
            return crnn.engine.SymbolicTensor(x.shape, self.dtype)
    inp = crnn.Input((3,))
    model = crnn.Model(inp, Scale(3.0)(crnn.Dense(2, seed=0)(inp)))
    text = model.to_json()
    with pytest.raises(ValueError, match="Scale"):
        model_from_json(text)
    again = model_from_json(text, custom_objects={"Scale": Scale})
    assert again.layers[1].k == 3.0
