"""Batches read one at a time: ``fit``, ``evaluate`` and ``predict`` on a
:class:`crnn.utils.PyDataset`, a Python generator or any iterable of batches, and on
arrays with ``steps_per_epoch`` (Keras 3's ``EpochIterator`` semantics).

A batch is ``(x, y)``, ``(x, y, sample_weight)`` or ``(x,)`` (a list is read as a tuple,
a bare array as ``(x,)``), each part what :class:`crnn.training.data.Data` takes for a
whole run. Only the batch in use is held (with ``workers > 1``, a
:class:`~crnn.utils.PyDataset` reads at most ``max_queue_size`` batches ahead), so data
that does not fit in memory can be trained on.

The batches of an epoch, with ``steps`` (``steps_per_epoch``, ``validation_steps`` or
``steps``) and ``n`` the source's number of batches (``len`` of a dataset, None for a
generator):

* ``steps`` None: the whole source, from its start (a new ``iter``) every epoch; a
  generator is spent after the first epoch, so the next one gets no batch.
* ``steps`` given: ``steps`` batches, the iterator carried on from where the last epoch
  stopped (a generator is never restarted); a source that runs out first ends the epoch
  early with Keras's warning, and one with ``n`` known starts again at the next epoch.

An epoch of ``fit`` that gets no batch at all ends training with that warning. A batch
that is not a batch, or that the model cannot take (a wrong shape or type), raises
``ValueError`` naming its step and epoch.
"""
import collections
import concurrent.futures
import itertools
import random
import warnings

import numpy as np

from crnn import engine
from crnn.callbacks import CallbackList
from crnn.training.data import Data, is_array, time_steps
from crnn.utils import PyDataset

__all__ = ["ArraySource", "Source", "SourceMixin", "as_source", "is_source"]

_RAN_OUT = ("Your input ran out of data; interrupting training. Make sure that your "
            "dataset or generator can generate at least `steps_per_epoch * epochs` "
            "batches.")


def is_source(x):
    """Whether ``x`` is a source of batches rather than data: a
    :class:`~crnn.utils.PyDataset`, a generator or iterator, or any other iterable that
    is not an array, a list, a tuple, a dict or a string."""
    if isinstance(x, PyDataset):
        return True
    if (x is None or is_array(x) or hasattr(x, "__array__")
            or isinstance(x, (list, tuple, dict, str, bytes, int, float, complex))):
        return False
    return hasattr(x, "__iter__") or hasattr(x, "__next__")


def _check_steps(name, steps):
    if steps is None:
        return None
    if (not isinstance(steps, (int, np.integer)) or isinstance(steps, (bool, np.bool_))
            or steps < 1):
        raise ValueError(f"expected {name} to be a positive int or None, got {steps!r}")
    return int(steps)


def unpack(batch, what, step):
    """``(x, y, sample_weight)`` of one batch as a source gave it, checked as
    :class:`Data`; raises ``ValueError`` naming the step."""
    where = f"batch {step} of {what}"
    if isinstance(batch, list):
        batch = tuple(batch)
    elif is_array(batch) or hasattr(batch, "__array__"):
        batch = (batch,)
    if not isinstance(batch, tuple) or not 1 <= len(batch) <= 3:
        got = (f"a tuple of {len(batch)}" if isinstance(batch, tuple)
               else type(batch).__name__)
        raise ValueError(f"expected {where} to be a tuple (x,), (x, y) or (x, y, "
                         f"sample_weight), got {got}")
    parts = list(batch) + [None] * (3 - len(batch))
    try:
        data = Data(*parts)
        for a in engine.flatten([data.x, data.y, data.sample_weight]):
            if isinstance(a, np.ndarray) and a.dtype.kind not in "biuf":
                raise ValueError(f"expected numbers, got an array of dtype {a.dtype}")
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    if data.n == 0:
        raise ValueError(f"expected {where} to hold at least one sample, got 0")
    return data


class Source:
    """A source of batches, read one at a time by epochs (see the module docstring).

    Parameters
    ----------
    source : PyDataset or iterable
    steps : int, optional
        Batches per epoch.
    shuffle : bool
        Visit a finite :class:`PyDataset`'s batches in a new order each epoch (Keras's
        order: ``random.Random(epoch).shuffle``).
    what : str
        What the errors call it (``"x"``, ``"validation_data"``).
    """

    def __init__(self, source, steps=None, shuffle=False, what="x"):
        self.source, self.steps, self.shuffle, self.what = source, steps, shuffle, what
        if isinstance(source, PyDataset):
            n = source.num_batches
            if n is not None and (not isinstance(n, (int, np.integer)) or n < 0):
                raise ValueError(f"expected the number of batches of {what} (its len or "
                                 f"num_batches) to be an int >= 0 or None, got {n!r}")
        elif hasattr(source, "__len__") and hasattr(source, "__iter__") \
                and not hasattr(source, "__next__"):
            n = len(source)            # a re-iterable with a length (a DataLoader)
        else:
            n = None
        self.num_batches = None if n is None else int(n)
        if self.num_batches is None and steps is None and isinstance(source, PyDataset):
            raise ValueError(f"expected steps for the endless PyDataset {what} (its "
                             f"num_batches is None), got None")
        self.epoch = 0
        self._iterator = None
        self._seen = 0
        self._pool = None

    # -- iterators ------------------------------------------------------------------------
    def _new_iterator(self):
        if not isinstance(self.source, PyDataset):
            return iter(self.source)
        n = self.num_batches
        if n is None:
            indices = itertools.count()
        else:
            indices = list(range(n))
            if self.shuffle:
                random.Random(self.epoch).shuffle(indices)
        if self.source.workers > 1:
            return self._read_ahead(indices)
        return (self.source[i] for i in indices)

    def _read_ahead(self, indices):
        """Batches in order, read by ``workers`` threads at most ``max_queue_size``
        ahead."""
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(self.source.workers)
        pending = collections.deque()
        indices = iter(indices)
        try:
            while True:
                while len(pending) < self.source.max_queue_size:
                    i = next(indices, None)
                    if i is None:
                        break
                    pending.append(self._pool.submit(self.source.__getitem__, i))
                if not pending:
                    return
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()

    def close(self):
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    # -- one epoch ------------------------------------------------------------------------
    def batches(self):
        """``(step, raw batch)`` for one epoch."""
        dataset = self.source if isinstance(self.source, PyDataset) else None
        if dataset is not None:
            dataset.on_epoch_begin()
        try:
            if self.steps is None:
                iterator = self._new_iterator()
                for step in (range(self.num_batches) if self.num_batches is not None
                             else itertools.count()):
                    try:
                        batch = next(iterator)
                    except StopIteration:
                        break
                    yield step, batch
                return
            if self._iterator is None:
                self._iterator, self._seen = self._new_iterator(), 0
            for step in range(self.steps):
                if self.num_batches is not None and self._seen >= self.num_batches:
                    warnings.warn(_RAN_OUT, stacklevel=4)
                    break
                try:
                    batch = next(self._iterator)
                except StopIteration:
                    warnings.warn(_RAN_OUT, stacklevel=4)
                    self._iterator = None
                    break
                self._seen += 1
                yield step, batch
            if self.num_batches is not None and self._seen >= self.num_batches:
                self._iterator = None      # a finite source starts again next epoch
        finally:
            self.epoch += 1
            if dataset is not None:
                dataset.on_epoch_end()


class ArraySource(Source):
    """Arrays as a source (``fit(x, y, steps_per_epoch=...)``): batches of
    ``batch_size`` samples, reshuffled with ``rng`` at each pass over the data."""

    def __init__(self, data, batch_size, steps=None, shuffle=False, rng=None):
        self.data, self.batch_size, self.rng = data, batch_size, rng
        super().__init__(self, steps=steps, shuffle=shuffle)
        self.num_batches = -(-data.n // batch_size)

    def __iter__(self):
        order = self.rng.permutation(self.data.n) if self.shuffle else None
        return (batch for _, batch in self.data.batches(self.batch_size, order))

    def _new_iterator(self):
        return iter(self)


def as_source(x, steps, shuffle, what, batch_size=None, rng=None):
    """A :class:`Source` for ``x``: itself if it is one, else an :class:`ArraySource`
    over the :class:`Data` ``x``."""
    if isinstance(x, Data):
        return ArraySource(x, batch_size, steps, shuffle, rng)
    return Source(x, steps, shuffle, what)


def _step_error(e, what, step, epoch=None):
    where = f"batch {step} of {what}" + ("" if epoch is None else f" (epoch {epoch + 1})")
    if str(e).startswith(f"batch {step} of "):
        return e
    return ValueError(f"{where}: {e}")


def _pack_outputs(structure, leaves):
    return list(leaves) if isinstance(structure, (list, tuple)) else leaves[0]


class SourceMixin:
    """``fit``/``evaluate``/``predict`` over a :class:`Source`, for :class:`Trainer`,
    which checks the arguments and calls these when ``x`` is a source of batches or
    ``steps_per_epoch``/``steps`` is given."""

    def _batch_of(self, raw, what, step, epoch, need_y):
        batch = raw if isinstance(raw, Data) else unpack(raw, what, step)
        if need_y and batch.y is None:
            raise ValueError(f"expected batch {step} of {what} (epoch {epoch + 1}) to hold "
                             f"targets, (x, y) or (x, y, sample_weight), got (x,) alone")
        return batch

    def _fit_source(self, x, y, sample_weight, batch_size, epochs, verbose, callbacks,
                    validation_split, validation_data, shuffle, initial_epoch, rng, tbptt,
                    steps_per_epoch, validation_steps):
        steps_per_epoch = _check_steps("steps_per_epoch", steps_per_epoch)
        validation_steps = _check_steps("validation_steps", validation_steps)
        val = None
        if is_source(x):
            if y is not None or sample_weight is not None:
                raise ValueError(f"expected y=None and sample_weight=None when x is a "
                                 f"source of batches ({type(x).__name__}, whose batches "
                                 f"hold them), got y={type(y).__name__}, sample_weight="
                                 f"{type(sample_weight).__name__}")
            if validation_split:
                raise ValueError(f"expected validation_split=0 when x is a source of "
                                 f"batches ({type(x).__name__}): pass validation_data, "
                                 f"got validation_split={validation_split}")
            train = Source(x, steps_per_epoch, shuffle, "x")
        else:
            data = Data(x, y, sample_weight)
            if data.y is None:
                raise ValueError("expected targets y for fit, got None")
            if validation_split:
                split = int(np.floor(data.n * (1.0 - validation_split)))
                if split == 0 or split == data.n:
                    raise ValueError(f"expected enough samples to split off "
                                     f"validation_split={validation_split}, got {data.n} "
                                     f"samples")
                data, val = data.take(slice(0, split)), data.take(slice(split, data.n))
            if data.n == 0:
                raise ValueError("expected at least one training sample, got 0")
            train = ArraySource(data, batch_size, steps_per_epoch, shuffle, rng)
        if validation_data is not None:
            if is_source(validation_data):
                val = Source(validation_data, validation_steps, False, "validation_data")
            elif isinstance(validation_data, tuple) and len(validation_data) in (2, 3):
                val = Data(*validation_data,
                           names=("x_val", "y_val", "sample_weight_val"))
            else:
                raise ValueError(f"expected validation_data to be a tuple (x_val, y_val) "
                                 f"or (x_val, y_val, sample_weight_val), or a source of "
                                 f"batches, got {type(validation_data).__name__}")
        if isinstance(val, Data):
            val = ArraySource(val, batch_size, validation_steps)
        carried = self._tbptt_layers() if tbptt is not None else None
        cbs = CallbackList(callbacks, add_history=True, add_progbar=verbose != 0,
                           model=self, epochs=epochs, steps=steps_per_epoch or
                           train.num_batches, samples=None, batch_size=None,
                           verbose=verbose)
        self.stop_training = False
        cbs.on_train_begin()
        epoch_logs = {}
        try:
            for epoch in range(initial_epoch, epochs):
                state = self._new_state()
                cbs.on_epoch_begin(epoch)
                logs, ran = {}, 0
                for step, raw in train.batches():
                    batch = self._batch_of(raw, "x", step, epoch, need_y=True)
                    cbs.on_train_batch_begin(step)
                    try:
                        if tbptt is None:
                            logs = self._train_step(batch, state)
                        else:
                            time_steps(batch)
                            logs = self._tbptt_step(batch, state, *tbptt, carried)
                    except (ValueError, TypeError) as e:
                        raise _step_error(e, "x", step, epoch) from e
                    ran += 1
                    cbs.on_train_batch_end(step, dict(logs))
                    if self.stop_training:
                        break
                if ran == 0:
                    warnings.warn(_RAN_OUT, stacklevel=3)
                    break
                epoch_logs = dict(logs)
                if val is not None:
                    val_logs = self._evaluate_source(val, cbs)
                    epoch_logs.update({f"val_{k}": v for k, v in val_logs.items()})
                cbs.on_epoch_end(epoch, epoch_logs)
                if self.stop_training:
                    break
        finally:
            train.close()
            if val is not None:
                val.close()
        cbs.on_train_end(epoch_logs)
        self.history = cbs.history
        return cbs.history

    def _evaluate_source(self, source, cbs):
        state = self._new_state()
        cbs.on_test_begin()
        logs = {}
        for step, raw in source.batches():
            batch = self._batch_of(raw, source.what, step, None, need_y=True) \
                if not isinstance(raw, Data) else raw
            cbs.on_test_batch_begin(step)
            try:
                logs = self._test_step(batch, state)
            except (ValueError, TypeError) as e:
                raise _step_error(e, source.what, step) from e
            cbs.on_test_batch_end(step, dict(logs))
        cbs.on_test_end(dict(logs))
        return logs

    def _evaluate_batches(self, x, y, sample_weight, batch_size, verbose, callbacks,
                          steps):
        """``evaluate`` over a source (or arrays with ``steps``); returns the logs."""
        steps = _check_steps("steps", steps)
        if is_source(x):
            if y is not None or sample_weight is not None:
                raise ValueError("expected y=None and sample_weight=None when x is a "
                                 "source of batches (its batches hold them)")
            source = Source(x, steps, False, "x")
        else:
            data = Data(x, y, sample_weight)
            if data.y is None:
                raise ValueError("expected targets y for evaluate, got None")
            source = ArraySource(data, batch_size, steps)
        cbs = CallbackList(callbacks, add_progbar=verbose != 0, model=self,
                           steps=steps or source.num_batches, samples=None,
                           batch_size=None, verbose=verbose)
        try:
            logs = self._evaluate_source(source, cbs)
        finally:
            source.close()
        if not logs:
            raise ValueError("expected at least one batch to evaluate, got none from x")
        return logs

    def _predict_batches(self, x, batch_size, verbose, callbacks, steps):
        """``predict`` over a source (or arrays with ``steps``): the outputs of every
        batch joined along the batch axis. A batch's targets, if any, are ignored."""
        steps = _check_steps("steps", steps)
        source = (Source(x, steps, False, "x") if is_source(x)
                  else ArraySource(Data(x), batch_size, steps))
        cbs = CallbackList(callbacks, add_progbar=verbose != 0, model=self,
                           steps=steps or source.num_batches, samples=None,
                           batch_size=None, verbose=verbose)
        cbs.on_predict_begin()
        pieces, structure = [], None
        try:
            for step, raw in source.batches():
                batch = raw if isinstance(raw, Data) else unpack(raw, "x", step)
                cbs.on_predict_batch_begin(step)
                try:
                    with engine.no_grad():
                        out = self(batch.x, training=False)
                except (ValueError, TypeError) as e:
                    raise _step_error(e, "x", step) from e
                structure = out
                pieces.append([np.asarray(engine.value_of(o))
                               for o in engine.flatten(out)])
                cbs.on_predict_batch_end(step, {"outputs": out})
        finally:
            source.close()
        cbs.on_predict_end()
        if not pieces:
            raise ValueError("expected at least one batch to predict, got none from x")
        joined = [np.concatenate(parts, axis=0) for parts in zip(*pieces)]
        return _pack_outputs(structure, joined)
