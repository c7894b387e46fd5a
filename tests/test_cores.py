"""crnn owns the cores: set_num_threads / get_num_threads / threads, and what crnn's
computations do to the BLAS libraries (one thread inside, restored outside) and to its
products (split over crnn's pool, the same results as one BLAS call)."""
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from threadpoolctl import threadpool_info

import crnn
from crnn import _blas, _lstm, cores


def blas_threads():
    return sorted({lib["num_threads"] for lib in threadpool_info()
                   if lib["user_api"] == "blas"})


@pytest.fixture(autouse=True)
def restore_threads():
    before = crnn.get_num_threads()
    yield
    crnn.set_num_threads(before)


def test_set_and_get_reach_crnns_pool():
    crnn.set_num_threads(3)
    assert crnn.get_num_threads() == 3
    assert _lstm._packed_threads() == 3
    crnn.set_num_threads(1)
    assert crnn.get_num_threads() == 1


@pytest.mark.parametrize("bad", [0, -2, 1.5, "2", None, True, np.float64(2.0)])
def test_bad_counts_raise(bad):
    before = crnn.get_num_threads()
    with pytest.raises(ValueError, match="expected n to be an int >= 1"):
        crnn.set_num_threads(bad)
    with pytest.raises(ValueError, match="expected n to be an int >= 1"):
        with crnn.threads(bad):
            pass
    assert crnn.get_num_threads() == before


def test_numpy_integers_are_counts():
    crnn.set_num_threads(np.int64(2))
    assert crnn.get_num_threads() == 2


def test_threads_context_restores_also_on_error():
    crnn.set_num_threads(2)
    with crnn.threads(1) as n:
        assert n == 1 and crnn.get_num_threads() == 1
        with crnn.threads(4):
            assert crnn.get_num_threads() == 4
        assert crnn.get_num_threads() == 1
    assert crnn.get_num_threads() == 2
    with pytest.raises(RuntimeError):
        with crnn.threads(1):
            raise RuntimeError("inside")
    assert crnn.get_num_threads() == 2


def test_computing_puts_blas_on_one_thread_and_back():
    outside = blas_threads()
    with cores.computing():
        assert blas_threads() == [1]
        assert _blas._split_products()
        with cores.computing():           # re-entrant
            assert blas_threads() == [1]
        assert blas_threads() == [1] and _blas._split_products()
    assert blas_threads() == outside
    assert not _blas._split_products()
    with pytest.raises(KeyError):
        with cores.computing():
            raise KeyError("inside")
    assert blas_threads() == outside and not _blas._split_products()


def test_fit_runs_with_blas_on_one_thread():
    seen = []

    class Look(crnn.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(blas_threads())

    outside = blas_threads()
    model = crnn.Sequential([crnn.Input((5, 3)), crnn.LSTM(4), crnn.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.random.default_rng(0).standard_normal((8, 5, 3)).astype(np.float32)
    model.fit(x, x[:, -1, :1], batch_size=4, epochs=1, verbose=0, callbacks=[Look()])
    assert seen == [[1], [1]]
    assert blas_threads() == outside


@pytest.mark.parametrize("dtype, tol", [(np.float32, 1e-5), (np.float64, 1e-12)])
@pytest.mark.parametrize("ta", ["n", "t"])
@pytest.mark.parametrize("tb", ["n", "t"])
@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("m, n, k", [(200, 301, 100), (37, 1000, 64), (1000, 33, 50),
                                     (64, 4096, 1)])
def test_split_products_equal_one_blas_call(dtype, tol, ta, tb, threads, m, n, k):
    rng = np.random.default_rng(m + n + k)
    A = rng.standard_normal((k, m) if ta == "t" else (m, k)).astype(dtype)
    B = rng.standard_normal((n, k) if tb == "t" else (k, n)).astype(dtype)
    C0 = rng.standard_normal((m, n)).astype(dtype)
    results = []
    with crnn.threads(threads):
        for split in (False, True):
            C = C0.copy()
            with cores.computing():
                _blas._split_products(split)
                _blas.gemm_py(ta, tb, 0.5, A, B, 0.25, C)
            results.append(C)
    expected = 0.5 * (A.T if ta == "t" else A).astype(np.float64) @ \
        (B.T if tb == "t" else B).astype(np.float64) + 0.25 * C0
    np.testing.assert_allclose(results[0], expected, rtol=tol, atol=tol * 10)
    np.testing.assert_allclose(results[1], results[0], rtol=tol, atol=tol * 10)


def run_python(code, **env):
    full = {k: v for k, v in os.environ.items()
            if k not in ("CRNN_NUM_THREADS", "OMP_NUM_THREADS")}
    full.update(env)
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True,
                          text=True, timeout=120)


def test_default_from_the_environment():
    show = "import crnn; print(crnn.get_num_threads())"
    assert run_python(show, CRNN_NUM_THREADS="3").stdout.strip() == "3"
    assert run_python(show, OMP_NUM_THREADS="5,2").stdout.strip() == "5"
    assert run_python(show, CRNN_NUM_THREADS="2", OMP_NUM_THREADS="7").stdout.strip() == "2"
    assert run_python(show).stdout.strip() == str(len(os.sched_getaffinity(0)))


def test_bad_environment_says_which_variable():
    bad = run_python("import crnn", CRNN_NUM_THREADS="many")
    assert bad.returncode != 0
    assert "expected CRNN_NUM_THREADS to be an int >= 1, got 'many'" in bad.stderr
    warned = run_python("import warnings; warnings.simplefilter('error');"
                        "import crnn", OMP_NUM_THREADS="0")
    assert warned.returncode != 0 and "OMP_NUM_THREADS" in warned.stderr
    ok = run_python("import crnn, os; print(crnn.get_num_threads())", OMP_NUM_THREADS="x")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == str(len(os.sched_getaffinity(0)))


# -- independent computations at once ------------------------------------------------------
def _seen():
    return threading.get_ident(), crnn.get_num_threads(), _lstm._local_threads()


def _meeting(parties):
    """A task that returns _seen() once `parties` tasks are running at once."""
    barrier = threading.Barrier(parties, timeout=30)

    def task():
        barrier.wait()
        return _seen()
    return task


def test_concurrently_shares_the_threads_and_keeps_the_order():
    crnn.set_num_threads(2)
    meet = _meeting(2)
    (caller, n0, l0), (other, n1, l1) = cores.concurrently(meet, meet)
    assert caller == threading.get_ident() != other
    assert (n0, l0, n1, l1) == (1, 1, 1, 1)      # one thread each
    assert _lstm._local_threads() == 0 and crnn.get_num_threads() == 2  # unset after
    crnn.set_num_threads(5)
    meet = _meeting(3)
    seen = cores.concurrently(meet, meet, meet)
    assert [s[1] for s in seen] == [3, 1, 1]
    assert seen[0][0] == threading.get_ident() not in (seen[1][0], seen[2][0])
    assert cores.concurrently(lambda: 7) == [7] and cores.concurrently() == []


def test_concurrently_runs_here_what_no_helper_started():
    crnn.set_num_threads(2)
    cores.concurrently(_seen, _seen)          # the helper thread exists
    release = threading.Event()
    blocker = cores._helpers.submit(release.wait, 30)   # ... and is busy
    try:
        seen = cores.concurrently(_seen, _seen)
    finally:
        release.set()
    blocker.result()
    assert {s[0] for s in seen} == {threading.get_ident()}
    assert seen[1][1:] == (1, 1)              # on the one thread a helper would have had


def test_concurrently_on_one_thread_runs_in_turn_here():
    crnn.set_num_threads(1)
    seen = cores.concurrently(_seen, _seen)
    assert {s[0] for s in seen} == {threading.get_ident()}
    assert [s[2] for s in seen] == [0, 0]


def test_concurrently_raises_the_first_error_after_all_ended():
    crnn.set_num_threads(2)
    ended = []

    def slow_then_fail():
        time.sleep(0.05)
        ended.append("other")
        raise KeyError("other")

    def fail():
        raise ValueError("first")
    with pytest.raises(ValueError, match="first"):
        cores.concurrently(fail, slow_then_fail)
    assert ended == ["other"] and _lstm._local_threads() == 0
    with pytest.raises(KeyError):
        cores.concurrently(lambda: 1, slow_then_fail)


@pytest.mark.parametrize("cell", ["SimpleRNN", "LSTM", "GRU"])
@pytest.mark.parametrize("mask", [False, True])
def test_bidirectional_at_once_equals_in_turn(cell, mask):
    # With 2 threads the two directions run at once, one thread each; with 1, in turn on
    # one thread: the same kernels on one thread either way, so the same bits, forward
    # and backward (through the tape's group of the two calls).
    rng = np.random.default_rng(3)
    x = rng.standard_normal((16, 9, 5)).astype(np.float32)
    lengths = np.array([9, 4] * 8) if mask else None
    layer = crnn.Bidirectional(getattr(crnn, cell)(48, return_sequences=True, seed=1))
    dy = rng.standard_normal((16, 9, 96)).astype(np.float32)
    results = []
    for n in (1, 2):
        with crnn.threads(n):
            with crnn.GradientTape() as tape:
                xt = tape.watch(x)
                y = layer(xt, lengths=lengths, training=True)
            grads = tape.gradient(y, [xt] + layer.trainable_weights, output_gradient=dy)
        results.append([np.asarray(y)] + grads)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
    with crnn.threads(2), crnn.no_grad():   # no_grad reaches the other thread too
        np.testing.assert_array_equal(layer(x, lengths=lengths), results[0][0])
