"""A crnn model as an ONNX graph of standard operators, for serving without crnn.

Each layer becomes the operators ONNX has for it (opset 17):

==================================  ====================================================
``SimpleRNN`` / ``LSTM`` / ``GRU``  ``RNN`` / ``LSTM`` / ``GRU`` (time-major, between two
                                    ``Transpose``), activations named, ``GRU``'s
                                    ``linear_before_reset=1`` for ``reset_after=True``;
                                    weights in ONNX's gate orders (LSTM i, o, f, c; GRU z,
                                    r, h as Keras), ``B = [W_b, R_b]``
``Bidirectional``                   one operator with ``direction="bidirectional"`` (two,
                                    ``"forward"`` and ``"reverse"``, when the layers
                                    differ), merged by ``Concat``/``Add``/``Mul``
``go_backwards``                    ``direction="reverse"``, the sequence reversed back
                                    into processing order by ``Slice``
``Embedding``                       ``Gather`` (``mask_zero``: ``Equal``/``Not``)
``Dense``                           ``MatMul`` + ``Add`` + the activation
``Masking``, ``Dropout``,           ``Equal``/``ReduceMax``/``Mul``; ``Identity``;
``Activation``, ``RepeatVector``,   ``Tanh``/``Relu``/``Sigmoid``/``Softmax``; ``Tile``;
``Flatten``, ``TimeDistributed``    ``Flatten``; ``Reshape`` around the inner layer
==================================  ====================================================

plus the ops of a functional graph (``+ - * /`` with tensors or constants,
``concatenate``, ``sigmoid``/``tanh``/``relu``/``softmax``, ``x[:, t]``-style slicing).
Nested Sequential and functional models are inlined.

Dynamic axes: the batch axis of every input, and the time axis of every sequence input
(rank 3, or rank 2 integer ids) unless the model holds a ``Flatten`` or ``Reshape``
(which fix the length the next layer's weights were built for).

Masks. A mask of real steps (from ``Masking`` or ``Embedding(mask_zero=True)``) reaches
each recurrent operator as ``sequence_lens``, which describes right-padded sequences
only, while crnn skips any padded step, wherever it is. So where a layer masks, its input
is first compacted: each sequence's real steps are moved to its front, in order (``TopK``
of the key ``t + T * padded`` gives the order, ``GatherElements`` applies it), and
``sequence_lens`` is their count. ONNX's outputs at compacted step ``j`` are then moved
back to the step that produced them (``CumSum`` of the mask counts the real steps up to
each step; ``GatherElements`` by that count minus one), so that every mask crnn accepts,
right-, left- or interior-padded, exports exactly. At a padded step crnn outputs zeros
(``zero_output_for_mask=True``) or repeats the output of the previous step in processing
order (``False``, Keras's plain layers; zeros before the first real step): the same count
gives the step to repeat, so both export. The final states are ONNX's ``Y_h``/``Y_c``:
each sequence's states after its last real step, as crnn's.

What cannot be exported raises ``ValueError`` naming it: subclassed models (their
``call`` is Python), stateful layers (their stored states live between calls), cells
other than crnn's three (a custom cell, ``StackedRNNCells``), activations other than
tanh/relu/sigmoid/linear, explicit ``mask=``/``lengths=`` arguments inside a graph, and
layers or ops without an ONNX form here.
"""
import numpy as np

from crnn import engine
from crnn.layers import (GRU, LSTM, Activation, Bidirectional, Dense, Dropout, Embedding,
                         Flatten, GRUCell, LSTMCell, Masking, RepeatVector, SimpleRNN,
                         SimpleRNNCell, TimeDistributed)
from crnn.layers.base import architecture
from crnn.layers.recurrent import RNN

__all__ = ["OPSET", "export_onnx"]

OPSET = 17
_INT64_MIN = np.iinfo(np.int64).min

_ACTIVATIONS = {"tanh": "Tanh", "relu": "Relu", "sigmoid": "Sigmoid", "linear": "Affine"}
_UNARY = {"Sigmoid": "Sigmoid", "Tanh": "Tanh", "Relu": "Relu", "Exp": "Exp", "Log": "Log",
          "Negative": "Neg"}
_BINARY = {"Add": "Add", "Subtract": "Sub", "Multiply": "Mul", "Divide": "Div"}


def _import_onnx():
    try:
        import onnx   # optional: the crnn[onnx] extra
    except ImportError:
        raise ImportError("exporting to ONNX needs the onnx package, which is not "
                          "installed: pip install 'crnn[onnx]' (or pip install onnx)") \
            from None
    return onnx


class _Value:
    """A tensor of the graph being written: its ONNX name, static shape (None where
    dynamic), dtype, and the name of its mask of real steps ``(B, T)`` bool (or None)."""

    __slots__ = ("name", "shape", "dtype", "mask")

    def __init__(self, name, shape, dtype, mask=None):
        self.name, self.shape, self.dtype, self.mask = name, tuple(shape), np.dtype(dtype), mask


class _Graph:
    """The nodes and initializers of the graph being written."""

    def __init__(self, onnx, float_dtype=None):
        self.onnx = onnx
        self.float_dtype = None if float_dtype is None else np.dtype(float_dtype)
        self.nodes, self.initializers, self._count = [], [], 0

    def dt(self, dtype):
        """The dtype written for a layer of ``dtype``: the export's float dtype if one
        was asked for."""
        dtype = np.dtype(dtype)
        return self.float_dtype if self.float_dtype is not None and dtype.kind == "f" \
            else dtype

    def fresh(self, hint):
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, value, dtype=None, hint="const"):
        a = np.asarray(value, dtype=dtype)
        name = self.fresh(hint)
        self.initializers.append(self.onnx.numpy_helper.from_array(a, name))
        return name

    def op(self, op_type, inputs, outputs=1, hint=None, **attrs):
        names = [self.fresh(hint or op_type.lower()) for _ in range(outputs)]
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), names, **attrs))
        return names[0] if outputs == 1 else names

    # -- small helpers -------------------------------------------------------------
    def cast(self, v, dtype):
        dtype = np.dtype(dtype)
        if v.dtype == dtype:
            return v
        to = self.onnx.helper.np_dtype_to_tensor_dtype(dtype)
        return _Value(self.op("Cast", [v.name], to=to), v.shape, dtype, v.mask)

    def cast_name(self, name, dtype):
        return self.op("Cast", [name], to=self.onnx.helper.np_dtype_to_tensor_dtype(
            np.dtype(dtype)))

    def reverse_time(self, name):
        """``x[:, ::-1]``."""
        return self.op("Slice", [name, self.const([-1], np.int64),
                                 self.const([_INT64_MIN], np.int64),
                                 self.const([1], np.int64), self.const([-1], np.int64)])

    def shape_slice(self, name, start, end):
        return self.op("Slice", [self.op("Shape", [name]), self.const([start], np.int64),
                                 self.const([end], np.int64)])

    def unsqueeze(self, name, axes):
        return self.op("Unsqueeze", [name, self.const(axes, np.int64)])

    def squeeze(self, name, axes):
        return self.op("Squeeze", [name, self.const(axes, np.int64)])

    def activation(self, name, act, dtype):
        """``act(x)`` for crnn's output activations (Dense, Activation)."""
        if act in (None, "linear"):
            return name
        if act == "softmax":
            return self.op("Softmax", [name], axis=-1)
        return self.op(_ACTIVATIONS[act], [name])


def _unsupported(what, why=""):
    return ValueError(f"cannot export {what} to ONNX{': ' + why if why else ''}")


# -- recurrent layers ------------------------------------------------------------------------
_CELLS = {SimpleRNNCell: "RNN", LSTMCell: "LSTM", GRUCell: "GRU"}


def _cell_kind(layer):
    cell = getattr(layer, "cell", None)
    kind = _CELLS.get(type(cell))
    if kind is None:
        raise _unsupported(f"{type(layer).__name__} {layer.name!r}",
                           f"its cell is a {type(cell).__name__}; ONNX has operators for "
                           f"crnn's SimpleRNNCell, LSTMCell and GRUCell only")
    if layer.stateful:
        raise _unsupported(f"{type(layer).__name__} {layer.name!r}",
                           "it is stateful (its stored states live between calls, an ONNX "
                           "graph has none): export a copy built with stateful=False")
    for attr in ("activation", "recurrent_activation"):
        act = getattr(cell, attr, None)
        if act is not None and act not in _ACTIVATIONS:
            raise _unsupported(f"{type(layer).__name__} {layer.name!r}",
                               f"{attr}={act!r}; supported: {sorted(_ACTIVATIONS)}")
    return kind


def _onnx_weights(layer, kind):
    """``(W (G*H, D), R (G*H, H), B (2*G*H,))`` of one direction, ONNX's gate order."""
    cell = layer.cell
    H = cell.units
    kernel, recurrent, bias = cell.kernel, cell.recurrent_kernel, cell.bias
    if kind == "LSTM":   # Keras i, f, c, o -> ONNX i, o, f, c
        p = np.r_[0:H, 3 * H:4 * H, H:2 * H, 2 * H:3 * H]
        kernel, recurrent, bias = kernel[:, p], recurrent[:, p], bias[p]
    if kind == "GRU" and cell.reset_after:
        b = np.concatenate([bias[0], bias[1]])
    else:
        b = np.concatenate([bias, np.zeros_like(bias)])
    return kernel.T, recurrent.T, b


def _activation_attrs(layers, kind):
    names, alphas, betas = [], [], []
    for layer in layers:
        cell = layer.cell
        acts = ([cell.activation] if kind == "RNN" else
                [cell.recurrent_activation, cell.activation] if kind == "GRU" else
                [cell.recurrent_activation, cell.activation, cell.activation])
        for a in acts:
            names.append(_ACTIVATIONS[a])
            if a == "linear":    # Affine(x) = alpha * x + beta
                alphas.append(1.0)
                betas.append(0.0)
    attrs = {"activations": names}
    if alphas:
        attrs.update(activation_alpha=alphas, activation_beta=betas)
    return attrs


class _Compacted:
    """A masked layer input with each sequence's real steps moved to its front."""

    def __init__(self, g, x, mask):
        m = g.cast_name(mask, np.int64)                                # (B, T) 0/1
        self.lengths = g.op("ReduceSum", [m, g.const([1], np.int64)], keepdims=0)  # (B,)
        T1 = g.shape_slice(x.name, 1, 2)                               # [T]
        T = g.squeeze(T1, [0])
        steps = g.op("Range", [g.const(0, np.int64), T, g.const(1, np.int64)])  # (T,)
        padded = g.op("Sub", [g.const(1, np.int64), m])
        key = g.op("Add", [g.op("Mul", [padded, T]), steps])           # t + T * padded
        key = g.cast_name(key, np.float64)                             # exact to 2**53
        _, order = g.op("TopK", [key, T1], outputs=2, axis=1, largest=0, sorted=1)
        index = g.op("Expand", [g.unsqueeze(order, [2]), g.op("Shape", [x.name])])
        self.x = g.op("GatherElements", [x.name, index], axis=1)      # real steps first
        self.count = g.op("CumSum", [m, g.const(1, np.int64)])         # real steps <= t
        self.count_rev = g.op("CumSum", [m, g.const(1, np.int64)], reverse=1)  # >= t
        self.mask = mask
        self.m = m

    def restore(self, g, y, reverse, zero_fill, dtype):
        """ONNX's ``Y`` of one direction, batch-first ``(B, T, H)`` in compacted order,
        back in time order: the output of each real step at that step, and at a padded
        step zeros or (``zero_fill=False``) the output of the step processed before it."""
        if reverse:   # the real step processed last at or after t: j = len - count_rev
            j = g.op("Sub", [g.unsqueeze(self.lengths, [1]), self.count_rev])
            seen = g.op("Greater", [self.count_rev, g.const(0, np.int64)])
        else:         # the real step at or before t: j = count - 1
            j = g.op("Sub", [self.count, g.const(1, np.int64)])
            seen = g.op("Greater", [self.count, g.const(0, np.int64)])
        keep = self.mask if zero_fill else seen
        j = g.op("Where", [seen, j, g.const(0, np.int64)])
        index = g.op("Expand", [g.unsqueeze(j, [2]), g.op("Shape", [y])])
        moved = g.op("GatherElements", [y, index], axis=1)
        return g.op("Where", [g.unsqueeze(keep, [2]), moved, g.const(0, dtype)])


def _run_op(g, kind, layers, directions, x_tm, lengths, initial, dtype):
    """One ONNX recurrent operator over time-major ``x_tm`` for ``layers`` (one per
    direction). Returns ``(Y (T, dirs, B, H), Y_h, Y_c or None)``."""
    weights = [_onnx_weights(layer, kind) for layer in layers]
    W = g.const(np.stack([w[0] for w in weights]), dtype, "W")
    R = g.const(np.stack([w[1] for w in weights]), dtype, "R")
    B = g.const(np.stack([w[2] for w in weights]), dtype, "B")
    H = layers[0].cell.units
    attrs = dict(hidden_size=H, direction=directions, **_activation_attrs(layers, kind))
    if kind == "GRU":
        attrs["linear_before_reset"] = int(bool(layers[0].cell.reset_after))
    seq = "" if lengths is None else g.cast_name(lengths, np.int32)
    inputs = [x_tm, W, R, B, seq]
    n_states = 2 if kind == "LSTM" else 1
    for s in range(n_states):
        if initial is None:
            inputs.append("")
        else:   # one (B, H) per direction -> (dirs, B, H)
            parts = [g.unsqueeze(g.cast(states[s], dtype).name, [0]) for states in initial]
            inputs.append(parts[0] if len(parts) == 1 else g.op("Concat", parts, axis=0))
    while inputs and inputs[-1] == "":
        inputs.pop()
    outs = g.op(kind, inputs, outputs=3 if kind == "LSTM" else 2, hint=kind.lower(), **attrs)
    return outs[0], outs[1], (outs[2] if kind == "LSTM" else None)


def _direction(g, Y, Y_h, Y_c, d, compacted, layer, reverse, dtype):
    """Direction ``d`` of an operator's outputs: the sequence batch-first in time order
    (or None without return_sequences) and the final states ``[h(, c)]``."""
    idx = g.const([d], np.int64)
    h = g.squeeze(g.op("Gather", [Y_h, idx], axis=0), [0])
    states = [h] + ([] if Y_c is None else
                    [g.squeeze(g.op("Gather", [Y_c, idx], axis=0), [0])])
    seq = None
    if layer.return_sequences:
        y = g.squeeze(g.op("Gather", [Y, idx], axis=1), [1])           # (T, B, H)
        seq = g.op("Transpose", [y], perm=[1, 0, 2])                   # (B, T, H)
        if compacted is not None:
            zero_fill = bool(getattr(layer, "zero_output_for_mask", True))
            seq = compacted.restore(g, seq, reverse, zero_fill, dtype)
    return seq, states


def _recurrent(g, layer, x, initial):
    """A SimpleRNN/LSTM/GRU or Bidirectional call: its outputs as crnn returns them."""
    if isinstance(layer, Bidirectional):
        pair = (layer.forward_layer, layer.backward_layer)
        if pair[0].go_backwards or not pair[1].go_backwards:
            raise _unsupported(f"Bidirectional {layer.name!r}",
                               "its forward layer must read forward and its backward "
                               "layer backward")
        kinds = [_cell_kind(each) for each in pair]
    else:
        pair = (layer,)
        kinds = [_cell_kind(layer)]
    dtype = g.dt(layer.dtype)
    x = g.cast(x, dtype)
    compacted = None if x.mask is None else _Compacted(g, x, x.mask)
    source = x.name if compacted is None else compacted.x
    lengths = None if compacted is None else compacted.lengths
    x_tm = g.op("Transpose", [source], perm=[1, 0, 2])
    reverse = [each.go_backwards for each in pair]
    per_layer_initial = None
    if initial is not None:
        n = [len(each.cell.state_names) for each in pair]
        if len(initial) != sum(n):
            raise _unsupported(f"{type(layer).__name__} {layer.name!r}",
                               f"expected {sum(n)} initial states, got {len(initial)}")
        per_layer_initial = [initial[:n[0]], initial[n[0]:]][:len(pair)]
    results = []   # per layer: (sequence in time order, states)
    same = len(pair) == 2 and kinds[0] == kinds[1] and _same_config(*pair)
    if same:
        Y, Y_h, Y_c = _run_op(g, kinds[0], list(pair), "bidirectional", x_tm, lengths,
                              per_layer_initial, dtype)
        for d, each in enumerate(pair):
            results.append(_direction(g, Y, Y_h, Y_c, d, compacted, each, reverse[d], dtype))
    else:
        for i, each in enumerate(pair):
            init = None if per_layer_initial is None else [per_layer_initial[i]]
            Y, Y_h, Y_c = _run_op(g, kinds[i], [each],
                                  "reverse" if reverse[i] else "forward", x_tm, lengths,
                                  init, dtype)
            results.append(_direction(g, Y, Y_h, Y_c, 0, compacted, each, reverse[i],
                                      dtype))
    H_of = [each.cell.units for each in pair]
    if not isinstance(layer, Bidirectional):
        seq, states = results[0]
        if layer.return_sequences:
            out = seq if not layer.go_backwards else g.reverse_time(seq)  # processing order
            mask = None
            if x.mask is not None:
                mask = x.mask if not layer.go_backwards else g.reverse_time(x.mask)
            main = _Value(out, x.shape[:2] + (H_of[0],), dtype, mask)
        else:
            main = _Value(states[0], (x.shape[0], H_of[0]), dtype)
        if not layer.return_state:
            return [main]
        return [main] + [_Value(s, (x.shape[0], H_of[0]), dtype) for s in states]
    # Bidirectional: both directions in time order, merged
    if layer.return_sequences:
        ys = [results[0][0], results[1][0]]
        shapes = [x.shape[:2] + (H,) for H in H_of]
        mask = x.mask
    else:
        ys = [results[0][1][0], results[1][1][0]]
        shapes = [(x.shape[0], H) for H in H_of]
        mask = None
    mode = layer.merge_mode
    if mode == "concat":
        merged = [_Value(g.op("Concat", ys, axis=-1), shapes[0][:-1] + (sum(H_of),), dtype,
                         mask)]
    elif mode == "sum":
        merged = [_Value(g.op("Add", ys), shapes[0], dtype, mask)]
    elif mode == "mul":
        merged = [_Value(g.op("Mul", ys), shapes[0], dtype, mask)]
    elif mode == "ave":
        merged = [_Value(g.op("Mul", [g.op("Add", ys), g.const(0.5, dtype)]), shapes[0],
                         dtype, mask)]
    else:
        merged = [_Value(y, s, dtype, mask) for y, s in zip(ys, shapes)]
    if not layer.return_state:
        return merged
    states = [_Value(s, (x.shape[0], H), dtype)
              for (_, st), H in zip(results, H_of) for s in st]
    return merged + states


def _same_config(f, b):
    cf, cb = f.cell, b.cell
    return (type(cf) is type(cb) and cf.units == cb.units
            and cf.activation == cb.activation
            and getattr(cf, "recurrent_activation", None)
            == getattr(cb, "recurrent_activation", None)
            and getattr(cf, "reset_after", None) == getattr(cb, "reset_after", None)
            and f.return_sequences == b.return_sequences)


# -- the other layers ------------------------------------------------------------------------
def _dense(g, layer, x):
    x = g.cast(x, g.dt(layer.dtype))
    y = g.op("MatMul", [x.name, g.const(layer.params["kernel"], g.dt(layer.dtype), "kernel")])
    if layer.use_bias:
        y = g.op("Add", [y, g.const(layer.params["bias"], g.dt(layer.dtype), "bias")])
    y = g.activation(y, layer._act, g.dt(layer.dtype))
    return [_Value(y, x.shape[:-1] + (layer.units,), g.dt(layer.dtype), x.mask)]


def _embedding(g, layer, x):
    ids = x.name if x.dtype == np.int64 else g.cast_name(x.name, np.int64)
    y = g.op("Gather", [g.const(layer.params["embeddings"], g.dt(layer.dtype), "embeddings"),
                        ids], axis=0)
    mask = None
    if layer.mask_zero:
        mask = g.op("Not", [g.op("Equal", [ids, g.const(0, np.int64)])])
    return [_Value(y, x.shape + (layer.output_dim,), g.dt(layer.dtype), mask)]


def _masking(g, layer, x):
    x = g.cast(x, g.dt(layer.dtype))
    other = g.op("Not", [g.op("Equal", [x.name, g.const(layer.mask_value, g.dt(layer.dtype))])])
    real = g.op("ReduceMax", [g.cast_name(other, g.dt(layer.dtype))], axes=[-1], keepdims=1)
    y = g.op("Mul", [x.name, real])
    mask = g.cast_name(g.squeeze(real, [-1]), np.bool_)
    return [_Value(y, x.shape, g.dt(layer.dtype), mask)]


def _time_distributed(g, layer, x, handle):
    inner = layer.layer
    if isinstance(inner, (Dense, Activation, Dropout)):   # they act on the last axis
        out = handle(inner, [x], {})
        return [_Value(out[0].name, out[0].shape, out[0].dtype, x.mask)]
    steps = g.op("Reshape", [x.name, g.const([-1] + [_dim(d) for d in x.shape[2:]],
                                             np.int64)])
    out = handle(inner, [_Value(steps, (None,) + x.shape[2:], x.dtype)], {})
    if len(out) != 1:
        raise _unsupported(f"TimeDistributed {layer.name!r}",
                           "its layer returns several tensors")
    rest = out[0].shape[1:]
    if any(d is None for d in rest):
        raise _unsupported(f"TimeDistributed {layer.name!r}",
                           f"its layer's output shape {out[0].shape} is not fixed")
    shape = g.op("Concat", [g.shape_slice(x.name, 0, 2), g.const(list(rest), np.int64)],
                 axis=0)
    y = g.op("Reshape", [out[0].name, shape])
    return [_Value(y, x.shape[:2] + tuple(rest), out[0].dtype, x.mask)]


def _dim(d):
    if d is None:
        raise _unsupported("a TimeDistributed layer over an input of unknown feature size")
    return int(d)


def _getitem(g, op, x):
    key = op.key if isinstance(op.key, tuple) else (op.key,)
    name, shape, squeeze = x.name, list(x.shape), []
    if any(k is Ellipsis or k is None for k in key) or len(key) > len(shape):
        raise _unsupported(f"the slice {op.key!r}", "only ints and slices are exported")
    for axis, k in enumerate(key):
        if isinstance(k, (int, np.integer)) and not isinstance(k, bool):
            k = int(k)
            name = g.op("Gather", [name, g.const(k, np.int64)], axis=axis - len(squeeze))
            squeeze.append(axis)
        elif isinstance(k, slice):
            if k == slice(None):
                continue
            step = 1 if k.step is None else int(k.step)
            start = (0 if step > 0 else -1) if k.start is None else int(k.start)
            stop = ((np.iinfo(np.int64).max if step > 0 else _INT64_MIN) if k.stop is None
                    else int(k.stop))
            name = g.op("Slice", [name, g.const([start], np.int64), g.const([stop], np.int64),
                                  g.const([axis - len(squeeze)], np.int64),
                                  g.const([step], np.int64)])
            n = shape[axis]
            shape[axis] = None if n is None else len(range(*k.indices(n)))
        else:
            raise _unsupported(f"the slice {op.key!r}", "only ints and slices are exported")
    shape = [d for a, d in enumerate(shape) if a not in squeeze]
    return [_Value(name, shape, x.dtype)]


# -- the graph walk --------------------------------------------------------------------------
class _Exporter:
    def __init__(self, onnx, model, float_dtype=None):
        self.g = _Graph(onnx, float_dtype)
        self.model = model

    def value(self, a, dtype=None):
        """A node argument: a _Value, or a constant made one."""
        if isinstance(a, _Value):
            return a
        arr = np.asarray(a, dtype=dtype)
        return _Value(self.g.const(arr, arr.dtype), arr.shape, arr.dtype)

    def call(self, layer, args, kwargs):
        """The outputs (_Values, flat) of ``layer(*args, **kwargs)``."""
        g = self.g
        for key in ("mask", "lengths"):
            if kwargs.get(key) is not None:
                raise _unsupported(f"the call of {layer.name!r} with {key}=",
                                   "masks come from Masking or Embedding(mask_zero=True) "
                                   "in an exported model")
        if architecture(layer) is not None:
            return self.model_call(layer, args)
        x = args[0] if args else None
        if isinstance(layer, (RNN, Bidirectional)):
            initial = kwargs.get("initial_state", args[1] if len(args) > 1 else None)
            if initial is not None:
                initial = [self.value(s) for s in engine.flatten(initial)]
            return _recurrent(g, layer, x, initial)
        if isinstance(layer, Dense):
            return _dense(g, layer, x)
        if isinstance(layer, Embedding):
            return _embedding(g, layer, x)
        if isinstance(layer, Masking):
            return _masking(g, layer, x)
        if isinstance(layer, Dropout):
            return [_Value(g.op("Identity", [x.name]), x.shape, x.dtype, x.mask)]
        if isinstance(layer, Activation):
            x = g.cast(x, g.dt(layer.dtype))
            return [_Value(g.activation(x.name, layer._act, g.dt(layer.dtype)), x.shape,
                           g.dt(layer.dtype), x.mask)]
        if isinstance(layer, RepeatVector):
            x = g.cast(x, g.dt(layer.dtype))
            y = g.op("Tile", [g.unsqueeze(x.name, [1]),
                              g.const([1, layer.n, 1], np.int64)])
            return [_Value(y, (x.shape[0], layer.n, x.shape[1]), g.dt(layer.dtype))]
        if isinstance(layer, Flatten):
            x = g.cast(x, g.dt(layer.dtype))
            rest = x.shape[1:]
            n = None if any(d is None for d in rest) else int(np.prod(rest, dtype=np.int64))
            return [_Value(g.op("Flatten", [x.name], axis=1), (x.shape[0], n), g.dt(layer.dtype))]
        if isinstance(layer, TimeDistributed):
            return _time_distributed(g, layer, x, self.call)
        return self.op_call(layer, args, kwargs)

    def op_call(self, op, args, kwargs):
        g, cls = self.g, type(op).__name__
        if len(args) == 1 and isinstance(args[0], (list, tuple)):
            args = tuple(args[0])       # an op is applied to the list of its operands
        if cls in _BINARY:
            a, b = args
            if not isinstance(a, _Value) and not isinstance(b, _Value):
                raise _unsupported(f"the op {cls}", "neither operand is a tensor")
            dtype = (a if isinstance(a, _Value) else b).dtype
            a, b = self.value(a, dtype), self.value(b, dtype)
            shape = np.broadcast_shapes(*[tuple(1 if d is None else d for d in v.shape)
                                          for v in (a, b)])
            shape = tuple(None if (len(shape) - i <= len(a.shape) and a.shape[i - len(shape)]
                                   is None) or (len(shape) - i <= len(b.shape)
                                                and b.shape[i - len(shape)] is None)
                          else d for i, d in enumerate(shape))
            return [_Value(g.op(_BINARY[cls], [a.name, b.name]), shape, dtype)]
        if cls in _UNARY:
            x = args[0]
            return [_Value(g.op(_UNARY[cls], [x.name]), x.shape, x.dtype)]
        if cls == "Softmax":
            x = args[0]
            return [_Value(g.op("Softmax", [x.name], axis=int(getattr(op, "axis", -1))),
                           x.shape, x.dtype)]
        if cls == "Concatenate":
            parts = [self.value(a) for a in args]
            axis = op.axis
            shape = list(parts[0].shape)
            ax = axis % len(shape)
            shape[ax] = (None if any(p.shape[ax] is None for p in parts)
                         else sum(p.shape[ax] for p in parts))
            return [_Value(g.op("Concat", [p.name for p in parts], axis=axis), shape,
                           parts[0].dtype)]
        if cls == "GetItem":
            return _getitem(g, op, args[0])
        raise _unsupported(f"{cls} {getattr(op, 'name', '')!r}".rstrip(" '"),
                           "no ONNX form for it here; exported layers: SimpleRNN, LSTM, "
                           "GRU, Bidirectional, Embedding, Dense, Masking, Dropout, "
                           "Activation, RepeatVector, Flatten, TimeDistributed, nested "
                           "Sequential and functional models, and the ops + - * /, "
                           "concatenate, sigmoid, tanh, relu, softmax, slicing")

    def model_call(self, model, args):
        kind = architecture(model)
        if kind == "subclassed":
            raise _unsupported(f"the subclassed model {model.name!r}",
                               "its call is Python code, not a graph of layers; build it "
                               "as a Sequential or functional model")
        if kind == "sequential":
            x = args[0]
            for layer in model.layers:
                out = self.call(layer, (x,), {})
                if len(out) != 1:
                    raise _unsupported(f"the layer {layer.name!r} in a Sequential",
                                       "it returns several tensors")
                x = out[0]
            return [x]
        inputs = engine.flatten(model.inputs)
        given = engine.flatten(list(args)) if len(inputs) > 1 else [args[0]]
        values = {id(p): v for p, v in zip(inputs, given)}
        return self.walk(model, values)

    def walk(self, model, values):
        """The outputs of a functional model whose inputs are ``values`` (by id)."""
        for node in model._nodes:
            args = engine.substitute(node.args, values)
            kwargs = {k: engine.substitute(v, values) for k, v in node.kwargs.items()}
            layer = node.layer
            outs = self.call(layer, args, kwargs)
            if len(outs) != len(node.outputs):
                raise _unsupported(f"{layer.name!r}", f"{len(node.outputs)} outputs "
                                   f"expected, {len(outs)} written")
            for sym, v in zip(node.outputs, outs):
                values[id(sym)] = v
        return [values[id(t)] for t in engine.flatten(model.outputs)]


def _sequence_inputs(model):
    """Whether the model may take any sequence length: it holds no Flatten or Reshape
    (whose output size the next layer's weights fix)."""
    def visit(layer):
        if isinstance(layer, Flatten) or type(layer).__name__ == "Reshape":
            return False
        subs = list(getattr(layer, "layers", []) if architecture(layer) else [])
        if architecture(layer) == "functional":
            subs = [n.layer for n in layer._nodes]
        for attr in ("layer", "forward_layer", "backward_layer"):
            sub = layer.__dict__.get(attr) if hasattr(layer, "__dict__") else None
            if sub is not None:
                subs.append(sub)
        return all(visit(s) for s in subs)
    return visit(model)


def _placeholders(model):
    kind = architecture(model)
    if kind == "functional":
        return engine.flatten(model.inputs)
    first = model.__dict__.get("_input")
    if first is not None:
        return [first]
    seen = model.__dict__.get("_input_spec_seen")
    if seen and seen[0] and isinstance(seen[0][0], tuple) and seen[0][0][:1] == ("array",):
        _, shape, dtype = seen[0][0]
        return [engine.Input(tuple(shape[1:]), dtype=dtype)]
    raise ValueError(f"expected a Sequential that starts with crnn.Input(shape) or has been "
                     f"called on data, got {model.name!r} with no input shape: the ONNX "
                     f"graph needs the input's shape and dtype")


def export_onnx(model, path, dtype=None):
    """Write ``model`` (Sequential or functional) as an ONNX model at ``path``; returns
    the ``onnx.ModelProto`` (checked by ``onnx.checker``). See the module docstring.

    ``dtype`` (``"float32"`` or ``"float64"``), if given, is the float type of the whole
    graph, weights and float inputs and outputs; by default each layer's own. (ONNX
    Runtime's CPU kernels for ``RNN``, ``LSTM`` and ``GRU`` are float32 only: serve a
    float64 model there with ``dtype="float32"``.)"""
    onnx = _import_onnx()
    if dtype is not None and np.dtype(dtype) not in (np.float32, np.float64):
        raise ValueError(f"expected dtype None, 'float32' or 'float64', got {dtype!r}")
    kind = architecture(model)
    if kind is None:
        raise ValueError(f"expected a crnn Model, got {type(model).__name__}")
    if kind == "subclassed":
        raise _unsupported(f"the subclassed model {model.name!r}",
                           "its call is Python code, not a graph of layers; build it as a "
                           "Sequential or functional model")
    for layer in model.layers_deep():
        if isinstance(layer, RNN) and not layer.built or (
                isinstance(layer, (Dense, Embedding)) and not layer.built):
            raise ValueError(f"expected a built model, got {model.name!r} whose layer "
                             f"{layer.name!r} has no weights yet: call it on a batch first")
    ex = _Exporter(onnx, model, dtype)
    dynamic_time = _sequence_inputs(model)
    graph_inputs, values = [], []
    for i, p in enumerate(_placeholders(model)):
        name = p.name or f"input_{i}"
        seq = len(p.shape) >= 3 or (len(p.shape) == 2 and p.dtype.kind in "iu")
        dims = []
        for axis, d in enumerate(p.shape):
            if axis == 0:
                dims.append("batch")
            elif axis == 1 and seq and (dynamic_time or d is None):
                dims.append("time")
            else:
                dims.append(d if d is not None else f"{name}_dim{axis}")
        p_dtype = ex.g.dt(p.dtype)
        graph_inputs.append(onnx.helper.make_tensor_value_info(
            name, onnx.helper.np_dtype_to_tensor_dtype(p_dtype), dims))
        values.append((p, _Value(name, p.shape, p_dtype)))
    if kind == "sequential":
        outputs = ex.model_call(model, [values[0][1]])
    else:
        outputs = ex.walk(model, {id(p): v for p, v in values})
    graph_outputs = []
    for i, v in enumerate(outputs):
        name = f"output_{i}"
        ex.g.nodes.append(onnx.helper.make_node("Identity", [v.name], [name]))
        graph_outputs.append(onnx.helper.make_tensor_value_info(
            name, onnx.helper.np_dtype_to_tensor_dtype(v.dtype), [None] * len(v.shape)))
    graph = onnx.helper.make_graph(ex.g.nodes, model.name or "crnn", graph_inputs,
                                   graph_outputs, ex.g.initializers)
    proto = onnx.helper.make_model(graph, producer_name="crnn",
                                   opset_imports=[onnx.helper.make_opsetid("", OPSET)])
    proto.ir_version = min(proto.ir_version, 8)   # readable by older runtimes too
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, path)
    return proto
