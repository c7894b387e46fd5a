"""fit(class_weight=...) (issue 17, item 3): each target weighed by its class, as the
equivalent sample_weight would weigh it, for binary, categorical, sparse and per-step
targets."""
import numpy as np
import pytest

import crnn
from conftest import require_keras
from crnn.training.data import class_sample_weights


def _fit(build, loss, x, y, **kwargs):
    model = build()
    model.compile(crnn.optimizers.SGD(0.1), loss)
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, **kwargs)
    return model.get_weights()


def _same(a, b):
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("case", ["binary", "categorical", "sparse", "sparse-steps"])
def test_class_weight_is_the_sample_weight_of_each_targets_class(rng, case):
    x = rng.standard_normal((24, 5, 3)).astype("float32")
    cw = {0: 0.5, 1: 3.0, 2: 1.5}
    if case == "binary":
        y = (rng.random((24, 1)) > 0.5).astype("float32")
        loss, out = "binary_crossentropy", lambda: crnn.Dense(1, activation="sigmoid", seed=2)
        sw = np.where(y[:, 0] == 1, 3.0, 0.5)
    elif case == "categorical":
        k = rng.integers(0, 4, 24)
        y = np.eye(4, dtype="float32")[k]
        loss, out = "categorical_crossentropy", lambda: crnn.Dense(4, "softmax", seed=2)
        sw = np.array([cw.get(c, 1.0) for c in k])
    elif case == "sparse":
        y = rng.integers(0, 4, 24)
        loss, out = "sparse_categorical_crossentropy", lambda: crnn.Dense(4, "softmax",
                                                                          seed=2)
        sw = np.array([cw.get(c, 1.0) for c in y])
    else:   # one class a step: one weight a step
        y = rng.integers(0, 4, (24, 5))
        loss = "sparse_categorical_crossentropy"
        out = lambda: crnn.TimeDistributed(crnn.Dense(4, "softmax", seed=2))   # noqa: E731
        sw = np.vectorize(lambda c: cw.get(int(c), 1.0))(y)
    seq = case == "sparse-steps"

    def build():
        return crnn.Sequential([crnn.Input((5, 3)),
                                crnn.GRU(6, return_sequences=seq, seed=1), out()])
    np.testing.assert_array_equal(class_sample_weights(y, cw, {"binary": "binary"}.get(
        case, "sparse" if case.startswith("sparse") else "other")), sw)
    weighted = _fit(build, loss, x, y, class_weight=cw)
    _same(weighted, _fit(build, loss, x, y, sample_weight=sw))
    with pytest.raises(AssertionError):   # the weights matter
        _same(weighted, _fit(build, loss, x, y))


def test_keras_maps_classes_to_weights_the_same_way():
    keras = require_keras()
    from keras.src.trainers.data_adapters.data_adapter_utils import (
        class_weight_to_sample_weights)
    cw = {0: 1.0, 1: 2.0, 2: 3.0}
    for y, kind in [(np.array([0, 1, 0, 2]), "sparse"),
                    (np.eye(3)[[2, 0, 1, 1]], "other"),
                    (np.array([[0.], [1.], [1.]]), "binary")]:
        np.testing.assert_allclose(class_sample_weights(y, cw, kind),
                                   class_weight_to_sample_weights(y, cw))
    assert keras.__version__


def test_bad_class_weights_raise(rng):
    model = crnn.Sequential([crnn.Input((4, 2)), crnn.SimpleRNN(3), crnn.Dense(1)])
    model.compile("sgd", "mse")
    x, y = np.zeros((6, 4, 2), "float32"), np.zeros((6, 1), "float32")
    for bad, words in [({}, "non-empty dict"), ([1, 2], "non-empty dict"),
                       ({"a": 1.0}, "class indices"), ({-1: 1.0}, "class indices"),
                       ({0: -2.0}, "finite numbers >= 0"), ({0: np.nan}, "finite")]:
        with pytest.raises(ValueError, match=words):
            model.fit(x, y, class_weight=bad, verbose=0)
    with pytest.raises(ValueError, match="at the same time"):
        model.fit(x, y, class_weight={0: 1.0}, sample_weight=np.ones(6), verbose=0)
    with pytest.raises(ValueError, match="batch source"):
        model.fit(((x, y) for _ in range(2)), class_weight={0: 1.0}, verbose=0)
