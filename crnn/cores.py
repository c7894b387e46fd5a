"""How many threads crnn computes on: one setting for every thread pool crnn drives.

A process that runs crnn holds up to three native thread pools: crnn's own (the packed
GEMM's work-claiming pool, ``src/crnn/_pgemm.h``), the OpenBLAS that SciPy loads (which
the kernels call through ``scipy.linalg.cython_blas``) and the OpenBLAS that NumPy loads
(every NumPy product). Each one alone would size itself to the machine; OpenBLAS's idle
workers then spin for ~0.1 s after every call and take the cores that the next pool's
threads need, which stalls it (measured for issue 13 on 2 cores: LSTM(64) forward and
backward at (64, 40, 32), 4.4 ms alone, 7.4 ms with a 256 x 256 NumPy product between
calls; a Bidirectional LSTM tagger's epoch 0.82 s, 0.51 s with OpenBLAS on one thread).

So crnn owns the cores. ``set_num_threads(n)`` sets crnn's pool to ``n`` threads, and
while crnn computes (``fit``, ``evaluate``, ``predict``, a layer's forward or backward:
:func:`computing`), both BLAS libraries run on the calling thread alone, so that no
other pool spins beside crnn's; the products crnn's kernels hand to BLAS are split into
blocks that crnn's pool runs (one single-threaded BLAS call a block). Outside crnn's
computations the BLAS libraries keep their own settings: crnn changes nothing of a
user's NumPy code.

The default, read at import: ``CRNN_NUM_THREADS``, else ``OMP_NUM_THREADS`` (its first
entry), else the CPUs this process may run on (its affinity mask). At most 64 threads;
a build without OpenMP (setup.py) computes on one thread whatever the setting.
"""
import contextlib
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from crnn import _blas, _lstm

try:  # threadpoolctl reaches the BLAS libraries of NumPy and SciPy; without it they
    from threadpoolctl import ThreadpoolController   # keep their own thread counts
except ImportError:  # pragma: no cover - threadpoolctl is a dependency
    ThreadpoolController = None

__all__ = ["computing", "concurrently", "get_num_threads", "set_num_threads", "threads"]


def _check(n):
    """``n`` as an int >= 1 (Python's or NumPy's integers), or ValueError."""
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"expected n to be an int >= 1, got {type(n).__name__} {n!r}")
    return int(n)


def _from_environment():
    """``CRNN_NUM_THREADS``, else ``OMP_NUM_THREADS``'s first entry, else the CPUs this
    process may run on. A malformed ``CRNN_NUM_THREADS`` raises ValueError; a malformed
    ``OMP_NUM_THREADS`` (other programs read it too) is skipped with a warning."""
    for var in ("CRNN_NUM_THREADS", "OMP_NUM_THREADS"):
        text = os.environ.get(var, "").strip()
        if not text:
            continue
        try:
            n = int(text.split(",")[0])
        except ValueError:
            n = 0
        if n >= 1:
            return n
        message = f"expected {var} to be an int >= 1, got {text!r}"
        if var == "CRNN_NUM_THREADS":
            raise ValueError(message)
        warnings.warn(f"{message}; crnn ignores it", RuntimeWarning, stacklevel=2)
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def get_num_threads():
    """The number of threads crnn computes on (its pool; see the module docstring)."""
    return _lstm._packed_threads()


def set_num_threads(n):
    """Compute on ``n`` threads from now on (crnn's pool; BLAS on one thread inside
    crnn's computations, its pool splitting the products).

    Raises
    ------
    ValueError
        If ``n`` is not an int >= 1.
    """
    _lstm._packed_threads(_check(n))


@contextlib.contextmanager
def threads(n):
    """``with crnn.threads(n):`` computes on ``n`` threads inside the block and restores
    the previous count on exit (also when the block raises)."""
    n = _check(n)
    before = get_num_threads()
    set_num_threads(n)
    try:
        yield n
    finally:
        set_num_threads(before)


# -- independent computations at once ---------------------------------------------------
_helpers = None    # the threads that run concurrently()'s other tasks, made on first use


def _forget_helpers():
    global _helpers
    _helpers = None   # a forked child has none of the parent's threads


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_helpers)


def _with_threads(task, n):
    def run():
        before = _lstm._local_threads()
        _lstm._local_threads(n)
        try:
            return task()
        finally:
            _lstm._local_threads(before)
    return run


def concurrently(*tasks):
    """Run independent tasks (callables without arguments) at once and return their
    results in order: the first on the calling thread, each other one on a thread of
    its own, crnn's threads shared among them (with 2 threads and 2 tasks, one each).

    Why: a small recurrent kernel gains little from a second thread (a barrier a time
    step), while two kernels that do not depend on each other, such as the two
    directions of a Bidirectional layer, each keep one thread busy without any. With
    one thread, or one task, they run one after the other on the calling thread; and a
    task that no helper thread has started by the time the calling thread is done with
    its own runs there too (on a busy machine a helper may wait for a CPU), on the
    threads a helper would have had: the results do not depend on which thread ran
    what. The first exception raised (in task order) is raised here, after every task
    ended.
    """
    global _helpers
    n = get_num_threads()
    if len(tasks) < 2 or n < 2:
        return [task() for task in tasks]
    k = min(len(tasks), n)   # tasks beyond n threads queue behind the others
    share = n // k
    if _helpers is None or _helpers._max_workers < k - 1:
        if _helpers is not None:
            _helpers.shutdown(wait=False)
        _helpers = ThreadPoolExecutor(max_workers=k - 1, thread_name_prefix="crnn")
    claims = [threading.Lock() for _ in tasks[1:]]   # held by whoever runs the task

    def offer(claim, task):
        def run():
            if claim.acquire(blocking=False):
                return _with_threads(task, share)()
            return None                              # the calling thread took it
        return run
    futures = [_helpers.submit(offer(c, t)) for c, t in zip(claims, tasks[1:])]
    results, errors = [], []
    for i, task in enumerate(tasks):
        try:
            if i == 0:
                results.append(_with_threads(task, n - share * (k - 1))())
            elif claims[i - 1].acquire(blocking=False):   # not started elsewhere: here,
                results.append(_with_threads(task, share)())   # as a helper would
            else:
                results.append(futures[i - 1].result())
        except BaseException as e:   # the others still end before this raises
            errors.append(e)
            results.append(None)
    if errors:
        raise errors[0]
    return results


# -- the BLAS libraries inside crnn's computations ------------------------------------------
_lock = threading.Lock()
_depth = 0         # computing() blocks open, in every thread of the process
_saved = []        # (library, its thread count) to restore when the last one closes
_libraries = None  # threadpoolctl's controllers of the BLAS libraries, found once


def _blas_libraries():
    """The BLAS libraries loaded (NumPy's and SciPy's; threadpoolctl's per-library
    controllers, whose set_num_threads is one C call), [] without threadpoolctl."""
    global _libraries
    if _libraries is None:
        _libraries = ([] if ThreadpoolController is None else
                      ThreadpoolController().select(user_api="blas").lib_controllers)
    return _libraries


def _enter():
    global _depth
    with _lock:
        _depth += 1
        if _depth > 1:
            return
        libraries = _blas_libraries()
        _saved[:] = [(lib, lib.num_threads) for lib in libraries]
        for lib in libraries:
            lib.set_num_threads(1)
        _blas._split_products(bool(libraries))


def _exit():
    global _depth
    with _lock:
        _depth -= 1
        if _depth > 0:
            return
        _blas._split_products(False)
        for lib, n in _saved:
            lib.set_num_threads(n)
        _saved.clear()


@contextlib.contextmanager
def computing():
    """Inside: the BLAS libraries of NumPy and SciPy on one thread and crnn's large
    products split over its pool; on exit of the outermost block their settings come
    back. Re-entrant (an inner block costs a lock), process-wide. crnn runs ``fit``,
    ``evaluate``, ``predict`` and every layer call and backward pass in it."""
    _enter()
    try:
        yield
    finally:
        _exit()


_lstm._packed_threads(_from_environment())
