"""Training: Keras's ``compile``/``fit``/``evaluate``/``predict`` and ``summary`` on the tape.

One training step, for every kind of model::

    with GradientTape() as tape:
        y_pred = model(x, training=True)
        loss = sum_k w_k * LossOp(loss_k)([y_k, y_pred_k, sample_weight])   # per output k
    grads = tape.gradient(loss, model.trainable_weights)
    model.optimizer.apply(model.trainable_weights, grads)

Each loss function returns its value *and* ``d loss / d y_pred`` (see :mod:`crnn.losses`);
:class:`LossOp` puts that pair on the tape as one primitive, so the tape's backward pass
starts from the loss and reaches every weight.

Numbers are reported as Keras reports them: a batch's loss is the loss function's value
(its mean over the batch's samples and steps, Keras's ``sum_over_batch_size``); the
epoch's ``loss`` is the mean of the batch losses **weighted by batch size**, so a short
last batch counts in proportion to its samples; metrics are running means over every
sample of the epoch. Batch logs hold the running values so far, epoch logs the final
ones plus ``val_*`` for the validation data.
"""
import contextlib
import math
import numbers

import numpy as np

from crnn import (engine, losses as _losses, metrics as _metrics, optimizers as _optimizers,
                  registry)
from crnn.engine import Op
from crnn.layers.base import architecture, sublayers
from crnn.layers.recurrent import RNN, RNNCell, reset_rows
from crnn.layers.wrappers import Bidirectional, TimeDistributed

__all__ = ["LossOp", "TrainingMixin"]


def _output_masks(output_mask, preds):
    """One mask (or None) per flattened output: a model's ``output_mask`` where it has the
    shape of that output's values ``y_pred.shape[:-1]`` (a mask of another shape, e.g.
    of a sequence that a later layer reduced, is not that output's)."""
    flat = (list(output_mask) if isinstance(output_mask, (list, tuple))
            else [output_mask])
    flat = flat + [None] * (len(preds) - len(flat))
    out = []
    for m, p in zip(flat, preds):
        if m is not None and np.shape(m) == tuple(p.shape[:-1]):
            out.append(np.asarray(m))
        else:
            out.append(None)
    return out


class LossOp(Op):
    """A loss as a primitive of the tape.

    ``LossOp(fn)([y_true, y_pred, sample_weight])`` returns the loss ``fn`` computes
    (a 0-d array, a :class:`crnn.Tensor` while a tape records); the backward pass hands
    ``d_loss * d_y_pred`` to ``y_pred`` and nothing to ``y_true`` and ``sample_weight``.

    .. math::
        \\frac{\\partial L}{\\partial y_{pred}} = \\bar L \\cdot
        \\frac{\\partial\\, \\mathrm{fn}}{\\partial y_{pred}}

    Parameters
    ----------
    fn : callable
        ``fn(y_true, y_pred, sample_weight) -> (loss, d_y_pred)`` as :mod:`crnn.losses`,
        with ``loss`` a scalar and ``d_y_pred`` of ``y_pred``'s shape.
    """

    def __init__(self, fn, name=None):
        super().__init__(name=name)
        self.fn = fn

    def get_config(self):
        return {"fn": self.fn}

    def _forward(self, inputs):
        y_true, y_pred, sample_weight = inputs
        y_pred = np.asarray(y_pred)
        out = self.fn(y_true, y_pred, sample_weight)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise ValueError(f"expected the loss {self.fn!r} to return (loss, d_loss/d_y_pred),"
                             f" got {type(out).__name__}")
        value, grad = np.asarray(out[0]), np.asarray(out[1])
        if value.size != 1:
            raise ValueError(f"expected the loss {self.fn!r} to return a scalar loss, got "
                             f"shape {value.shape}")
        if grad.shape != y_pred.shape:
            raise ValueError(f"expected the loss {self.fn!r} to return a gradient of y_pred's "
                             f"shape {y_pred.shape}, got {grad.shape}")
        dtype = y_pred.dtype if np.issubdtype(y_pred.dtype, np.floating) else np.float64
        return [value.reshape(()).astype(dtype, copy=False)], grad

    def _backward(self, grad, d_outputs):
        d_loss = d_outputs[0]
        return [None, grad * d_loss, None], None        # only y_pred gets a gradient


# -- the arrays of a run --------------------------------------------------------------------
def _is_array(a):
    return isinstance(a, (np.ndarray, engine.Tensor))


def _as_data(data, what, allow_dict=False):
    """An array, a list of arrays, or (when ``allow_dict``) a dict of them; None stays
    None. A list whose entries are not all arrays is one array (a nested Python list)."""
    if data is None:
        return None
    if isinstance(data, dict):
        if not allow_dict:
            raise ValueError(f"expected {what} to be an array or a list of arrays, got a dict")
        return {k: _one_array(v, f"{what}[{k!r}]") for k, v in data.items()}
    if isinstance(data, (list, tuple)) and data and all(_is_array(a) for a in data):
        return [_one_array(a, f"{what}[{i}]") for i, a in enumerate(data)]
    return _one_array(data, what)


def _one_array(a, what):
    a = np.asarray(engine.value_of(a))
    if a.ndim == 0:
        raise ValueError(f"expected {what} to have a batch axis first, got a scalar")
    return a


def _leaves(data):
    if data is None:
        return []
    if isinstance(data, dict):
        return list(data.values())
    return data if isinstance(data, list) else [data]


def _take(data, index):
    if data is None:
        return None
    if isinstance(data, dict):
        return {k: v[index] for k, v in data.items()}
    if isinstance(data, list):
        return [a[index] for a in data]
    return data[index]


class Data:
    """``x``, ``y`` and ``sample_weight`` of a run, checked to have one number of
    samples, sliced together."""

    def __init__(self, x, y=None, sample_weight=None, names=("x", "y", "sample_weight")):
        if x is None:
            raise ValueError("expected input data x, got None")
        self.x = _as_data(x, names[0])
        if isinstance(self.x, list) and len(self.x) == 1:
            self.x = self.x[0]        # one input given as a list of one array
        self.y = _as_data(y, names[1], allow_dict=True)
        self.sample_weight = _as_data(sample_weight, names[2], allow_dict=True)
        counts = {}
        for name, part in zip(names, (self.x, self.y, self.sample_weight)):
            sizes = {len(a) for a in _leaves(part)}
            if len(sizes) > 1:
                raise ValueError(f"expected every array of {name} to have the same number of "
                                 f"samples (first dimension), got {sorted(sizes)}")
            if sizes:
                counts[name] = sizes.pop()
        if len(set(counts.values())) > 1:
            got = ", ".join(f"{counts[k]} ({k})" for k in counts)
            raise ValueError(f"expected {', '.join(counts)} to have the same number of "
                             f"samples (first dimension), got {got}")
        self.n = counts[names[0]]

    def take(self, index):
        out = Data.__new__(Data)
        out.x, out.y = _take(self.x, index), _take(self.y, index)
        out.sample_weight = _take(self.sample_weight, index)
        out.n = len(index) if not isinstance(index, slice) else len(range(self.n)[index])
        return out

    def batches(self, batch_size, order=None):
        """``(step, batch)`` over the samples in ``order`` (all, in turn, by default)."""
        for step, start in enumerate(range(0, self.n, batch_size)):
            if order is None:
                yield step, self.take(slice(start, start + batch_size))
            else:
                yield step, self.take(order[start:start + batch_size])


def _per_output(data, names, what):
    """``y`` or ``sample_weight`` as one entry per output (None where absent)."""
    n = len(names)
    if data is None:
        return [None] * n
    if isinstance(data, dict):
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ValueError(f"expected the keys of {what} to be output names {names}, got "
                             f"{unknown}")
        return [data.get(name) for name in names]
    if isinstance(data, list):
        if len(data) != n:
            raise ValueError(f"expected {what} to be a list of {n} arrays (one per output "
                             f"{names}), got {len(data)}")
        return list(data)
    if what == "sample_weight":
        return [data] * n          # one weighting for every output
    if n != 1:
        raise ValueError(f"expected {what} to be a list of {n} arrays (one per output "
                         f"{names}), got one array")
    return [data]


def _stateful_layers(model):
    return [layer for layer in model.layers_deep()
            if isinstance(layer, RNN) and layer.stateful]


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


def _time_steps(data):
    """The common length ``T`` of axis 1 of every input, target and per-step sample
    weight (truncated BPTT splits that axis); raises where one has none."""
    xs = _leaves(data.x)
    T = None
    for i, a in enumerate(xs):
        if a.ndim < 2:
            raise ValueError(f"expected every input to have a time axis (batch, time, ...) "
                             f"for truncated BPTT, got input {i} of shape {a.shape}")
        if T is None:
            T = a.shape[1]
        elif a.shape[1] != T:
            raise ValueError(f"expected every input to have a time axis with the same "
                             f"number of steps (axis 1) for truncated BPTT, got {T} and "
                             f"{a.shape[1]} (input {i} of shape {a.shape})")
    for i, a in enumerate(_leaves(data.y)):
        if a.ndim < 2 or a.shape[1] != T:
            raise ValueError(f"expected per-step targets (batch, time={T}, ...) for "
                             f"truncated BPTT (each window's loss is on its own steps), got "
                             f"targets of shape {a.shape}: a model with one target per "
                             f"sequence trains with tbptt=None")
    for a in _leaves(data.sample_weight):
        if a.ndim >= 2 and a.shape[1] != T:
            raise ValueError(f"expected sample_weight per sample (batch,) or per step "
                             f"(batch, time={T}) for truncated BPTT, got shape {a.shape}")
    return T


def _time_window(data, start, stop):
    """``data`` cut to steps ``[start, stop)`` (a per-sample weight is kept whole)."""
    def cut(part, keep_1d=False):
        if part is None:
            return None
        def one(a):
            return a if (keep_1d and a.ndim < 2) else a[:, start:stop]
        if isinstance(part, dict):
            return {k: one(v) for k, v in part.items()}
        if isinstance(part, list):
            return [one(a) for a in part]
        return one(part)
    out = Data.__new__(Data)
    out.x, out.y = cut(data.x), cut(data.y)
    out.sample_weight = cut(data.sample_weight, keep_1d=True)
    out.n = data.n
    return out


def _check_window_outputs(model, y_pred, n, steps):
    """Truncated BPTT needs outputs with a time axis: ``(batch, steps, ...)``."""
    preds = engine.flatten(y_pred)
    losses = model._compile_for_outputs(len(preds))["losses"]
    for i, (p, loss) in enumerate(zip(preds, losses)):
        if p is None or loss is None:
            continue
        shape = tuple(p.shape)
        if len(shape) < 3 or shape[:2] != (n, steps):
            raise ValueError(f"expected per-step outputs (batch, time, features) = ({n}, "
                             f"{steps}, ...) for truncated BPTT, got output {i} of shape "
                             f"{shape} on a window of {steps} steps: a many-to-one model "
                             f"trains with tbptt=None")


# -- argument checks ------------------------------------------------------------------------
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


# -- input shapes of the last call (for summary) --------------------------------------------
def _spec_of(structure):
    """``structure`` with every array replaced by ``("array", shape, dtype)``."""
    if isinstance(structure, (list, tuple)):
        return type(structure)(_spec_of(s) for s in structure)
    if _is_array(structure):
        return ("array", tuple(structure.shape), np.dtype(structure.dtype))
    return structure


def _placeholders(spec):
    """:func:`_spec_of`'s output back as :class:`crnn.engine.SymbolicTensor` placeholders
    with an unknown batch size."""
    if isinstance(spec, tuple) and len(spec) == 3 and spec[0] == "array":
        _, shape, dtype = spec
        return engine.SymbolicTensor((None,) + tuple(shape[1:]), dtype)
    if isinstance(spec, (list, tuple)):
        return type(spec)(_placeholders(s) for s in spec)
    return spec


def note_inputs(model, args, kwargs):
    """Keep the shapes of a model call's inputs (``summary`` shows what each layer
    returned for them); :meth:`crnn.Model.__call__` calls this."""
    if args:
        model._input_spec_seen = (_spec_of(args), {k: _spec_of(v) for k, v in kwargs.items()
                                                   if k != "training"})


class TrainingMixin:
    """The Keras training API of :class:`crnn.Model`: ``compile``, ``fit``, ``evaluate``,
    ``predict``, the ``*_on_batch`` methods and ``summary``."""

    # -- compile -------------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, loss_weights=None):
        """Configure training.

        Parameters
        ----------
        optimizer : str or Optimizer
            A name (``"sgd"``, ``"adam"``, ``"rmsprop"``, ``"adagrad"``) or an optimizer.
        loss : str, Loss, callable, list or dict, optional
            One loss for every output, or one per output: a list in the order of the
            outputs, or a dict by output name (an output left out has no loss).
        metrics : list or dict, optional
            Names (``"accuracy"``, ``"mae"``, ...) or metric objects. A flat list applies
            to every output; a list of lists gives each output its own; a dict maps
            output names to a metric or a list of them.
        loss_weights : list or dict, optional
            The weight of each output's loss in the total (1 by default), by position or
            by output name.
        """
        self.optimizer = _optimizers.get(optimizer)
        if isinstance(loss, dict):
            resolved = {k: (None if v is None else _losses.get(v)) for k, v in loss.items()}
        elif isinstance(loss, (list, tuple)):
            resolved = [None if v is None else _losses.get(v) for v in loss]
        else:
            resolved = None if loss is None else _losses.get(loss)
        if metrics is not None and not isinstance(metrics, (list, tuple, dict)):
            raise ValueError(f"expected metrics to be a list or a dict, got "
                             f"{type(metrics).__name__}")
        if loss_weights is not None and not isinstance(loss_weights, (list, tuple, dict)):
            raise ValueError(f"expected loss_weights to be a list or a dict, got "
                             f"{type(loss_weights).__name__}")
        self.loss = loss
        self._compile_args = {"loss": resolved, "metrics": metrics,
                              "loss_weights": loss_weights}
        self._compiled = None           # per-output losses and metrics, made at first use
        self.compiled = True
        n = self._known_output_count()
        if n is not None:
            self._compile_for_outputs(n)  # errors in the arguments surface now

    def get_compile_config(self):
        """``compile``'s arguments, to save with the model (optimizer as its config)."""
        if not getattr(self, "compiled", False):
            return None
        return {"optimizer": _optimizers.serialize(self.optimizer),
                "loss": _serialize_losses(self.loss),
                "metrics": self._compile_args["metrics"],
                "loss_weights": self._compile_args["loss_weights"]}

    def compile_from_config(self, config):
        """``compile`` from :meth:`get_compile_config`'s output."""
        config = dict(config)
        if isinstance(config.get("optimizer"), dict):
            config["optimizer"] = _optimizers.deserialize(config["optimizer"])
        config["loss"] = _deserialize_losses(config.get("loss"))
        self.compile(**config)

    def _check_compiled(self, what, need_loss=True):
        if not getattr(self, "compiled", False):
            raise ValueError(f"expected a compiled model before {what}: call "
                             f"model.compile(optimizer, loss) first, got an uncompiled "
                             f"{type(self).__name__}")
        if need_loss and self._compile_args["loss"] in (None, [], {}):
            raise ValueError(f"expected a loss for {what}: call model.compile(optimizer, "
                             f"loss=...), got loss=None")

    def _known_output_count(self):
        if getattr(self, "_functional", False):
            return len(engine.flatten(self.outputs))
        if hasattr(self, "_layers"):                       # Sequential: one output
            return 1
        return None                                        # subclassed: known when called

    def _output_names(self, n):
        """Keras's output names: the output layers' names (functional, Sequential), else
        ``output_1``, ``output_2``, ..."""
        names = None
        if getattr(self, "_functional", False):
            names = [t.node.layer.name if t.node is not None else (t.name or f"output_{i + 1}")
                     for i, t in enumerate(engine.flatten(self.outputs))]
        elif hasattr(self, "_layers") and self._layers and n == 1:
            names = [self._layers[-1].name]
        if names is None or len(names) != n:
            names = [f"output_{i + 1}" for i in range(n)]
        seen = {}
        for i, name in enumerate(names):           # one layer giving two outputs
            if names.count(name) > 1:
                seen[name] = seen.get(name, 0) + 1
                names[i] = f"{name}_{seen[name]}"
        return names

    def _compile_for_outputs(self, n):
        """Per-output losses, loss weights and metrics for a model with ``n`` outputs."""
        if self._compiled is not None and self._compiled["n"] == n:
            return self._compiled
        names = self._output_names(n)
        args = self._compile_args
        loss = args["loss"]
        if isinstance(loss, dict):
            unknown = sorted(set(loss) - set(names))
            if unknown:
                raise ValueError(f"expected loss keys among the output names {names}, got "
                                 f"{unknown}")
            fns = [loss.get(name) for name in names]
        elif isinstance(loss, list):
            if len(loss) != n:
                raise ValueError(f"expected one loss per output ({n}: {names}), got "
                                 f"{len(loss)} losses")
            fns = list(loss)
        else:
            fns = [loss] * n
        weights = args["loss_weights"]
        if weights is None:
            weights = [1.0] * n
        elif isinstance(weights, dict):
            unknown = sorted(set(weights) - set(names))
            if unknown:
                raise ValueError(f"expected loss_weights keys among the output names "
                                 f"{names}, got {unknown}")
            weights = [weights.get(name, 1.0) for name in names]
        elif len(weights) != n:
            raise ValueError(f"expected one loss weight per output ({n}: {names}), got "
                             f"{len(weights)}")
        for w in weights:
            if not isinstance(w, numbers.Real) or isinstance(w, bool) or not math.isfinite(w):
                raise ValueError(f"expected loss weights to be finite numbers, got {w!r}")
        metrics = args["metrics"]
        if metrics is None:
            per_output = [[] for _ in names]
        elif isinstance(metrics, dict):
            unknown = sorted(set(metrics) - set(names))
            if unknown:
                raise ValueError(f"expected metrics keys among the output names {names}, "
                                 f"got {unknown}")
            per_output = [metrics.get(name) or [] for name in names]
        elif n > 1 and len(metrics) == n and all(m is None or isinstance(m, (list, tuple))
                                                 for m in metrics):
            per_output = [m or [] for m in metrics]
        else:
            per_output = [metrics] * n
        compiled_metrics, objects = [], set()
        for k, (name, ms) in enumerate(zip(names, per_output)):
            ms = ms if isinstance(ms, (list, tuple)) else [ms]
            for m in ms:
                if isinstance(m, _metrics.Metric):
                    if id(m) in objects:
                        raise ValueError(f"expected a metric object per output (one object "
                                         f"cannot track two), got {m!r} twice; pass names, "
                                         f"or metrics per output as a list of lists or a dict")
                    objects.add(id(m))
                metric = _metrics.get(m, loss_name=fns[k])
                log_name = metric.name if n == 1 else f"{name}_{metric.name}"
                compiled_metrics.append((k, log_name, metric))
        self._compiled = {
            "n": n, "names": names, "weights": [float(w) for w in weights],
            "losses": [None if fn is None else LossOp(fn, name=f"{name}_loss")
                       for fn, name in zip(fns, names)],
            "metrics": compiled_metrics}
        if all(op is None for op in self._compiled["losses"]) and loss is not None:
            raise ValueError(f"expected a loss for at least one output of {names}, got none")
        return self._compiled

    @property
    def metrics(self):
        """The compiled metric objects (known once the number of outputs is)."""
        compiled = getattr(self, "_compiled", None)
        return [m for _, _, m in compiled["metrics"]] if compiled else []

    @property
    def metrics_names(self):
        """The names in the logs: ``loss``, each output's ``<name>_loss`` when there are
        several, then the metrics (empty until the outputs are known)."""
        compiled = getattr(self, "_compiled", None)
        if not compiled:
            return []
        names = ["loss"]
        if sum(op is not None for op in compiled["losses"]) > 1:
            names += [f"{n}_loss" for n, op in zip(compiled["names"], compiled["losses"])
                      if op is not None]
        return names + [name for _, name, _ in compiled["metrics"]]

    # -- one step ------------------------------------------------------------------------
    def _losses_of(self, batch, y_pred, step_mask=None):
        """The total loss (a Tensor under a tape) and each output's loss, for a batch.

        An output with a mask of real steps (``self.output_mask`` after the call, see
        :mod:`crnn.models`) counts only its real steps: in its loss through
        :func:`crnn.losses.apply_mask` (Keras's normalisation, by the number of real
        steps), in its metrics as a weight of 0 on the padded steps. ``step_mask (B, w)``
        (bool, truncated BPTT's steps that carry the loss) is joined to every output's
        mask the same way."""
        preds = engine.flatten(y_pred)
        c = self._compile_for_outputs(len(preds))
        ys = _per_output(batch.y, c["names"], "y")
        sws = _per_output(batch.sample_weight, c["names"], "sample_weight")
        masks = _output_masks(getattr(self, "output_mask", None), preds)
        if step_mask is not None:
            for k, p in enumerate(preds):
                shape = tuple(p.shape[:-1])
                m = step_mask.reshape(step_mask.shape + (1,) * (len(shape) - 2))
                m = np.broadcast_to(m, shape)
                masks[k] = m if masks[k] is None else np.logical_and(masks[k], m)
        loss_sws = list(sws)
        for k, m in enumerate(masks):
            if m is not None:
                shape = tuple(preds[k].shape[:-1])
                dtype = np.asarray(engine.value_of(preds[k])).dtype
                loss_sws[k] = _losses.apply_mask(sws[k], m, shape, dtype)
                w = np.asarray(m, dtype=np.float64)
                sws[k] = w if sws[k] is None else w * _losses._check_sample_weight(
                    sws[k], shape, np.float64)
        total, parts = None, []
        for k, op in enumerate(c["losses"]):
            if op is None:
                parts.append(None)
                continue
            if ys[k] is None:
                raise ValueError(f"expected targets y for output {c['names'][k]!r}, which has "
                                 f"a loss, got none")
            value = op([ys[k], preds[k], loss_sws[k]])
            parts.append(value)
            term = value if c["weights"][k] == 1.0 else value * c["weights"][k]
            total = term if total is None else total + term
        return total, parts, preds, ys, sws

    def _update_state(self, state, batch, total, parts, preds, ys, sws):
        """Add a batch's numbers to the running means in ``state``; return the logs."""
        self._update_losses(state, batch.n, total, parts)
        self._update_metrics(preds, ys, sws)
        return self._logs(state)

    def _update_losses(self, state, n, total, parts):
        c = self._compiled
        size = np.asarray([n], dtype=np.float64)
        state["loss"].update(np.asarray([float(engine.value_of(total))]), size)
        if sum(p is not None for p in parts) > 1:
            for name, p in zip(c["names"], parts):
                if p is not None:
                    state.setdefault(f"{name}_loss", _mean()).update(
                        np.asarray([float(engine.value_of(p))]), size)

    def _update_metrics(self, preds, ys, sws):
        for k, _, metric in self._compiled["metrics"]:
            metric.update(ys[k], engine.value_of(preds[k]), sws[k])

    def _logs(self, state):
        logs = {name: float(m.result()) for name, m in state.items()}
        for _, name, metric in self._compiled["metrics"] if self._compiled else []:
            logs[name] = float(metric.result())
        return logs

    def _new_state(self):
        for metric in self.metrics:
            metric.reset()
        return {"loss": _mean()}

    def _train_step(self, batch, state):
        with engine.GradientTape() as tape:
            y_pred = self(batch.x, training=True)
            total, parts, preds, ys, sws = self._losses_of(batch, y_pred)
        weights = self.trainable_weights
        grads = tape.gradient(total, weights)
        self.optimizer.apply(weights, grads)
        return self._update_state(state, batch, total, parts, preds, ys, sws)

    def _test_step(self, batch, state):
        with engine.no_grad():
            y_pred = self(batch.x, training=False)
            total, parts, preds, ys, sws = self._losses_of(batch, y_pred)
        return self._update_state(state, batch, total, parts, preds, ys, sws)

    # -- stateful layers and truncated BPTT ----------------------------------------------
    def reset_states(self, states=None):
        """Reset every stateful recurrent layer inside the model (nested models and
        wrappers included; Keras's ``model.reset_states()``).

        ``states``: None zeros them all (the next call may use another batch size); a
        bool mask ``(B,)`` zeros the rows where it is True in every stateful layer, ints
        zero those rows (see :meth:`crnn.layers.recurrent.RNN.reset_states`). A model
        without stateful layers is left as it is.
        """
        if states is not None and reset_rows(states, None) is None:
            raise ValueError("expected model.reset_states(states) to be None, a bool mask "
                             "(batch,) or ints (row indices), got state arrays: set the "
                             "states of one layer with layer.reset_states(states)")
        for layer in _stateful_layers(self):
            layer.reset_states(states)

    def _check_stateful_batches(self, n, batch_size, what):
        """A stateful model's batches must all be the size of its stored states."""
        names = [layer.name for layer in _stateful_layers(self)]
        if names and n > batch_size and n % batch_size:
            raise ValueError(f"expected the number of samples of {what} ({n}) to be a "
                             f"multiple of batch_size ({batch_size}) for a model with "
                             f"stateful layers {names}: its last batch would hold "
                             f"{n % batch_size} sequences, the others {batch_size}; drop "
                             f"or pad samples, or choose another batch_size")

    def _tbptt_layers(self):
        """The recurrent layers truncated BPTT carries the states of; raises for a model
        it cannot train."""
        deep = self.layers_deep()
        inner = set()   # inside TimeDistributed: they run over another axis, no carry
        for layer in deep:
            if isinstance(layer, Bidirectional):
                raise ValueError(f"expected no Bidirectional layer for truncated BPTT (its "
                                 f"backward direction reads each sequence from its end, "
                                 f"which a window does not hold), got {layer.name!r}: "
                                 f"train with tbptt=None")
            if isinstance(layer, TimeDistributed):
                inner.update(id(sub) for sub in [layer.layer, *sublayers(layer.layer)])
        carried = [layer for layer in deep
                   if isinstance(layer, RNN) and id(layer) not in inner]
        for layer in carried:
            if layer.go_backwards:
                raise ValueError(f"expected recurrent layers that read forward in time for "
                                 f"truncated BPTT, got {layer.name!r} with "
                                 f"go_backwards=True (it needs the whole sequence): train "
                                 f"with tbptt=None")
        owned = {id(layer.cell) for layer in deep if isinstance(layer, RNN)}
        for layer in deep:
            if isinstance(layer, RNNCell) and id(layer) not in owned and id(layer) not in inner:
                raise ValueError(f"expected the time loop in recurrent layers (SimpleRNN, "
                                 f"LSTM, GRU) for truncated BPTT, which carries their "
                                 f"states from window to window, got the cell "
                                 f"{layer.name!r} called in the model's own loop: train "
                                 f"with tbptt=None")
        return carried

    @contextlib.contextmanager
    def _tbptt_mode(self, layers):
        """Every carried layer stateful (its windows start from the carried states),
        restored afterwards."""
        saved = [(layer.stateful, layer._states, layer._tbptt) for layer in layers]
        try:
            for layer in layers:
                layer.stateful, layer._tbptt = True, True
            yield
        finally:
            for layer, (stateful, states, tbptt) in zip(layers, saved):
                if stateful:
                    layer._tbptt = tbptt   # a stateful layer keeps the states it reached
                else:
                    layer.stateful, layer._states, layer._tbptt = stateful, states, tbptt

    def _tbptt_step(self, batch, state, k1, k2, layers):
        """One batch of truncated BPTT: one optimizer update per window of ``k1`` new
        steps, each reaching back ``k2`` steps (see :meth:`fit`). Returns the logs."""
        T = _time_steps(batch)
        weights = self.trainable_weights
        # the states at window boundaries: step -> one list of states (or None) per layer
        carried = {0: [layer._states if layer.stateful and not layer._tbptt else None
                       for layer in layers]}
        with self._tbptt_mode(layers):
            total_sum, part_sums = 0.0, None
            for a in range(0, T, k1):
                e = min(a + k1, T)
                s = max(0, a - (k2 - k1))
                for layer, st in zip(layers, carried[s]):
                    layer._states = st
                window = _time_window(batch, s, e)
                new = None if s == a else np.broadcast_to(np.arange(s, e) >= a,
                                                          (batch.n, e - s))
                with engine.GradientTape() as tape:
                    y_pred = self(window.x, training=True)
                    _check_window_outputs(self, y_pred, batch.n, e - s)
                    total, parts, preds, ys, sws = self._losses_of(window, y_pred, new)
                if a == 0:
                    for layer in layers:
                        calls = sum(1 for r in tape.records if r[0] is layer)
                        if calls > 1:
                            raise ValueError(f"expected each recurrent layer to run once "
                                             f"per forward pass for truncated BPTT, got "
                                             f"{layer.name!r} called {calls} times (a shared "
                                             f"layer's states cannot be carried): train "
                                             f"with tbptt=None")
                grads = tape.gradient(total, weights)
                self.optimizer.apply(weights, grads)
                carried[e] = [layer._states for layer in layers]
                for step in [k for k in carried if k < e - (k2 - k1)]:
                    del carried[step]
                w = (e - a) / T   # the batch's loss: the windows' weighted by new steps
                total_sum += w * float(engine.value_of(total))
                values = [None if p is None else w * float(engine.value_of(p))
                          for p in parts]
                part_sums = values if part_sums is None else [
                    None if p is None else p + v for p, v in zip(part_sums, values)]
                self._update_metrics(preds, ys, sws)
        self._update_losses(state, batch.n, total_sum, part_sums)
        return self._logs(state)

    # -- randomness ----------------------------------------------------------------------
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
        # Layers that draw random numbers keep a numpy Generator in ``_rng``.
        for i, layer in enumerate(self.layers_deep()):
            if isinstance(getattr(layer, "_rng", None), np.random.Generator):
                layer._rng = np.random.default_rng([seed, 1, i])
        return np.random.default_rng([seed, 0])

    # -- fit -----------------------------------------------------------------------------
    def fit(self, x=None, y=None, batch_size=32, epochs=1, verbose=1, callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, sample_weight=None,
            initial_epoch=0, seed=None, tbptt=None):
        """Train for ``epochs`` passes over the data.

        Parameters
        ----------
        x : array or list of arrays
            Inputs, ``(N, ...)`` each (a list for a model with several inputs).
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
        validation_data : tuple
            ``(x_val, y_val)`` or ``(x_val, y_val, sample_weight_val)``; overrides
            ``validation_split``.
        shuffle : bool
            Shuffle the samples before each epoch.
        sample_weight : array ``(N,)`` or ``(N, T)``, or a list/dict per output
        initial_epoch : int
            The epoch to start from (to resume a run).
        seed : int, optional
            Seeds the shuffling and every layer's dropout masks, for a reproducible run.
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

        Returns
        -------
        History
            ``history.history[name]`` lists each epoch's ``loss``, metrics and ``val_*``.
        """
        from crnn.callbacks import CallbackList
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
            _time_steps(data)
        self._check_stateful_batches(data.n, batch_size, "x")
        if val is not None:
            self._check_stateful_batches(val.n, batch_size, "the validation data")
        rng = self._generators(seed)
        steps = math.ceil(data.n / batch_size)
        cbs = CallbackList(callbacks, add_history=True, add_progbar=verbose != 0, model=self,
                           epochs=epochs, steps=steps, samples=data.n, batch_size=batch_size,
                           verbose=verbose)
        self.stop_training = False
        cbs.on_train_begin()
        epoch_logs = {}
        for epoch in range(initial_epoch, epochs):
            state = self._new_state()
            cbs.on_epoch_begin(epoch)
            order = rng.permutation(data.n) if shuffle else None
            logs = {}
            for step, batch in data.batches(batch_size, order):
                cbs.on_train_batch_begin(step)
                if tbptt is None:
                    logs = self._train_step(batch, state)
                else:
                    logs = self._tbptt_step(batch, state, *tbptt, carried)
                cbs.on_train_batch_end(step, dict(logs))
                if self.stop_training:
                    break
            epoch_logs = dict(logs)
            if val is not None and val.n:
                val_logs = self._evaluate_data(val, batch_size, cbs)
                epoch_logs.update({f"val_{k}": v for k, v in val_logs.items()})
            cbs.on_epoch_end(epoch, epoch_logs)
            if self.stop_training:
                break
        cbs.on_train_end(epoch_logs)
        self.history = cbs.history
        return cbs.history

    # -- evaluate ------------------------------------------------------------------------
    def _evaluate_data(self, data, batch_size, cbs):
        state = self._new_state()
        cbs.on_test_begin()
        logs = {}
        for step, batch in data.batches(batch_size):
            cbs.on_test_batch_begin(step)
            logs = self._test_step(batch, state)
            cbs.on_test_batch_end(step, dict(logs))
        cbs.on_test_end(dict(logs))
        return logs

    def evaluate(self, x=None, y=None, batch_size=32, verbose=1, sample_weight=None,
                 return_dict=False, callbacks=None):
        """The loss and metrics on the data, in batches, without training.

        Returns
        -------
        float, list or dict
            The loss alone when nothing else is compiled; else ``[loss, ...]`` in the
            order of :attr:`metrics_names`; or a dict with ``return_dict``.
        """
        from crnn.callbacks import CallbackList
        self._check_compiled("evaluate")
        batch_size = 32 if batch_size is None else _check_int("batch_size", batch_size, 1)
        verbose = _check_verbose(verbose)
        data = Data(x, y, sample_weight)
        if data.y is None:
            raise ValueError("expected targets y for evaluate, got None")
        if data.n == 0:
            raise ValueError("expected at least one sample to evaluate, got 0")
        self._check_stateful_batches(data.n, batch_size, "x")
        cbs = CallbackList(callbacks, add_progbar=verbose != 0, model=self,
                           steps=math.ceil(data.n / batch_size), samples=data.n,
                           batch_size=batch_size, verbose=verbose)
        logs = self._evaluate_data(data, batch_size, cbs)
        return self._result(logs, return_dict)

    def _result(self, logs, return_dict):
        if return_dict:
            return dict(logs)
        values = [logs[name] for name in self.metrics_names if name in logs]
        return values[0] if len(values) == 1 else values

    # -- predict -------------------------------------------------------------------------
    def predict(self, x, batch_size=32, verbose=0, callbacks=None):
        """The model's outputs for ``x``, computed in batches without a tape.

        Returns
        -------
        array or list of arrays
            The outputs of every batch joined along the batch axis (a list for a model
            with several outputs).
        """
        from crnn.callbacks import CallbackList
        batch_size = 32 if batch_size is None else _check_int("batch_size", batch_size, 1)
        verbose = _check_verbose(verbose)
        data = Data(x)
        if data.n == 0:
            raise ValueError("expected at least one sample to predict, got 0")
        self._check_stateful_batches(data.n, batch_size, "x")
        cbs = CallbackList(callbacks, add_progbar=verbose != 0, model=self,
                           steps=math.ceil(data.n / batch_size), samples=data.n,
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

    # -- one batch -----------------------------------------------------------------------
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
            _time_steps(data)
            logs = self._tbptt_step(data, self._new_state(), *tbptt, carried)
        return self._result(logs, return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        """The loss (and metrics) of one batch, without training."""
        self._check_compiled("test_on_batch")
        data = Data(x, y, sample_weight)
        if data.y is None:
            raise ValueError("expected targets y for test_on_batch, got None")
        logs = self._test_step(data, self._new_state())
        return self._result(logs, return_dict)

    def predict_on_batch(self, x):
        """The model's outputs for one batch, without a tape."""
        data = Data(x)
        with engine.no_grad():
            out = self(data.x, training=False)
        leaves = [np.asarray(engine.value_of(o)) for o in engine.flatten(out)]
        return _pack_outputs(out, leaves)

    # -- summary -------------------------------------------------------------------------
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
        print_fn = print if print_fn is None else print_fn
        rows, connected = _summary_rows(self)
        if connected:
            line_length = line_length or 98
            positions = positions or [0.3, 0.6, 0.7, 1.0]
            header = ["Layer (type)", "Output Shape", "Param #", "Connected to"]
        else:
            line_length = line_length or 65
            positions = positions or [0.45, 0.85, 1.0]
            header = ["Layer (type)", "Output Shape", "Param #"]
        if positions[-1] <= 1:
            positions = [int(line_length * p) for p in positions]
        total = self.count_params()
        lines = [f'Model: "{self.name}"', "_" * line_length]
        lines += _table_row(header, positions)
        lines.append("=" * line_length)
        for i, row in enumerate(rows):
            if i:
                lines.append("")
            lines += _table_row(row if connected else row[:3], positions)
        if rows:
            lines.append("=" * line_length)
        lines += [f"Total params: {total:,}", f"Trainable params: {total:,}",
                  "Non-trainable params: 0", "_" * line_length]
        for line in lines:
            print_fn(line)


def _serialize_losses(loss):
    """Loss objects as their config dicts (names and other callables unchanged)."""
    if isinstance(loss, dict):
        return {k: _serialize_losses(v) for k, v in loss.items()}
    if isinstance(loss, (list, tuple)):
        return [_serialize_losses(v) for v in loss]
    if isinstance(loss, _losses.Loss):
        return _losses.serialize(loss)
    return loss


def _deserialize_losses(loss):
    """:func:`_serialize_losses` undone: config dicts back to loss objects."""
    if isinstance(loss, dict) and "class_name" in loss:
        return _losses.deserialize(loss)
    if isinstance(loss, dict):
        return {k: _deserialize_losses(v) for k, v in loss.items()}
    if isinstance(loss, (list, tuple)):
        return [_deserialize_losses(v) for v in loss]
    return loss


def _mean():
    return _metrics.Mean()


def _pack_outputs(structure, leaves):
    """One array for a one-output model, else a list of arrays."""
    if isinstance(structure, (list, tuple)):
        return list(leaves)
    return leaves[0]


# -- summary --------------------------------------------------------------------------------
def _params(layer):
    return int(sum(w.size for w in layer.trainable_weights))


def _shape_text(tensors):
    shapes = [str(tuple(t.shape)) for t in tensors]
    return shapes[0] if len(shapes) == 1 else "[" + ", ".join(shapes) + "]"


def _type_name(layer):
    # crnn's own Model class, built from a graph, shows as Keras's "Functional"
    if (type(layer).__name__ == "Model" and registry.is_crnn_class(type(layer))
            and architecture(layer) == "functional"):
        return "Functional"
    return type(layer).__name__


def _summary_rows(model):
    """``([name (type), output shape, params, connections], ...)`` for each layer, and
    whether the model's graph has branches (so the connections are shown)."""
    if getattr(model, "_functional", False):
        return _functional_rows(model)
    nodes = _trace(model)
    by_layer = {}
    for node in nodes or []:
        by_layer.setdefault(id(node.layer), []).append(node)
    rows = []
    for layer in model.layers:
        mine = by_layer.get(id(layer), [])
        shape = ("?" if not mine else "multiple" if len(mine) > 1
                 else _shape_text(mine[0].outputs))
        rows.append([f"{layer.name} ({_type_name(layer)})", shape, _params(layer), ""])
    return rows, False


def _trace(model):
    """The nodes of the model's layers called on placeholders (None if its ``call``
    cannot run on placeholders)."""
    if getattr(model, "_input", None) is not None:             # Sequential with Input
        args, kwargs = (model._input,), {}
    else:
        seen = getattr(model, "_input_spec_seen", None)
        if seen is None:
            raise ValueError(f"expected a model that has been called: call the model on a "
                             f"batch, or fit or predict, before summary (or start a "
                             f"Sequential with crnn.Input(shape)); got {model.name!r}, never "
                             f"called")
        args, kwargs = _placeholders(seen[0]), {k: _placeholders(v)
                                                for k, v in seen[1].items()}
    try:
        outputs = model.call(*args, **kwargs)
        return engine.topological_nodes(outputs)
    except Exception:   # noqa: BLE001 - a call that only runs on arrays: shapes unknown
        return None


def _functional_rows(model):
    inputs = engine.flatten(model.inputs)
    nodes = model._nodes
    names = {id(t): t.name or f"input_{i + 1}" for i, t in enumerate(inputs)}
    node_index, layer_nodes = {}, {}
    for node in nodes:
        mine = layer_nodes.setdefault(id(node.layer), [])
        node_index[id(node)] = len(mine)
        mine.append(node)

    def source(t):
        if t.node is None:
            return f"{names.get(id(t), t.name)}[0][0]"
        return f"{t.node.layer.name}[{node_index[id(t.node)]}][{t.node.outputs.index(t)}]"

    chain = len(inputs) == 1 and len(engine.flatten(model.outputs)) == 1
    for i, node in enumerate(nodes):
        ins = node.inputs()
        previous = inputs[0] if i == 0 else None
        if (len(ins) != 1 or len(layer_nodes[id(node.layer)]) > 1
                or (i > 0 and ins[0].node is not nodes[i - 1])
                or (previous is not None and ins[0] is not previous)):
            chain = False
    rows = [[f"{names[id(t)]} (InputLayer)", str(tuple(t.shape)), 0, ""] for t in inputs]
    for layer in model.layers:
        mine = layer_nodes[id(layer)]
        shape = _shape_text(mine[0].outputs) if len(mine) == 1 else "multiple"
        links = [source(t) for node in mine for t in node.inputs()]
        rows.append([f"{layer.name} ({_type_name(layer)})", shape, _params(layer),
                     str(links) if links else ""])
    return rows, not chain


def _table_row(fields, positions):
    """Keras's ``print_row``: each field in its column, wrapped onto more lines where it
    does not fit (breaking after ``),`` ``],`` ``',`` where it can)."""
    left = [str(f) for f in fields]
    lines = []
    while any(left):
        line = ""
        for col, text in enumerate(left):
            start = positions[col - 1] if col else 0
            space = 2 if col != len(positions) - 1 else 0
            cutoff = positions[col] - start - space
            fit = text[:cutoff]
            breaks = [fit.find(s) + len(s) for s in ("),", "},", "],", "',") if s in fit]
            if breaks:
                cutoff = min(breaks)
                fit = fit[:cutoff]
            line += (" " if col == 0 else "") + fit
            left[col] = text[cutoff:]
            line += " " * max(positions[col] - len(line), 0)
        lines.append(line.rstrip())
    return lines
