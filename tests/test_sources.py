"""fit/evaluate/predict on sources of batches (crnn.training.sources): a PyDataset, a
generator, any iterable, with steps_per_epoch/steps/validation_steps as Keras 3 has them;
memory bounded by a batch; bad batches named by their step."""
import gc
import math
import tracemalloc
import warnings

import numpy as np
import pytest

import crnn
from crnn.utils import PyDataset


def make_model(D=3, seed=0, units=4):
    model = crnn.Sequential([crnn.Input((None, D)), crnn.LSTM(units, seed=seed),
                             crnn.Dense(1, seed=seed)])
    model.compile(optimizer=crnn.optimizers.SGD(0.05), loss="mse", metrics=["mae"])
    return model


def arrays(n=40, T=5, D=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, T, D)).astype("float32")
    y = x.sum(axis=(1, 2))[:, None] / 5
    return x, y


class Batches(PyDataset):
    def __init__(self, x, y, batch_size, w=None, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y, self.w, self.batch_size = x, y, w, batch_size
        self.asked, self.begun, self.ended = [], 0, 0

    def __len__(self):
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, i):
        self.asked.append(i)
        s = slice(i * self.batch_size, (i + 1) * self.batch_size)
        if self.w is not None:
            return self.x[s], self.y[s], self.w[s]
        return self.x[s], self.y[s]

    def on_epoch_begin(self):
        self.begun += 1

    def on_epoch_end(self):
        self.ended += 1


def batches(x, y, batch_size):
    for i in range(0, len(x), batch_size):
        yield x[i:i + batch_size], y[i:i + batch_size]


def test_pydataset_without_shuffle_equals_arrays():
    x, y = arrays()
    a, b = make_model(), make_model()
    ha = a.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
    ds = Batches(x, y, 8)
    hb = b.fit(ds, epochs=3, shuffle=False, verbose=0)
    np.testing.assert_allclose(ha.history["loss"], hb.history["loss"], rtol=1e-6)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-6)
    assert ds.asked == list(range(5)) * 3 and ds.begun == ds.ended == 3
    np.testing.assert_allclose(a.evaluate(x, y, batch_size=8, verbose=0),
                               b.evaluate(Batches(x, y, 8), verbose=0), rtol=1e-6)
    np.testing.assert_allclose(a.predict(x, batch_size=8), b.predict(Batches(x, y, 8)),
                               rtol=1e-6)


def test_pydataset_shuffle_visits_every_batch_in_keras_order():
    import random
    x, y = arrays()
    ds = Batches(x, y, 8)
    make_model().fit(ds, epochs=2, verbose=0)          # shuffle=True by default
    orders = [ds.asked[:5], ds.asked[5:]]
    for epoch, order in enumerate(orders):
        expected = list(range(5))
        random.Random(epoch).shuffle(expected)
        assert order == expected


def test_generator_and_iterables():
    x, y = arrays()
    a, b, c = make_model(), make_model(), make_model()
    ha = a.fit(x, y, batch_size=10, epochs=1, shuffle=False, verbose=0)
    hb = b.fit(batches(x, y, 10), verbose=0)
    hc = c.fit(list(batches(x, y, 10)).__iter__(), verbose=0)
    np.testing.assert_allclose(ha.history["loss"], hb.history["loss"], rtol=1e-6)
    np.testing.assert_allclose(ha.history["loss"], hc.history["loss"], rtol=1e-6)

    class Loader:                        # re-iterable with a length, as a DataLoader
        def __len__(self):
            return 4

        def __iter__(self):
            return batches(x, y, 10)
    d = make_model()
    hd = d.fit(Loader(), epochs=2, verbose=0)
    assert len(hd.history["loss"]) == 2
    # (x, y, sample_weight) batches: zero weights mean the batch does not train
    w = np.zeros(len(x), "float32")
    e = make_model()
    before = e.get_weights()
    e.fit(Batches(x, y, 8, w), epochs=1, verbose=0)
    for u, v in zip(before, e.get_weights()):
        np.testing.assert_array_equal(u, v)


def test_generator_with_steps_per_epoch_carries_on_across_epochs():
    x, y = arrays(n=60)
    seen = []

    def gen():
        for i in range(0, 60, 10):
            seen.append(i)
            yield x[i:i + 10], y[i:i + 10]
    model = make_model()
    h = model.fit(gen(), steps_per_epoch=2, epochs=3, verbose=0)
    assert seen == [0, 10, 20, 30, 40, 50] and len(h.history["loss"]) == 3
    # a generator that runs out: the epoch ends early with Keras's warning (epoch 2
    # gets 2 of its 4 batches), and the next epoch, which gets none, ends training
    with pytest.warns(UserWarning, match="ran out of data"):
        h = make_model().fit(gen(), steps_per_epoch=4, epochs=3, verbose=0)
    assert len(h.history["loss"]) == 2
    # no steps_per_epoch: a generator is one epoch; the next gets nothing and ends it
    with pytest.warns(UserWarning, match="ran out of data"):
        h = make_model().fit(gen(), epochs=3, verbose=0)
    assert len(h.history["loss"]) == 1


def test_pydataset_with_steps_per_epoch_keras_semantics():
    x, y = arrays(n=50)
    ds = Batches(x, y, 10)                                  # 5 batches
    with pytest.warns(UserWarning, match="ran out of data"):
        make_model().fit(ds, steps_per_epoch=2, epochs=4, shuffle=False, verbose=0)
    # epochs read 0 1 | 2 3 | 4 (ran out, start again) | 0 1
    assert ds.asked == [0, 1, 2, 3, 4, 0, 1]


def test_arrays_with_steps_per_epoch_and_steps():
    x, y = arrays(n=40)
    model = make_model()
    h = model.fit(x, y, batch_size=10, steps_per_epoch=2, epochs=2, verbose=0,
                  validation_data=(x[:10], y[:10]), validation_steps=1)
    assert len(h.history["loss"]) == 2 and "val_loss" in h.history
    full = model.evaluate(x[:20], y[:20], batch_size=10, verbose=0)
    two = model.evaluate(x, y, batch_size=10, steps=2, verbose=0)
    np.testing.assert_allclose(full, two, rtol=1e-6)
    assert model.predict(x, batch_size=10, steps=2).shape == (20, 1)


def test_validation_from_a_source_and_validation_steps():
    x, y = arrays(n=40)
    model = make_model()
    h = model.fit(Batches(x, y, 8), validation_data=Batches(x[:16], y[:16], 8),
                  epochs=2, verbose=0)
    assert len(h.history["val_loss"]) == 2
    ref = model.evaluate(x[:16], y[:16], batch_size=8, verbose=0, return_dict=True)
    np.testing.assert_allclose(h.history["val_loss"][-1], ref["loss"], rtol=1e-6)

    def endless():
        while True:
            yield x[:8], y[:8]
    h = make_model().fit(x, y, validation_data=endless(), validation_steps=2, epochs=2,
                         verbose=0)
    assert len(h.history["val_loss"]) == 2


def test_predict_from_a_generator_of_inputs_only():
    x, y = arrays()
    model = make_model()
    out = model.predict((x[i:i + 7] for i in range(0, 40, 7)))
    np.testing.assert_allclose(out, model.predict(x), rtol=1e-6)
    out = model.predict(((x[i:i + 7],) for i in range(0, 40, 7)), steps=2)
    assert out.shape == (14, 1)


def test_multi_input_batches():
    a = crnn.Input((None, 3))
    b = crnn.Input((2,))
    h = crnn.LSTM(4, seed=0)(a)
    out = crnn.Dense(1, seed=0)(crnn.ops.concatenate([h, b], axis=-1))
    model = crnn.Model([a, b], out)
    model.compile("sgd", "mse")
    x, y = arrays()
    x2 = np.ones((40, 2), "float32")
    gen = (([x[i:i + 8], x2[i:i + 8]], y[i:i + 8]) for i in range(0, 40, 8))
    h = model.fit(gen, verbose=0)
    assert np.isfinite(h.history["loss"][0])


@pytest.mark.parametrize("batch, match", [
    (5, "batch 0 of x: expected x to have a batch axis|batch 0 of x"),
    ("text", r"batch 0 of x"),
    ((1, 2, 3, 4), r"batch 0 of x to be a tuple .* got a tuple of 4"),
    ({"x": 1}, r"batch 0 of x to be a tuple"),
])
def test_bad_batch_types_name_the_step(batch, match):
    with pytest.raises(ValueError, match=match):
        make_model().fit(iter([batch]), verbose=0)


def test_bad_batch_shapes_name_the_step():
    x, y = arrays()

    def gen():
        yield x[:8], y[:8]
        yield x[8:16], y[8:16]
        yield x[16:24, :, :2], y[16:24]          # a feature missing
    with pytest.raises(ValueError, match=r"batch 2 of x \(epoch 1\)"):
        make_model().fit(gen(), verbose=0)

    def mismatched():
        yield x[:8], y[:7]
    with pytest.raises(ValueError, match=r"batch 0 of x.*same number of samples"):
        make_model().fit(mismatched(), verbose=0)

    def strings():
        yield np.array([["a"]] * 8), y[:8]
    with pytest.raises(ValueError, match=r"batch 0 of x.*dtype"):
        make_model().fit(strings(), verbose=0)

    def no_targets():
        yield (x[:8],)
    with pytest.raises(ValueError, match=r"batch 0 of x .*targets"):
        make_model().fit(no_targets(), verbose=0)
    with pytest.raises(ValueError, match=r"batch 1 of x"):
        make_model().predict(iter([x[:4], x[:4, :, :1]]))
    with pytest.raises(ValueError, match=r"batch 0 of validation_data"):
        make_model().fit(x, y, validation_data=iter([(x[:4, :, :1], y[:4])]), verbose=0)


def test_bad_arguments():
    x, y = arrays()
    model = make_model()
    with pytest.raises(ValueError, match="y=None"):
        model.fit(Batches(x, y, 8), y, verbose=0)
    with pytest.raises(ValueError, match="validation_split"):
        model.fit(Batches(x, y, 8), validation_split=0.2, verbose=0)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        model.fit(Batches(x, y, 8), steps_per_epoch=0, verbose=0)
    with pytest.raises(ValueError, match="steps"):
        model.evaluate(Batches(x, y, 8), steps=-1, verbose=0)

    class Endless(PyDataset):
        num_batches = None

        def __getitem__(self, i):
            return x[:8], y[:8]
    with pytest.raises(ValueError, match="endless"):
        model.fit(Endless(), verbose=0)
    h = model.fit(Endless(), steps_per_epoch=3, epochs=2, verbose=0)
    assert len(h.history["loss"]) == 2


def test_workers_read_ahead_in_order():
    x, y = arrays()
    a, b = make_model(), make_model()
    ha = a.fit(Batches(x, y, 8), epochs=2, shuffle=False, verbose=0)
    ds = Batches(x, y, 8, workers=3, max_queue_size=2)
    hb = b.fit(ds, epochs=2, shuffle=False, verbose=0)
    np.testing.assert_allclose(ha.history["loss"], hb.history["loss"], rtol=1e-6)
    assert sorted(ds.asked) == sorted(list(range(5)) * 2)


def test_progress_with_unknown_steps(capsys):
    x, y = arrays(n=30)

    def gen():
        for i in range(0, 30, 10):
            yield x[i:i + 10], y[i:i + 10]
    logs = []
    cb = crnn.callbacks.LambdaCallback(
        on_train_begin=lambda logs_: logs.append(dict(cb.params)),
        on_train_batch_end=lambda batch, l: logs.append((batch, sorted(l))))
    make_model().fit(gen(), verbose=2, callbacks=[cb])
    assert logs[0]["steps"] is None and logs[0]["samples"] is None
    assert [b for b, _ in logs[1:]] == [0, 1, 2] and logs[1][1] == ["loss", "mae"]
    out = capsys.readouterr().out
    assert "3/Unknown" in out and "step" in out
    ds = Batches(x, y, 10)
    make_model().fit(ds, verbose=2, epochs=1)
    assert "3/3" in capsys.readouterr().out
    # a bar that learns the count in the first epoch
    bar = crnn.callbacks.ProgbarLogger()
    model = make_model()
    model.fit(iter(list(gen()) * 2), steps_per_epoch=None, verbose=0, callbacks=[bar])
    assert bar._counted_steps == 6


def _peak_bytes(fit_batches, batch):
    gc.collect()
    tracemalloc.start()
    try:
        fit_batches()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_is_bounded_by_a_batch():
    """1000 batches generated lazily (a dataset 1000x a batch, 40 MB) train with the
    peak traced memory of a few batches, as a run of 3 batches does."""
    B, T, D = 32, 10, 320
    batch_bytes = B * T * D * 4
    model = make_model(D=D)
    rng = np.random.default_rng(0)

    def gen(n):
        for _ in range(n):
            x = rng.standard_normal(size=(B, T, D), dtype=np.float32)
            yield x, x[:, -1, :1]
    model.fit(gen(2), verbose=0)                           # builds and warms up
    small = _peak_bytes(lambda: model.fit(gen(3), verbose=0), batch_bytes)
    large = _peak_bytes(lambda: model.fit(gen(1000), verbose=0), batch_bytes)
    print(f"peak traced memory: 3 batches {small / 1e6:.2f} MB, 1000 batches "
          f"{large / 1e6:.2f} MB; one batch {batch_bytes / 1e6:.2f} MB, the data "
          f"{1000 * batch_bytes / 1e6:.1f} MB")
    assert large < 6 * batch_bytes
    assert large < 1.5 * small + batch_bytes
