"""JSON for what JSON lacks: the values a crnn file's ``config.json`` holds, written as
one-key objects (see :mod:`crnn.saving`), and the checks every reader of a file makes.
Layers and functional-graph references are encoded through hooks of the caller
(:mod:`crnn.saving.architecture`)."""
import numpy as np

from crnn import engine
from crnn.layers.base import Layer

__all__ = ["check", "decode", "encode", "one_line"]


_MARKERS = frozenset({"__tuple__", "__slice__", "__ellipsis__", "__float__", "__dtype__",
                      "__ndarray__", "__dict__", "__items__", "__layer__", "__tensor__",
                      "__input__"})


def encode(value, where, ref=None, layer=None):
    """``value`` as JSON-compatible data (see the module docstring); ``ref`` encodes a
    :class:`crnn.engine.SymbolicTensor` and ``layer`` a :class:`crnn.Layer` (both hooks of
    the caller, as ``json.dumps``'s ``default``; without them such a value cannot be
    held). Raises ``ValueError`` naming ``where`` for a value a file cannot hold (a
    function, an arbitrary object)."""
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
        return [encode(v, f"{where}[{i}]", ref, layer) for i, v in enumerate(value)]
    if isinstance(value, tuple):
        return {"__tuple__": [encode(v, f"{where}[{i}]", ref, layer)
                              for i, v in enumerate(value)]}
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            out = {k: encode(v, f"{where}[{k!r}]", ref, layer) for k, v in value.items()}
            if len(out) == 1 and next(iter(out)) in _MARKERS:
                return {"__dict__": out}  # escaped: it would read as a marker
            return out
        return {"__items__": [[encode(k, f"{where} key", ref, layer),
                               encode(v, f"{where}[{k!r}]", ref, layer)]
                              for k, v in value.items()]}
    if isinstance(value, slice):
        return {"__slice__": [encode(value.start, where, ref, layer),
                              encode(value.stop, where, ref, layer),
                              encode(value.step, where, ref, layer)]}
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
        data = [encode(v, where) for v in value.ravel().tolist()]
        return {"__ndarray__": {"dtype": value.dtype.name, "shape": list(value.shape),
                                "data": data}}
    if isinstance(value, Layer) and layer is not None:
        return {"__layer__": layer(value)}
    what = (f"the function {getattr(value, '__qualname__', value)!r}" if callable(value)
            else f"a {type(value).__name__} object")
    raise ValueError(f"{where} is {what}, which a crnn file cannot hold (it stores only "
                     f"JSON and arrays, never code)")


def decode(value, ref=None, custom_objects=None, layer=None):
    """The inverse of :func:`encode`; ``ref`` resolves ``__tensor__``/``__input__`` and
    ``layer(data, custom_objects)`` rebuilds a ``__layer__``.
    Raises ``ValueError`` on anything :func:`encode` does not write."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [decode(v, ref, custom_objects, layer) for v in value]
    if not isinstance(value, dict):
        raise ValueError(f"expected JSON data, got a {type(value).__name__}")
    if len(value) == 1:
        (key, body), = value.items()
        if key in _MARKERS:
            return _decode_marker(key, body, ref, custom_objects, layer)
    return {k: decode(v, ref, custom_objects, layer) for k, v in value.items()}


def _decode_marker(key, body, ref, custom_objects, layer):
    def sub(v):
        return decode(v, ref, custom_objects, layer)

    if key == "__tuple__":
        check(isinstance(body, list), "a __tuple__ holding a list", body)
        return tuple(sub(v) for v in body)
    if key == "__dict__":
        check(isinstance(body, dict), "a __dict__ holding an object", body)
        return {k: sub(v) for k, v in body.items()}
    if key == "__items__":
        check(isinstance(body, list) and all(isinstance(p, list) and len(p) == 2
                                             for p in body),
              "__items__ holding [key, value] pairs", body)
        out = {}
        for k, v in body:
            k = sub(k)
            check(isinstance(k, (str, int, float, bool, tuple, type(None))),
                  "a hashable __items__ key", k)
            out[k] = sub(v)
        return out
    if key == "__slice__":
        check(isinstance(body, list) and len(body) == 3, "a __slice__ of 3 entries", body)
        return slice(*(sub(v) for v in body))
    if key == "__ellipsis__":
        return Ellipsis
    if key == "__float__":
        check(body in ("nan", "inf", "-inf"), "__float__ 'nan', 'inf' or '-inf'", body)
        return float(body)
    if key == "__dtype__":
        check(isinstance(body, str), "a __dtype__ name", body)
        dt = np.dtype(body)
        check(dt.kind in "biuf", "a boolean or numeric __dtype__", body)
        return dt
    if key == "__ndarray__":
        check(isinstance(body, dict) and {"dtype", "shape", "data"} <= set(body),
              "an __ndarray__ with dtype, shape and data", body)
        dt = np.dtype(body["dtype"]) if isinstance(body["dtype"], str) else None
        check(dt is not None and dt.kind in "biuf", "a boolean or numeric __ndarray__",
              body["dtype"])
        data = [sub(v) for v in body["data"]]
        check(all(isinstance(v, (bool, int, float)) for v in data),
              "numbers in an __ndarray__", body["data"])
        return np.array(data, dtype=dt).reshape([int(n) for n in body["shape"]])
    if key == "__layer__" and layer is not None:
        return layer(body, custom_objects)
    # __tensor__ / __input__: references into a functional graph
    if ref is None:
        raise ValueError(f"a tensor reference {{{key!r}: {body!r}}} outside a functional "
                         f"model's graph")
    return ref(key, body)


def one_line(e):
    """An exception's message on one line (as part of ours)."""
    return " ".join(str(e).split())


def check(ok, expected, got):
    if not ok:
        raise ValueError(f"expected {expected}, got {got!r:.80}")
