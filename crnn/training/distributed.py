"""Data-parallel ``fit`` and ``evaluate`` over the processes of :mod:`crnn.distributed`,
with Horovod's semantics.

Each of the ``N`` processes (ranks) calls ``fit`` with its own shard of the data;
``batch_size`` is per process; the global batch of step ``i`` is the concatenation of
every rank's batch ``i``. :class:`DataParallel` is what the trainer calls at its few
points:

1. **start** (:meth:`DataParallel.start`): one ``allgather`` of what every rank was given
   (the per-sample shapes and dtypes of ``x``, ``y``, ``sample_weight`` and the
   validation data, ``epochs``, ``initial_epoch``, the model's layer types and weight
   shapes, the compiled losses and metrics). Any difference raises the same ValueError
   on every rank before training. A model not built yet is built on placeholders of the
   data's shapes; then rank 0's weights and optimizer state are broadcast.
2. **each step** (:meth:`DataParallel.train_step`): one ``allreduce`` (sum) of one
   contiguous buffer holding ``n_r g_r`` for every weight (``g_r`` the gradient of rank
   ``r``'s mean loss over its ``n_r`` samples), a has-a-gradient flag per weight,
   ``n_r``, ``n_r`` times each loss, and the batch's additions to every metric's
   ``(total, count)``. The gradient applied, identically on every rank, is

   .. math::
       g = \\frac{\\sum_r n_r g_r}{\\sum_r n_r}

   the gradient of the mean loss over the global batch (exact for losses that average
   over samples, with equal per-sample shapes; a masked sequence output normalises by
   its real steps in one process, so there the ranks' gradients are weighted by
   samples, not steps). The optimizer update comes after the average (a fused update
   such as Adam's never sees a rank's own gradient). Logs and metrics hold the global
   numbers, the same on every rank, so callbacks decide alike; a stop set by any
   callback on any rank stops every rank (one small ``allreduce`` after each batch and
   each epoch).
3. **the number of steps** per epoch is the largest over the ranks: a rank whose shard
   has run out contributes nothing (``n_r = 0``) to the later steps and still applies
   their update. No sample is dropped or repeated: with shuffling off, ``N`` processes
   give the weights of one process fed, step after step, the concatenated batches.
4. **evaluation**: each rank evaluates its shard; one ``allreduce`` of the loss and
   metric states at the end gives the global means (``predict`` stays local).

Only rank 0 shows progress bars and keeps :class:`crnn.callbacks.ModelCheckpoint`
callbacks (the others drop them: one writer of each file). ``shuffle=True`` shuffles
each rank's shard with its own generator (``fit``'s ``seed`` with the rank mixed in).
Truncated BPTT (``tbptt``) is not averaged across processes yet and raises.
"""
import math

import numpy as np

from crnn import distributed, engine
from crnn.callbacks import ModelCheckpoint
from crnn.training.compile import _mean

__all__ = ["DataParallel", "for_this_rank"]


def for_this_rank(callbacks):
    """``callbacks`` without :class:`~crnn.callbacks.ModelCheckpoint` on ranks other than 0
    (rank 0 alone writes the checkpoint files); unchanged in a world of one."""
    if distributed.rank() == 0 or not isinstance(callbacks, (list, tuple)):
        return callbacks
    return [cb for cb in callbacks if not isinstance(cb, ModelCheckpoint)]


def _spec(part):
    """The per-sample shapes and dtypes of ``x``, ``y`` or ``sample_weight``."""
    if part is None:
        return None
    if isinstance(part, dict):
        return {k: _spec(v) for k, v in sorted(part.items())}
    if isinstance(part, list):
        return [_spec(a) for a in part]
    return (tuple(part.shape[1:]), part.dtype.str)


def _cell(metric):
    """The object holding a metric's running ``total`` and ``count`` (an ``"accuracy"``
    keeps them in the metric it resolved to)."""
    return getattr(metric, "resolved", None) or metric


class DataParallel:
    """One ``fit`` or ``evaluate`` of a model over every rank (see the module docstring).

    Attributes
    ----------
    steps : int
        Steps per epoch, the largest ``ceil(n_r / batch_size_r)`` over the ranks.
    samples, batch_size : int
        The global number of samples and the global batch (sums over the ranks), for
        the progress bar and the callbacks' ``params``.
    """

    def __init__(self, model):
        self.model = model
        self.rank, self.size = distributed.rank(), distributed.size()
        self.steps, self.samples, self.batch_size = None, None, None
        self._layout = None

    @classmethod
    def active(cls, model):
        """A new DataParallel for ``model`` in a world of several processes, else None."""
        return cls(model) if distributed.size() > 1 else None

    # -- start of fit ------------------------------------------------------------------------
    def start(self, data, val, batch_size, epochs, initial_epoch, tbptt):
        """Check that every rank was given the same kind of data and model, build the model
        if needed, broadcast rank 0's weights and optimizer state; agree on the steps."""
        model = self.model
        if tbptt is not None:
            raise ValueError(f"expected tbptt=None in a data-parallel fit ({self.size} "
                             f"processes), got tbptt={tbptt}: truncated BPTT's per-window "
                             f"updates are not averaged across processes")
        if not all(getattr(layer, "built", True) for layer in model.layers_deep()):
            self._build(data)
        mine = {
            "the input shapes and dtypes (per sample) of x": _spec(data.x),
            "the shapes and dtypes (per sample) of y": _spec(data.y),
            "sample_weight (per sample)": _spec(data.sample_weight),
            "validation data (per sample)": None if val is None else (
                _spec(val.x), _spec(val.y), _spec(val.sample_weight)),
            "epochs and initial_epoch": (epochs, initial_epoch),
            "model layer types": [type(layer).__name__ for layer in model.layers_deep()],
            "model weight shapes and dtypes": [(w.shape, w.dtype.str) for w in model.weights],
            "optimizer": type(model.optimizer).__name__,
            "compiled losses and metrics": list(model.metrics_names),
        }
        counts = (data.n, batch_size)
        every = distributed.allgather((mine, counts))
        for r, (theirs, _) in enumerate(every):
            for key, value in every[0][0].items():
                if theirs[key] != value:
                    raise ValueError(f"expected the same {key} on every rank (data-parallel "
                                     f"training runs one model over shards of one data "
                                     f"set), got {value} on rank 0 and {theirs[key]} on "
                                     f"rank {r}")
        self.steps = max(math.ceil(n / b) for _, (n, b) in every)
        self.samples = sum(n for _, (n, _b) in every)
        self.batch_size = sum(b for _, (_n, b) in every)
        # rank 0's weights and optimizer state (an optimizer not built yet: its fresh one)
        distributed.broadcast_arrays(model.weights)
        state = distributed.broadcast(model.optimizer.get_state())
        if self.rank != 0:
            model.optimizer.set_state(state, params=model.trainable_weights)

    def _build(self, data):
        """Build the model's weights on placeholders shaped like the data (no compute);
        a model whose ``call`` cannot run on placeholders, on its first sample (stored
        recurrent states left as they were)."""
        def placeholders(part):
            if isinstance(part, list):
                return [placeholders(a) for a in part]
            return engine.SymbolicTensor((None,) + tuple(part.shape[1:]), part.dtype)
        try:
            self.model.call(placeholders(data.x))
            return
        except Exception:  # noqa: BLE001 - a call that only runs on arrays
            pass
        layers = [layer for layer in self.model.layers_deep() if hasattr(layer, "_states")]
        saved = [layer._states for layer in layers]
        try:
            with engine.no_grad():
                self.model(data.take(slice(0, 1)).x, training=False)
        finally:
            for layer, states in zip(layers, saved):
                layer._states = states

    def _make_layout(self):
        """Where each number sits in the step's buffer (made at the first step, when
        the model's outputs, and so its losses and metrics, are known)."""
        model = self.model
        weights = model.trainable_weights
        sizes = [w.size for w in weights]
        dtype = np.result_type(*[w.dtype for w in weights]) if weights else np.float64
        compiled = model._compiled
        n_parts = sum(op is not None for op in compiled["losses"]) if compiled else 0
        n_metrics = len(model.metrics)
        for m in model.metrics:
            if not (hasattr(m, "total") and hasattr(m, "count")):
                raise ValueError(f"expected metrics with a running total and count (crnn's "
                                 f"Metric) in a data-parallel fit, got {m!r}")
        grads = sum(sizes)
        self._layout = {
            "sizes": sizes, "grads": grads, "flags": grads, "n": grads + len(sizes),
            "losses": grads + len(sizes) + 1, "n_parts": n_parts,
            "metrics": grads + len(sizes) + 2 + n_parts, "n_metrics": n_metrics}
        self._buffer = np.zeros(grads + len(sizes) + 2 + n_parts + 2 * n_metrics,
                                dtype=dtype)

    # -- each step ---------------------------------------------------------------------------
    def train_step(self, state, batch, weights, grads, total, parts, preds, ys, sws):
        """Average the gradients over the ranks, apply them, return the global logs."""
        value_of = engine.value_of
        if self._layout is None:
            self._make_layout()
        L, buf = self._layout, self._buffer
        n = float(batch.n)
        at = 0
        for i, (g, size) in enumerate(zip(grads, L["sizes"])):
            if g is None:
                buf[at:at + size] = 0
                buf[L["flags"] + i] = 0
            else:
                np.multiply(np.asarray(g).reshape(-1), n, out=buf[at:at + size])  # n_r g_r
                buf[L["flags"] + i] = 1
            at += size
        buf[L["n"]] = n
        buf[L["losses"]] = n * float(value_of(total))
        values = [float(value_of(p)) for p in parts if p is not None] if L["n_parts"] else []
        buf[L["losses"] + 1:L["losses"] + 1 + len(values)] = np.multiply(values, n)
        before = self._metric_states()
        self.model._update_metrics(preds, ys, sws)
        after = self._metric_states()
        buf[L["metrics"]:] = (after - before).reshape(-1)
        return self._finish_step(state, weights, before)

    def idle_step(self, state):
        """A step past the end of this rank's shard: nothing to add, the update to apply."""
        self._buffer[...] = 0
        return self._finish_step(state, self.model.trainable_weights,
                                 self._metric_states())

    def _finish_step(self, state, weights, before):
        L, buf = self._layout, self._buffer
        distributed.allreduce(buf)                          # sums over the ranks
        n = float(buf[L["n"]])
        at, grads = 0, []
        for i, (w, size) in enumerate(zip(weights, L["sizes"])):
            if buf[L["flags"] + i] == 0:
                grads.append(None)
            else:
                g = buf[at:at + size].reshape(w.shape)
                g /= n                                      # sum_r n_r g_r / sum_r n_r
                grads.append(g)
            at += size
        self.model.optimizer.apply(weights, grads)
        total = buf[L["losses"]] / n
        parts = None
        if L["n_parts"]:
            sums = iter(buf[L["losses"] + 1:L["losses"] + 1 + L["n_parts"]] / n)
            parts = [None if op is None else float(next(sums))
                     for op in self.model._compiled["losses"]]
        self.model._update_losses(state, n, total, parts or [total])
        self._set_metric_states(before + buf[L["metrics"]:].reshape(-1, 2))
        return self.model._logs(state)

    def _metric_states(self):
        return np.array([(_cell(m).total, _cell(m).count) for m in self.model.metrics],
                        dtype=np.float64).reshape(-1, 2)

    def _set_metric_states(self, states):
        for m, (total, count) in zip(self.model.metrics, states):
            cell = _cell(m)
            cell.total, cell.count = float(total), float(count)

    def batches(self, data, batch_size, order):
        """``(step, batch)`` for every agreed step; ``batch`` is None once this rank's
        shard has run out."""
        mine = data.batches(batch_size, order)
        for step in range(self.steps):
            got = next(mine, None)
            yield step, (None if got is None else got[1])

    def agree(self, flag):
        """True on every rank when ``flag`` is True on any (a callback's stop)."""
        return bool(distributed.allreduce(np.array([float(bool(flag))]), op="max")[0])

    # -- evaluation --------------------------------------------------------------------------
    def evaluation_logs(self, state):
        """The global logs of an evaluation from every rank's running means (one
        allreduce of the loss and metric totals and counts)."""
        model = self.model
        compiled = model._compiled
        names = ["loss"]
        if compiled and sum(op is not None for op in compiled["losses"]) > 1:
            names += [f"{name}_loss" for name, op in zip(compiled["names"], compiled["losses"])
                      if op is not None]
        means = [state.setdefault(name, _mean()) for name in names]
        buf = np.concatenate([np.array([(m.total, m.count) for m in means],
                                       dtype=np.float64).reshape(-1),
                              self._metric_states().reshape(-1)])
        distributed.allreduce(buf)
        sums = buf.reshape(-1, 2)
        for m, (total, count) in zip(means, sums[:len(means)]):
            m.total, m.count = float(total), float(count)
        self._set_metric_states(sums[len(means):])
        return model._logs(state)
