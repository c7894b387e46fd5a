"""Stateful recurrent layers in training, and truncated backpropagation through time:
``fit(..., tbptt=(k1, k2))`` makes one optimizer update per window of ``k1`` new steps,
each reaching back ``k2`` steps, carrying the recurrent layers' states from window to
window (see :meth:`crnn.Model.fit`)."""
import contextlib

import numpy as np

from crnn import engine
from crnn.layers.base import sublayers
from crnn.layers.recurrent import RNN, RNNCell, reset_rows
from crnn.layers.wrappers import Bidirectional, TimeDistributed
from crnn.training.data import time_steps, time_window

__all__ = ["TBPTTMixin"]


def _stateful_layers(model):
    return [layer for layer in model.layers_deep()
            if isinstance(layer, RNN) and layer.stateful]


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


class TBPTTMixin:
    """``reset_states`` and truncated BPTT for :class:`crnn.Model` (a base of
    :class:`crnn.training.Trainer`)."""

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
        T = time_steps(batch)
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
                window = time_window(batch, s, e)
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
                self._apply_update(tape, total)
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
