"""Keras's model files, read and written without Keras: Keras 3's ``.keras`` (a zip of
``config.json``, ``metadata.json`` and ``model.weights.h5``) and the HDF5 ``.h5`` files of
tf.keras 2 (and of Keras 3's legacy writer), through h5py only (the ``crnn[keras]``
extra).

Reading never runs code and reads only what the configuration lists:

* the configuration is JSON, read into crnn's own layers by class name (the table
  below); a ``Lambda`` layer, a class crnn lacks, a registered custom object or a config
  naming a module outside Keras raises ``ValueError`` before anything else is read; an
  option crnn lacks (``time_major``, a regularizer or constraint other than Keras's
  ``L1``, ``L2``, ``L1L2``, ``MaxNorm``, ``NonNeg``, ``UnitNorm``, ``MinMaxNorm``, ...)
  raises naming the layer, the option and what is supported;
* the model is built from it, and each weight is read from the path the configuration
  gives it, after checking the dataset's declared shape and dtype against the weight
  crnn built (a zip member's declared size is checked against what the configuration
  implies before it is read, and the read is bounded: a zip or HDF5 bomb is refused
  before it is decompressed); external HDF5 links and external storage are refused.

==================  ===================================================================
Keras layer         loads as (options)
==================  ===================================================================
InputLayer          :func:`crnn.Input` (``batch_shape``/``batch_input_shape``, dtype)
Dense               ``units``, ``activation``, ``use_bias``
Embedding           ``input_dim``, ``output_dim``, ``mask_zero``
Masking             ``mask_value``
SimpleRNN, LSTM,    ``units``, ``activation``, ``recurrent_activation``, ``use_bias``,
GRU                 ``return_sequences``, ``return_state``, ``go_backwards``,
                    ``stateful``, ``dropout``, ``recurrent_dropout``,
                    ``unit_forget_bias`` (LSTM), ``reset_after`` (GRU), ``unroll``
                    (ignored: a speed option), ``zero_output_for_mask``
Bidirectional       ``layer``, ``backward_layer``, ``merge_mode``
TimeDistributed     ``layer``
Dropout             ``rate`` (``noise_shape`` None)
Activation          ``activation`` (tanh, relu, sigmoid, softmax, linear)
RepeatVector        ``n``
Flatten             (channels_last)
Sequential,         nested too; in a functional graph, the ``mask=`` arguments Keras
Functional          records (and the ops that compute them) are dropped: crnn's layers
                    pass the same masks on themselves
==================  ===================================================================

Every layer's initializers, ``seed``, ``trainable`` (False freezes it, both ways) and
dtype policy (float32 or float64) are accepted; Keras's built-in regularizers and
constraints load as crnn's (:mod:`crnn.regularizers`, :mod:`crnn.constraints`) and are
written back as Keras's; a layer's ``zero_output_for_mask=False`` (Keras's default for
plain layers) loads only where crnn's layer takes that option or no mask can reach it.

The compile state: the optimizer (``SGD``, ``Adam``, ``RMSprop``, ``Adagrad``, with their
options and clipping, a float learning rate) and its slots, and the loss (crnn's five,
by name or class) with crnn's metrics. Anything else loads the model uncompiled, with
one warning saying why.

:func:`save_keras` writes a Sequential or functional model of these layers as a Keras 3
``.keras`` file that ``keras.saving.load_model`` opens (weights only: no optimizer).
"""
import inspect
import io
import json
import os
import time
import warnings
import zipfile

import numpy as np

from crnn import (constraints, engine, losses, metrics as _metrics, optimizers, registry,
                  regularizers)
from crnn._version import __version__
from crnn.engine import Input, SymbolicTensor, flatten
from crnn.layers import (GRU, LSTM, Activation, Bidirectional, Dense, Dropout, Embedding,
                         Flatten, Masking, RepeatVector, SimpleRNN, TimeDistributed)
from crnn.layers.base import architecture
from crnn.layers.recurrent import RNN
from crnn.saving.codec import one_line

__all__ = ["is_keras_file", "load_keras", "save_keras"]

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
CONFIG_LIMIT = 64 << 20          # bytes of JSON a config may declare
SLACK = 1 << 20                  # HDF5's own bytes besides the arrays, per file ...
PER_ARRAY = 4096                 # ... and per array

SUPPORTED = ["InputLayer", "Dense", "Embedding", "Masking", "SimpleRNN", "LSTM", "GRU",
             "Bidirectional", "TimeDistributed", "Dropout", "Activation", "RepeatVector",
             "Flatten", "Sequential", "Functional"]
_MASK_OPS = {"NotEqual", "Any", "Equal", "LogicalNot", "LogicalAnd", "All", "Cast",
             "ExpandDims", "Squeeze"}


def _h5py():
    try:
        import h5py   # optional: the crnn[keras] extra
    except ImportError:
        raise ImportError("reading and writing Keras files needs h5py, which is not "
                          "installed: pip install 'crnn[keras]' (or pip install h5py)") \
            from None
    return h5py


def is_keras_file(path):
    """``"keras"`` for a Keras 3 ``.keras`` zip, ``"h5"`` for an HDF5 file, else None
    (by content: the first bytes and, for a zip, its member names)."""
    with open(path, "rb") as f:
        start = f.read(8)
    if start == HDF5_MAGIC:
        return "h5"
    if start[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        try:
            with zipfile.ZipFile(path) as z:
                names = set(z.namelist())
        except (zipfile.BadZipFile, OSError, EOFError):
            return None
        if "config.json" in names and not any(n.startswith("__crnn__") for n in names):
            return "keras"
    return None


def _bad(path, what):
    return ValueError(f"cannot load the Keras file {path!r}: {what}")


# -- Keras configs to crnn layers ------------------------------------------------------------
def _dtype(config, where):
    d = config.get("dtype", "float32")
    if isinstance(d, dict):
        d = (d.get("config") or {}).get("name", "float32")
    if d is None:
        d = "float32"
    if d not in ("float32", "float64"):
        raise ValueError(f"{where}: dtype {d!r} is not supported (crnn computes in float32 "
                         f"or float64)")
    return d


def _activation(value, where, option, allowed):
    if isinstance(value, dict) and value.get("class_name") == "function":
        value = value.get("config")
    if value is None:
        value = "linear"
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{where}: {option}={value!r} is not supported; supported: "
                         f"{sorted(allowed)}")
    return value


_IGNORED = {"name", "trainable", "dtype", "seed", "kernel_initializer",
            "recurrent_initializer", "bias_initializer", "embeddings_initializer",
            "unroll", "input_length", "batch_input_shape", "input_shape", "build_config",
            "sparse", "ragged", "optional", "input_dim_from_config", "implementation",
            "synchronized", "quantization_config", "data_format"}
# options crnn lacks, accepted only at Keras's default (which has no effect)
_DEFAULTS = {"kernel_regularizer": None, "recurrent_regularizer": None,
             "bias_regularizer": None, "activity_regularizer": None,
             "embeddings_regularizer": None, "kernel_constraint": None,
             "recurrent_constraint": None, "bias_constraint": None,
             "embeddings_constraint": None, "time_major": False, "noise_shape": None,
             "lora_rank": None, "lora_alpha": None, "weights": None, "sparse": False,
             "cell": None}


_REGULARIZER_KEYS = ("kernel_regularizer", "recurrent_regularizer", "bias_regularizer",
                     "activity_regularizer", "embeddings_regularizer")
_CONSTRAINT_KEYS = ("kernel_constraint", "recurrent_constraint", "bias_constraint",
                    "embeddings_constraint")


def _penalties(config, where):
    """``{option: crnn object}`` for the regularizers and constraints of a Keras layer
    config (Keras's own classes only, never a module or a registered custom object)."""
    out = {}
    for keys, kind, module in ((_REGULARIZER_KEYS, "regularizer", regularizers),
                               (_CONSTRAINT_KEYS, "constraint", constraints)):
        for key in keys:
            value = config.get(key)
            if value is None:
                continue
            if isinstance(value, str):
                value = {"class_name": value, "config": {}}
            ok = (isinstance(value, dict) and isinstance(value.get("class_name"), str)
                  and value.get("module") in (None, f"keras.{kind}s")
                  and value.get("registered_name") in (None, value["class_name"])
                  and registry.lookup(value["class_name"], kind) is not None
                  and isinstance(value.get("config", {}), dict))
            if not ok:
                raise ValueError(f"{where}: the option {key}={str(value)[:80]} is not "
                                 f"supported; supported: Keras's "
                                 f"{registry.names(kind)}")
            cls = registry.lookup(value["class_name"], kind)
            try:
                out[key] = cls.from_config(dict(value.get("config", {})))
            except (TypeError, ValueError) as e:
                raise ValueError(f"{where}: the option {key}={str(value)[:80]}: "
                                 f"{one_line(e)}") from None
    return out


def _keras_penalty(layer, key, value, kind):
    """A crnn regularizer or constraint as Keras writes it; anything else raises."""
    if value is None:
        return None
    if not registry.lookup(type(value).__name__, kind) is type(value):
        raise ValueError(f"cannot save {layer.name!r} as a Keras file: its {key} "
                         f"{value!r:.60} is not one of Keras's built-in {kind}s "
                         f"{registry.names(kind)}")
    return {"module": f"keras.{kind}s", "class_name": type(value).__name__,
            "config": value.get_config(), "registered_name": None}


def _with_penalties(layer, config):
    """Add ``layer``'s regularizers, constraints and ``trainable`` to its Keras config."""
    holders = [layer, getattr(layer, "cell", None)]
    for keys, kind in ((_REGULARIZER_KEYS, "regularizer"), (_CONSTRAINT_KEYS, "constraint")):
        for key in keys:
            value = next((h.__dict__.get(key) for h in holders
                          if h is not None and h.__dict__.get(key) is not None), None)
            if value is not None:
                config[key] = _keras_penalty(layer, key, value, kind)
    config["trainable"] = bool(layer.trainable)
    return config


def _options(cls_name, config, known, where):
    """Check every option of a layer's config: known (returned), ignorable, or at its
    Keras default; anything else raises naming it."""
    out = {}
    for key, value in config.items():
        if key in known:
            out[key] = value
        elif key in _IGNORED:
            continue
        elif key in _DEFAULTS and value == _DEFAULTS[key]:
            continue
        elif key in _REGULARIZER_KEYS + _CONSTRAINT_KEYS and cls_name in (
                "Dense", "Embedding", "SimpleRNN", "LSTM", "GRU"):
            continue                                   # read by _penalties
        else:
            supported = sorted(known)
            raise ValueError(f"{where}: the option {key}={value!r} of {cls_name} is not "
                             f"supported; supported options: {supported}")
    return out


_RNN_OPTIONS = {"units", "activation", "recurrent_activation", "use_bias",
                "return_sequences", "return_state", "go_backwards", "stateful", "dropout",
                "recurrent_dropout", "zero_output_for_mask"}
_RECURRENT_ACTS = {"tanh", "relu", "sigmoid", "linear"}
_OUTPUT_ACTS = _RECURRENT_ACTS | {"softmax"}


class _Reader:
    """Keras layer configs to crnn layers (one per file: whether masks may occur)."""

    def __init__(self, path, masked):
        self.path = path
        self.masked = masked   # a Masking or Embedding(mask_zero=True) in the model

    def check_class(self, data, where):
        if not isinstance(data, dict) or not isinstance(data.get("class_name"), str):
            raise ValueError(f"{where}: expected a layer as {{'class_name', 'config'}}, got "
                             f"{str(data)[:80]}")
        name = data["class_name"]
        if name == "Lambda" or "function" in (data.get("config") or {}) and name != "Activation":
            raise ValueError(f"{where}: a {name} layer holds Python code, which crnn never "
                             f"runs from a file (Keras's safe_mode)")
        module = data.get("module")
        if module is not None and not (isinstance(module, str) and (
                module == "keras" or module.startswith("keras."))):
            raise ValueError(f"{where}: the config names the Python module {module!r} for "
                             f"{name}; crnn imports nothing a file names")
        registered = data.get("registered_name")
        if registered not in (None, name) and not (
                isinstance(registered, str) and registered.split(">")[-1] == name
                and registered.startswith("keras")):
            raise ValueError(f"{where}: {name} is a registered custom object "
                             f"({registered!r}); only Keras's own layers load")
        if name not in SUPPORTED:
            raise ValueError(f"{where}: the layer class {name!r} is not supported; "
                             f"supported: {SUPPORTED}")
        config = data.get("config")
        if not isinstance(config, dict):
            raise ValueError(f"{where}: expected {name}'s config as a dict, got "
                             f"{type(config).__name__}")
        return name, config

    def layer(self, data, where, inner=False):
        """The crnn layer of a Keras layer's ``{class_name, config}``, with its
        regularizers and constraints (set before it is built) and ``trainable``."""
        layer = self._layer(data, where, inner)
        config = data.get("config") or {}
        for key, value in _penalties(config, where).items():
            holder = layer if key == "activity_regularizer" else getattr(
                layer, "cell", layer)
            setattr(holder, key, value)
        if config.get("trainable") is False:
            layer.trainable = False
        return layer

    def _layer(self, data, where, inner=False):
        name, config = self.check_class(data, where)
        where = f"{where} {name} {config.get('name', '')!r}".rstrip(" '")
        dtype = _dtype(config, where)
        lname = config.get("name")
        if name == "Dense":
            o = _options(name, config, {"units", "activation", "use_bias"}, where)
            return Dense(o["units"], activation=_activation(o.get("activation"), where,
                                                          "activation", _OUTPUT_ACTS),
                         use_bias=o.get("use_bias", True), dtype=dtype, name=lname)
        if name == "Embedding":
            o = _options(name, config, {"input_dim", "output_dim", "mask_zero"}, where)
            return Embedding(o["input_dim"], o["output_dim"],
                             mask_zero=o.get("mask_zero", False), dtype=dtype, name=lname)
        if name == "Masking":
            o = _options(name, config, {"mask_value"}, where)
            return Masking(o.get("mask_value", 0.0), dtype=dtype, name=lname)
        if name == "Dropout":
            o = _options(name, config, {"rate"}, where)
            return Dropout(o["rate"], dtype=dtype, name=lname)
        if name == "Activation":
            o = _options(name, config, {"activation"}, where)
            return Activation(_activation(o.get("activation"), where, "activation",
                                          _OUTPUT_ACTS), dtype=dtype, name=lname)
        if name == "RepeatVector":
            o = _options(name, config, {"n"}, where)
            return RepeatVector(o["n"], dtype=dtype, name=lname)
        if name == "Flatten":
            _options(name, config, set(), where)
            if config.get("data_format") not in (None, "channels_last"):
                raise ValueError(f"{where}: data_format={config['data_format']!r} is not "
                                 f"supported; supported: 'channels_last'")
            return Flatten(dtype=dtype, name=lname)
        if name in ("SimpleRNN", "LSTM", "GRU"):
            return self.recurrent(name, config, where, dtype, inner)
        if name == "TimeDistributed":
            o = _options(name, config, {"layer"}, where)
            return TimeDistributed(self.layer(o["layer"], where), name=lname)
        if name == "Bidirectional":
            o = _options(name, config, {"layer", "backward_layer", "merge_mode"}, where)
            forward = self.layer(o["layer"], where, inner=True)
            backward = (None if o.get("backward_layer") is None
                        else self.layer(o["backward_layer"], where, inner=True))
            if not isinstance(forward, RNN):
                raise ValueError(f"{where}: Bidirectional wraps a recurrent layer, got "
                                 f"{type(forward).__name__}")
            return Bidirectional(forward, merge_mode=o.get("merge_mode", "concat"),
                                 backward_layer=backward, name=lname)
        if name in ("Sequential", "Functional"):
            return self.model(data, where)
        raise ValueError(f"{where}: the layer class {name!r} is not supported; supported: "
                         f"{SUPPORTED}")   # InputLayer outside a model

    def recurrent(self, name, config, where, dtype, inner=False):
        known = set(_RNN_OPTIONS)
        if name == "LSTM":
            known.add("unit_forget_bias")
        if name == "GRU":
            known.add("reset_after")
        o = _options(name, config, known, where)
        cls = {"SimpleRNN": SimpleRNN, "LSTM": LSTM, "GRU": GRU}[name]
        args = {k: o[k] for k in ("use_bias", "return_sequences", "return_state",
                                  "go_backwards", "stateful", "dropout",
                                  "recurrent_dropout", "unit_forget_bias", "reset_after")
                if k in o}
        args["activation"] = _activation(o.get("activation", "tanh"), where, "activation",
                                         _RECURRENT_ACTS)
        if name != "SimpleRNN":
            args["recurrent_activation"] = _activation(
                o.get("recurrent_activation", "sigmoid"), where, "recurrent_activation",
                _RECURRENT_ACTS)
        # At a padded step Keras outputs zeros (zero_output_for_mask=True) or repeats the
        # previous output (False, its default); Bidirectional forces it to
        # return_sequences. With return_sequences=False and True, Keras's last output is
        # zeros for a sequence that ends in padding, where crnn's is its last real step's.
        sequences = bool(o.get("return_sequences", False))
        zero = sequences if inner else bool(o.get("zero_output_for_mask") or False)
        takes = "zero_output_for_mask" in inspect.signature(cls).parameters
        if not sequences:
            if zero and self.masked:
                raise ValueError(f"{where}: zero_output_for_mask=True with "
                                 f"return_sequences=False is not supported (Keras then "
                                 f"outputs zeros for a sequence that ends in padding); "
                                 f"supported: zero_output_for_mask=False")
        elif takes:
            args["zero_output_for_mask"] = zero
        elif not zero and self.masked:
            raise ValueError(f"{where}: zero_output_for_mask=False (a padded step repeats "
                             f"the previous output) is not supported by this crnn, whose "
                             f"layers output zeros at padded steps; supported: "
                             f"zero_output_for_mask=True")
        return cls(o["units"], dtype=dtype, name=config.get("name"), **args)

    # -- models ------------------------------------------------------------------------
    def model(self, data, where):
        name, config = self.check_class(data, where)
        layers = config.get("layers")
        if not isinstance(layers, list) or not layers:
            raise ValueError(f"{where}: expected the {name} config's 'layers' as a "
                             f"non-empty list")
        if name == "Sequential":
            return self.sequential(config, where)
        return self.functional(config, where)

    def input(self, config, where):
        shape = config.get("batch_shape", config.get("batch_input_shape"))
        if not isinstance(shape, list) or not shape or not all(
                d is None or isinstance(d, int) and d >= 0 for d in shape):
            raise ValueError(f"{where}: expected InputLayer's batch_shape as a list of "
                             f"ints and nulls, got {shape!r}")
        dtype = config.get("dtype") or "float32"
        if isinstance(dtype, dict):
            dtype = (dtype.get("config") or {}).get("name", "float32")
        if dtype not in ("float32", "float64", "int32", "int64", "uint8", "int16", "int8",
                         "uint16", "uint32"):
            raise ValueError(f"{where}: InputLayer dtype {dtype!r} is not supported")
        return Input(tuple(shape[1:]), dtype=dtype, name=config.get("name"))

    def sequential(self, config, where):
        cls = registry.lookup("Sequential")
        items = list(config["layers"])
        placeholder = None
        first = items[0]
        if isinstance(first, dict) and first.get("class_name") == "InputLayer":
            self.check_class(first, where)
            placeholder = self.input(first["config"], where)
            items = items[1:]
        built = []
        file_masked, self.masked = self.masked, False
        for i, item in enumerate(items):
            layer = self.layer(item, f"{where} layer {i}")
            # whether a mask reaches the next layer (Keras's compute_mask)
            if isinstance(layer, Masking) or isinstance(layer, Embedding) and layer.mask_zero:
                self.masked = True
            elif isinstance(layer, (RepeatVector, Flatten)) or isinstance(
                    layer, (RNN, Bidirectional)) and not layer.return_sequences:
                self.masked = False
            if placeholder is None and i == 0:   # Keras 2: the first layer's input shape
                shape = (item.get("config") or {}).get("batch_input_shape") or (
                    item.get("build_config") or {}).get("input_shape")
                if isinstance(shape, list) and shape:
                    dtype = ("int64" if isinstance(layer, Embedding)
                             else _dtype(item["config"], where))
                    placeholder = Input(tuple(shape[1:]), dtype=dtype)
            built.append(layer)
        self.masked = file_masked
        return cls(([placeholder] if placeholder is not None else []) + built,
                   name=config.get("name"))

    def functional(self, config, where):
        cls = registry.lookup("Model")
        entries = config["layers"]
        mask_only = self.mask_nodes(entries)
        tensors = {}     # (layer name, node index) -> list of output tensors
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise ValueError(f"{where}: expected layer {i} as a dict")
            cname = entry.get("class_name")
            lname = entry.get("name") or (entry.get("config") or {}).get("name")
            if cname == "InputLayer":
                self.check_class(entry, where)
                tensors[(lname, 0)] = [self.input(entry["config"], where)]
                continue
            if lname in mask_only:
                continue
            nodes = entry.get("inbound_nodes") or []
            file_masked = self.masked
            if nodes and all(isinstance(n, dict) for n in nodes):
                # Keras 3 records the mask each call received
                self.masked = any((n.get("kwargs") or {}).get("mask") is not None
                                  for n in nodes)
            layer = self.layer(entry, f"{where} layer {i}")
            self.masked = file_masked
            for k, node in enumerate(entry.get("inbound_nodes") or []):
                args, kwargs = self.node_args(node, tensors, f"{where} {lname!r}")
                out = layer(*args, **kwargs)
                tensors[(lname, k)] = flatten(out)
        inputs = [self.history(ref, tensors, where)
                  for ref in _refs(config.get("input_layers"))]
        outputs = [self.history(ref, tensors, where)
                   for ref in _refs(config.get("output_layers"))]
        single_in = _single(config.get("input_layers"))
        single_out = _single(config.get("output_layers"))
        return cls(inputs[0] if single_in else inputs,
                   outputs[0] if single_out else outputs, name=config.get("name"))

    def mask_nodes(self, entries):
        """The names of Keras's recorded mask ops (what only ``mask=`` arguments read)."""
        ops = {e.get("name"): e for e in entries if isinstance(e, dict)
               and e.get("class_name") in _MASK_OPS
               and str(e.get("module", "keras.src.ops")).startswith("keras.src.ops")}
        used_otherwise = set()
        for e in entries:
            if not isinstance(e, dict):
                continue
            for node in e.get("inbound_nodes") or []:
                if isinstance(node, dict):
                    kw = {k: v for k, v in (node.get("kwargs") or {}).items() if k != "mask"}
                    refs = _tensor_refs([node.get("args"), kw])
                else:
                    refs = _tensor_refs(node)
                if e.get("name") in ops:
                    continue   # an op reading an op: still on the mask's side
                used_otherwise.update(r[0] for r in refs if r[0] in ops)
        for name in used_otherwise:
            raise ValueError(f"the Keras op {ops[name].get('class_name')} {name!r} "
                             f"computes a value the model uses; only ops that make masks "
                             f"are dropped, supported layers: {SUPPORTED}")
        return set(ops)

    def history(self, ref, tensors, where):
        name, node, index = ref
        got = tensors.get((name, node))
        if got is None or not (0 <= index < len(got)):
            raise ValueError(f"{where}: the config refers to {name!r} node {node} output "
                             f"{index}, which it does not define before")
        return got[index]

    def node_args(self, node, tensors, where):
        if isinstance(node, dict):     # Keras 3: {"args": [...], "kwargs": {...}}
            args = [self.resolve(a, tensors, where) for a in node.get("args") or []]
            kwargs = {}
            for key, value in (node.get("kwargs") or {}).items():
                if key in ("mask", "training"):
                    continue
                if key != "initial_state":
                    raise ValueError(f"{where}: the call argument {key}= is not supported; "
                                     f"supported: initial_state")
                kwargs[key] = self.resolve(value, tensors, where)
            return args, kwargs
        if isinstance(node, list):     # Keras 2: [[name, node, index, kwargs], ...]
            refs = [self.history(tuple(r[:3]), tensors, where) for r in node]
            kwargs = {}
            for r in node:
                for key, value in (r[3] if len(r) > 3 and isinstance(r[3], dict)
                                   else {}).items():
                    if key in ("mask", "training"):
                        continue
                    raise ValueError(f"{where}: the call argument {key}= is not supported")
            return ([refs[0]] if len(refs) == 1 else [refs]), kwargs
        raise ValueError(f"{where}: expected an inbound node as a dict or a list")

    def resolve(self, value, tensors, where):
        if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
            hist = (value.get("config") or {}).get("keras_history")
            if not (isinstance(hist, list) and len(hist) == 3):
                raise ValueError(f"{where}: a tensor without keras_history")
            return self.history(tuple(hist), tensors, where)
        if isinstance(value, list):
            return [self.resolve(v, tensors, where) for v in value]
        if isinstance(value, (int, float, str, bool)) or value is None:
            return value
        raise ValueError(f"{where}: an argument {str(value)[:60]} is not supported")


def _tensor_refs(obj):
    out = []
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            hist = (obj.get("config") or {}).get("keras_history")
            if isinstance(hist, list) and len(hist) == 3:
                out.append(tuple(hist))
            return out
        for v in obj.values():
            out.extend(_tensor_refs(v))
    elif isinstance(obj, list):
        if len(obj) >= 3 and isinstance(obj[0], str) and isinstance(obj[1], int):
            out.append(tuple(obj[:3]))
        else:
            for v in obj:
                out.extend(_tensor_refs(v))
    return out


def _single(refs):
    return isinstance(refs, list) and len(refs) == 3 and isinstance(refs[0], str)


def _refs(refs):
    if _single(refs):
        return [tuple(refs)]
    if isinstance(refs, list) and all(isinstance(r, list) and len(r) == 3 for r in refs):
        return [tuple(r) for r in refs]
    raise ValueError(f"expected input_layers/output_layers as [name, node, index] lists, "
                     f"got {str(refs)[:80]}")


def _has_mask_source(data):
    if isinstance(data, dict):
        if data.get("class_name") == "Masking" or (
                data.get("class_name") == "Embedding"
                and (data.get("config") or {}).get("mask_zero")):
            return True
        return any(_has_mask_source(v) for v in data.values())
    if isinstance(data, list):
        return any(_has_mask_source(v) for v in data)
    return False


# -- the weights -----------------------------------------------------------------------------
def _slots_of(layer):
    """``(relative path in a Keras 3 weights file, crnn layer)`` for each weighted part of
    a crnn layer, in crnn's get_weights order."""
    if isinstance(layer, Bidirectional):
        return [("forward_layer/cell/vars", layer.forward_layer),
                ("backward_layer/cell/vars", layer.backward_layer)]
    if isinstance(layer, RNN):
        return [("cell/vars", layer)]
    if isinstance(layer, TimeDistributed):
        return [("layer/" + p, l) for p, l in _slots_of(layer.layer)]
    return [("vars", layer)]


_snake = engine.snake_case   # Keras's to_snake_case


def _keras_paths(config, prefix="layers"):
    """Where Keras 3 keeps each layer's weights: ``{layer name: path}``. Keras names a
    layer of a model by its class in snake case, made unique within the model in the
    order of its layers (``dense``, ``dense_1``; ops are not layers), not by its name."""
    paths, used = {}, {}
    entries = (config.get("config") or {}).get("layers") or []
    for entry in entries:
        if not isinstance(entry, dict) or str(entry.get("module", "")).startswith(
                "keras.src.ops"):
            continue
        cls = entry.get("class_name")
        if not isinstance(cls, str):
            continue
        base = _snake(cls)
        n = used.get(base, 0)
        used[base] = n + 1
        unique = base if n == 0 else f"{base}_{n}"
        name = entry.get("name") or (entry.get("config") or {}).get("name")
        paths[name] = f"{prefix}/{unique}"
        if cls in ("Sequential", "Functional"):
            paths.update(_keras_paths(entry, f"{prefix}/{unique}/layers"))
    return paths


def _model_layers(model, paths):
    """``(Keras 3 path, crnn layer)`` of every weighted part of a model, nested ones
    inlined, by the paths :func:`_keras_paths` gives the layers' names."""
    out = []
    for layer in model.layers:
        if architecture(layer) is not None:
            out.extend(_model_layers(layer, paths))
        elif layer.weights:            # frozen ones too
            if layer.name not in paths:
                raise ValueError(f"the layer {layer.name!r} has no place in the weights "
                                 f"file's layout")
            out.extend((f"{paths[layer.name]}/{p}", l) for p, l in _slots_of(layer))
    return out


def _check_dataset(h5py, obj, expected, where):
    if not isinstance(obj, h5py.Dataset):
        raise ValueError(f"{where}: expected an array, got {type(obj).__name__}")
    if obj.shape != expected.shape:
        raise ValueError(f"{where}: expected shape {expected.shape} (from the config), got "
                         f"{obj.shape}")
    if obj.dtype.kind not in "fiu" or obj.dtype.itemsize > 8:
        raise ValueError(f"{where}: expected a float array, got dtype {obj.dtype}")
    plist = obj.id.get_create_plist()
    if plist.get_external_count():
        raise ValueError(f"{where}: an array stored in an external file")
    if getattr(obj, "is_virtual", False):
        raise ValueError(f"{where}: a virtual dataset (data in other files)")


def _get(h5py, group, path, where):
    """``group[path]`` through hard links only."""
    node = group
    for part in path.split("/"):
        if not isinstance(node, h5py.Group):
            raise ValueError(f"{where}: no group {path!r}")
        link = node.get(part, getlink=True)
        if link is None:
            raise ValueError(f"{where}: no {path!r} in the weights")
        if not isinstance(link, h5py.HardLink):
            raise ValueError(f"{where}: {path!r} is a {type(link).__name__}; only the "
                             f"file's own data is read")
        node = node[part]
    return node


def _read_arrays(h5py, group, path, layer, where):
    """The weights of one crnn layer from a Keras 3 ``vars`` group (datasets 0, 1, ...)."""
    current = layer.get_weights()
    vars_ = _get(h5py, group, path, where)
    if not isinstance(vars_, h5py.Group) or len(vars_) != len(current):
        raise ValueError(f"{where}: expected {len(current)} arrays under {path!r}, got "
                         f"{len(vars_) if isinstance(vars_, h5py.Group) else 'none'}")
    arrays = []
    for i, cur in enumerate(current):
        obj = _get(h5py, vars_, str(i), where)
        _check_dataset(h5py, obj, cur, f"{where} {path}/{i}")
        arrays.append(np.asarray(obj[()], dtype=cur.dtype))
    return arrays


def _expected_bytes(model):
    return sum(w.nbytes for w in model.get_weights())


# -- compile state ---------------------------------------------------------------------------
_OPTIMIZERS = {
    "SGD": (optimizers.SGD, {"learning_rate", "momentum", "nesterov"}),
    "Adam": (optimizers.Adam, {"learning_rate", "beta_1", "beta_2", "epsilon", "amsgrad"}),
    "RMSprop": (optimizers.RMSprop, {"learning_rate", "rho", "momentum", "epsilon",
                                     "centered"}),
    "Adagrad": (optimizers.Adagrad, {"learning_rate", "initial_accumulator_value",
                                     "epsilon"}),
}
_OPT_DEFAULTS = {"weight_decay": None, "use_ema": False, "loss_scale_factor": None,
                 "gradient_accumulation_steps": None, "decay": 0.0}
_OPT_IGNORED = {"name", "ema_momentum", "ema_overwrite_frequency", "is_legacy_optimizer",
                "jit_compile"}


def _slot_groups(opt):
    """crnn's slot names in the order Keras stores its optimizer variables (after
    ``iteration`` and ``learning_rate``): groups of names, interleaved per parameter
    within a group."""
    if isinstance(opt, optimizers.Adam):
        return [["m", "v"]] + ([["v_hat"]] if opt.amsgrad else [])
    if isinstance(opt, optimizers.SGD):
        return [["momentum"]] if opt.momentum else []
    if isinstance(opt, optimizers.RMSprop):
        return ([["velocity"]] + ([["momentum"]] if opt.momentum > 0 else [])
                + ([["average_gradient"]] if opt.centered else []))
    return [["accumulator"]]


def _compile_args(compile_config):
    """``(compile kwargs, None)`` or ``(None, why not)``."""
    opt = compile_config.get("optimizer", compile_config.get("optimizer_config"))
    if isinstance(opt, str):
        opt = {"class_name": opt, "config": {}}
    if not isinstance(opt, dict):
        return None, "no optimizer in its compile configuration"
    cname = opt.get("class_name")
    if cname not in _OPTIMIZERS and isinstance(cname, str):
        cname = {c.lower(): c for c in _OPTIMIZERS}.get(cname.lower(), cname)
    if cname not in _OPTIMIZERS:
        return None, (f"the optimizer {cname!r} is not one of crnn's "
                      f"{sorted(_OPTIMIZERS)}")
    cls, known = _OPTIMIZERS[cname]
    args = {}
    for key, value in (opt.get("config") or {}).items():
        if key in known:
            args[key] = value
        elif key in ("clipnorm", "global_clipnorm", "clipvalue"):
            if value is not None:
                args[key] = value
        elif key in _OPT_IGNORED or (key in _OPT_DEFAULTS and value == _OPT_DEFAULTS[key]):
            continue
        else:
            return None, f"the optimizer option {key}={value!r} crnn lacks"
    if not isinstance(args.get("learning_rate", 0.001), (int, float)):
        return None, "a learning-rate schedule (crnn loads float learning rates)"
    try:
        optimizer = cls(**args)
    except ValueError as e:
        return None, f"the optimizer's options ({one_line(e)})"
    loss = compile_config.get("loss")
    try:
        if isinstance(loss, dict):
            loss_cfg = dict(loss.get("config") or {})
            for key in ("name", "reduction", "dtype"):
                loss_cfg.pop(key, None)
            loss = losses.deserialize({"class_name": loss.get("class_name"),
                                       "config": loss_cfg})
        elif isinstance(loss, str):
            loss = losses.get(loss)
        else:
            return None, f"the loss {loss!r}"
    except (ValueError, TypeError) as e:
        return None, f"the loss ({one_line(e)})"
    metric_names = compile_config.get("metrics") or []
    if isinstance(metric_names, str):
        metric_names = [metric_names]
    metric_list = []
    for m in metric_names:
        name = m if isinstance(m, str) else (m or {}).get("class_name") if isinstance(
            m, dict) else None
        try:
            _metrics.get(name)
        except (ValueError, TypeError):
            return None, f"the metric {m!r}"
        metric_list.append(name)
    if compile_config.get("loss_weights") not in (None, [], {}):
        return None, "loss_weights"
    return {"optimizer": optimizer, "loss": loss,
            "metrics": metric_list or None}, None


def _restore(model, compile_config, opt_arrays, path):
    """Compile ``model`` as Keras had it, with the optimizer's state; else one warning."""
    args, why = _compile_args(compile_config)
    if args is None:
        warnings.warn(f"loaded the Keras model {path!r} uncompiled: crnn lacks {why}",
                      stacklevel=3)
        return
    model.compile(**args)
    if opt_arrays is None:
        return
    params = model.trainable_weights
    groups = _slot_groups(args["optimizer"])
    n = 2 + sum(len(g) for g in groups) * len(params)
    if len(opt_arrays) != n or not all(a.shape == () for a in opt_arrays[:2]):
        warnings.warn(f"loaded the Keras model {path!r} compiled, without its optimizer "
                      f"state: expected {n} optimizer arrays, got {len(opt_arrays)}",
                      stacklevel=3)
        return
    state = {"iterations": np.asarray(int(opt_arrays[0]), dtype=np.int64)}
    k = 2
    for group in groups:
        for i, p in enumerate(params):
            for slot in group:
                a = opt_arrays[k]
                k += 1
                if a.shape != p.shape:
                    warnings.warn(f"loaded the Keras model {path!r} compiled, without its "
                                  f"optimizer state: slot {slot} of parameter {i} has shape "
                                  f"{a.shape}, the parameter {p.shape}", stacklevel=3)
                    return
                state[f"{slot}/{i}"] = np.asarray(a, dtype=p.dtype)
    if int(state["iterations"]) == 0:
        return   # nothing trained yet: crnn's optimizer starts from the same zeros
    model.optimizer.set_state(state, params)


# -- reading ---------------------------------------------------------------------------------
def _parse_json(raw, what, path):
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise _bad(path, f"its {what} is not valid JSON ({one_line(e)})") from None


def _build(config, path):
    if not isinstance(config, dict):
        raise _bad(path, "its model config is not a JSON object")
    reader = _Reader(path, _has_mask_source(config))
    name = config.get("class_name")
    if name not in ("Sequential", "Functional", "Model"):
        if name is not None and name not in SUPPORTED:
            reader.check_class(config, "the model")
        raise _bad(path, f"expected a Sequential or Functional model, got {name!r}")
    if name == "Model":
        config = dict(config, class_name="Functional")
    try:
        return reader.model(config, "the model")
    except ValueError as e:
        raise _bad(path, one_line(e)) from None
    except (KeyError, TypeError, AttributeError, IndexError) as e:
        raise _bad(path, f"a malformed config ({type(e).__name__}: {one_line(e)})") from None


def _load_zip(path, compile):
    h5py = _h5py()
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise _bad(path, f"a damaged or truncated zip ({one_line(e)})") from None
    with z:
        infos = {i.filename: i for i in z.infolist()}
        for need in ("config.json", "model.weights.h5"):
            if need not in infos:
                raise _bad(path, f"no {need!r} in the archive (it holds "
                                 f"{sorted(infos)[:6]})")
        config = _parse_json(_read_member(z, infos["config.json"], CONFIG_LIMIT, path),
                             "config.json", path)
        model = _build(config, path)
        limit = 6 * _expected_bytes(model) + SLACK + PER_ARRAY * 8 * (
            len(model.get_weights()) + 2)
        data = _read_member(z, infos["model.weights.h5"], limit, path)
    try:
        f = h5py.File(io.BytesIO(data), "r")
    except (OSError, ValueError) as e:
        raise _bad(path, f"a model.weights.h5 that is not HDF5 ({one_line(e)})") from None
    with f:
        for rel, layer in _model_layers(model, _keras_paths(config)):
            layer.set_weights(_read_arrays(h5py, f, rel, layer, f"{path!r}"))
        opt_arrays = None
        if "optimizer" in f and isinstance(config.get("compile_config"), dict):
            opt_arrays = _optimizer_arrays_keras3(h5py, f, model, path)
    if compile and config.get("compile_config"):
        _restore(model, config["compile_config"], opt_arrays, path)
    return model


def _optimizer_arrays_keras3(h5py, f, model, path):
    group = _get(h5py, f, "optimizer/vars", repr(path))
    n = len(group)
    params = model.trainable_weights
    if n > 2 + 3 * len(params):
        raise _bad(path, f"{n} optimizer arrays for {len(params)} parameters")
    sizes = {p.shape for p in params} | {()}
    out = []
    for i in range(n):
        obj = _get(h5py, group, str(i), repr(path))
        if not isinstance(obj, h5py.Dataset) or obj.shape not in sizes:
            raise _bad(path, f"the optimizer array {i} of shape "
                             f"{getattr(obj, 'shape', None)}, no parameter's")
        _check_dataset(h5py, obj, np.empty(obj.shape), f"{path!r} optimizer/vars/{i}")
        out.append(np.asarray(obj[()]))
    return out


def _read_member(z, info, limit, path):
    if info.file_size > limit:
        raise _bad(path, f"its member {info.filename!r} declares {info.file_size} bytes, "
                         f"more than the {limit} its config allows (a zip bomb?)")
    try:
        with z.open(info) as f:
            data = f.read(limit + 1)
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as e:
        raise _bad(path, f"a damaged or truncated zip ({type(e).__name__}: "
                         f"{one_line(e)})") from None
    except Exception as e:   # zlib.error and other decompression failures
        raise _bad(path, f"a damaged zip member ({type(e).__name__}: {one_line(e)})") \
            from None
    if len(data) > limit:
        raise _bad(path, f"its member {info.filename!r} is larger than it declares")
    return data


def _attr_json(h5py, f, key, path):
    if key not in f.attrs:
        return None
    size = f.attrs.get_id(key).get_storage_size()
    if size > CONFIG_LIMIT:
        raise _bad(path, f"its {key} attribute holds {size} bytes")
    raw = f.attrs[key]
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    if not isinstance(raw, str):
        raise _bad(path, f"its {key} attribute is not a JSON string")
    return _parse_json(raw, key, path)


def _load_h5(path, compile):
    h5py = _h5py()
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise _bad(path, f"a damaged HDF5 file ({one_line(e)})") from None
    with f:
        config = _attr_json(h5py, f, "model_config", path)
        if config is None:
            raise _bad(path, "no model_config (a weights-only .h5: build the model and "
                             "load its weights)")
        model = _build(config, path)
        where = repr(path)
        root = _get(h5py, f, "model_weights", where) if "model_weights" in f else f
        for layer in model.layers:
            _read_h5_layer(h5py, root, layer, where)
        training = _attr_json(h5py, f, "training_config", path)
        opt_arrays = None
        if training is not None and "optimizer_weights" in f:
            opt_arrays = _h5_optimizer_arrays(h5py, f, model, path)
    if compile and training:
        _restore(model, training, opt_arrays, path)
    return model


def _weight_names(h5py, group, where):
    names = group.attrs.get("weight_names", [])
    if len(names) > 10000:
        raise ValueError(f"{where}: {len(names)} weight names")
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]


def _read_h5_layer(h5py, root, layer, where):
    if architecture(layer) is not None:        # a nested model: its layers beside it
        group = _get(h5py, root, layer.name, where)
        if not _weight_names(h5py, group, where):
            for sub in layer.layers:
                _read_h5_layer(h5py, root, sub, where)
            return
    current = layer.get_weights()
    if not current:
        return
    group = _get(h5py, root, layer.name, where)
    names = _weight_names(h5py, group, f"{where} {layer.name!r}")
    if len(names) != len(current):
        raise ValueError(f"{where}: expected {len(current)} weights for {layer.name!r} "
                         f"from the config, the file lists {len(names)}")
    arrays = []
    for name, cur in zip(names, current):
        obj = _get(h5py, group, name, where)
        _check_dataset(h5py, obj, cur, f"{where} {layer.name}/{name}")
        arrays.append(np.asarray(obj[()], dtype=cur.dtype))
    layer.set_weights(arrays)


def _h5_optimizer_arrays(h5py, f, model, path):
    group = _get(h5py, f, "optimizer_weights", repr(path))
    names = _weight_names(h5py, group, repr(path))
    params = model.trainable_weights
    if len(names) > 2 + 3 * len(params):
        raise _bad(path, f"{len(names)} optimizer arrays for {len(params)} parameters")
    shapes = {p.shape for p in params} | {()}
    out = []
    for name in names:
        obj = _get(h5py, group, name, repr(path))
        if not isinstance(obj, h5py.Dataset) or obj.shape not in shapes:
            raise _bad(path, f"the optimizer array {name!r} of shape "
                             f"{getattr(obj, 'shape', None)}, no parameter's")
        _check_dataset(h5py, obj, np.empty(obj.shape), f"{path!r} {name}")
        out.append(np.asarray(obj[()]))
    # Keras 2 stored no learning rate among them: make the layout Keras 3's
    if names and not any(n.endswith("learning_rate") for n in names[:2]):
        out = out[:1] + [np.asarray(0.0)] + out[1:]
    return out


def load_keras(path, compile=True):
    """A crnn model from a Keras ``.keras`` or ``.h5`` file (see the module docstring).

    Raises
    ------
    ValueError
        For a layer, option or class crnn lacks (naming them), code in the file, a
        damaged or hostile file; ImportError without h5py.
    """
    kind = is_keras_file(path)
    if kind == "keras":
        return _load_zip(path, compile)
    if kind == "h5":
        return _load_h5(path, compile)
    raise _bad(path, "neither a .keras zip nor an HDF5 file")


# -- writing ---------------------------------------------------------------------------------
def _dtype_policy(dtype):
    return {"module": "keras", "class_name": "DTypePolicy",
            "config": {"name": np.dtype(dtype).name}, "registered_name": None}


def _keras_layer(layer):
    """A crnn layer's Keras 3 ``{module, class_name, config}``."""
    config = {"name": layer.name, "trainable": True, "dtype": _dtype_policy(layer.dtype)}
    if isinstance(layer, Dense):
        config.update(units=layer.units, activation=layer.activation or "linear",
                      use_bias=layer.use_bias)
        name = "Dense"
    elif isinstance(layer, Embedding):
        config.update(input_dim=layer.input_dim, output_dim=layer.output_dim,
                      mask_zero=layer.mask_zero)
        name = "Embedding"
    elif isinstance(layer, Masking):
        config.update(mask_value=layer.mask_value)
        name = "Masking"
    elif isinstance(layer, Dropout):
        config.update(rate=layer.rate)
        name = "Dropout"
    elif isinstance(layer, Activation):
        config.update(activation=layer.activation or "linear")
        name = "Activation"
    elif isinstance(layer, RepeatVector):
        config.update(n=layer.n)
        name = "RepeatVector"
    elif isinstance(layer, Flatten):
        name = "Flatten"
    elif isinstance(layer, TimeDistributed):
        config = {"name": layer.name, "trainable": True, "layer": _keras_layer(layer.layer)}
        name = "TimeDistributed"
    elif isinstance(layer, Bidirectional):
        config = {"name": layer.name, "trainable": True, "merge_mode": layer.merge_mode,
                  "layer": _keras_layer(layer.forward_layer),
                  "backward_layer": _keras_layer(layer.backward_layer)}
        name = "Bidirectional"
    elif type(layer) in (SimpleRNN, LSTM, GRU):
        cell = layer.cell
        name = type(layer).__name__
        config.update(units=cell.units, activation=cell.activation, use_bias=cell.use_bias,
                      return_sequences=layer.return_sequences,
                      return_state=layer.return_state, go_backwards=layer.go_backwards,
                      stateful=layer.stateful, dropout=cell.dropout,
                      recurrent_dropout=cell.recurrent_dropout,
                      # crnn's last output is the last real step's: Keras's with False
                      zero_output_for_mask=layer.return_sequences and bool(
                          getattr(layer, "zero_output_for_mask", True)))
        if name != "SimpleRNN":
            config["recurrent_activation"] = cell.recurrent_activation
        if name == "LSTM":
            config["unit_forget_bias"] = cell.unit_forget_bias
        if name == "GRU":
            config["reset_after"] = cell.reset_after
    else:
        raise ValueError(f"cannot save {type(layer).__name__} {layer.name!r} as a Keras "
                         f"file: supported layers are {SUPPORTED[1:-2]}")
    if architecture(layer) is None:
        _with_penalties(layer, config)
    return {"module": "keras.layers", "class_name": name, "config": config,
            "registered_name": None}


def _input_layer(placeholder, name):
    return {"module": "keras.layers", "class_name": "InputLayer",
            "config": {"batch_shape": [None] + list(placeholder.shape[1:]),
                       "dtype": placeholder.dtype.name, "sparse": False, "ragged": False,
                       "name": name},
            "registered_name": None, "name": name, "inbound_nodes": []}


def _tensor(t, history):
    return {"class_name": "__keras_tensor__",
            "config": {"shape": list(t.shape), "dtype": t.dtype.name,
                       "keras_history": list(history[id(t)])}}


def _model_config(model):
    kind = architecture(model)
    if kind == "sequential":
        first = model.__dict__.get("_input")
        if first is None:
            raise ValueError(f"cannot save the Sequential {model.name!r} as a Keras file: "
                             f"start it with crnn.Input(shape) so the file has an input "
                             f"shape")
        layers = [_input_layer(first, f"{model.name}_input")]
        for layer in model.layers:
            if architecture(layer) is not None:
                layers.append(_model_config(layer))
            else:
                layers.append(_keras_layer(layer))
        return {"module": "keras", "class_name": "Sequential",
                "config": {"name": model.name, "trainable": True,
                           "dtype": _dtype_policy(model.dtype), "layers": layers},
                "registered_name": None}
    if kind != "functional":
        raise ValueError(f"cannot save the subclassed model {model.name!r} as a Keras "
                         f"file: its call is Python code (save_weights keeps its weights)")
    history, layers, names = {}, [], set()
    inputs = flatten(model.inputs)
    for i, p in enumerate(inputs):
        name = p.name or f"input_layer_{i}"
        history[id(p)] = (name, 0, 0)
        layers.append(_input_layer(p, name))
        names.add(name)
    calls, entries = {}, {}
    masks = {id(p): None for p in inputs}     # id(tensor) -> its mask's keras_history

    def mask_op(cls, args, config, shape):
        """A Keras mask op node (Keras records how it computed each mask)."""
        name = f"{model.name}_{cls.lower()}_{len(layers)}"
        layers.append({"module": "keras.src.ops.numpy", "class_name": cls,
                       "config": dict(config, name=name), "registered_name": cls,
                       "name": name, "inbound_nodes": [{"args": args, "kwargs": {}}]})
        return {"class_name": "__keras_tensor__",
                "config": {"shape": list(shape), "dtype": "bool",
                           "keras_history": [name, 0, 0]}}
    for node in model._nodes:
        layer = node.layer
        if architecture(layer) is not None:
            entry = _model_config(layer)
        elif isinstance(layer, (RNN, Bidirectional, Dense, Embedding, Masking, Dropout,
                                Activation, RepeatVector, Flatten, TimeDistributed)):
            entry = _keras_layer(layer)
        else:
            raise ValueError(f"cannot save {type(layer).__name__} {layer.name!r} as a "
                             f"Keras file: supported layers are {SUPPORTED[1:-2]}")
        if id(layer) not in entries:
            if layer.name in names:
                raise ValueError(f"cannot save {model.name!r} as a Keras file: two "
                                 f"layers are named {layer.name!r}")
            names.add(layer.name)
            entry["name"] = layer.name
            entry["inbound_nodes"] = []
            entries[id(layer)] = entry
            layers.append(entry)
        k = calls.get(id(layer), 0)
        calls[id(layer)] = k + 1
        kwargs = {}
        for key, value in node.kwargs.items():
            if key == "initial_state":
                kwargs[key] = [_tensor(t, history) for t in flatten(value)]
            elif key != "training":
                raise ValueError(f"cannot save the call of {layer.name!r} with {key}= as "
                                 f"a Keras file")
        args = []
        for a in node.args:
            if isinstance(a, SymbolicTensor):
                args.append(_tensor(a, history))
            elif isinstance(a, (list, tuple)) and all(isinstance(t, SymbolicTensor)
                                                      for t in a):
                if len(args) == 1 and type(layer) in (SimpleRNN, LSTM, GRU, Bidirectional):
                    kwargs["initial_state"] = [_tensor(t, history) for t in a]
                else:
                    args.append([_tensor(t, history) for t in a])
            else:
                raise ValueError(f"cannot save the call of {layer.name!r} with the "
                                 f"argument {a!r:.40} as a Keras file")
        first = node.args[0] if node.args and isinstance(node.args[0], SymbolicTensor) \
            else None
        in_mask = masks.get(id(first)) if first is not None else None
        if in_mask is not None and isinstance(layer, (RNN, Bidirectional,
                                                      TimeDistributed)):
            kwargs["mask"] = in_mask
        entries[id(layer)]["inbound_nodes"].append({"args": args, "kwargs": kwargs})
        for j, out in enumerate(node.outputs):
            history.setdefault(id(out), (layer.name, k, j))
        # the output's mask, as crnn's layers pass it on (crnn.models.call_layer)
        out_mask = None
        if isinstance(layer, Masking):
            ne = mask_op("NotEqual", [_tensor(first, history), layer.mask_value], {},
                         first.shape)
            out_mask = mask_op("Any", [ne], {"axis": -1, "keepdims": False},
                               first.shape[:-1])
        elif isinstance(layer, Embedding) and layer.mask_zero:
            out_mask = mask_op("NotEqual", [_tensor(first, history), 0], {}, first.shape)
        elif in_mask is not None and (
                isinstance(layer, (Dense, Dropout, Activation, TimeDistributed))
                or isinstance(layer, (RNN, Bidirectional)) and layer.return_sequences):
            out_mask = in_mask
        if node.outputs:
            masks[id(node.outputs[0])] = out_mask

    def refs(structure):
        flat = [list(history[id(t)]) for t in flatten(structure)]
        return flat[0] if not isinstance(structure, (list, tuple)) else flat
    return {"module": "keras.src.models.functional", "class_name": "Functional",
            "config": {"name": model.name, "trainable": True, "layers": layers,
                       "input_layers": refs(model.inputs),
                       "output_layers": refs(model.outputs)},
            "registered_name": "Functional"}


def save_keras(model, path):
    """Write ``model`` (Sequential or functional, of the layers in the module docstring)
    as a Keras 3 ``.keras`` file: ``config.json``, ``metadata.json`` and the weights in
    ``model.weights.h5`` as Keras lays them out. The optimizer is not written (Keras
    recompiles from its own optimizers)."""
    h5py = _h5py()
    config = _model_config(model)
    config["build_config"] = {"input_shape": None}
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        f.create_group("vars")
        for rel, layer in _model_layers(model, _keras_paths(config)):
            group = f.require_group(rel)
            for i, w in enumerate(layer.get_weights()):
                group.create_dataset(str(i), data=w)
    metadata = {"keras_version": "3.0.0", "crnn_version": __version__,
                "date_saved": time.strftime("%Y-%m-%d@%H:%M:%S")}
    path = os.fspath(path)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with zipfile.ZipFile(tmp, "w") as z:
            z.writestr("metadata.json", json.dumps(metadata))
            z.writestr("config.json", json.dumps(config))
            z.writestr("model.weights.h5", buffer.getvalue())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
