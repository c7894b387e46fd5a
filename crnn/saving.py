"""Saving and loading models: one ``.npz`` file holding JSON and numeric arrays, nothing
that runs code when read.

A file written by :func:`save_model` (``model.save(path)``) holds

==========================  ===========================================================
``__crnn__``                the header: ``["crnn", "<format version>", "<kind>"]``,
                            kind ``"model"`` or ``"weights"``
``config.json``             UTF-8 JSON as a ``uint8`` array: the architecture, the names
                            of the weights, the compile configuration, the state of
                            every random generator
``layers/<i>/<name>``       the weights of ``model.layers[i]`` (``layers/0/kernel``;
                            nested layers add their path: ``layers/2/forward/bias``,
                            ``layers/1/layers/0/kernel`` for a model inside a model)
``optimizer/<name>``        the optimizer's :meth:`get_state` arrays (``iterations``,
                            ``m/0``, ...), so that training resumes identically
==========================  ===========================================================

:func:`save_weights` writes the same file without the architecture, the compile
configuration and the optimizer; :func:`load_weights` reads the weights of either kind.

Reading never unpickles (``np.load(..., allow_pickle=False)``) and never imports or
evaluates anything named in the file: a class name is looked up in crnn's own layers or in
the ``custom_objects`` the caller passes. Every way a file can be wrong (empty, not a zip,
truncated, a foreign ``.npz``, malformed JSON, an unknown class, a pickled array) raises
``ValueError`` saying what was expected.

The architecture, as JSON:

* a **Sequential**: its layers' ``{"class_name", "config"}`` in order, and the
  :func:`crnn.Input` it starts with (or, for one built by a first call, an input shape
  that builds it again);
* a **functional** model: its layers, each once (a shared layer too); its nodes in
  topological order, each ``{"layer": <index>, "args", "kwargs"}`` where a tensor is a
  reference, ``{"__tensor__": [node, output]}`` or ``{"__input__": i}``; its inputs
  (shape, dtype, name) and the structure of its inputs and outputs;
* a **subclassed** model (its own ``call``) cannot be rebuilt from JSON: save its weights
  with :func:`save_weights`, rebuild it in code, call it on a batch and
  :func:`load_weights`.

Values JSON lacks are written as one-key objects: a tuple ``{"__tuple__": [...]}``, a slice
``{"__slice__": [start, stop, step]}``, ``...`` ``{"__ellipsis__": null}``, a dtype
``{"__dtype__": "float32"}``, a small numeric array ``{"__ndarray__": {"dtype", "shape",
"data"}}``, NaN or an infinity ``{"__float__": "nan"}``, a dict with non-string keys
``{"__items__": [[key, value], ...]}`` (a dict that could be read as one of these is
escaped as ``{"__dict__": {...}}``).
"""
import json
import os
import secrets
import threading
import warnings

import numpy as np

from crnn import engine, losses, metrics, optimizers, registry
from crnn._version import __version__
from crnn.layers.base import Layer, architecture, serialize_layer

FORMAT_NAME = "crnn"
FORMAT_VERSION = 1
HEADER_KEY = "__crnn__"
CONFIG_KEY = "config.json"
WEIGHTS_PREFIX = "layers/"
OPTIMIZER_PREFIX = "optimizer/"

_EXPECTED = "a crnn file (an .npz archive written by crnn's save or save_weights)"

_local = threading.local()


# -- JSON for what JSON lacks -------------------------------------------------------------
_MARKERS = frozenset({"__tuple__", "__slice__", "__ellipsis__", "__float__", "__dtype__",
                      "__ndarray__", "__dict__", "__items__", "__layer__", "__tensor__",
                      "__input__"})


def _encode(value, where, ref=None):
    """``value`` as JSON-compatible data (see the module docstring); ``ref`` encodes a
    :class:`crnn.engine.SymbolicTensor`. Raises ``ValueError`` naming ``where`` for a
    value a file cannot hold (a function, an arbitrary object)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if np.isfinite(f) else {"__float__": repr(f)}
    if isinstance(value, list):
        return [_encode(v, f"{where}[{i}]", ref) for i, v in enumerate(value)]
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, f"{where}[{i}]", ref)
                              for i, v in enumerate(value)]}
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            out = {k: _encode(v, f"{where}[{k!r}]", ref) for k, v in value.items()}
            if len(out) == 1 and next(iter(out)) in _MARKERS:
                return {"__dict__": out}  # escaped: it would read as a marker
            return out
        return {"__items__": [[_encode(k, f"{where} key", ref),
                               _encode(v, f"{where}[{k!r}]", ref)]
                              for k, v in value.items()]}
    if isinstance(value, slice):
        return {"__slice__": [_encode(value.start, where, ref),
                              _encode(value.stop, where, ref),
                              _encode(value.step, where, ref)]}
    if value is Ellipsis:
        return {"__ellipsis__": None}
    if isinstance(value, np.dtype) or (isinstance(value, type)
                                       and issubclass(value, np.generic)):
        return {"__dtype__": np.dtype(value).name}
    if isinstance(value, engine.SymbolicTensor):
        if ref is None:
            raise ValueError(f"{where} is a crnn.Input placeholder, which only a "
                             f"functional model's graph can refer to")
        return ref(value)
    if isinstance(value, engine.Tensor):
        value = value.value
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise ValueError(f"{where} is an array of dtype {value.dtype}; a crnn file "
                             f"holds only boolean and numeric arrays in its JSON")
        data = [_encode(v, where) for v in value.ravel().tolist()]
        return {"__ndarray__": {"dtype": value.dtype.name, "shape": list(value.shape),
                                "data": data}}
    if isinstance(value, Layer):
        return {"__layer__": _serialize_layer(value)}
    what = (f"the function {getattr(value, '__qualname__', value)!r}" if callable(value)
            else f"a {type(value).__name__} object")
    raise ValueError(f"{where} is {what}, which a crnn file cannot hold (it stores only "
                     f"JSON and arrays, never code)")


def _decode(value, ref=None, custom_objects=None):
    """The inverse of :func:`_encode`; ``ref`` resolves ``__tensor__``/``__input__``.
    Raises ``ValueError`` on anything :func:`_encode` does not write."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [_decode(v, ref, custom_objects) for v in value]
    if not isinstance(value, dict):
        raise ValueError(f"expected JSON data, got a {type(value).__name__}")
    if len(value) == 1:
        (key, body), = value.items()
        if key in _MARKERS:
            return _decode_marker(key, body, ref, custom_objects)
    return {k: _decode(v, ref, custom_objects) for k, v in value.items()}


def _decode_marker(key, body, ref, custom_objects):
    def sub(v):
        return _decode(v, ref, custom_objects)

    if key == "__tuple__":
        _check(isinstance(body, list), "a __tuple__ holding a list", body)
        return tuple(sub(v) for v in body)
    if key == "__dict__":
        _check(isinstance(body, dict), "a __dict__ holding an object", body)
        return {k: sub(v) for k, v in body.items()}
    if key == "__items__":
        _check(isinstance(body, list) and all(isinstance(p, list) and len(p) == 2
                                              for p in body),
               "__items__ holding [key, value] pairs", body)
        out = {}
        for k, v in body:
            k = sub(k)
            _check(isinstance(k, (str, int, float, bool, tuple, type(None))),
                   "a hashable __items__ key", k)
            out[k] = sub(v)
        return out
    if key == "__slice__":
        _check(isinstance(body, list) and len(body) == 3, "a __slice__ of 3 entries", body)
        return slice(*(sub(v) for v in body))
    if key == "__ellipsis__":
        return Ellipsis
    if key == "__float__":
        _check(body in ("nan", "inf", "-inf"), "__float__ 'nan', 'inf' or '-inf'", body)
        return float(body)
    if key == "__dtype__":
        _check(isinstance(body, str), "a __dtype__ name", body)
        dt = np.dtype(body)
        _check(dt.kind in "biuf", "a boolean or numeric __dtype__", body)
        return dt
    if key == "__ndarray__":
        _check(isinstance(body, dict) and {"dtype", "shape", "data"} <= set(body),
               "an __ndarray__ with dtype, shape and data", body)
        dt = np.dtype(body["dtype"]) if isinstance(body["dtype"], str) else None
        _check(dt is not None and dt.kind in "biuf", "a boolean or numeric __ndarray__",
               body["dtype"])
        data = [sub(v) for v in body["data"]]
        _check(all(isinstance(v, (bool, int, float)) for v in data),
               "numbers in an __ndarray__", body["data"])
        return np.array(data, dtype=dt).reshape([int(n) for n in body["shape"]])
    if key == "__layer__":
        return _deserialize_layer(body, custom_objects)
    # __tensor__ / __input__: references into a functional graph
    if ref is None:
        raise ValueError(f"a tensor reference {{{key!r}: {body!r}}} outside a functional "
                         f"model's graph")
    return ref(key, body)


def _one_line(e):
    """An exception's message on one line (as part of ours)."""
    return " ".join(str(e).split())


def _check(ok, expected, got):
    if not ok:
        raise ValueError(f"expected {expected}, got {got!r:.80}")


# -- layers by class name -----------------------------------------------------------------
def _resolve_class(name, custom_objects):
    """The class a file names: from ``custom_objects``, else one of crnn's own layers
    (never a class found by importing what the file names, and never a user's class the
    caller did not pass)."""
    if not isinstance(name, str):
        raise ValueError(f"expected a class name (a string), got {name!r:.60}")
    if custom_objects and name in custom_objects:
        cls = custom_objects[name]
        if not (isinstance(cls, type) and hasattr(cls, "from_config")):
            raise ValueError(f"expected custom_objects[{name!r}] to be a class with "
                             f"from_config, got {cls!r:.60}")
        return cls
    cls = registry.lookup(name)
    if cls is not None:
        return cls
    raise ValueError(f"unknown layer class {name!r}: it is neither a crnn layer nor in "
                     f"custom_objects")


def _serialize_layer(layer):
    """``{"class_name", "config"}`` of any layer with its config encoded as JSON data."""
    if architecture(layer) is not None:
        return get_model_config(layer)
    try:
        data = serialize_layer(layer)
    except Exception as e:
        raise ValueError(f"cannot save layer {layer.name!r} ({type(layer).__name__}): its "
                         f"get_config failed: {_one_line(e)}") from e
    where = f"layer {layer.name!r} ({type(layer).__name__}) config"
    return {"class_name": data["class_name"], "config": _encode(data["config"], where)}


def _deserialize_layer(data, custom_objects):
    _check(isinstance(data, dict) and isinstance(data.get("class_name"), str)
           and isinstance(data.get("config", {}), dict),
           "a layer as {'class_name': ..., 'config': {...}}", data)
    cls = _resolve_class(data["class_name"], custom_objects)
    if isinstance(cls, type) and architecture(cls) is not None:
        return _model_from_config(cls, data.get("config", {}), custom_objects)[0]
    config = _decode(data.get("config", {}), None, custom_objects)
    with _custom_scope(custom_objects):  # for wrappers that deserialize their inner layer
        return cls.from_config(config)


class _custom_scope:
    """``custom_objects`` visible to :meth:`crnn.Model.from_config` when a wrapper's
    ``from_config`` rebuilds a model inside it."""

    def __init__(self, custom_objects):
        self.custom_objects = custom_objects

    def __enter__(self):
        stack = _local.__dict__.setdefault("custom", [])
        stack.append(self.custom_objects)

    def __exit__(self, *exc):
        _local.custom.pop()
        return False


def _current_custom_objects():
    merged = {}
    for d in getattr(_local, "custom", []):
        merged.update(d or {})
    return merged or None


# -- model architectures ------------------------------------------------------------------
def _kind(model):
    kind = architecture(model)
    if kind is None:
        raise ValueError(f"expected a crnn.Model, got {type(model).__name__}")
    return kind


def _subclassed_error(model, what):
    return ValueError(
        f"cannot {what} the subclassed model {model.name!r} ({type(model).__name__}): its "
        f"architecture is Python code (its call), which a crnn file does not hold. Use "
        f"model.save_weights(path); to load, build the model in code, call it on a batch "
        f"and model.load_weights(path)")


def _spec(t):
    return {"shape": list(t.shape), "dtype": t.dtype.name, "name": t.name}


def _placeholder(spec):
    _check(isinstance(spec, dict) and isinstance(spec.get("shape"), list)
           and len(spec["shape"]) >= 1
           and all(d is None or (isinstance(d, int) and d >= 0) for d in spec["shape"])
           and isinstance(spec.get("dtype"), str),
           "an input as {'shape': [...], 'dtype': ..., 'name': ...}", spec)
    shape = spec["shape"]
    return engine.Input(tuple(shape[1:]), dtype=spec["dtype"], name=spec.get("name"),
                        batch_size=shape[0])


def get_model_config(model):
    """The architecture of a Sequential or functional model as JSON-compatible data.

    Returns
    -------
    dict
        ``{"class_name": ..., "config": ...}``; :func:`model_from_config` rebuilds the
        model (with new weights) from it.

    Raises
    ------
    ValueError
        For a subclassed model, or a layer whose configuration holds something other
        than data (a function given as an initializer, ...).
    """
    kind = _kind(model)
    if kind == "subclassed":
        raise _subclassed_error(model, "describe")
    config = (_functional_config(model) if kind == "functional"
              else _sequential_config(model))
    return {"class_name": type(model).__name__, "config": config}


def _sequential_config(model):
    layers = model.layers
    first = model._input
    config = {"name": model.name,
              "layers": [_serialize_layer(layer) for layer in layers],
              "input": None if first is None else _spec(first),
              "build_input": None}
    if first is None and _named_weights(layers):
        spec = _probe_sequential_input(model)
        if spec is None:
            raise ValueError(
                f"cannot save the Sequential {model.name!r}: it was built by a call, and "
                f"no input shape was found that builds its layers again. Start it with "
                f"crnn.Input(shape), or use save_weights")
        config["build_input"] = spec
    return config


def _input_dim(layer):
    """The ``input_dim`` a built layer (or the layer it wraps) records, or None."""
    d = layer.__dict__.get("input_dim")
    if isinstance(d, (int, np.integer)) and not isinstance(d, bool):
        return int(d)
    for attr in ("cell", "layer", "forward_layer"):
        sub = layer.__dict__.get(attr)
        if isinstance(sub, Layer):
            return _input_dim(sub)
    return None


def _probe_sequential_input(model):
    """An input spec that builds a Sequential's layers again, for one built by a call
    (which records no input shape). Placeholders of a few likely shapes, ``(None, None,
    D)`` first (sequences of ``D`` features), are traced through the built layers (tracing
    does not change them); the first that gives fresh copies of the layers weights of the
    same names and shapes is kept."""
    layers = model.layers
    D = next((d for d in map(_input_dim, layers) if d is not None), None)
    floats = ([] if D is None else
              [((None, None, D), layers[0].dtype.name), ((None, D), layers[0].dtype.name),
               ((None, None, None, D), layers[0].dtype.name)])
    ids = [((None, None), "int64"), ((None,), "int64")]
    # an Embedding-like first layer (ids in, vectors out): its input_dim is the vocabulary
    ids_first = "output_dim" in layers[0].__dict__
    expected = {n: w.shape for n, w in _named_weights(layers).items()}
    classes = {type(layer).__name__: type(layer) for _, layer in _walk(layers)}
    for shape, dtype in (ids + floats if ids_first else floats + ids):
        try:
            x = engine.Input(shape[1:], dtype=dtype)
            for layer in layers:
                x = layer(x)
                if isinstance(x, (list, tuple)):
                    raise ValueError("more than one output")
            fresh = [_deserialize_layer(_serialize_layer(layer), classes)
                     for layer in layers]
            x = engine.Input(shape[1:], dtype=dtype)
            for layer in fresh:
                x = layer(x)
            got = {n: w.shape for n, w in _named_weights(fresh).items()}
        except Exception:
            continue
        if got == expected:
            return {"shape": list(shape), "dtype": dtype, "name": None}
    return None


def _functional_config(model):
    layers = list(model.layers)
    layer_index = {id(layer): i for i, layer in enumerate(layers)}
    nodes = list(model._nodes)
    node_index = {id(node): i for i, node in enumerate(nodes)}
    flat_inputs = engine.flatten(model.inputs)
    input_index = {id(t): i for i, t in enumerate(flat_inputs)}

    def ref(t):
        if id(t) in input_index:
            return {"__input__": input_index[id(t)]}
        if t.node is None or id(t.node) not in node_index:
            raise ValueError(f"the model {model.name!r} refers to a placeholder outside "
                             f"its graph: {t!r}")
        outs = t.node.outputs
        k = next(i for i, o in enumerate(outs) if o is t)
        return {"__tensor__": [node_index[id(t.node)], k]}

    node_configs = []
    for i, node in enumerate(nodes):
        where = f"node {i} (a call of {node.layer.name!r})"
        node_configs.append({
            "layer": layer_index[id(node.layer)],
            "args": _encode(tuple(node.args), f"{where} args", ref),
            "kwargs": _encode(dict(node.kwargs), f"{where} kwargs", ref),
        })
    return {"name": model.name,
            "layers": [_serialize_layer(layer) for layer in layers],
            "nodes": node_configs,
            "inputs": [_spec(t) for t in flat_inputs],
            "input_structure": _encode(model.inputs, "inputs", ref),
            "output_structure": _encode(model.outputs, "outputs", ref)}


def model_from_config(data, custom_objects=None):
    """Rebuild a model from :func:`get_model_config`'s output (new weights).

    Parameters
    ----------
    data : dict
        ``{"class_name": ..., "config": ...}``.
    custom_objects : dict of str to class, optional
        Classes the configuration names that are not crnn's own (user layers, a
        subclass of Sequential or Model).
    """
    _check(isinstance(data, dict) and isinstance(data.get("class_name"), str)
           and isinstance(data.get("config"), dict),
           "a model as {'class_name': ..., 'config': {...}}", data)
    cls = _resolve_class(data["class_name"], custom_objects)
    return _model_from_config(cls, data["config"], custom_objects)[0]


def _model_from_config(cls, config, custom_objects):
    """``(model, layers)``: the model and its layers in the order of the config (the
    order the weights are named by)."""
    if not (isinstance(cls, type) and architecture(cls) is not None):
        raise ValueError(f"expected a model class, got {cls!r:.60}")
    _check(isinstance(config, dict) and isinstance(config.get("layers"), list),
           "a model config with 'layers'", config)
    if "nodes" in config:
        return _functional_from_config(cls, config, custom_objects)
    if architecture(cls) == "sequential":
        return _sequential_from_config(cls, config, custom_objects)
    raise ValueError(f"expected the config of a Sequential or functional model for "
                     f"{cls.__name__}, got keys {sorted(config)}")


def _sequential_from_config(cls, config, custom_objects):
    layers = [_deserialize_layer(d, custom_objects) for d in config["layers"]]
    first = config.get("input")
    stack = ([_placeholder(first)] if first is not None else []) + layers
    model = cls(stack, name=config.get("name"))
    build = config.get("build_input")
    if first is None and build is not None:
        x = _placeholder(build)
        for layer in layers:  # builds each layer from the placeholder's shape
            x = layer(x)
    return model, layers


def _functional_from_config(cls, config, custom_objects):
    _check(isinstance(config.get("nodes"), list) and isinstance(config.get("inputs"), list),
           "a functional model config with 'nodes' and 'inputs'", config)
    layers = [_deserialize_layer(d, custom_objects) for d in config["layers"]]
    inputs = [_placeholder(spec) for spec in config["inputs"]]
    node_outputs = []

    def ref(key, body):
        if key == "__input__":
            _check(isinstance(body, int) and 0 <= body < len(inputs),
                   f"an input index below {len(inputs)}", body)
            return inputs[body]
        _check(isinstance(body, list) and len(body) == 2
               and all(isinstance(i, int) for i in body)
               and 0 <= body[0] < len(node_outputs)
               and 0 <= body[1] < len(node_outputs[body[0]]),
               "a reference [node, output] to an earlier node's output", body)
        return node_outputs[body[0]][body[1]]

    for i, node in enumerate(config["nodes"]):
        _check(isinstance(node, dict) and isinstance(node.get("layer"), int)
               and 0 <= node["layer"] < len(layers),
               f"node {i} as {{'layer': <index below {len(layers)}>, 'args', 'kwargs'}}",
               node)
        args = _decode(node.get("args", {"__tuple__": []}), ref, custom_objects)
        kwargs = _decode(node.get("kwargs", {}), ref, custom_objects)
        _check(isinstance(args, tuple) and isinstance(kwargs, dict)
               and all(isinstance(k, str) for k in kwargs),
               f"node {i} args as a tuple and kwargs as an object", node)
        out = layers[node["layer"]](*args, **kwargs)
        node_outputs.append(engine.flatten(out))
    model_inputs = _decode(config.get("input_structure"), ref, custom_objects)
    model_outputs = _decode(config.get("output_structure"), ref, custom_objects)
    model = cls(inputs=model_inputs, outputs=model_outputs, name=config.get("name"))
    return model, layers


# -- weights by name ----------------------------------------------------------------------
def _children(layer):
    """``(path, sublayer)`` for the layers directly inside ``layer``."""
    if architecture(layer) is not None:
        return [(f"layers/{j}/", sub) for j, sub in enumerate(layer.layers)]
    out = []
    for attr, value in vars(layer).items():
        if attr in ("params", "grads") or attr.startswith("_"):
            continue
        if isinstance(value, Layer):
            out.append((f"{attr}/", value))
        elif isinstance(value, (list, tuple)):
            out += [(f"{attr}/{j}/", v) for j, v in enumerate(value)
                    if isinstance(v, Layer)]
    return out


def _walk(layers):
    """``(path, layer)`` for every layer, nested ones included, each once: the paths that
    name weights (``layers/<i>/``, ``layers/<i>/cell/``, ...)."""
    seen = set()

    def visit(path, layer):
        if id(layer) in seen:
            return
        seen.add(id(layer))
        yield path, layer
        for sub_path, sub in _children(layer):
            yield from visit(path + sub_path, sub)

    for i, layer in enumerate(layers):
        yield from visit(f"{WEIGHTS_PREFIX}{i}/", layer)


def _named_weights(layers):
    """``{name: array}`` for every weight (the arrays themselves, in Keras's order): a
    layer's own ``params`` under its path; an array shared by two layers (an RNN layer
    and its cell) keeps its first name."""
    named, seen = {}, set()
    for path, layer in _walk(layers):
        for name, w in layer.params.items():
            if id(w) not in seen:
                seen.add(id(w))
                named[path + name] = w
    # a layer may hold weights its params and sublayers do not show
    for i, layer in enumerate(layers):
        for k, w in enumerate(layer.trainable_weights):
            if id(w) not in seen:
                seen.add(id(w))
                named[f"{WEIGHTS_PREFIX}{i}/weight_{k}"] = w
    return named


def _unbuilt(layers):
    return [layer.name for _, layer in _walk(layers)
            if not getattr(layer, "built", True)]


def _rng_states(layers):
    """The state of each layer's random generator (dropout masks, initialisers), so that
    a loaded model draws what the saved one would have drawn next."""
    states, seen = {}, set()
    for path, layer in _walk(layers):
        rng = layer.__dict__.get("_rng")
        if isinstance(rng, np.random.Generator) and id(rng) not in seen:
            seen.add(id(rng))
            states[path] = _encode(rng.bit_generator.state, f"the generator of {path}")
    return states


def _restore_rngs(layers, states):
    _check(isinstance(states, dict), "'rng' as an object", states)
    by_path = dict(_walk(layers))
    for path, state in states.items():
        layer = by_path.get(path)
        rng = None if layer is None else layer.__dict__.get("_rng")
        if isinstance(rng, np.random.Generator):
            try:
                rng.bit_generator.state = _decode(state)
            except (TypeError, ValueError, KeyError) as e:
                kind = type(rng.bit_generator).__name__
                raise ValueError(f"expected the state of a {kind} generator for {path}, "
                                 f"got {state!r:.80}") from e


def _check_numeric(name, a):
    if not isinstance(a, np.ndarray) or a.dtype.kind not in "biuf":
        raise ValueError(f"expected {name} to be a numeric array, got "
                         f"{getattr(a, 'dtype', type(a).__name__)}")


def _assign(model, targets, arrays, names, path):
    """Check every array against the model's weights by name and shape, then copy them in
    (all or nothing)."""
    missing = [n for n in targets if n not in names]
    extra = [n for n in names if n not in targets]
    differ = []
    for n in names:
        if n in targets:
            a = arrays[n]
            if a.shape != targets[n].shape or a.dtype.kind not in "biuf":
                differ.append(f"{n} {targets[n].shape} vs {a.shape}"
                              + ("" if a.dtype.kind in "biuf" else f" {a.dtype}"))
    if missing or extra or differ:
        def listed(items):
            shown = ", ".join(items[:8])
            return shown + (f" and {len(items) - 8} more" if len(items) > 8 else "")
        parts = []
        if missing:
            parts.append("missing from the file: " + listed(
                [f"{n} {targets[n].shape}" for n in missing]))
        if extra:
            parts.append("not in the model: " + listed(
                [f"{n} {arrays[n].shape}" for n in extra]))
        if differ:
            parts.append("different shapes (model vs file): " + listed(differ))
        unbuilt = _unbuilt(model.layers)
        hint = (f" (not built yet: {', '.join(unbuilt[:8])}: call the model on a batch "
                f"before load_weights)" if unbuilt else "")
        raise ValueError(f"expected the weights in {path!r} to match the model "
                         f"{model.name!r}; " + "; ".join(parts) + hint)
    for n in names:
        w = targets[n]
        w[...] = arrays[n].astype(w.dtype, copy=False)


# -- compile configuration and optimizer state --------------------------------------------
def _compile_config(model):
    """``(config, optimizer state)`` of a compiled model, ``(None, None)`` otherwise.

    The arguments come from ``model.get_compile_config()`` (None when not compiled), or,
    for a model without it, from ``model.optimizer``, ``model.loss``,
    ``model.loss_weights`` and the metrics in ``model.compiled_metrics`` /
    ``model.metrics``. The optimizer is stored by :func:`crnn.optimizers.serialize`, each
    loss by name or :func:`crnn.losses.serialize`, each metric by name; anything else
    (a loss or metric that is a Python function) raises ``ValueError``.
    """
    getter = getattr(model, "get_compile_config", None)
    if callable(getter):
        raw = getter()
        if raw is None:
            return None, None
        raw = dict(raw)
    else:
        if getattr(model, "optimizer", None) is None:
            return None, None
        raw = {"optimizer": model.optimizer, "loss": getattr(model, "loss", None),
               "metrics": _metric_list(model)}
        if getattr(model, "loss_weights", None) is not None:
            raw["loss_weights"] = model.loss_weights
    args = {}
    for key, value in raw.items():
        if key == "optimizer" and not isinstance(value, dict):
            value = optimizers.serialize(optimizers.get(value))
        elif key == "loss":
            value = _map_structure(_loss_data, value)
        elif key == "metrics":
            value = _map_structure(_metric_data, value)
        args[key] = _encode(value, f"the compile argument {key!r}")
    state = None
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and callable(getattr(optimizer, "get_state", None)):
        state = {}
        for k, v in optimizer.get_state().items():
            a = np.asarray(v)
            _check_numeric(f"the optimizer state {k!r}", a)
            state[k] = a
    return {"args": args}, state


def _map_structure(fn, value):
    """``fn`` over the leaves of lists and dicts (one entry per output); a serialized
    object, a dict with ``class_name``, is a leaf."""
    if isinstance(value, (list, tuple)):
        return [_map_structure(fn, v) for v in value]
    if isinstance(value, dict) and "class_name" not in value:
        return {k: _map_structure(fn, v) for k, v in value.items()}
    return fn(value)


def _loss_data(loss):
    if loss is None or isinstance(loss, str):
        return loss
    if isinstance(loss, dict):  # serialized already (by get_compile_config)
        losses.deserialize(loss)  # one crnn can read back
        return loss
    return losses.serialize(loss)  # ValueError for a function that is not crnn's


def _loss_from_data(data):
    return losses.deserialize(data) if isinstance(data, dict) else data


def _metric_data(metric):
    """A metric by its name, when the name gives the same metric back."""
    if metric is None or isinstance(metric, str):
        return metric
    name = getattr(metric, "name", None)
    try:
        same = isinstance(name, str) and type(metrics.get(name)) is type(metric)
    except ValueError:
        same = False
    if not same:
        raise ValueError(f"the metric {metric!r:.60} cannot be stored: only a metric that "
                         f"its name gives back (\"mae\", \"accuracy\", ...) can")
    return name


def _metric_list(model):
    for attr in ("compiled_metrics", "metrics"):
        value = getattr(model, attr, None)
        if isinstance(value, (list, tuple, dict)):
            return value
    return None


def _restore_compile(model, config, state):
    _check(isinstance(config, dict) and isinstance(config.get("args"), dict),
           "the compile configuration as {'args': {...}}", config)
    args = _decode(config["args"])
    if isinstance(args.get("optimizer"), dict):
        args["optimizer"] = optimizers.deserialize(args["optimizer"])
    if "loss" in args:
        args["loss"] = _map_structure(_loss_from_data, args["loss"])
    if callable(getattr(model, "compile_from_config", None)):
        model.compile_from_config(args)
    else:
        model.compile(**args)
    optimizer = getattr(model, "optimizer", None)
    if state:
        if optimizer is None or not callable(getattr(optimizer, "set_state", None)):
            raise ValueError("expected the compiled model to have an optimizer with "
                             "set_state for the saved optimizer state")
        optimizer.set_state(state)


# -- the file -----------------------------------------------------------------------------
def _write(path, arrays, compressed):
    """Write ``arrays`` as one ``.npz`` at exactly ``path``: into a new file beside it,
    then renamed over it, so that an error leaves no half-written file."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    for name, a in arrays.items():
        if a.dtype.hasobject:
            raise ValueError(f"expected numeric arrays only, got {name!r} of dtype "
                             f"{a.dtype}")
    save = np.savez_compressed if compressed else np.savez
    # os.open with 0o666 lets the umask set the permissions, as open() would
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            save(f, **arrays)  # a file object: no ".npz" appended to the name
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise


def _json_array(data):
    text = json.dumps(data, allow_nan=False, separators=(",", ":"))
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).copy()


def _header(kind):
    return np.array([FORMAT_NAME, str(FORMAT_VERSION), kind])


def _bad(path, what):
    return ValueError(f"expected {_EXPECTED} at {path!r}, got {what}")


def _read(path):
    """``(meta, arrays)`` of a crnn file, every array read (and CRC-checked) at once."""
    path = os.fspath(path)
    with open(path, "rb") as f:  # a missing file raises FileNotFoundError, as open does
        start = f.read(4)
    if not start:
        raise _bad(path, "an empty file")
    if start not in (b"PK\x03\x04", b"PK\x05\x06"):
        raise _bad(path, f"a file that is not a zip archive (it starts with {start!r})")
    arrays = {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            for name in npz.files:
                arrays[name] = npz[name]
    except ValueError as e:
        if "pickle" in str(e).lower() or "object arrays" in str(e).lower():
            raise _bad(path, "an array of Python objects, which would need unpickling; "
                             "crnn files hold only numeric arrays and JSON") from e
        raise _bad(path, f"a damaged archive ({_one_line(e)})") from e
    except Exception as e:  # zipfile.BadZipFile, EOFError, zlib.error, OSError, ...
        raise _bad(path, f"a damaged or truncated archive ({type(e).__name__}: "
                         f"{_one_line(e)})") from e
    header = arrays.get(HEADER_KEY)
    if header is None:
        names = ", ".join(sorted(arrays)[:6]) or "nothing"
        raise _bad(path, f"an archive without {HEADER_KEY!r} (it holds {names})")
    if not (isinstance(header, np.ndarray) and header.dtype.kind == "U" and header.ndim == 1
            and len(header) >= 3 and header[0] == FORMAT_NAME):
        raise _bad(path, f"a malformed {HEADER_KEY!r} header {header!r:.80}")
    try:
        version = int(header[1])
    except ValueError:
        raise _bad(path, f"a malformed format version {header[1]!r}") from None
    if version > FORMAT_VERSION:
        raise ValueError(f"expected a crnn file of format version {FORMAT_VERSION} or "
                         f"older at {path!r}, got version {version}: it was written by a "
                         f"newer crnn")
    for name, a in arrays.items():
        if not isinstance(a, np.ndarray):
            raise _bad(path, f"a member {name!r} that is not a NumPy array")
    raw = arrays.get(CONFIG_KEY)
    if raw is None or raw.dtype != np.uint8 or raw.ndim != 1:
        raise _bad(path, f"no {CONFIG_KEY!r} as a uint8 array")
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise _bad(path, f"a {CONFIG_KEY!r} that is not valid JSON ({_one_line(e)})") from e
    if not (isinstance(meta, dict) and meta.get("kind") in ("model", "weights")
            and isinstance(meta.get("weights"), list)
            and all(isinstance(n, str) and n.startswith(WEIGHTS_PREFIX)
                    for n in meta["weights"])):
        raise _bad(path, f"a {CONFIG_KEY!r} without 'kind' and the list of 'weights'")
    for n in meta["weights"]:
        if n not in arrays:
            raise _bad(path, f"no array for the weight {n!r} its {CONFIG_KEY!r} lists")
        if arrays[n].dtype.kind not in "biuf":
            raise _bad(path, f"the weight {n!r} of dtype {arrays[n].dtype}")
    return meta, arrays


def _meta(model, kind, names):
    return {"format": FORMAT_NAME, "version": FORMAT_VERSION, "kind": kind,
            "crnn_version": __version__, "model_class": type(model).__name__,
            "model_name": model.name, "weights": list(names)}


# -- the API ------------------------------------------------------------------------------
def save_model(model, path, include_optimizer=True, compressed=False):
    """Write a Sequential or functional model to one file: architecture, weights, compile
    configuration and optimizer state (see the module docstring for the format).

    Parameters
    ----------
    model : crnn.Model
        Sequential or functional. A subclassed model raises ``ValueError``: use
        :func:`save_weights`.
    path : str or os.PathLike
        Written exactly as given (no extension is added; ``.crnn`` is customary).
    include_optimizer : bool
        Also store the compile configuration and the optimizer's state (when compiled).
        A configuration that cannot be stored (a loss given as a Python function) is left
        out with a warning: the file then loads as an uncompiled model.
    compressed : bool
        Deflate the arrays (smaller, slower).
    """
    kind = _kind(model)
    if kind == "subclassed":
        raise _subclassed_error(model, "save")
    model_config = get_model_config(model)
    layers = model.layers
    weights = _named_weights(layers)
    meta = _meta(model, "model", weights)
    meta["model"] = model_config
    meta["rng"] = _rng_states(layers)
    meta["compile"] = meta["optimizer_state"] = None
    arrays = {HEADER_KEY: _header("model")}
    if include_optimizer:
        try:
            config, state = _compile_config(model)
        except (ValueError, TypeError, ImportError) as e:
            warnings.warn(f"saving {model.name!r} without its compile configuration, which "
                          f"cannot be stored ({_one_line(e)}); load_model will return it "
                          f"uncompiled", stacklevel=2)
            config, state = None, None
        meta["compile"] = config
        if config is not None and state is not None:
            meta["optimizer_state"] = sorted(state)
            arrays.update({OPTIMIZER_PREFIX + k: v for k, v in state.items()})
    arrays[CONFIG_KEY] = _json_array(meta)
    arrays.update(weights)
    _write(path, arrays, compressed)


def load_model(path, custom_objects=None, compile=True):
    """Read a model written by :func:`save_model`.

    Parameters
    ----------
    path : str or os.PathLike
    custom_objects : dict of str to class, optional
        Classes the file names that are not crnn's own, by class name.
    compile : bool
        Compile the model as it was saved, with the optimizer's state restored, so that
        training continues exactly where it stopped.

    Returns
    -------
    crnn.Model

    Raises
    ------
    ValueError
        The file is not a crnn model file (empty, truncated, foreign, written by
        :func:`save_weights`, or naming an unknown class).
    """
    path = os.fspath(path)
    meta, arrays = _read(path)
    if meta["kind"] != "model":
        raise ValueError(f"expected a model file (written by save) at {path!r}, got a file "
                         f"of weights only (written by save_weights): build the model in "
                         f"code and call model.load_weights(path)")
    with _custom_scope(custom_objects):
        try:
            model_data = meta.get("model")
            _check(isinstance(model_data, dict), "the architecture under 'model'",
                   model_data)
            cls = _resolve_class(model_data.get("class_name"), custom_objects)
            model, layers = _model_from_config(cls, model_data.get("config"),
                                               custom_objects)
            targets = _named_weights(layers)
            _restore_rngs(layers, meta.get("rng") or {})
        except ValueError as e:
            raise ValueError(f"could not rebuild the model saved in {path!r}: "
                             f"{_one_line(e)}") from e
        except Exception as e:
            raise ValueError(f"could not rebuild the model saved in {path!r} (a damaged "
                             f"architecture?): {type(e).__name__}: {_one_line(e)}") from e
    _assign(model, targets, arrays, meta["weights"], path)
    if compile and meta.get("compile"):
        names = meta.get("optimizer_state") or []
        try:
            _check(isinstance(names, list) and all(isinstance(n, str) for n in names),
                   "'optimizer_state' as a list of names", names)
            state = {}
            for n in names:
                a = arrays.get(OPTIMIZER_PREFIX + n)
                _check(a is not None, f"an array {OPTIMIZER_PREFIX + n!r}", None)
                state[n] = a
            _restore_compile(model, meta["compile"], state)
        except Exception as e:
            raise ValueError(f"could not compile the model saved in {path!r} as it was "
                             f"saved ({type(e).__name__}: {_one_line(e)}); "
                             f"load_model(path, compile=False) loads it uncompiled") from e
    return model


def save_weights(model, path, compressed=False):
    """Write every weight of ``model`` (any kind, subclassed too) to one file.

    The names are the layers' paths, ``layers/<i>/<weight>`` with ``i`` the index in
    ``model.layers``; :func:`load_weights` puts them back into a model of the same
    architecture.
    """
    _kind(model)
    layers = model.layers
    weights = _named_weights(layers)
    if not weights and _unbuilt(layers):
        raise ValueError(f"expected a built model, got {model.name!r} with no weights yet: "
                         f"call it on a batch first")
    arrays = {HEADER_KEY: _header("weights"),
              CONFIG_KEY: _json_array(_meta(model, "weights", weights))}
    arrays.update(weights)
    _write(path, arrays, compressed)


def load_weights(model, path):
    """Copy the weights in ``path`` (written by :func:`save_weights` or
    :func:`save_model`) into ``model``, after checking every name and shape.

    Raises
    ------
    ValueError
        Listing the weights missing from the file, those the model lacks and those of
        another shape; nothing is changed then. Also for a file that is not a crnn file.
    """
    _kind(model)
    path = os.fspath(path)
    meta, arrays = _read(path)
    _assign(model, _named_weights(model.layers), arrays, meta["weights"], path)


def from_model_config(cls, config, custom_objects=None):
    """A model of class ``cls`` (a Sequential or functional model class) from the
    architecture :meth:`crnn.Model.get_config` gives, with new weights (what
    ``cls.from_config`` does). ``custom_objects`` defaults to those of the
    :func:`load_model` in progress, if any."""
    custom = custom_objects or _current_custom_objects()
    return _model_from_config(cls, config, custom)[0]


__all__ = ["from_model_config", "get_model_config", "load_model", "load_weights",
           "model_from_config", "save_model", "save_weights"]
