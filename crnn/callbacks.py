"""Callbacks: code that ``fit``, ``evaluate`` and ``predict`` call at fixed points, with
Keras's hooks and semantics.

``fit`` calls, in order::

    on_train_begin
        on_epoch_begin(epoch)
            on_train_batch_begin(batch), on_train_batch_end(batch, logs)   per batch
            on_test_begin, on_test_batch_begin/end, on_test_end            validation
        on_epoch_end(epoch, logs)
    on_train_end(logs)

``evaluate`` calls the ``on_test_*`` hooks and ``predict`` the ``on_predict_*`` ones.
The logs are dicts of Python floats: in ``on_*_batch_end`` the running means of the epoch
so far (``loss`` and every compiled metric), in ``on_epoch_end`` the epoch's values and,
when there is validation data, the same names prefixed with ``val_``. A callback stops
training by setting ``self.model.stop_training = True``; ``fit`` checks the flag after
each batch and each epoch.
"""
import collections.abc
import csv
import math
import os
import warnings

import numpy as np

from crnn.progress import Progbar

__all__ = ["CSVLogger", "Callback", "CallbackList", "EarlyStopping", "History",
           "LambdaCallback", "LearningRateScheduler", "ModelCheckpoint", "ProgbarLogger",
           "ReduceLROnPlateau", "TerminateOnNaN"]

_HOOKS = ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
          "on_train_batch_begin", "on_train_batch_end", "on_batch_begin", "on_batch_end",
          "on_test_begin", "on_test_end", "on_test_batch_begin", "on_test_batch_end",
          "on_predict_begin", "on_predict_end", "on_predict_batch_begin",
          "on_predict_batch_end")


class Callback:
    """Base class of the callbacks: every hook does nothing.

    Attributes
    ----------
    model : Model
        The model being trained, set by :meth:`set_model`.
    params : dict
        ``epochs``, ``steps`` (batches per epoch), ``samples``, ``batch_size`` and
        ``verbose`` of the run, set by :meth:`set_params`.
    """

    def __init__(self):
        self.model = None
        self.params = {}

    def set_params(self, params):
        self.params = dict(params)

    def set_model(self, model):
        self.model = model

    def on_train_begin(self, logs=None):
        """At the start of ``fit``."""

    def on_train_end(self, logs=None):
        """At the end of ``fit``; ``logs`` are the last epoch's."""

    def on_epoch_begin(self, epoch, logs=None):
        """At the start of epoch ``epoch`` (counted from 0)."""

    def on_epoch_end(self, epoch, logs=None):
        """At the end of an epoch, after validation; ``logs`` hold its numbers."""

    def on_batch_begin(self, batch, logs=None):
        """Alias of :meth:`on_train_batch_begin` (Keras keeps both)."""

    def on_batch_end(self, batch, logs=None):
        """Alias of :meth:`on_train_batch_end`."""

    def on_train_batch_begin(self, batch, logs=None):
        """Before a training batch (``batch`` counted from 0 in each epoch)."""
        self.on_batch_begin(batch, logs=logs)

    def on_train_batch_end(self, batch, logs=None):
        """After a training batch; ``logs`` hold the epoch's running means."""
        self.on_batch_end(batch, logs=logs)

    def on_test_begin(self, logs=None):
        """At the start of ``evaluate`` (and of each validation in ``fit``)."""

    def on_test_end(self, logs=None):
        """At the end of ``evaluate``; ``logs`` hold its results."""

    def on_test_batch_begin(self, batch, logs=None):
        """Before an evaluation batch."""

    def on_test_batch_end(self, batch, logs=None):
        """After an evaluation batch; ``logs`` hold the running means."""

    def on_predict_begin(self, logs=None):
        """At the start of ``predict``."""

    def on_predict_end(self, logs=None):
        """At the end of ``predict``."""

    def on_predict_batch_begin(self, batch, logs=None):
        """Before a prediction batch."""

    def on_predict_batch_end(self, batch, logs=None):
        """After a prediction batch; ``logs["outputs"]`` is the batch's output."""


class CallbackList:
    """Calls every hook on each callback in turn (Keras's ``CallbackList``).

    Parameters
    ----------
    callbacks : list of Callback, optional
    add_history : bool
        Append a :class:`History` unless one is given.
    add_progbar : bool
        Append a :class:`ProgbarLogger` unless one is given, after the others (as Keras
        3 does), so that its line shows what they add to the logs (``learning_rate``).
    model : Model, optional
    **params
        Passed to every callback's :meth:`Callback.set_params`.
    """

    def __init__(self, callbacks=None, add_history=False, add_progbar=False, model=None,
                 **params):
        if isinstance(callbacks, CallbackList):
            callbacks = callbacks.callbacks
        if callbacks is None:
            callbacks = []
        if isinstance(callbacks, Callback) or not isinstance(callbacks, (list, tuple)):
            raise ValueError(f"expected callbacks to be a list of crnn.callbacks.Callback, "
                             f"got {type(callbacks).__name__}")
        self.callbacks = list(callbacks)
        for i, cb in enumerate(self.callbacks):
            if not isinstance(cb, Callback):
                raise ValueError(f"expected callbacks[{i}] to be a crnn.callbacks.Callback, "
                                 f"got {type(cb).__name__}")
        self.history = next((cb for cb in self.callbacks if isinstance(cb, History)), None)
        if add_history and self.history is None:
            self.history = History()
            self.callbacks.append(self.history)
        if add_progbar and not any(isinstance(cb, ProgbarLogger) for cb in self.callbacks):
            self.callbacks.append(ProgbarLogger())
        if model is not None:
            self.set_model(model)
        self.set_params(params)

    def set_model(self, model):
        self.model = model
        for cb in self.callbacks:
            cb.set_model(model)

    def set_params(self, params):
        self.params = dict(params)
        for cb in self.callbacks:
            cb.set_params(params)

    def _call(self, hook, *args):
        for cb in self.callbacks:
            getattr(cb, hook)(*args)

    def on_train_begin(self, logs=None):
        self._call("on_train_begin", logs)

    def on_train_end(self, logs=None):
        self._call("on_train_end", logs)

    def on_epoch_begin(self, epoch, logs=None):
        self._call("on_epoch_begin", epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._call("on_epoch_end", epoch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        self._call("on_train_batch_begin", batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self._call("on_train_batch_end", batch, logs)

    def on_test_begin(self, logs=None):
        self._call("on_test_begin", logs)

    def on_test_end(self, logs=None):
        self._call("on_test_end", logs)

    def on_test_batch_begin(self, batch, logs=None):
        self._call("on_test_batch_begin", batch, logs)

    def on_test_batch_end(self, batch, logs=None):
        self._call("on_test_batch_end", batch, logs)

    def on_predict_begin(self, logs=None):
        self._call("on_predict_begin", logs)

    def on_predict_end(self, logs=None):
        self._call("on_predict_end", logs)

    def on_predict_batch_begin(self, batch, logs=None):
        self._call("on_predict_batch_begin", batch, logs)

    def on_predict_batch_end(self, batch, logs=None):
        self._call("on_predict_batch_end", batch, logs)


class History(Callback):
    """Records the logs of every epoch; ``fit`` returns it.

    Attributes
    ----------
    history : dict of str to list
        One list per name in the logs (``loss``, metrics, ``val_*``), one entry per epoch.
    epoch : list of int
        The epochs recorded.
    """

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for name, value in (logs or {}).items():
            self.history.setdefault(name, []).append(value)
        self.model.history = self


class ProgbarLogger(Callback):
    """Prints ``Epoch i/n`` and a :class:`crnn.progress.Progbar` per epoch (added by
    ``fit``, ``evaluate`` and ``predict`` when ``verbose`` is not 0).

    The bar counts samples when the run knows them (``params["samples"]``, arrays), and
    steps otherwise (batches from a source): ``params["steps"]``, or, when that is None
    (a generator), ``Unknown`` until the first epoch has counted them, as Keras does."""

    def __init__(self):
        super().__init__()
        self._bar = None
        self._seen = 0
        self._in_fit = False
        self._by_step = False
        self._counted_steps = None

    def _verbose(self):
        v = self.params.get("verbose", 1)
        return 1 if v == "auto" else v

    def _new_bar(self):
        self._seen = 0
        samples = self.params.get("samples", 0)
        self._by_step = samples is None
        if self._by_step:
            steps = self.params.get("steps") or self._counted_steps
            self._bar = Progbar(steps, verbose=self._verbose(), unit_name="step")
        else:
            self._bar = Progbar(samples, verbose=self._verbose())

    def _advance(self, batch, logs):
        if self._by_step:
            self._seen = batch + 1
        else:
            size = self.params.get("batch_size") or 1
            self._seen = min((batch + 1) * size, self.params.get("samples", 0))
        if self._bar is not None:
            self._bar.update(self._seen, _numbers(logs), finalize=False)

    def _finish(self, logs):
        if self._by_step and self._in_fit and not self.params.get("steps"):
            self._counted_steps = self._seen    # the next epochs know their length
        if self._bar is not None:
            self._bar.update(self._seen, _numbers(logs), finalize=True)
            self._bar = None

    def on_train_begin(self, logs=None):
        self._in_fit = True

    def on_train_end(self, logs=None):
        self._in_fit = False

    def on_epoch_begin(self, epoch, logs=None):
        if self._verbose():
            print(f"Epoch {epoch + 1}/{self.params.get('epochs', epoch + 1)}", flush=True)
        self._new_bar()

    def on_train_batch_end(self, batch, logs=None):
        self._advance(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._finish(logs)

    # evaluate and predict show their own bar; fit's validation shows none
    def on_test_begin(self, logs=None):
        if not self._in_fit:
            self._new_bar()

    def on_test_batch_end(self, batch, logs=None):
        if not self._in_fit:
            self._advance(batch, logs)

    def on_test_end(self, logs=None):
        if not self._in_fit:
            self._finish(logs)

    def on_predict_begin(self, logs=None):
        self._new_bar()

    def on_predict_batch_end(self, batch, logs=None):
        self._advance(batch, None)

    def on_predict_end(self, logs=None):
        self._finish(None)


def _numbers(logs):
    """The entries of ``logs`` that are numbers (not a batch's outputs)."""
    return {k: v for k, v in (logs or {}).items()
            if isinstance(v, (int, float, np.floating, np.integer))}


def _better(mode, monitor, model=None):
    """``np.less`` or ``np.greater``: whether a lower or a higher ``monitor`` is better.

    ``"auto"`` (Keras's rule): higher for accuracies (a name containing ``"acc"``) and
    ``fmeasure``, and for a compiled metric whose ``direction`` is ``"up"``; lower for
    everything else (losses, errors).
    """
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"expected mode to be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "min":
        return np.less
    if mode == "max":
        return np.greater
    name = monitor[4:] if monitor.startswith("val_") else monitor
    for m in getattr(model, "metrics", None) or []:
        direction = getattr(m, "direction", getattr(m, "_direction", None))
        if getattr(m, "name", None) == name and direction in ("up", "down"):
            return np.greater if direction == "up" else np.less
    if "acc" in name or name.startswith("fmeasure"):
        return np.greater
    return np.less


class EarlyStopping(Callback):
    """Stop training when a monitored number has stopped improving (Keras 3's rules).

    At each epoch end from ``start_from_epoch`` on, the epoch counts as an improvement
    when ``current - min_delta`` beats the best so far (``+ min_delta`` when higher is
    better); the patience counter then restarts, unless a ``baseline`` is set and not
    beaten. Otherwise the counter grows, and when it reaches ``patience`` (after the
    first epoch) training stops.

    Parameters
    ----------
    monitor : str
        A name in the epoch's logs (``"val_loss"``, ``"loss"``, ``"val_accuracy"``...).
    min_delta : float
        The smallest change that counts as an improvement (its sign is ignored).
    patience : int
        Epochs without improvement before stopping.
    verbose : int
        1 prints when it stops and restores.
    mode : {"auto", "min", "max"}
        Whether lower or higher is better; ``"auto"`` guesses from the name.
    baseline : float, optional
        A value to beat: until it is, the counter does not restart.
    restore_best_weights : bool
        At the end of training, set the weights of the best epoch (as Keras 3 does, also
        when training was not stopped early).
    start_from_epoch : int
        Epochs to wait before monitoring (a warm-up).

    Attributes
    ----------
    stopped_epoch : int
        The epoch training stopped at (0 when it did not stop).
    best, best_epoch : float, int
        The best value and its epoch.
    wait : int
        Epochs since the last improvement.
    """

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto",
                 baseline=None, restore_best_weights=False, start_from_epoch=0):
        super().__init__()
        if not isinstance(monitor, str):
            raise ValueError(f"expected monitor to be a name in the logs, got {monitor!r}")
        for name, n in (("patience", patience), ("start_from_epoch", start_from_epoch)):
            if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
                raise ValueError(f"expected {name} to be a non-negative int, got {n!r}")
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"expected mode to be 'auto', 'min' or 'max', got {mode!r}")
        self.monitor = monitor
        self.min_delta = abs(float(min_delta))
        self.patience = int(patience)
        self.verbose = verbose
        self.mode = mode
        self.baseline = baseline
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = int(start_from_epoch)
        self.monitor_op = None
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_epoch = 0
        self.best_weights = None

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_epoch = 0
        self.best_weights = None
        self.monitor_op = None

    def _is_improvement(self, value, reference):
        if reference is None:
            return True
        # min_delta moves the value against its direction: it must beat by that much
        delta = -self.min_delta if self.monitor_op is np.less else self.min_delta
        return bool(self.monitor_op(value - delta, reference))

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor_op is None:
            self.monitor_op = _better(self.mode, self.monitor, self.model)
        current = self.get_monitor_value(logs)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            # nothing better seen yet: the current weights are the best
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            # restart only when both the baseline and the previous best are beaten
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print(f"Restoring model weights from the end of the best epoch: "
                      f"{self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)

    def get_monitor_value(self, logs):
        logs = logs or {}
        value = logs.get(self.monitor)
        if value is None:
            warnings.warn(f"Early stopping conditioned on metric {self.monitor!r} which is "
                          f"not available. Available metrics are: {', '.join(logs)}",
                          stacklevel=2)
        return value


class ModelCheckpoint(Callback):
    """Save the model (or its weights) at the end of every epoch, or only when a
    monitored number improves.

    Parameters
    ----------
    filepath : str or os.PathLike
        May hold ``str.format`` fields filled from the epoch (counted from 1) and its
        logs: ``"ckpt-{epoch:02d}-{val_loss:.2f}"``.
    monitor : str
        The number that decides "best" with ``save_best_only``.
    verbose : int
        1 prints what it saves.
    save_best_only : bool
        Save only when ``monitor`` beats the best so far.
    save_weights_only : bool
        Call ``model.save_weights(path)`` instead of ``model.save(path)``.
    mode : {"auto", "min", "max"}
        Whether lower or higher is better; ``"auto"``: higher for names containing
        ``"acc"``, else lower.
    initial_value_threshold : float, optional
        The value to beat before the first save with ``save_best_only``.
    """

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False,
                 save_weights_only=False, mode="auto", initial_value_threshold=None):
        super().__init__()
        self.filepath = str(filepath) if not isinstance(filepath, str) else filepath
        self.monitor = monitor
        self.verbose = verbose
        self.save_best_only = bool(save_best_only)
        self.save_weights_only = bool(save_weights_only)
        self.mode = mode
        self.monitor_op = _better(mode, monitor)
        if initial_value_threshold is not None:
            self.best = float(initial_value_threshold)
        else:
            self.best = math.inf if self.monitor_op is np.less else -math.inf

    def _file_path(self, epoch, logs):
        try:
            return self.filepath.format(epoch=epoch + 1, **logs)
        except KeyError as e:
            raise KeyError(f"failed to format the checkpoint path {self.filepath!r}: "
                           f"{e} is not among epoch and the logs {sorted(logs)}") from None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        path = self._file_path(epoch, logs)
        if self.save_best_only:
            current = logs.get(self.monitor)
            if current is None:
                warnings.warn(f"Can save best model only with {self.monitor} available, "
                              f"skipping.", stacklevel=2)
                return
            if not self.monitor_op(current, self.best):
                if self.verbose > 0:
                    print(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from "
                          f"{self.best:.5f}")
                return
            if self.verbose > 0:
                print(f"\nEpoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} "
                      f"to {current:.5f}, saving model to {path}")
            self.best = current
        elif self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: saving model to {path}")
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)


class LambdaCallback(Callback):
    """A callback from plain functions, e.g.
    ``LambdaCallback(on_epoch_end=lambda epoch, logs: print(logs["loss"]))``.

    ``on_epoch_begin``/``on_epoch_end`` take ``(epoch, logs)``, the batch hooks
    ``(batch, logs)``, ``on_train_begin``/``on_train_end`` (and the test and predict
    ones) ``(logs)``. Any hook name of :class:`Callback` is accepted.
    """

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_begin=None,
                 on_train_end=None, on_train_batch_begin=None, on_train_batch_end=None,
                 **hooks):
        super().__init__()
        given = dict(on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end,
                     on_train_begin=on_train_begin, on_train_end=on_train_end,
                     on_train_batch_begin=on_train_batch_begin,
                     on_train_batch_end=on_train_batch_end, **hooks)
        for name, fn in given.items():
            if name not in _HOOKS:
                raise ValueError(f"expected hook names among {list(_HOOKS)}, got {name!r}")
            if fn is None:
                continue
            if not callable(fn):
                raise ValueError(f"expected {name} to be callable, got {fn!r}")
            setattr(self, name, fn)


class TerminateOnNaN(Callback):
    """Stop training as soon as a batch's loss is NaN or infinite."""

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            print(f"Batch {batch}: Invalid loss, terminating training")
            self.model.stop_training = True


# -- the learning rate --------------------------------------------------------------------------
def _optimizer_of(callback):
    optimizer = getattr(callback.model, "optimizer", None)
    if optimizer is None or not hasattr(optimizer, "learning_rate"):
        raise ValueError(f"expected a compiled model whose optimizer has a learning_rate "
                         f"for {type(callback).__name__}, got optimizer {optimizer!r}")
    return optimizer


def _current_lr(optimizer):
    return float(optimizer.learning_rate)


def _set_lr(callback, optimizer, value):
    if callable(getattr(optimizer, "_learning_rate", None)):
        raise ValueError(f"{type(callback).__name__} cannot set the learning rate of an "
                         f"optimizer whose learning rate is a schedule "
                         f"({optimizer._learning_rate!r}); as in Keras, use a float "
                         f"learning rate with this callback")
    optimizer.learning_rate = value


class LearningRateScheduler(Callback):
    """Set the learning rate at the start of each epoch (Keras 3's semantics).

    Parameters
    ----------
    schedule : callable
        ``schedule(epoch, lr) -> new_lr`` (``epoch`` counted from 0, ``lr`` the current
        rate), or ``schedule(epoch)``; it must return a float.
    verbose : int
        1 prints the rate it sets.

    The epoch's logs get ``learning_rate``, the rate used during the epoch.

    Examples
    --------
    >>> def schedule(epoch, lr):
    ...     return lr if epoch < 10 else lr * 0.9
    >>> callback = LearningRateScheduler(schedule)
    """

    def __init__(self, schedule, verbose=0):
        super().__init__()
        if not callable(schedule):
            raise ValueError(f"expected schedule to be callable, got {schedule!r}")
        self.schedule = schedule
        self.verbose = verbose

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = _optimizer_of(self)
        try:          # Keras's two forms: schedule(epoch, lr), else schedule(epoch)
            lr = self.schedule(epoch, _current_lr(optimizer))
        except TypeError:
            lr = self.schedule(epoch)
        if not isinstance(lr, (float, np.floating)) or not math.isfinite(lr) or lr < 0:
            raise ValueError(f"expected the schedule to return a float >= 0, got {lr!r} at "
                             f"epoch {epoch}")
        _set_lr(self, optimizer, float(lr))
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to "
                  f"{float(lr)}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = _current_lr(_optimizer_of(self))


class ReduceLROnPlateau(Callback):
    """Reduce the learning rate when a monitored number has stopped improving (Keras 3's
    semantics and defaults).

    At each epoch end, the epoch counts as an improvement when ``current - min_delta``
    beats the best so far (``+ min_delta`` when higher is better); the counter ``wait``
    then restarts. Otherwise, outside a cooldown, ``wait`` grows, and when it reaches
    ``patience`` the rate becomes ``max(lr * factor, min_lr)`` (if it is still above
    ``min_lr``), ``wait`` restarts and a cooldown of ``cooldown`` epochs begins, during
    which ``wait`` stays 0.

    Parameters
    ----------
    monitor : str
        A name in the epoch's logs.
    factor : float in [0, 1)
        ``new_lr = lr * factor``.
    patience : int
        Epochs without improvement before a reduction.
    verbose : int
        1 prints each reduction.
    mode : {"auto", "min", "max"}
        Whether lower or higher is better; ``"auto"`` as :class:`EarlyStopping`.
    min_delta : float
        The smallest change that counts as an improvement.
    cooldown : int
        Epochs to wait after a reduction before counting again.
    min_lr : float
        The rate is never set below this.

    The epoch's logs get ``learning_rate``, the rate used during the epoch.
    """

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto",
                 min_delta=1e-4, cooldown=0, min_lr=0.0):
        super().__init__()
        if not isinstance(monitor, str):
            raise ValueError(f"expected monitor to be a name in the logs, got {monitor!r}")
        if not isinstance(factor, (int, float, np.floating)) or not 0 <= factor < 1:
            raise ValueError(f"expected factor in [0, 1) (ReduceLROnPlateau does not "
                             f"support a factor >= 1.0), got {factor!r}")
        for name, n in (("patience", patience), ("cooldown", cooldown)):
            if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
                raise ValueError(f"expected {name} to be a non-negative int, got {n!r}")
        if not isinstance(min_lr, (int, float, np.floating)) or min_lr < 0:
            raise ValueError(f"expected min_lr to be a number >= 0, got {min_lr!r}")
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"expected mode to be 'auto', 'min' or 'max', got {mode!r}")
        self.monitor = monitor
        self.factor = float(factor)
        self.patience = int(patience)
        self.verbose = verbose
        self.mode = mode
        self.min_delta = abs(float(min_delta))
        self.cooldown = int(cooldown)
        self.min_lr = float(min_lr)
        self.monitor_op = None
        self._reset()

    def _reset(self):
        self.best = None
        self.cooldown_counter = 0
        self.wait = 0

    def in_cooldown(self):
        return self.cooldown_counter > 0

    def on_train_begin(self, logs=None):
        self._reset()

    def _is_improvement(self, value, reference):
        if reference is None:
            return True
        delta = -self.min_delta if self.monitor_op is np.less else self.min_delta
        return bool(self.monitor_op(value - delta, reference))

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor_op is None:
            self.monitor_op = _better(self.mode, self.monitor, self.model)
        logs = logs if logs is not None else {}
        optimizer = _optimizer_of(self)
        logs["learning_rate"] = _current_lr(optimizer)
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(f"Learning rate reduction is conditioned on metric "
                          f"{self.monitor!r} which is not available. Available metrics "
                          f"are: {','.join(logs)}.", stacklevel=2)
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._is_improvement(current, self.best):
            self.best = current
            self.wait = 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience:
                old = _current_lr(optimizer)
                if old > np.float32(self.min_lr):
                    new = max(old * self.factor, self.min_lr)
                    _set_lr(self, optimizer, new)
                    if self.verbose > 0:
                        print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning "
                              f"rate to {new}.")
                    self.cooldown_counter = self.cooldown
                    self.wait = 0


# -- logging ------------------------------------------------------------------------------------
class CSVLogger(Callback):
    """Write each epoch's logs as a row of a CSV file (Keras 3's ``CSVLogger``).

    The columns are ``epoch`` (counted from 0) and the names of the first epoch's logs,
    sorted; when those hold no ``val_*`` name, a ``val_`` column is added for each (left
    ``NA`` without validation data), as Keras does. A name missing from a later epoch is
    written ``NA``.

    Parameters
    ----------
    filename : str or os.PathLike
    separator : str, default ","
    append : bool, default False
        Add to an existing file (its header is kept) instead of overwriting it.
    """

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        if not isinstance(filename, (str, os.PathLike)):
            raise ValueError(f"expected filename to be a path, got {filename!r}")
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(f"expected separator to be one character, got {separator!r}")
        self.sep = separator
        self.filename = os.fspath(filename)
        self.append = bool(append)
        self.writer = None
        self.keys = None
        self.append_header = True
        self.csv_file = None

    def on_train_begin(self, logs=None):
        if self.append:
            if os.path.exists(self.filename):
                with open(self.filename, encoding="utf-8") as f:
                    self.append_header = not bool(len(f.readline()))
            mode = "a"
        else:
            self.append_header = True
            mode = "w"
        if self.csv_file is not None and not self.csv_file.closed:
            self.csv_file.close()
        self.csv_file = open(self.filename, mode, newline="", encoding="utf-8")
        self.writer = None
        self.keys = None

    @staticmethod
    def _value(v):
        if isinstance(v, str):
            return v
        if isinstance(v, np.ndarray) and v.ndim == 0:
            return v.item()
        if isinstance(v, collections.abc.Iterable):
            return f'"[{", ".join(map(str, v))}]"'
        return v

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            if self.keys and not any(k.startswith("val_") for k in self.keys):
                self.keys.extend([f"val_{k}" for k in self.keys])
        if self.writer is None:
            class Dialect(csv.excel):
                delimiter = self.sep
            self.writer = csv.DictWriter(self.csv_file, fieldnames=["epoch"] + self.keys,
                                         dialect=Dialect)
            if self.append_header:
                self.writer.writeheader()
        row = {"epoch": epoch}
        row.update((k, self._value(logs.get(k, "NA"))) for k in self.keys)
        self.writer.writerow(row)
        self.csv_file.flush()

    def on_train_end(self, logs=None):
        if self.csv_file is not None and not self.csv_file.closed:
            self.csv_file.close()
        self.writer = None
