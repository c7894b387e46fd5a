"""Architectures as JSON: a layer as ``{"class_name", "config"}`` (its class looked up in
:mod:`crnn.registry` or the caller's ``custom_objects``, never imported by name), and a
Sequential or functional model as its layers, its inputs and its graph (see
:mod:`crnn.saving`). Models are told apart by :func:`crnn.layers.base.architecture`, so
that this module needs nothing from :mod:`crnn.models`, which calls it."""
import json
import threading

import numpy as np

from crnn import engine, registry
from crnn.layers.base import Layer, architecture, serialize_layer, shapes_only
from crnn.saving import codec
from crnn.saving.codec import check, one_line
from crnn.saving.weights import named_weights, walk

__all__ = ["build_model", "current_custom_objects", "custom_scope", "decode",
           "deserialize", "encode", "from_model_config", "get_model_config",
           "model_from_config", "model_from_json", "model_kind", "model_to_json",
           "resolve_class", "serialize", "subclassed_error", "subclassed_model_config",
           "weight_shapes"]

_local = threading.local()


def encode(value, where, ref=None):
    """:func:`crnn.saving.codec.encode` with layers (and models) inside ``value`` written
    as ``{"__layer__": ...}`` (:func:`serialize`)."""
    return codec.encode(value, where, ref, layer=serialize)


def decode(value, ref=None, custom_objects=None):
    """:func:`encode` undone, layers rebuilt by :func:`deserialize`."""
    return codec.decode(value, ref, custom_objects, layer=deserialize)


# -- layers by class name -----------------------------------------------------------------
def resolve_class(name, custom_objects, registered_name=None):
    """The class a file names: from ``custom_objects`` (by class name), else one of
    crnn's own layers, else a class the user registered with
    :func:`crnn.saving.register_serializable` under ``registered_name`` (never a class
    found by importing what the file names, and never a user's class neither passed nor
    registered)."""
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
    cls = registry.lookup_user(registered_name)
    if isinstance(cls, type) and issubclass(cls, Layer):
        return cls
    raise ValueError(f"unknown layer class {name!r}: it is neither a crnn layer, nor in "
                     f"custom_objects, nor registered with "
                     f"crnn.saving.register_serializable"
                     + (f" (as {registered_name!r})" if registered_name else ""))


def _with_registered_name(data, cls):
    name = registry.registered_name(cls)
    if name is not None:
        data["registered_name"] = name
    return data


def serialize(layer):
    """``{"class_name", "config"}`` of any layer with its config encoded as JSON data
    (and ``registered_name`` for a class the user registered)."""
    if architecture(layer) is not None:
        return get_model_config(layer)
    try:
        data = serialize_layer(layer)
    except Exception as e:
        raise ValueError(f"cannot save layer {layer.name!r} ({type(layer).__name__}): its "
                         f"get_config failed: {one_line(e)}") from e
    where = f"layer {layer.name!r} ({type(layer).__name__}) config"
    out = {"class_name": data["class_name"], "config": encode(data["config"], where)}
    if getattr(layer, "trainable", True) is False:
        out["trainable"] = False     # also for a layer whose get_config does not say it
    if isinstance(layer, engine.Op) and registry.is_crnn_class(type(layer)):
        out["module"] = _OPS      # an op (a + b in a graph), not the layer of that name
    return _with_registered_name(out, type(layer))


_OPS = "crnn.ops"


def _op_class(data):
    """The op class ``data`` names, or None for a layer. An op is written with
    ``"module": "crnn.ops"``; files written before the merge layers shared names with
    ops (``Add``, ``Concatenate``, ``Reshape``...) have no module, and an op's config,
    unlike every crnn layer's, has no ``name``."""
    name = data["class_name"]
    op = registry.lookup(name, "op")
    if data.get("module") == _OPS:
        if op is None:
            raise ValueError(f"unknown op class {name!r}: not among crnn's ops")
        return op
    if op is not None and (registry.lookup(name) is None
                           or "name" not in data.get("config", {})):
        return op
    return None


def deserialize(data, custom_objects):
    check(isinstance(data, dict) and isinstance(data.get("class_name"), str)
          and isinstance(data.get("config", {}), dict),
          "a layer as {'class_name': ..., 'config': {...}}", data)
    op = None if custom_objects and data["class_name"] in custom_objects \
        else _op_class(data)
    cls = op or resolve_class(data["class_name"], custom_objects, data.get("registered_name"))
    if isinstance(cls, type) and architecture(cls) is not None:
        return build_model(cls, data.get("config", {}), custom_objects,
                           data.get("build_input"))[0]
    config = decode(data.get("config", {}), None, custom_objects)
    with custom_scope(custom_objects):  # for wrappers that deserialize their inner layer
        layer = cls.from_config(config)
    if data.get("trainable") is False and isinstance(layer, Layer):
        layer.trainable = False
    return layer


class custom_scope(registry.custom_object_scope):
    """``custom_objects`` visible to every deserialization inside (a wrapper's
    ``from_config`` rebuilding a model, a layer's regularizer or constraint from its
    config): :class:`crnn.registry.custom_object_scope`."""


def current_custom_objects():
    return registry.current_custom_objects()


# -- model architectures ------------------------------------------------------------------
def model_kind(model):
    kind = architecture(model)
    if kind is None:
        raise ValueError(f"expected a crnn.Model, got {type(model).__name__}")
    return kind


def subclassed_error(model, what):
    return ValueError(
        f"cannot {what} the subclassed model {model.name!r} ({type(model).__name__}): its "
        f"architecture is Python code (its call), which a crnn file does not hold. Use "
        f"model.save_weights(path); to load, build the model in code, call it on a batch "
        f"and model.load_weights(path)")


def _spec(t):
    return {"shape": list(t.shape), "dtype": t.dtype.name, "name": t.name}


def _placeholder(spec):
    check(isinstance(spec, dict) and isinstance(spec.get("shape"), list)
          and len(spec["shape"]) >= 1
          and all(d is None or (isinstance(d, int) and d >= 0) for d in spec["shape"])
          and isinstance(spec.get("dtype"), str),
          "an input as {'shape': [...], 'dtype': ..., 'name': ...}", spec)
    shape = spec["shape"]
    return engine.Input(tuple(shape[1:]), dtype=spec["dtype"], name=spec.get("name"),
                        batch_size=shape[0])


# -- subclassed models: a registered class, its get_config and the inputs that build it -----
INPUT_ELEMENTS_LIMIT = 1 << 24   # elements of one stand-in input that builds a loaded model
_INPUT_DTYPES = ("float16", "float32", "float64", "int8", "int16", "int32", "int64",
                 "uint8", "uint16", "uint32", "uint64", "bool")


def _encode_inputs(spec, where):
    """The shapes of the inputs of a model's last call (as :mod:`crnn.training.summary`
    keeps them) without the batch axis: ``{"shape", "dtype"}`` per array."""
    if isinstance(spec, tuple) and len(spec) == 3 and spec[0] == "array":
        return {"shape": [int(d) for d in spec[1][1:]], "dtype": np.dtype(spec[2]).name}
    if isinstance(spec, (list, tuple)):
        return [_encode_inputs(s, f"{where}[{i}]") for i, s in enumerate(spec)]
    raise ValueError(f"cannot save {where}: a model called on {type(spec).__name__} "
                     f"(only arrays, or lists of them, can be stood in for)")


def _decode_inputs(data, symbolic=False):
    """Stand-ins for :func:`_encode_inputs`'s shapes, batch 1: zeros, or placeholders
    with ``symbolic``."""
    if isinstance(data, dict):
        shape, dtype = data.get("shape"), data.get("dtype")
        check(isinstance(shape, list)
              and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                      for d in shape) and dtype in _INPUT_DTYPES,
              "an input as {'shape': [ints >= 0], 'dtype': a numeric dtype}", data)
        size = int(np.prod(shape, dtype=object))
        check(size <= INPUT_ELEMENTS_LIMIT,
              f"an input of at most {INPUT_ELEMENTS_LIMIT:,} elements per sample", shape)
        if symbolic:
            return engine.Input(tuple(shape), dtype=dtype)
        return np.zeros((1,) + tuple(shape), dtype=dtype)
    check(isinstance(data, list), "the model's call arguments as a list", data)
    return [_decode_inputs(d, symbolic) for d in data]


def subclassed_model_config(model):
    """A subclassed model as ``{"class_name", "registered_name", "config",
    "build_input"}``: its registered class, its ``get_config`` and the shapes of its
    last call's inputs (a call on zeros of those shapes builds its weights again)."""
    cls = type(model)
    name = registry.registered_name(cls)
    if name is None:
        raise ValueError(
            f"cannot save the subclassed model {model.name!r} ({cls.__name__}): its class "
            f"is not registered. Decorate it with @crnn.saving.register_serializable() and "
            f"give it get_config() returning its constructor's arguments (loading then "
            f"needs no custom_objects), or save its weights with model.save_weights(path)")
    try:
        config = model.get_config()
    except Exception as e:
        raise ValueError(f"cannot save the subclassed model {model.name!r} "
                         f"({cls.__name__}): its get_config failed ({type(e).__name__}: "
                         f"{one_line(e)}); define get_config() returning the arguments of "
                         f"its constructor") from e
    if not isinstance(config, dict):
        raise ValueError(f"expected {cls.__name__}.get_config() to return a dict, got "
                         f"{type(config).__name__}")
    seen = getattr(model, "_input_spec_seen", None)
    if seen is None and named_weights(model.layers):
        raise ValueError(f"cannot save the subclassed model {model.name!r}: it has never "
                         f"been called, so the input shapes that build its weights are "
                         f"unknown; call it on a batch (or fit it) first")
    where = f"model {model.name!r} ({cls.__name__}) config"
    return {"class_name": cls.__name__, "registered_name": name,
            "config": encode(config, where),
            "build_input": None if seen is None else _encode_inputs(
                list(seen[0]), f"the inputs of {model.name!r}")}


def _subclassed_from_config(cls, data, custom_objects, build_input):
    config = decode(data, None, custom_objects)
    check(isinstance(config, dict), "a subclassed model's config as an object", config)
    with custom_scope(custom_objects):
        model = cls.from_config(config)
    if architecture(model) != "subclassed":
        raise ValueError(f"expected {cls.__name__}.from_config to return a subclassed "
                         f"model, got {type(model).__name__}")
    if build_input is not None:
        if getattr(_local, "symbolic_build", False):
            # the weight shapes only (crnn.layers.base.shapes_only): layers called on
            # placeholders build their weights; a call that runs only on arrays gives up
            placeholders = _decode_inputs(build_input, symbolic=True)
            try:
                model.call(*placeholders)
            except Exception as e:   # noqa: BLE001 - the caller falls back to a real build
                raise _NoSymbolicBuild(str(e)) from e
        else:
            with engine.no_grad():
                model(*_decode_inputs(build_input))
            for layer in model.layers_deep():   # a stateful layer forgets the stand-in
                if getattr(layer, "stateful", False) is True:
                    layer.reset_states()
    return model, model.layers


class _NoSymbolicBuild(Exception):
    """A subclassed model whose call cannot run on placeholders."""


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
    kind = model_kind(model)
    if kind == "subclassed":
        raise subclassed_error(model, "describe")
    config = (_functional_config(model) if kind == "functional"
              else _sequential_config(model))
    return {"class_name": type(model).__name__, "config": config}


def _sequential_config(model):
    layers = model.layers
    first = model._input
    config = {"name": model.name,
              "layers": [serialize(layer) for layer in layers],
              "input": None if first is None else _spec(first),
              "build_input": None}
    if first is None and named_weights(layers):
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
    expected = {n: w.shape for n, w in named_weights(layers).items()}
    classes = {type(layer).__name__: type(layer) for _, layer in walk(layers)}
    for shape, dtype in (ids + floats if ids_first else floats + ids):
        try:
            x = engine.Input(shape[1:], dtype=dtype)
            for layer in layers:
                x = layer(x)
                if isinstance(x, (list, tuple)):
                    raise ValueError("more than one output")
            fresh = [deserialize(serialize(layer), classes)
                     for layer in layers]
            x = engine.Input(shape[1:], dtype=dtype)
            for layer in fresh:
                x = layer(x)
            got = {n: w.shape for n, w in named_weights(fresh).items()}
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
            "args": encode(tuple(node.args), f"{where} args", ref),
            "kwargs": encode(dict(node.kwargs), f"{where} kwargs", ref),
        })
    return {"name": model.name,
            "layers": [serialize(layer) for layer in layers],
            "nodes": node_configs,
            "inputs": [_spec(t) for t in flat_inputs],
            "input_structure": encode(model.inputs, "inputs", ref),
            "output_structure": encode(model.outputs, "outputs", ref)}


def weight_shapes(data, custom_objects):
    """``{weight name: shape}`` of the model ``data`` (``{"class_name", "config", ...}``
    as a file holds it) describes, computed without allocating a weight
    (:func:`crnn.layers.base.shapes_only`); None for a subclassed model whose call
    cannot run on placeholders (its weights are known only once a real call built
    them)."""
    cls = resolve_class(data.get("class_name"), custom_objects, data.get("registered_name"))
    _local.symbolic_build = True
    try:
        with shapes_only():
            _, layers = build_model(cls, data.get("config"), custom_objects,
                                    data.get("build_input"))
            return {n: w.shape for n, w in named_weights(layers).items()}
    except _NoSymbolicBuild:
        return None
    finally:
        _local.symbolic_build = False


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
    check(isinstance(data, dict) and isinstance(data.get("class_name"), str)
          and isinstance(data.get("config"), dict),
          "a model as {'class_name': ..., 'config': {...}}", data)
    cls = resolve_class(data["class_name"], custom_objects)
    return build_model(cls, data["config"], custom_objects)[0]


def model_to_json(model, **kwargs):
    """The architecture of a Sequential or functional model as JSON text
    (``model.to_json()``, Keras's): :func:`get_model_config` written by
    ``json.dumps(..., **kwargs)`` (``indent=2`` for a readable file). No weights."""
    return json.dumps(get_model_config(model), allow_nan=False, **kwargs)


def model_from_json(json_string, custom_objects=None):
    """A model (with new weights) from :func:`model_to_json`'s text
    (``crnn.models.model_from_json``, Keras's).

    The text is read as data: class names are looked up among crnn's layers and
    ``custom_objects``, nothing is imported or evaluated (as :func:`crnn.load_model`).

    Parameters
    ----------
    json_string : str or bytes
    custom_objects : dict of str to class, optional
        Classes the architecture names that are not crnn's own.
    """
    if isinstance(json_string, (bytes, bytearray)):
        try:
            json_string = json_string.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"expected JSON text (UTF-8), got undecodable bytes "
                             f"({one_line(e)})") from None
    if not isinstance(json_string, str):
        raise ValueError(f"expected the JSON text of a model (a str), got "
                         f"{type(json_string).__name__}")
    try:
        data = json.loads(json_string)
    except (ValueError, RecursionError) as e:
        raise ValueError(f"expected the JSON text of a model, got text that is not valid "
                         f"JSON ({one_line(e)})") from None
    return model_from_config(data, custom_objects)


def build_model(cls, config, custom_objects, build_input=None):
    """``(model, layers)``: the model and its layers in the order of the config (the
    order the weights are named by). A subclassed model is built by calling it on
    stand-ins shaped as ``build_input``."""
    if not (isinstance(cls, type) and architecture(cls) is not None):
        raise ValueError(f"expected a model class, got {cls!r:.60}")
    if architecture(cls) == "subclassed" and not (isinstance(config, dict)
                                                  and "nodes" in config):
        return _subclassed_from_config(cls, config, custom_objects, build_input)
    check(isinstance(config, dict) and isinstance(config.get("layers"), list),
          "a model config with 'layers'", config)
    if "nodes" in config:
        return _functional_from_config(cls, config, custom_objects)
    if architecture(cls) == "sequential":
        return _sequential_from_config(cls, config, custom_objects)
    raise ValueError(f"expected the config of a Sequential or functional model for "
                     f"{cls.__name__}, got keys {sorted(config)}")


def _sequential_from_config(cls, config, custom_objects):
    layers = [deserialize(d, custom_objects) for d in config["layers"]]
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
    check(isinstance(config.get("nodes"), list) and isinstance(config.get("inputs"), list),
          "a functional model config with 'nodes' and 'inputs'", config)
    layers = [deserialize(d, custom_objects) for d in config["layers"]]
    inputs = [_placeholder(spec) for spec in config["inputs"]]
    node_outputs = []

    def ref(key, body):
        if key == "__input__":
            check(isinstance(body, int) and 0 <= body < len(inputs),
                  f"an input index below {len(inputs)}", body)
            return inputs[body]
        check(isinstance(body, list) and len(body) == 2
              and all(isinstance(i, int) for i in body)
              and 0 <= body[0] < len(node_outputs)
              and 0 <= body[1] < len(node_outputs[body[0]]),
              "a reference [node, output] to an earlier node's output", body)
        return node_outputs[body[0]][body[1]]

    for i, node in enumerate(config["nodes"]):
        check(isinstance(node, dict) and isinstance(node.get("layer"), int)
              and 0 <= node["layer"] < len(layers),
              f"node {i} as {{'layer': <index below {len(layers)}>, 'args', 'kwargs'}}",
              node)
        args = decode(node.get("args", {"__tuple__": []}), ref, custom_objects)
        kwargs = decode(node.get("kwargs", {}), ref, custom_objects)
        check(isinstance(args, tuple) and isinstance(kwargs, dict)
              and all(isinstance(k, str) for k in kwargs),
              f"node {i} args as a tuple and kwargs as an object", node)
        out = layers[node["layer"]](*args, **kwargs)
        node_outputs.append(engine.flatten(out))
    model_inputs = decode(config.get("input_structure"), ref, custom_objects)
    model_outputs = decode(config.get("output_structure"), ref, custom_objects)
    model = cls(inputs=model_inputs, outputs=model_outputs, name=config.get("name"))
    return model, layers


def from_model_config(cls, config, custom_objects=None):
    """A model of class ``cls`` (a Sequential or functional model class) from the
    architecture :meth:`crnn.Model.get_config` gives, with new weights (what
    ``cls.from_config`` does). ``custom_objects`` defaults to those of the
    :func:`load_model` in progress, if any."""
    custom = custom_objects or current_custom_objects()
    return build_model(cls, config, custom)[0]
