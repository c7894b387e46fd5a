"""Subclassed models saved by a registered class, and loading hardened against hostile
files (issue 15, part B, items 7 and 8). Every hostile file is built here: an
architecture that disagrees with its weights, members the header does not list, headers
that lie about their size, a complex input, a save killed before its rename."""
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
import zipfile

import numpy as np
import pytest

import crnn
from crnn import registry
from crnn.saving import files

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


# -- subclassed models ----------------------------------------------------------------------
@crnn.saving.register_serializable(package="tests")
class Tagger(crnn.Model):
    def __init__(self, units=4, vocab=9, name=None):
        super().__init__(name=name)
        self.units, self.vocab = units, vocab
        self.embed = crnn.Embedding(vocab, 3, mask_zero=True)
        self.rnn = crnn.LSTM(units, return_sequences=True, kernel_regularizer="l2",
                             recurrent_constraint=crnn.constraints.MaxNorm(3))
        self.out = crnn.Dense(2, activation="softmax")

    def call(self, ids, training=False):
        mask = self.embed.compute_mask(ids)
        return self.out(self.rnn(self.embed(ids), mask=mask, training=training))


@crnn.saving.register_serializable(package="tests", name="Looped")
class LoopedCell(crnn.Model):
    """A model whose call runs only on arrays (NumPy inside): its weights are built by
    a real call at load time."""

    def __init__(self, units=3, name=None):
        super().__init__(name=name)
        self.units = units
        self.cell = crnn.GRUCell(units)

    def call(self, x, training=False):
        x = np.asarray(crnn.engine.value_of(x))
        states = None
        for t in range(x.shape[1]):
            h, states = self.cell(x[:, t], states)
        return h


class Unregistered(crnn.Model):
    def __init__(self, name=None):
        super().__init__(name=name)
        self.dense = crnn.Dense(2)

    def call(self, x):
        return self.dense(x)


def _ids(rng, n=6):
    ids = rng.integers(1, 9, size=(n, 5))
    ids[:, 4:] = 0
    return ids


def test_registered_subclassed_model_round_trip(tmp_path, rng):
    model = Tagger(units=5)
    model.compile("adam", "sparse_categorical_crossentropy")
    ids, tags = _ids(rng), rng.integers(0, 2, size=(6, 5))
    model.fit(ids, tags, epochs=2, batch_size=3, verbose=0)
    path = tmp_path / "tagger.crnn"
    model.save(path)
    back = crnn.load_model(path)
    assert type(back) is Tagger and back.units == 5 and back.name == model.name
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), back.get_weights()))
    np.testing.assert_array_equal(back.predict(ids), model.predict(ids))
    assert back.optimizer.iterations == model.optimizer.iterations
    # training continues identically
    model.fit(ids, tags, epochs=1, batch_size=3, shuffle=False, verbose=0)
    back.fit(ids, tags, epochs=1, batch_size=3, shuffle=False, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), back.get_weights()))
    assert len(back.losses) == 1                          # the regularizer came back too


def test_the_file_holds_no_pickle(tmp_path, rng):
    model = Tagger()
    model(_ids(rng))
    model.save(tmp_path / "t.crnn")
    with np.load(tmp_path / "t.crnn", allow_pickle=False) as npz:
        assert all(npz[n].dtype.kind in "biufU" for n in npz.files)
    meta = files._read(tmp_path / "t.crnn")[0]
    assert meta["model"]["registered_name"] == "tests>Tagger"


def test_subclassed_model_whose_call_needs_arrays(tmp_path, rng):
    model = LoopedCell()
    x = rng.standard_normal((2, 4, 3)).astype(np.float32)
    y = model(x)
    model.save(tmp_path / "l.crnn")
    back = crnn.load_model(tmp_path / "l.crnn")
    np.testing.assert_array_equal(back(x), y)


def test_unregistered_subclassed_model_is_refused_at_save_time(tmp_path, rng):
    model = Unregistered()
    model(rng.standard_normal((2, 3)))
    with pytest.raises(ValueError, match="register_serializable"):
        model.save(tmp_path / "u.crnn")
    assert not os.listdir(tmp_path)                          # nothing written


def test_subclassed_model_never_called(tmp_path, rng):
    # without weights yet it saves and loads unbuilt (as Keras); with some weights but
    # no call, the shapes that build the others are unknown
    Tagger().save(tmp_path / "n.crnn")
    back = crnn.load_model(tmp_path / "n.crnn")
    assert back.get_weights() == [] and back.predict(_ids(rng)).shape == (6, 5, 2)
    model = Tagger()
    model.embed.build()
    with pytest.raises(ValueError, match="never been called"):
        model.save(tmp_path / "b.crnn")


def test_custom_objects_load_what_is_not_registered(tmp_path, rng, monkeypatch):
    model = Tagger()
    ids = _ids(rng)
    model(ids)
    model.save(tmp_path / "t.crnn")
    monkeypatch.delitem(registry._user, "tests>Tagger")      # as in a process without it
    with pytest.raises(ValueError, match="custom_objects"):
        crnn.load_model(tmp_path / "t.crnn")
    back = crnn.load_model(tmp_path / "t.crnn", custom_objects={"Tagger": Tagger})
    np.testing.assert_array_equal(back.predict(ids), model.predict(ids))


def test_register_serializable_checks_its_arguments():
    with pytest.raises(ValueError, match="package"):
        crnn.saving.register_serializable(package="a>b")
    with pytest.raises(ValueError, match="get_config"):
        crnn.saving.register_serializable()(type("NoConfig", (), {}))


def test_registered_user_regularizer_saves_with_the_model(tmp_path, rng):
    @crnn.saving.register_serializable(package="tests")
    class Quartic(crnn.regularizers.Regularizer):
        def __init__(self, k=0.1):
            self.k = k

        def __call__(self, w):
            return crnn.ops.sum(w * w * w * w) * self.k

        def get_config(self):
            return {"k": self.k}

    model = crnn.Sequential([crnn.Input((3,)), crnn.Dense(2, kernel_regularizer=Quartic(0.5))])
    model.save(tmp_path / "q.crnn")
    back = crnn.load_model(tmp_path / "q.crnn")
    reg = back.layers[0].kernel_regularizer
    assert type(reg) is Quartic and reg.k == 0.5
    assert float(back.losses[0]) == pytest.approx(float(model.losses[0]))


# -- hostile files ----------------------------------------------------------------------------
def _members(path):
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def _npy(a):
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def _write_zip(path, members, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression=compression) as z:
        for n, b in members.items():
            z.writestr(n, b)


def _meta(members):
    raw = np.load(io.BytesIO(members["config.json.npy"]))
    return json.loads(raw.tobytes())


def _set_meta(members, meta):
    members["config.json.npy"] = _npy(np.frombuffer(json.dumps(meta).encode(), np.uint8))


@pytest.fixture
def small_model_file(tmp_path):
    model = crnn.Sequential([crnn.Input((5, 3)), crnn.LSTM(4), crnn.Dense(2)])
    model.compile("adam", "mse")
    model.fit(np.zeros((4, 5, 3)), np.zeros((4, 2)), verbose=0)
    path = tmp_path / "small.crnn"
    model.save(path)
    return path


class _Spy:
    """Counts the bytes each archive member gives out (headers included)."""

    def __init__(self, monkeypatch):
        self.read = {}
        spy = self
        real_open = zipfile.ZipFile.open

        def open_(zf, name, *args, **kwargs):
            f = real_open(zf, name, *args, **kwargs)
            key = name.filename if isinstance(name, zipfile.ZipInfo) else name
            real_read = f.read

            def read(n=-1):
                data = real_read(n)
                spy.read[key] = spy.read.get(key, 0) + len(data)
                return data
            f.read = read
            return f
        monkeypatch.setattr(zipfile.ZipFile, "open", open_)


def test_architecture_disagreeing_with_its_weights_is_refused_before_building(
        small_model_file, tmp_path, monkeypatch):
    members = _members(small_model_file)
    meta = _meta(members)
    meta["model"]["config"]["layers"][0]["config"]["units"] = 4000   # 2.5 GB of weights
    _set_meta(members, meta)
    hostile = tmp_path / "units.crnn"
    _write_zip(hostile, members)
    assert os.path.getsize(hostile) < 16_000
    built = []
    real = crnn.layers.Layer.add_weight

    def add_weight(self, *args, **kwargs):
        w = real(self, *args, **kwargs)
        built.append(w)
        return w
    monkeypatch.setattr(crnn.layers.Layer, "add_weight", add_weight)
    with pytest.raises(ValueError, match=r"\(3, 16000\) vs \(3, 16\)"):
        crnn.load_model(hostile)
    # the only weights made were views of one zero (crnn.layers.base.shapes_only)
    assert built and all(w.base is not None and w.strides == (0,) * w.ndim for w in built)


def test_only_listed_members_are_read(small_model_file, tmp_path, monkeypatch):
    members = _members(small_model_file)
    # an unlisted member of 64 MiB of zeros (a few hundred kB deflated: a bomb)
    members["bomb.npy"] = _npy(np.zeros(1 << 24, dtype=np.float32))
    hostile = tmp_path / "bomb.crnn"
    _write_zip(hostile, members, zipfile.ZIP_DEFLATED)
    assert os.path.getsize(hostile) < (1 << 20)
    spy = _Spy(monkeypatch)
    model = crnn.load_model(hostile)
    assert model.layers[0].units == 4
    assert "bomb.npy" not in spy.read
    assert sum(spy.read.values()) < 64 << 10


def test_a_member_larger_than_its_header_declares_is_refused_unread(
        small_model_file, tmp_path, monkeypatch):
    members = _members(small_model_file)
    name = "layers/0/kernel.npy"
    # the .npy header says (3, 16) float32; 64 MiB of zeros follow it
    members[name] = members[name] + bytes(64 << 20)
    hostile = tmp_path / "long.crnn"
    _write_zip(hostile, members, zipfile.ZIP_DEFLATED)
    spy = _Spy(monkeypatch)
    with pytest.raises(ValueError, match="archive entry holds"):
        crnn.load_model(hostile)
    assert spy.read.get(name, 0) < 1024                     # its header only


def test_a_listed_weight_declaring_a_huge_shape_is_refused_unread(
        small_model_file, tmp_path, monkeypatch):
    members = _members(small_model_file)
    name = "layers/0/kernel.npy"
    members[name] = _npy(np.zeros((3, 1 << 22), dtype=np.float32))   # 48 MiB declared
    hostile = tmp_path / "huge.crnn"
    _write_zip(hostile, members, zipfile.ZIP_DEFLATED)
    spy = _Spy(monkeypatch)
    with pytest.raises(ValueError, match="different shapes"):
        crnn.load_model(hostile)
    assert spy.read.get(name, 0) < 1024
    model = crnn.Sequential([crnn.Input((5, 3)), crnn.LSTM(4), crnn.Dense(2)])
    with pytest.raises(ValueError, match="different shapes"):
        model.load_weights(hostile)


def test_an_oversized_optimizer_state_is_refused(small_model_file, tmp_path):
    members = _members(small_model_file)
    state = [n for n in members if n.startswith("optimizer/") and "/m/" in n][0]
    members[state] = _npy(np.zeros(1 << 20, dtype=np.float32))
    hostile = tmp_path / "opt.crnn"
    _write_zip(hostile, members)
    with pytest.raises(ValueError, match="more than"):
        crnn.load_model(hostile)
    assert crnn.load_model(hostile, compile=False).layers[0].units == 4


def test_damaged_member_data_is_refused(small_model_file, tmp_path):
    members = _members(small_model_file)
    name = "layers/1/kernel.npy"
    data = bytearray(members[name])
    data[-1] ^= 0xFF
    hostile = tmp_path / "crc.crnn"
    with zipfile.ZipFile(small_model_file) as z:
        crc = z.getinfo(name).CRC
    _write_zip(hostile, dict(members, **{name: bytes(data)}))
    # rewrite the stored CRC to the original one: the data no longer matches it
    raw = bytearray(open(hostile, "rb").read())
    with zipfile.ZipFile(hostile) as z:
        new_crc = z.getinfo(name).CRC
    raw = raw.replace(new_crc.to_bytes(4, "little"), crc.to_bytes(4, "little"))
    open(hostile, "wb").write(bytes(raw))
    with pytest.raises(ValueError, match="damaged"):
        crnn.load_model(hostile)


def test_object_arrays_and_weights_listed_twice_are_refused(small_model_file, tmp_path):
    members = _members(small_model_file)
    meta = _meta(members)
    meta["weights"].append(meta["weights"][0])
    twice = dict(members)
    _set_meta(twice, meta)
    _write_zip(tmp_path / "twice.crnn", twice)
    with pytest.raises(ValueError, match="twice"):
        crnn.load_model(tmp_path / "twice.crnn")
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}] * 3, dtype=object), allow_pickle=True)
    members["layers/1/bias.npy"] = buf.getvalue()
    _write_zip(tmp_path / "obj.crnn", members)
    with pytest.raises(ValueError, match="unpickling"):
        crnn.load_model(tmp_path / "obj.crnn")


def test_a_huge_stand_in_input_is_refused(tmp_path, rng):
    model = Tagger()
    model(_ids(rng))
    model.save(tmp_path / "t.crnn")
    members = _members(tmp_path / "t.crnn")
    meta = _meta(members)
    meta["model"]["build_input"] = [{"shape": [1 << 30], "dtype": "int64"}]
    _set_meta(members, meta)
    _write_zip(tmp_path / "big.crnn", members)
    with pytest.raises(ValueError, match="elements"):
        crnn.load_model(tmp_path / "big.crnn")


# -- complex inputs ---------------------------------------------------------------------------
@pytest.mark.parametrize("call", [
    lambda m, x, y: m.fit(x * 1j, y, verbose=0),
    lambda m, x, y: m.fit(x, y * (1 + 1j), verbose=0),
    lambda m, x, y: m.predict(x + 1j),
    lambda m, x, y: m.evaluate(x, y, sample_weight=np.ones(len(x)) * 1j, verbose=0),
    lambda m, x, y: m(x * 1j),
    lambda m, x, y: m.layers[0](x * 1j),
    lambda m, x, y: m.layers[1](np.ones((2, 4)) * 1j),
    lambda m, x, y: m.step(x[:, 0] * 1j),
    lambda m, x, y: m.set_weights([w * 1j for w in m.get_weights()]),
    lambda m, x, y: crnn.Dense(2)(np.ones((2, 3), dtype=np.complex64)),
    lambda m, x, y: crnn.Masking()(np.ones((2, 3, 2)) * 1j),
])
def test_complex_inputs_raise(call, rng):
    model = crnn.Sequential([crnn.Input((5, 3)), crnn.GRU(4, return_sequences=True),
                             crnn.Dense(2)])
    model.compile("sgd", "mse")
    x, y = rng.standard_normal((4, 5, 3)), rng.standard_normal((4, 5, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # a ComplexWarning: the imaginary part dropped
        with pytest.raises(ValueError, match="complex|real numbers|hold numbers"):
            call(model, x, y)


# -- killed saves -----------------------------------------------------------------------------
def _temps(folder, base):
    pattern = files._temp_pattern(base)
    return [n for n in os.listdir(folder) if pattern.match(n)]


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL and process ids as on POSIX")
def test_a_killed_save_leaves_a_temp_the_next_save_removes(tmp_path):
    target = tmp_path / "model.crnn"
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {ROOT!r})
        import numpy as np, crnn
        from crnn.saving import files
        real = np.savez
        def slow(f, **arrays):
            f.write(b"PK partial")
            f.flush()
            print("writing", flush=True)
            time.sleep(60)
        files.np.savez = slow
        model = crnn.Sequential([crnn.Input((3,)), crnn.Dense(2)])
        model.save({str(target)!r})
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
        proc.stdout.close()
    left = _temps(tmp_path, "model.crnn")
    assert len(left) == 1 and f".{proc.pid}-" in left[0]         # killed mid-write
    assert not target.exists()
    # a temp of a live writer (this process's parent, say) must stay
    live = tmp_path / f".model.crnn.{os.getppid()}-{'a' * 12}.tmp"
    live.write_bytes(b"in progress")
    model = crnn.Sequential([crnn.Input((3,)), crnn.Dense(2)])
    model.save(target)
    assert _temps(tmp_path, "model.crnn") == [live.name]
    assert crnn.load_model(target).layers[0].units == 2


def test_an_old_style_temp_is_removed_once_stale(tmp_path):
    old = tmp_path / f".m.crnn.{'b' * 12}.tmp"
    old.write_bytes(b"x")
    model = crnn.Sequential([crnn.Input((3,)), crnn.Dense(2)])
    model.save(tmp_path / "m.crnn")
    assert old.exists()                                    # fresh: its writer may run
    past = time.time() - files.STALE_AFTER_S - 60
    os.utime(old, (past, past))
    model.save(tmp_path / "m.crnn")
    assert not old.exists()
