"""``model.summary()``: Keras's table of the layers, with the output shapes from the
functional graph or from the layers called on placeholders shaped like the inputs of the
model's last call (kept by :func:`note_inputs`)."""
import numpy as np

from crnn import engine, registry
from crnn.layers.base import architecture
from crnn.training.data import is_array

__all__ = ["note_inputs", "print_summary"]


def _spec_of(structure):
    """``structure`` with every array replaced by ``("array", shape, dtype)``."""
    if isinstance(structure, (list, tuple)):
        return type(structure)(_spec_of(s) for s in structure)
    if is_array(structure):
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


def print_summary(model, line_length=None, positions=None, print_fn=None):
    """Print ``model``'s table (see :meth:`crnn.Model.summary`)."""
    print_fn = print if print_fn is None else print_fn
    rows, connected = _summary_rows(model)
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
    total = model.count_params()
    trainable = int(sum(w.size for w in model.trainable_weights))
    lines = [f'Model: "{model.name}"', "_" * line_length]
    lines += _table_row(header, positions)
    lines.append("=" * line_length)
    for i, row in enumerate(rows):
        if i:
            lines.append("")
        lines += _table_row(row if connected else row[:3], positions)
    if rows:
        lines.append("=" * line_length)
    lines += [f"Total params: {total:,}", f"Trainable params: {trainable:,}",
              f"Non-trainable params: {total - trainable:,}", "_" * line_length]
    for line in lines:
        print_fn(line)


def _params(layer):
    """A row's ``Param #``: every weight of the layer, frozen ones included (Keras's)."""
    return int(sum(w.size for w in layer.weights))


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
            rest = cutoff
            breaks = [fit.find(s) + len(s) for s in ("),", "},", "],", "',") if s in fit]
            if breaks:
                rest = cutoff = min(breaks)
                fit = fit[:cutoff]
            elif len(text) > cutoff and " " in fit.strip():
                # never inside a word: at the last space that fits (a word longer than
                # the column alone is cut)
                cutoff = fit.rstrip().rfind(" ")
                fit, rest = fit[:cutoff], cutoff + 1
            line += (" " if col == 0 else "") + fit
            left[col] = text[rest:]
            line += " " * max(positions[col] - len(line), 0)
        lines.append(line.rstrip())
    return lines
