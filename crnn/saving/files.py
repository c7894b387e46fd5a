"""The file: one ``.npz`` archive read and written without running code (see
:mod:`crnn.saving`), and the API that saves and loads models and weights through it."""
import json
import os
import secrets
import warnings

import numpy as np

from crnn._version import __version__
from crnn.saving.architecture import (build_model, custom_scope, get_model_config,
                                      model_kind, resolve_class, subclassed_error)
from crnn.saving.codec import check, one_line
from crnn.saving.compile import compile_config, restore_compile
from crnn.saving.keras_format import is_keras_file, load_keras, save_keras
from crnn.saving.weights import (WEIGHTS_PREFIX, assign, named_weights, restore_rngs,
                                 rng_states, unbuilt_layers)

__all__ = ["load_model", "load_weights", "save_model", "save_weights"]

FORMAT_NAME = "crnn"
FORMAT_VERSION = 1
HEADER_KEY = "__crnn__"
CONFIG_KEY = "config.json"
OPTIMIZER_PREFIX = "optimizer/"

_EXPECTED = "a crnn file (an .npz archive written by crnn's save or save_weights)"


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
        raise _bad(path, f"a damaged archive ({one_line(e)})") from e
    except Exception as e:  # zipfile.BadZipFile, EOFError, zlib.error, OSError, ...
        raise _bad(path, f"a damaged or truncated archive ({type(e).__name__}: "
                         f"{one_line(e)})") from e
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
        raise _bad(path, f"a {CONFIG_KEY!r} that is not valid JSON ({one_line(e)})") from e
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
        Written exactly as given (no extension is added; ``.crnn`` is customary). A
        path ending in ``.keras`` writes a Keras 3 file instead, which Keras opens
        (:func:`crnn.saving.keras_format.save_keras`; needs h5py).
    include_optimizer : bool
        Also store the compile configuration and the optimizer's state (when compiled).
        A configuration that cannot be stored (a loss given as a Python function) is left
        out with a warning: the file then loads as an uncompiled model.
    compressed : bool
        Deflate the arrays (smaller, slower).
    """
    if os.fspath(path).endswith(".keras"):      # Keras 3's format, for Keras to open
        save_keras(model, path)
        return
    kind = model_kind(model)
    if kind == "subclassed":
        raise subclassed_error(model, "save")
    model_config = get_model_config(model)
    layers = model.layers
    weights = named_weights(layers)
    meta = _meta(model, "model", weights)
    meta["model"] = model_config
    meta["rng"] = rng_states(layers)
    meta["compile"] = meta["optimizer_state"] = None
    arrays = {HEADER_KEY: _header("model")}
    if include_optimizer:
        try:
            config, state = compile_config(model)
        except (ValueError, TypeError) as e:
            warnings.warn(f"saving {model.name!r} without its compile configuration, which "
                          f"cannot be stored ({one_line(e)}); load_model will return it "
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
    """Read a model written by :func:`save_model`, or a Keras ``.keras`` or ``.h5`` model
    file (chosen by the file's content; :mod:`crnn.saving.keras_format`, needs h5py).

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
    if is_keras_file(path):                     # a Keras .keras or .h5 file, by content
        return load_keras(path, compile=compile)
    meta, arrays = _read(path)
    if meta["kind"] != "model":
        raise ValueError(f"expected a model file (written by save) at {path!r}, got a file "
                         f"of weights only (written by save_weights): build the model in "
                         f"code and call model.load_weights(path)")
    with custom_scope(custom_objects):
        try:
            model_data = meta.get("model")
            check(isinstance(model_data, dict), "the architecture under 'model'",
                  model_data)
            cls = resolve_class(model_data.get("class_name"), custom_objects)
            model, layers = build_model(cls, model_data.get("config"),
                                        custom_objects)
            targets = named_weights(layers)
            restore_rngs(layers, meta.get("rng") or {})
        except ValueError as e:
            raise ValueError(f"could not rebuild the model saved in {path!r}: "
                             f"{one_line(e)}") from e
        except Exception as e:
            raise ValueError(f"could not rebuild the model saved in {path!r} (a damaged "
                             f"architecture?): {type(e).__name__}: {one_line(e)}") from e
    assign(model, targets, arrays, meta["weights"], path)
    if compile and meta.get("compile"):
        names = meta.get("optimizer_state") or []
        try:
            check(isinstance(names, list) and all(isinstance(n, str) for n in names),
                  "'optimizer_state' as a list of names", names)
            state = {}
            for n in names:
                a = arrays.get(OPTIMIZER_PREFIX + n)
                check(a is not None, f"an array {OPTIMIZER_PREFIX + n!r}", None)
                state[n] = a
            restore_compile(model, meta["compile"], state)
        except Exception as e:
            raise ValueError(f"could not compile the model saved in {path!r} as it was "
                             f"saved ({type(e).__name__}: {one_line(e)}); "
                             f"load_model(path, compile=False) loads it uncompiled") from e
    return model


def save_weights(model, path, compressed=False):
    """Write every weight of ``model`` (any kind, subclassed too) to one file.

    The names are the layers' paths, ``layers/<i>/<weight>`` with ``i`` the index in
    ``model.layers``; :func:`load_weights` puts them back into a model of the same
    architecture.
    """
    model_kind(model)
    layers = model.layers
    weights = named_weights(layers)
    if not weights and unbuilt_layers(layers):
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
    model_kind(model)
    path = os.fspath(path)
    meta, arrays = _read(path)
    assign(model, named_weights(model.layers), arrays, meta["weights"], path)
