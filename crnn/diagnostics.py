"""Diagnostics of a trained or untrained recurrent model: how far back the gradient reaches.

:func:`gradient_flow` measures, for every time step ``t``, the norm of the **total**
gradient of the loss with respect to the hidden state ``h_t`` of one recurrent layer:

.. math::
    \\frac{\\partial L}{\\partial h_t}
    = \\underbrace{\\frac{\\partial L}{\\partial y_t}\\frac{\\partial y_t}{\\partial h_t}}
      _{\\text{direct, through step } t\\text{'s output}}
    + \\underbrace{\\frac{\\partial L}{\\partial h_{t+1}}
      \\frac{\\partial h_{t+1}}{\\partial h_t}}_{\\text{through the recurrence}},

which is what backpropagation through time carries back to step ``t`` (the kernels call
it ``dh_t + dh_next``). For a many-to-one model the direct term is zero except at the last
step, and the curve shows how the gradient shrinks (vanishes) or grows (explodes) with the
distance ``T - t`` from the output.

How it is computed, exactly and in one backward pass: while the tape records, the chosen
layer's time loop is run one step at a time over the layer's own cell (the layer's
weights, the same arithmetic: the cell calls the same kernels with ``T = 1``). Every
``h_t`` is then a tensor on the tape that feeds both the next step and the layer's output,
and ``tape.gradient(loss, [h_1, ..., h_T])`` returns each total gradient, summed over both
paths. Nothing of the layer is changed; the replacement holds only during the call.
"""
import numpy as np

from crnn import engine, losses as _losses, ops
from crnn.layers.recurrent import RNN, output_mask, sequence_mask
from crnn.training import Data, LossOp

__all__ = ["gradient_flow", "recurrent_layers"]


def recurrent_layers(model):
    """The recurrent layers (SimpleRNN, LSTM, GRU, any :class:`crnn.layers.RNN`) inside
    ``model``, in the order :meth:`crnn.Model.layers_deep` lists them."""
    return [layer for layer in model.layers_deep() if isinstance(layer, RNN)]


def _find_layer(model, layer):
    found = recurrent_layers(model)
    if layer is None:
        if not found:
            raise ValueError(f"expected a model with a recurrent layer, got none among "
                             f"{[type(la).__name__ for la in model.layers_deep()]}")
        return found[0]
    if isinstance(layer, str):
        named = [la for la in found if la.name == layer]
        if not named:
            raise ValueError(f"expected layer to name one of the recurrent layers "
                             f"{[la.name for la in found]}, got {layer!r}")
        return named[0]
    if not any(la is layer for la in found):
        raise ValueError(f"expected layer to be one of the model's recurrent layers "
                         f"{[la.name for la in found]}, got {layer!r:.80}")
    return layer


def _stepwise(layer, record):
    """A ``call`` for ``layer`` that runs its time loop one cell step at a time and
    appends, per call, the list of every step's state tensors to ``record``. A padded
    step (``mask``/``lengths``) passes the states through and outputs what the layer
    does (:func:`crnn.layers.recurrent.output_mask`)."""
    cell = layer.cell

    def call(inputs, initial_state=None, training=False, mask=None, lengths=None):
        steps = ops.unstack(inputs, axis=1)             # x_1 ... x_T, (B, D) each
        B, T = engine.value_of(inputs).shape[:2]
        if T == 0:
            raise ValueError("expected at least one time step, got T = 0")
        real = sequence_mask(mask, lengths, B, T)   # as the layer reads them; None: all real
        if layer.go_backwards:
            steps = steps[::-1]
            real = None if real is None else real[:, ::-1]
        states = (cell.get_initial_state(B) if initial_state is None
                  else cell.state_list(initial_state))
        outputs, per_step = [], []
        for t, x_t in enumerate(steps):
            _, new = cell(x_t, states, training=training)
            if real is not None:                        # keep the old state where padded
                keep = real[:, t, None].astype(cell.dtype)
                new = [n * keep + s * (1 - keep) for n, s in zip(new, states)]
            states = new
            outputs.append(states[0])
            per_step.append(states)
        if layer.return_sequences:
            out = ops.stack(outputs, axis=1)
            if real is not None:   # zeros where the layer outputs zeros
                keep = output_mask(real, layer.zero_output_for_mask)
                out = out * keep[:, :, None].astype(cell.dtype)
        else:
            out = outputs[-1]
            if real is not None:   # a sequence without a real step outputs zeros
                out = out * real.any(axis=1)[:, None].astype(cell.dtype)
        record.append(per_step)
        return [out, *states] if layer.return_state else out
    return call


def gradient_flow(model, x, y, layer=None, loss=None, state=0, training=False, norm=True):
    """The norm of the total gradient ``dL/dh_t`` at every step of a recurrent layer.

    Parameters
    ----------
    model : crnn.Model
        Any model (functional, Sequential or subclassed) that calls the layer once.
    x : array or list of arrays
        Inputs, as for ``model.predict`` (one batch: ``B`` samples).
    y : array or list of arrays
        Targets, as for ``model.fit``.
    layer : Layer or str, optional
        The recurrent layer (or its name); by default the first one in the model.
    loss : str or callable, optional
        As ``compile`` takes it; by default the loss the model was compiled with (and its
        loss weights).
    state : int
        Which state: 0 is ``h`` (every cell); 1 is ``c`` for an LSTM.
    training : bool
        Run the model in training mode (dropout on); off by default.
    norm : bool
        Return the norms (default); False returns the gradients themselves.

    Returns
    -------
    ndarray, shape (T,)
        ``norms[t] = ||dL/dh_t||_F``, the Frobenius norm over the whole ``(B, H)`` gradient
        (that is, the norm over the batch, not a mean of per-sample norms), where ``L`` is
        the loss as ``fit`` computes it: the mean over the batch's samples (and steps).
        ``h_t`` is the state after reading step ``t`` (0-based, in the order the layer
        reads the sequence, so reversed for ``go_backwards``). A step the loss does not
        depend on has norm 0. With ``norm=False``: the gradients, ``(T, B, H)``.
    """
    target = _find_layer(model, layer)
    if not target._fused:
        raise ValueError(f"expected a recurrent layer around one built-in cell (SimpleRNN, "
                         f"LSTM, GRU), got {target.name!r} around "
                         f"{type(target.cell).__name__}: gradient_flow follows the states "
                         f"of one built-in cell")
    if loss is None and not getattr(model, "compiled", False):
        raise ValueError("expected a loss, or a model compiled with one, got neither")
    record = []
    data = Data(x, y)
    # Paused outer tapes: this measurement is not part of anyone's training step.
    with engine.paused_tapes():
        target.call = _stepwise(target, record)
        try:
            with engine.GradientTape() as tape:
                y_pred = model(data.x, training=training)
                if loss is None:
                    total = model._losses_of(data, y_pred)[0]
                else:
                    preds = engine.flatten(y_pred)
                    ys = data.y if isinstance(data.y, list) else [data.y]
                    op = LossOp(_losses.get(loss))
                    total = None
                    for yk, pk in zip(ys, preds):
                        term = op([yk, pk, None])
                        total = term if total is None else total + term
        finally:
            del target.call
    if len(record) != 1:
        raise ValueError(f"expected the model to call {target.name} once, got {len(record)} "
                         f"calls")
    steps = record[0]
    n_states = len(steps[0])
    if not 0 <= state < n_states:
        raise ValueError(f"expected state in [0, {n_states}) for {type(target).__name__}, "
                         f"got {state!r}")
    grads = tape.gradient(total, [s[state] for s in steps])
    if not norm:
        zeros = np.zeros_like(engine.value_of(steps[0][state]))
        return np.stack([zeros if g is None else g for g in grads])
    return np.array([0.0 if g is None else float(np.linalg.norm(g)) for g in grads])
