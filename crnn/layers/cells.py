"""Any recurrent cell, as Keras defines one, and the time loop that runs it step by step.

A cell is a layer with ``state_size`` (an int, or a list/tuple of ints for several
states), ``call(inputs, states, training=None) -> (output, new_states)`` on one step
(``inputs (B, D)``, ``states`` a list of ``(B, state_size[i])`` arrays), and optionally
``output_size`` (else the first state's size) and ``get_initial_state(batch_size)``
(else zeros). :class:`crnn.layers.RNN` runs the built-in cells (SimpleRNN, LSTM, GRU) on
their fused kernels; any other cell runs here, in :func:`run_loop`: a Python loop over
the steps whose every operation is recorded on the tape, so that backpropagation through
time reaches the cell's weights and inputs. :class:`StackedRNNCells` makes a list of cells
one cell (Keras's), the output of each the input of the next.

Notation: ``B`` batch, ``T`` time, ``D`` input features, ``O`` the cell's output size.
"""
import numpy as np

from crnn import engine, ops
from crnn.layers.base import InnerWeights, Layer, accepts_training

__all__ = ["StackedRNNCells", "check_cell", "initial_states", "output_size", "pack_states",
           "reset_dropout_masks", "run_loop", "state_sizes"]


def check_cell(cell, what="cell"):
    """Raise ``ValueError`` unless ``cell`` is a crnn layer with ``call`` and
    ``state_size`` (an int or a list/tuple of ints)."""
    if not isinstance(cell, Layer):
        raise ValueError(f"expected {what} to be a crnn layer (a crnn.layers.Layer with "
                         f"state_size and call(inputs, states)), got "
                         f"{type(cell).__name__}")
    if not callable(getattr(cell, "call", None)) or not hasattr(cell, "state_size"):
        raise ValueError(f"expected {what} to have a call(inputs, states) method and a "
                         f"state_size attribute (an int, or a list of ints: one per "
                         f"state), got {type(cell).__name__}")
    state_sizes(cell)


def state_sizes(cell):
    """The size of every state of ``cell``, as one flat list of ints (a stacked cell's
    states one cell after the other)."""
    sizes = engine.flatten(cell.state_size)
    if not sizes or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool)
                            and s >= 1 for s in sizes):
        raise ValueError(f"expected state_size of {type(cell).__name__} to be a positive "
                         f"int or a list of them (one per state), got {cell.state_size!r}")
    return [int(s) for s in sizes]


def output_size(cell):
    """``cell.output_size``, else the size of its first state."""
    size = getattr(cell, "output_size", None)
    if size is None:
        return state_sizes(cell)[0]
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 1:
        raise ValueError(f"expected output_size of {type(cell).__name__} to be a positive "
                         f"int, got {size!r}")
    return int(size)


def _zeros(batch_size, sizes, dtype):
    return [np.zeros((int(batch_size), s), dtype=dtype) for s in sizes]


def initial_states(cell, batch_size, dtype):
    """The states a call without ``initial_state`` starts from, as a flat list:
    ``cell.get_initial_state(batch_size=B)`` where the cell has one, else zeros."""
    get = getattr(cell, "get_initial_state", None)
    if get is None:
        return _zeros(batch_size, state_sizes(cell), dtype)
    return engine.flatten(get(batch_size=int(batch_size)))


def pack_states(cell, flat):
    """The flat list of states in the structure ``cell.call`` takes: a list (one entry per
    state, as Keras passes them); for a stacked cell, one such list per cell."""
    if isinstance(cell, StackedRNNCells):
        out, i = [], 0
        for c in cell.cells:
            n = len(state_sizes(c))
            out.append(pack_states(c, flat[i:i + n]))
            i += n
        return out
    return list(flat)


def reset_dropout_masks(cell):
    """Forget the dropout masks the built-in cells keep for one sequence (a new call draws
    new ones), in a stacked cell's cells too."""
    for c in getattr(cell, "cells", [cell]):
        if c is not cell:
            reset_dropout_masks(c)
        elif hasattr(c, "reset_dropout_mask"):
            c.reset_dropout_mask()
            c.reset_recurrent_dropout_mask()


def _call_cell(cell, x_t, states, training):
    if accepts_training(type(cell).call):
        out = cell(x_t, pack_states(cell, states), training=training)
    else:
        out = cell(x_t, pack_states(cell, states))
    if not isinstance(out, (list, tuple)) or len(out) != 2:
        raise ValueError(f"expected {type(cell).__name__}.call to return (output, "
                         f"new_states), got {type(out).__name__}")
    output, new = out
    new = engine.flatten(new)
    if len(new) != len(states):
        raise ValueError(f"expected {type(cell).__name__}.call to return "
                         f"{len(states)} new states (its state_size), got {len(new)}")
    return output, new


def run_loop(cell, x, states, real, go_backwards, training, return_sequences,
             zero_output_for_mask, dtype):
    """Run ``cell`` over ``x (B, T, D)`` one step at a time, every step through the tape.

    ``states`` is the flat list of initial states, ``real (B, T)`` bool or None the real
    steps (in time order). Keras's semantics: with ``go_backwards`` the steps (and the
    mask) are read from the end; at a padded step the states pass through and the output
    repeats the previous step's (zeros before the first real step), or is zeros with
    ``zero_output_for_mask`` (returned sequences only; the last output is always the
    last real step's). Returns ``(output, final_states)``: ``(B, T, O)`` in processing
    order with ``return_sequences``, else ``(B, O)``.
    """
    B, T = x.shape[0], x.shape[1]
    O = output_size(cell)
    order = range(T - 1, -1, -1) if go_backwards else range(T)
    if real is not None and go_backwards:
        real = real[:, ::-1]
    steps = ops.unstack(x, axis=1) if T else []          # x_1 ... x_T, (B, D) each
    zero = np.zeros((), dtype=dtype)
    outputs, prev = [], None
    for k, t in enumerate(order):
        out, new = _call_cell(cell, steps[t], states, training)
        if real is not None and not real[:, k].all():
            m = real[:, k, None]                         # (B, 1): which rows are real
            if m.any():
                new = [ops.where(m, n, s) for n, s in zip(new, states)]
                out = ops.where(m, out, zero if prev is None else prev)
            else:                                        # every row padded at this step
                new = list(states)
                out = np.zeros(np.shape(out), dtype=dtype) if prev is None else prev
        states, prev = new, out
        outputs.append(out)
    if not return_sequences:
        return (prev if T else np.zeros((B, O), dtype=dtype)), states
    if not T:
        return np.zeros((B, 0, O), dtype=dtype), states
    seq = ops.stack(outputs, axis=1)                     # (B, T, O), processing order
    if zero_output_for_mask and real is not None:
        seq = ops.where(real[:, :, None], seq, zero)     # zeros at the padded steps
    return seq, states


class StackedRNNCells(InnerWeights, Layer):
    """A list of cells run as one cell (Keras's ``StackedRNNCells``): at every step the
    first cell reads the input, each next cell the output of the one before, and the
    output is the last cell's.

    Parameters
    ----------
    cells : list of cells
        Each a layer with ``state_size`` and ``call(inputs, states)`` (see
        :mod:`crnn.layers.cells`), e.g. :class:`crnn.LSTMCell`.
    name : str, optional
    dtype : "float32" or "float64", optional
        The first cell's by default.

    ``state_size`` is the list of the cells' ``state_size``; ``call(inputs, states)``
    takes one list of states per cell and returns ``(output, new_states)`` in the same
    structure. :class:`crnn.layers.RNN` takes the list of cells directly
    (``RNN([cell1, cell2])``): built-in cells then run on their fused kernels, layer
    after layer, which equals a stack of the matching layers with ``return_sequences``.
    Weights: each cell's, in order, named ``cells/<i>/<name>``.

    Examples
    --------
    >>> cells = StackedRNNCells([SimpleRNNCell(4), SimpleRNNCell(2)])
    >>> RNN(cells)(np.zeros((2, 5, 3), "float32")).shape
    (2, 2)
    """

    def __init__(self, cells, name=None, dtype=None):
        if isinstance(cells, Layer) or not isinstance(cells, (list, tuple)) or not cells:
            raise ValueError(f"expected cells to be a non-empty list of cells, got "
                             f"{cells!r:.80}")
        for i, c in enumerate(cells):
            check_cell(c, f"cells[{i}]")
        super().__init__(name=name, dtype=cells[0].dtype if dtype is None else dtype)
        self.cells = list(cells)

    @property
    def state_size(self):
        return [c.state_size for c in self.cells]

    @property
    def output_size(self):
        return output_size(self.cells[-1])

    def _inner(self):
        # the cells' own weights, under cells/<i>/ (InnerWeights)
        return [(f"cells/{i}", c) for i, c in enumerate(self.__dict__.get("cells", ()))]

    @property
    def trainable_weights(self):
        return [w for c in self.cells for w in c.trainable_weights]

    def build(self, input_shape):
        shape = tuple(input_shape)
        for c in self.cells:
            if not c.built:
                c.build(shape)
            shape = shape[:-1] + (output_size(c),)
        self.built = True

    def get_initial_state(self, batch_size):
        return [pack_states(c, initial_states(c, batch_size, self.dtype))
                for c in self.cells]

    def call(self, inputs, states, training=False):
        """One step: ``inputs (B, D)`` and ``states`` (one entry per cell: a list of its
        states, or one array for a one-state cell) give ``(output, new_states)``, one
        list of states per cell."""
        if not isinstance(states, (list, tuple)) or len(states) != len(self.cells):
            raise ValueError(f"expected states to be a list with one entry per cell "
                             f"({len(self.cells)}), got {states!r:.80}")
        self._maybe_build(np.shape(engine.value_of(inputs)))
        new_states = []
        for c, s in zip(self.cells, states):
            s = engine.flatten(s)
            inputs, new = _call_cell(c, inputs, s, training)
            new_states.append(pack_states(c, new))
        return inputs, new_states

    def compute_output_shape(self, input_shape):
        B = tuple(input_shape)[0]
        states = [[(B, s) for s in state_sizes(c)] for c in self.cells]
        return (B, self.output_size), states
