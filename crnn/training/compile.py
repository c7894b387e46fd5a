"""Compiling a model: its optimizer, its losses and metrics per output, and what one
batch's step computes from them (the total loss on the tape, the running means in the
logs).

Each loss function returns its value *and* ``d loss / d y_pred`` (see :mod:`crnn.losses`);
:class:`LossOp` puts that pair on the tape as one primitive, so the tape's backward pass
starts from the loss and reaches every weight.
"""
import math
import numbers

import numpy as np

from crnn import engine, losses as _losses, metrics as _metrics, optimizers as _optimizers
from crnn.engine import Op
from crnn.layers.base import apply_constraints
from crnn.training.data import by_output

__all__ = ["CompileMixin", "LossOp"]


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


class CompileMixin:
    """``compile`` and the per-output losses and metrics of :class:`crnn.Model` (a base of
    :class:`crnn.training.Trainer`)."""

    # -- compile -----------------------------------------------------------------------------
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
        self._optimizer_weights = None  # the weights the optimizer is built for (first step)
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

    # -- one step ----------------------------------------------------------------------------
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
        ys = by_output(batch.y, c["names"], "y")
        sws = by_output(batch.sample_weight, c["names"], "sample_weight")
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
        # Keras's compute_loss: the model's losses (weight penalties from the current
        # weights, activity penalties of this call) join the total, on the tape
        for extra in self.losses:
            total = extra if total is None else total + extra
        return total, parts, preds, ys, sws

    def _apply_update(self, tape, total):
        """One optimizer update from the tape: the gradients of ``total`` for the
        trainable weights (read now: ``layer.trainable`` set after ``compile`` counts, as
        in Keras 3), then the constraints of the weights updated (Keras applies them
        after ``optimizer.apply``). The optimizer keeps the weights it was first built
        for; a frozen one gets no gradient (its slots stay as they are), and a weight
        it was not built for (a layer unfrozen after the first update) needs a new
        optimizer."""
        trainable = self.trainable_weights
        if not trainable:
            return                                   # all frozen: nothing to update
        built = getattr(self, "_optimizer_weights", None)
        if built is None or not self.optimizer.built:
            built = self._optimizer_weights = trainable
        known = {id(w) for w in built}
        new = [w for w in trainable if id(w) not in known]
        if new:
            raise ValueError(f"expected the trainable weights the optimizer was built for, "
                             f"got {len(new)} more (a layer unfrozen after training "
                             f"started): compile the model again with a new optimizer "
                             f"(model.compile(optimizer=crnn.optimizers.Adam(...), ...)), "
                             f"as Keras asks")
        current = {id(w) for w in trainable}
        grads = tape.gradient(total, [w for w in built if id(w) in current])
        it = iter(grads)
        self.optimizer.apply(built, [next(it) if id(w) in current else None
                                     for w in built])
        self._constrain(trainable)

    def _constrain(self, weights):
        """The constraints of the updated ``weights``, applied in place after an update
        (also after a data-parallel one: every rank holds the same weights)."""
        apply_constraints(self, weights)

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
