"""The training loop of :class:`crnn.Model`: ``fit``, ``evaluate``, ``predict``, the
``*_on_batch`` methods and ``summary``, on the compile configuration of
:mod:`crnn.training.compile` and the truncated BPTT of :mod:`crnn.training.tbptt`."""
import math
import numbers

import numpy as np

from crnn import cores, distributed, engine
from crnn.callbacks import CallbackList
from crnn.training.compile import CompileMixin
from crnn.training.data import Data, class_sample_weights, time_steps
from crnn.training.distributed import DataParallel, for_this_rank
from crnn.training.sources import SourceMixin, is_source
from crnn.training.summary import print_summary
from crnn.training.tbptt import TBPTTMixin

__all__ = ["Trainer"]


def _check_tbptt(tbptt):
    """``fit``'s ``tbptt`` as ``(k1, k2)``, or None."""
    if tbptt is None:
        return None
    def is_int(k):
        return isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_))
    if is_int(tbptt):
        k1 = k2 = tbptt
    elif (isinstance(tbptt, (tuple, list)) and len(tbptt) == 2
          and all(is_int(k) for k in tbptt)):
        k1, k2 = tbptt
    else:
        raise ValueError(f"expected tbptt to be None, an int k (windows of k steps) or a "
                         f"pair of ints (k1, k2), got {tbptt!r}")
    if not 1 <= k1 <= k2:
        raise ValueError(f"expected tbptt (k1, k2) with 1 <= k1 <= k2 (k1 new steps per "
                         f"update, backpropagated through k2 steps), got ({k1}, {k2})")
    if k2 % k1:
        raise ValueError(f"expected tbptt's k2 to be a multiple of k1 (each window reaches "
                         f"back to where an earlier one ended), got ({k1}, {k2})")
    return int(k1), int(k2)


def _check_int(name, value, low, allow_none=False):
    if value is None and allow_none:
        return None
    if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)) \
            or value < low:
        raise ValueError(f"expected {name} to be an int >= {low}, got {value!r}")
    return int(value)


def _check_verbose(verbose):
    if verbose == "auto":
        return 1
    if verbose not in (0, 1, 2) or isinstance(verbose, bool):
        raise ValueError(f"expected verbose to be 0, 1, 2 or 'auto', got {verbose!r}")
    return int(verbose)


def _check_seed(seed):
    if seed is None:
        return None
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"expected seed to be a non-negative int or None, got {seed!r}")
    return int(seed)


def _not_data_parallel(what):
    """Raise in a world of several processes: ``what`` has no data-parallel path yet
    (each process would train alone, without averaging its gradients)."""
    if distributed.size() > 1:
        raise ValueError(f"{what} is not data-parallel yet: in a world of "
                         f"{distributed.size()} processes pass arrays (each rank its shard) "
                         f"with batch_size and no step counts")


def _pack_outputs(structure, leaves):
    """One array for a one-output model, else a list of arrays."""
    if isinstance(structure, (list, tuple)):
        return list(leaves)
    return leaves[0]


class Trainer(CompileMixin, TBPTTMixin, SourceMixin):
    """The Keras training API of :class:`crnn.Model` (as Keras 3's ``Trainer``, a base of
    the model that imports nothing above it): ``compile``, ``fit``, ``evaluate``,
    ``predict``, the ``*_on_batch`` methods and ``summary``."""

    # The DataParallel of the fit or evaluate under way over several processes
    # (crnn.distributed), else None: its steps average the gradients over the processes.
    _parallel = None

    def _class_kind(self):
        """What a target holds for ``class_weight``: ``"sparse"`` (class indices),
        ``"binary"`` (0/1) or ``"other"`` (one-hot), by the compiled loss's name."""
        loss = self.loss
        if isinstance(loss, (list, tuple)) and len(loss) == 1:
            loss = loss[0]
        name = (loss if isinstance(loss, str)
                else getattr(loss, "__name__", type(loss).__name__)).lower().replace("_", "")
        if "sparse" in name:
            return "sparse"
        return "binary" if "binary" in name else "other"

    # -- one step ----------------------------------------------------------------------------
    def _train_step(self, batch, state):
        if batch is None:               # data-parallel: this rank's shard has run out
            logs = self._parallel.idle_step(state)
            self._constrain(self.trainable_weights)
            return logs
        with engine.GradientTape() as tape:
            y_pred = self(batch.x, training=True)
            total, parts, preds, ys, sws = self._losses_of(batch, y_pred)
        if self._parallel is not None:   # data-parallel: gradients averaged over ranks
            weights = self.trainable_weights
            grads = tape.gradient(total, weights)
            logs = self._parallel.train_step(state, batch, weights, grads, total, parts,
                                             preds, ys, sws)
            self._constrain(weights)
            return logs
        self._apply_update(tape, total)   # gradients, optimizer, constraints
        return self._update_state(state, batch, total, parts, preds, ys, sws)

    def _test_step(self, batch, state):
        with engine.no_grad():
            y_pred = self(batch.x, training=False)
            total, parts, preds, ys, sws = self._losses_of(batch, y_pred)
        return self._update_state(state, batch, total, parts, preds, ys, sws)

    # -- randomness --------------------------------------------------------------------------
    def _generators(self, seed):
        """The shuffling generator of a ``fit``. With ``seed`` (fit's), a new one, and the
        random generators of every layer (dropout masks) reseeded from it: two fits with
        the same seed from the same weights give the same result. Without it, a model
        with a ``seed`` attribute keeps one generator across fits, seeded once (and its
        layers reseeded once); otherwise fresh entropy."""
        if seed is None:
            model_seed = _check_seed(getattr(self, "seed", None))
            if model_seed is None:
                return np.random.default_rng()
            if getattr(self, "_fit_rng", None) is None:
                self._fit_rng = self._reseed_layers(model_seed)
            return self._fit_rng
        return self._reseed_layers(seed)

    def _reseed_layers(self, seed):
        # Layers that draw random numbers keep a numpy Generator in ``_rng``. Processes
        # training data-parallel each draw their own (shuffles, dropout masks).
        rank = [distributed.rank()] if distributed.size() > 1 else []
        for i, layer in enumerate(self.layers_deep()):
            if isinstance(getattr(layer, "_rng", None), np.random.Generator):
                layer._rng = np.random.default_rng([seed, 1, i] + rank)
        return np.random.default_rng([seed, 0] + rank)

    # -- fit ---------------------------------------------------------------------------------
    @cores.computing()
    def fit(self, x=None, y=None, batch_size=32, epochs=1, verbose=1, callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch=0, seed=None, tbptt=None, steps_per_epoch=None,
            validation_steps=None):
        """Train for ``epochs`` passes over the data.

        Parameters
        ----------
        x : array, list of arrays, or a source of batches
            Inputs, ``(N, ...)`` each (a list for a model with several inputs); or a
            :class:`crnn.utils.PyDataset`, a generator or any iterable of batches
            ``(x, y)`` / ``(x, y, sample_weight)``, read one batch at a time (then ``y``
            and ``sample_weight`` are None; see :mod:`crnn.training.sources`).
        y : array, list of arrays or dict
            Targets, one per output (a dict by output name).
        batch_size : int, default 32
        epochs : int
            Train until epoch ``epochs`` (counted from ``initial_epoch``).
        verbose : {0, 1, 2, "auto"}
            0 silent, 1 a progress bar per epoch, 2 one line per epoch.
        callbacks : list of crnn.callbacks.Callback
        validation_split : float in [0, 1)
            Hold out this fraction of the samples, the **last** ones before shuffling
            (as Keras), and evaluate on them after each epoch.
        validation_data : tuple or a source of batches
            ``(x_val, y_val)`` or ``(x_val, y_val, sample_weight_val)``, or batches as
            ``x`` takes them; overrides ``validation_split``.
        shuffle : bool
            Shuffle the samples before each epoch.
        class_weight : dict {class index: weight}, optional
            Weigh each training target's loss by its class's weight (1 for a class not
            named), as Keras does: the class is the index itself for a sparse
            categorical loss, the rounded value for a binary one, else the largest entry
            of a one-hot target; targets with a time axis are weighed step by step. One
            output only, not with ``sample_weight`` (Keras 3: "You cannot `class_weight`
            and `sample_weight` at the same time"), arrays only (not a batch source);
            validation is not weighed.
        sample_weight : array ``(N,)`` or ``(N, T)``, or a list/dict per output
        initial_epoch : int
            The epoch to start from (to resume a run).
        seed : int, optional
            Seeds the shuffling and every layer's dropout masks, for a reproducible run
            (data-parallel: each process's own, from the seed and its rank).
        tbptt : int or (int, int), optional
            Truncated backpropagation through time, ``k`` or ``(k1, k2)`` (``k`` means
            ``k1 = k2 = k``; ``1 <= k1 <= k2``, ``k2`` a multiple of ``k1``). Each batch's
            time axis (axis 1 of every input, target and per-step sample weight) is cut
            into windows of ``k1`` new steps; window ``i`` covers steps ``[s, e)`` with
            ``e = min((i + 1) k1, T)`` and ``s = max(0, i k1 - (k2 - k1))``, starts from
            the recurrent layers' states at step ``s`` as an earlier window left them
            (zeros at step 0, or a stateful layer's stored states), and makes one
            optimizer update from the loss of its new steps ``[i k1, e)`` alone (the
            steps before weigh 0), backpropagated through at most ``k2`` steps. The
            batch's loss in the logs is the mean of its windows' losses weighted by their
            new steps; callbacks and the progress bar count batches. Needs per-step
            targets and forward recurrent layers (no Bidirectional, no go_backwards); a
            window as long as the sequences is exactly full BPTT. Validation runs on
            whole sequences.
        steps_per_epoch : int, optional
            Batches per epoch (Keras 3's semantics): by default the whole data (every
            batch of a dataset; a generator until it ends). With it, the next epoch
            goes on from where the last one stopped, and data that runs out ends the
            epoch early with a warning (an epoch with no batch at all ends training).
        validation_steps : int, optional
            Batches of ``validation_data`` per validation, with the same semantics.

        Returns
        -------
        History
            ``history.history[name]`` lists each epoch's ``loss``, metrics and ``val_*``.

        Notes
        -----
        After :func:`crnn.distributed.init` in a world of several processes, ``fit``
        trains data-parallel (Horovod's semantics; see :mod:`crnn.training.distributed`):
        ``x``, ``y`` are this process's shard, ``batch_size`` is per process, and the
        loss and metrics in the logs are those of the global batch.
        """
        self._check_compiled("fit")
        batch_size = 32 if batch_size is None else _check_int("batch_size", batch_size, 1)
        epochs = _check_int("epochs", epochs, 0)
        initial_epoch = _check_int("initial_epoch", initial_epoch, 0)
        verbose = _check_verbose(verbose)
        seed = _check_seed(seed)
        if not isinstance(shuffle, (bool, np.bool_)):
            raise ValueError(f"expected shuffle to be True or False, got {shuffle!r}")
        if not (isinstance(validation_split, numbers.Real) and 0 <= validation_split < 1):
            raise ValueError(f"expected validation_split in [0, 1), got {validation_split!r}")
        if class_weight is not None:
            if is_source(x):
                raise ValueError("expected arrays x, y with class_weight, got a batch "
                                 "source: weigh its batches with a sample_weight each")
            if sample_weight is not None:
                raise ValueError("You cannot `class_weight` and `sample_weight` at the same "
                                 "time: pass one of them (as Keras 3)")
            if isinstance(y, (list, tuple, dict)):
                raise ValueError("expected one output's targets y with class_weight (it "
                                 "is only supported for models with a single output), got "
                                 f"a {type(y).__name__} of targets")
            sample_weight = class_sample_weights(y, class_weight, self._class_kind())
        if is_source(x) or is_source(validation_data) or steps_per_epoch is not None:
            _not_data_parallel("fit from a batch source (a PyDataset, a generator) or with "
                               "steps_per_epoch")
            return self._fit_source(x, y, sample_weight, batch_size, epochs, verbose,
                                    callbacks, validation_split, validation_data, shuffle,
                                    initial_epoch, self._generators(seed),
                                    _check_tbptt(tbptt), steps_per_epoch, validation_steps)
        data = Data(x, y, sample_weight)
        if data.y is None:
            raise ValueError("expected targets y for fit, got None")
        val = None
        if validation_data is not None:
            if not (isinstance(validation_data, tuple) and len(validation_data) in (2, 3)):
                raise ValueError(f"expected validation_data to be a tuple (x_val, y_val) or "
                                 f"(x_val, y_val, sample_weight_val), got "
                                 f"{type(validation_data).__name__}"
                                 + (f" of length {len(validation_data)}"
                                    if isinstance(validation_data, (tuple, list)) else ""))
            val = Data(*validation_data, names=("x_val", "y_val", "sample_weight_val"))
        elif validation_split:
            split = int(math.floor(data.n * (1.0 - validation_split)))
            if split == 0 or split == data.n:
                raise ValueError(f"expected enough samples to split off validation_split="
                                 f"{validation_split} (at least one for training and one "
                                 f"for validation), got {data.n} samples")
            data, val = data.take(slice(0, split)), data.take(slice(split, data.n))
        if data.n == 0:
            raise ValueError("expected at least one training sample, got 0")
        tbptt = _check_tbptt(tbptt)
        if tbptt is not None:
            carried = self._tbptt_layers()
            time_steps(data)
        self._check_stateful_batches(data.n, batch_size, "x")
        if val is not None:
            self._check_stateful_batches(val.n, batch_size, "the validation data")
        rng = self._generators(seed)
        steps, samples, shown_batch = math.ceil(data.n / batch_size), data.n, batch_size
        parallel = self._parallel = DataParallel.active(self)
        if parallel is not None:
            parallel.start(data, val, batch_size, epochs, initial_epoch, tbptt)
            steps, samples, shown_batch = parallel.steps, parallel.samples, parallel.batch_size
            callbacks = for_this_rank(callbacks)
        cbs = CallbackList(callbacks, add_history=True,
                           add_progbar=verbose != 0 and distributed.rank() == 0, model=self,
                           epochs=epochs, steps=steps, samples=samples,
                           batch_size=shown_batch, verbose=verbose)
        self.stop_training = False
        cbs.on_train_begin()
        epoch_logs = {}
        for epoch in range(initial_epoch, epochs):
            state = self._new_state()
            cbs.on_epoch_begin(epoch)
            order = rng.permutation(data.n) if shuffle else None
            logs = {}
            batches = (data.batches(batch_size, order) if parallel is None
                       else parallel.batches(data, batch_size, order))
            for step, batch in batches:
                cbs.on_train_batch_begin(step)
                if tbptt is None:
                    logs = self._train_step(batch, state)
                else:
                    logs = self._tbptt_step(batch, state, *tbptt, carried)
                cbs.on_train_batch_end(step, dict(logs))
                if parallel is not None:
                    self.stop_training = parallel.agree(self.stop_training)
                if self.stop_training:
                    break
            epoch_logs = dict(logs)
            if val is not None and (val.n or parallel is not None):
                val_logs = self._evaluate_data(val, batch_size, cbs)
                epoch_logs.update({f"val_{k}": v for k, v in val_logs.items()})
            cbs.on_epoch_end(epoch, epoch_logs)
            if parallel is not None:
                self.stop_training = parallel.agree(self.stop_training)
            if self.stop_training:
                break
        cbs.on_train_end(epoch_logs)
        self._parallel = None
        self.history = cbs.history
        return cbs.history

    # -- evaluate ----------------------------------------------------------------------------
    def _evaluate_data(self, data, batch_size, cbs):
        state = self._new_state()
        cbs.on_test_begin()
        logs = {}
        for step, batch in data.batches(batch_size):
            cbs.on_test_batch_begin(step)
            logs = self._test_step(batch, state)
            cbs.on_test_batch_end(step, dict(logs))
        if self._parallel is not None:   # the means over every rank's samples
            logs = self._parallel.evaluation_logs(state)
        cbs.on_test_end(dict(logs))
        return logs

    @cores.computing()
    def evaluate(self, x=None, y=None, batch_size=32, verbose=1, sample_weight=None,
                 return_dict=False, callbacks=None, steps=None):
        """The loss and metrics on the data, in batches, without training.

        ``x`` may be a source of batches as :meth:`fit` takes (then ``y`` and
        ``sample_weight`` are None); ``steps`` (optional) evaluates that many batches.

        Returns
        -------
        float, list or dict
            The loss alone when nothing else is compiled; else ``[loss, ...]`` in the
            order of :attr:`metrics_names`; or a dict with ``return_dict``. In a world of
            several processes (:mod:`crnn.distributed`) each evaluates its own ``x``, and
            the results are over every process's samples.
        """
        self._check_compiled("evaluate")
        batch_size = 32 if batch_size is None else _check_int("batch_size", batch_size, 1)
        verbose = _check_verbose(verbose)
        if is_source(x) or steps is not None:
            _not_data_parallel("evaluate from a batch source or with steps")
            logs = self._evaluate_batches(x, y, sample_weight, batch_size, verbose,
                                          callbacks, steps)
            return self._result(logs, return_dict)
        data = Data(x, y, sample_weight)
        if data.y is None:
            raise ValueError("expected targets y for evaluate, got None")
        if data.n == 0:
            raise ValueError("expected at least one sample to evaluate, got 0")
        self._check_stateful_batches(data.n, batch_size, "x")
        cbs = CallbackList(callbacks, add_progbar=verbose != 0 and distributed.rank() == 0,
                           model=self, steps=math.ceil(data.n / batch_size), samples=data.n,
                           batch_size=batch_size, verbose=verbose)
        self._parallel = DataParallel.active(self)
        logs = self._evaluate_data(data, batch_size, cbs)
        self._parallel = None
        return self._result(logs, return_dict)

    def _result(self, logs, return_dict):
        if return_dict:
            return dict(logs)
        values = [logs[name] for name in self.metrics_names if name in logs]
        return values[0] if len(values) == 1 else values

    # -- predict -----------------------------------------------------------------------------
    @cores.computing()
    def predict(self, x, batch_size=32, verbose=0, callbacks=None, steps=None):
        """The model's outputs for ``x``, computed in batches without a tape.

        ``x`` may be a source of batches as :meth:`fit` takes (a batch's targets, if
        any, are ignored); ``steps`` (optional) predicts that many batches.

        Returns
        -------
        array or list of arrays
            The outputs of every batch joined along the batch axis (a list for a model
            with several outputs).
        """
        batch_size = 32 if batch_size is None else _check_int("batch_size", batch_size, 1)
        verbose = _check_verbose(verbose)
        if is_source(x) or steps is not None:
            return self._predict_batches(x, batch_size, verbose, callbacks, steps)
        data = Data(x)
        if data.n == 0:
            raise ValueError("expected at least one sample to predict, got 0")
        self._check_stateful_batches(data.n, batch_size, "x")
        cbs = CallbackList(callbacks, add_progbar=verbose != 0 and distributed.rank() == 0,
                           model=self, steps=math.ceil(data.n / batch_size), samples=data.n,
                           batch_size=batch_size, verbose=verbose)
        cbs.on_predict_begin()
        pieces, structure = [], None
        for step, batch in data.batches(batch_size):
            cbs.on_predict_batch_begin(step)
            with engine.no_grad():
                out = self(batch.x, training=False)
            structure = out
            leaves = [np.asarray(engine.value_of(o)) for o in engine.flatten(out)]
            pieces.append(leaves)
            cbs.on_predict_batch_end(step, {"outputs": out})
        cbs.on_predict_end()
        joined = [np.concatenate(parts, axis=0) for parts in zip(*pieces)]
        return _pack_outputs(structure, joined)

    # -- one batch ---------------------------------------------------------------------------
    @cores.computing()
    def train_on_batch(self, x, y=None, sample_weight=None, return_dict=False,
                       tbptt=None):
        """One training step on one batch (metrics reset first, as Keras). Returns the
        batch's loss (and metrics), as :meth:`evaluate`. ``tbptt`` as in :meth:`fit`
        (then one update per window)."""
        self._check_compiled("train_on_batch")
        data = Data(x, y, sample_weight)
        if data.y is None:
            raise ValueError("expected targets y for train_on_batch, got None")
        tbptt = _check_tbptt(tbptt)
        if tbptt is None:
            logs = self._train_step(data, self._new_state())
        else:
            carried = self._tbptt_layers()
            time_steps(data)
            logs = self._tbptt_step(data, self._new_state(), *tbptt, carried)
        return self._result(logs, return_dict)

    @cores.computing()
    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        """The loss (and metrics) of one batch, without training."""
        self._check_compiled("test_on_batch")
        data = Data(x, y, sample_weight)
        if data.y is None:
            raise ValueError("expected targets y for test_on_batch, got None")
        logs = self._test_step(data, self._new_state())
        return self._result(logs, return_dict)

    @cores.computing()
    def predict_on_batch(self, x):
        """The model's outputs for one batch, without a tape."""
        data = Data(x)
        with engine.no_grad():
            out = self(data.x, training=False)
        leaves = [np.asarray(engine.value_of(o)) for o in engine.flatten(out)]
        return _pack_outputs(out, leaves)

    # -- summary -----------------------------------------------------------------------------
    def summary(self, line_length=None, positions=None, print_fn=None):
        """Print Keras's table of the layers: name (type), output shape, parameters.

        Output shapes come from the functional graph, or, for a Sequential or
        subclassed model, from its layers called on placeholders shaped like the inputs
        of the model's last call (batch axis ``None``). A Sequential started with an
        :func:`crnn.Input` needs no call; any other model must have been called (or
        trained) once. A functional model with branches also gets a ``Connected to``
        column (``layer[node][tensor]``). ``print_fn`` takes each line (``print`` by
        default).
        """
        print_summary(self, line_length, positions, print_fn)
