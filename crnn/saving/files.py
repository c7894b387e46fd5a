"""The file: one ``.npz`` archive read and written without running code (see
:mod:`crnn.saving`), and the API that saves and loads models and weights through it.

Reading trusts nothing the file says before checking it: the archive's members are read
only where the header (``config.json``) lists them, each after its ``.npy`` header's
shape and dtype were checked against what the model expects and against the size the
archive declares, so that a small file cannot make a load allocate or decompress more
than the model it describes holds. A model's weight shapes are computed from its
architecture without allocating them (:func:`crnn.layers.base.shapes_only`) and compared
with the file's before the model is built.

Writing goes to a temporary file beside the target, renamed over it when complete; its
name carries the writer's process id, and a save removes the temporary files of its
target left by a writer that no longer runs (one killed during a save)."""
import json
import os
import re
import secrets
import time
import warnings
import zipfile

import numpy as np

from crnn._version import __version__
from crnn.saving.architecture import (build_model, custom_scope, get_model_config,
                                      model_kind, resolve_class, subclassed_model_config,
                                      weight_shapes)
from crnn.saving.codec import check, one_line
from crnn.saving.compile import compile_config, restore_compile
from crnn.saving.keras_format import is_keras_file, load_keras, save_keras
from crnn.saving.weights import (WEIGHTS_PREFIX, assign, check_names, named_weights,
                                 restore_rngs, rng_states, unbuilt_layers)

__all__ = ["load_model", "load_weights", "save_model", "save_weights"]

FORMAT_NAME = "crnn"
FORMAT_VERSION = 1
HEADER_KEY = "__crnn__"
CONFIG_KEY = "config.json"
OPTIMIZER_PREFIX = "optimizer/"

_EXPECTED = "a crnn file (an .npz archive written by crnn's save or save_weights)"


_writing = set()   # the temporary files this process is writing now
STALE_AFTER_S = 24 * 3600   # where a writer's liveness cannot be asked (Windows, no pid)


def _temp_pattern(base):
    """The temporary files of saves to ``base``: ``.<base>.<pid>-<12 hex>.tmp`` (and the
    older ``.<base>.<12 hex>.tmp``, without the writer's id)."""
    return re.compile(r"\." + re.escape(base) + r"\.(?:(\d+)-)?[0-9a-f]{12}\.tmp\Z")


def _running(pid):
    """Whether process ``pid`` (another than this one) may still be writing."""
    try:
        os.kill(pid, 0)     # signal 0 (POSIX): only asks whether the process exists
    except ProcessLookupError:
        return False
    except OSError:         # it exists (another user's) or cannot be asked
        return True
    return True


def _remove_stale_temps(folder, base):
    """Remove the temporary files of earlier saves to ``base`` whose writer is gone (a
    save killed before its rename): this process's own that it is not writing, another
    process's when that process no longer runs (POSIX), or, where that cannot be asked
    (Windows, a name without the id), when older than :data:`STALE_AFTER_S`."""
    pattern = _temp_pattern(base)
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        m = pattern.match(name)
        tmp = os.path.join(folder, name)
        if m is None or tmp in _writing:
            continue
        pid = None if m.group(1) is None else int(m.group(1))
        try:
            if pid == os.getpid():
                stale = True
            elif pid is not None and os.name == "posix":
                stale = not _running(pid)
            else:
                stale = time.time() - os.path.getmtime(tmp) > STALE_AFTER_S
            if stale:
                os.remove(tmp)
        except OSError:
            pass


def _write(path, arrays, compressed):
    """Write ``arrays`` as one ``.npz`` at exactly ``path``: into a new file beside it,
    then renamed over it, so that an error leaves no half-written file (and a killed
    save leaves one that the next save to ``path`` removes)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    for name, a in arrays.items():
        if a.dtype.hasobject:
            raise ValueError(f"expected numeric arrays only, got {name!r} of dtype "
                             f"{a.dtype}")
    _remove_stale_temps(folder, base)
    tmp = os.path.join(folder, f".{base}.{os.getpid()}-{secrets.token_hex(6)}.tmp")
    save = np.savez_compressed if compressed else np.savez
    # os.open with 0o666 lets the umask set the permissions, as open() would
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                 0o666)
    _writing.add(tmp)
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
    finally:
        _writing.discard(tmp)


def _json_array(data):
    text = json.dumps(data, allow_nan=False, separators=(",", ":"))
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).copy()


def _header(kind):
    return np.array([FORMAT_NAME, str(FORMAT_VERSION), kind])


def _bad(path, what):
    return ValueError(f"expected {_EXPECTED} at {path!r}, got {what}")


HEADER_LIMIT = 1 << 10          # bytes of the __crnn__ member
CONFIG_LIMIT = 64 << 20        # bytes of config.json
SMALL_STATE = 16               # elements an optimizer state array may hold beyond a weight


class _Archive:
    """An opened crnn file: the header and ``config.json`` read and checked (``meta``);
    every other member read only on request (:meth:`read`), after checking its ``.npy``
    header against the size the archive declares and against what is expected."""

    def __init__(self, path):
        self.path = path = os.fspath(path)
        with open(path, "rb") as f:  # a missing file raises FileNotFoundError, as open does
            start = f.read(4)
        if not start:
            raise _bad(path, "an empty file")
        if start not in (b"PK\x03\x04", b"PK\x05\x06"):
            raise _bad(path, f"a file that is not a zip archive (it starts with {start!r})")
        try:
            self.zip = zipfile.ZipFile(path)
            self.members = {info.filename: info for info in self.zip.infolist()}
        except Exception as e:  # zipfile.BadZipFile, EOFError, OSError, ...
            raise _bad(path, f"a damaged or truncated archive ({type(e).__name__}: "
                             f"{one_line(e)})") from e
        try:
            self._read_meta()
        except BaseException:
            self.close()
            raise

    def close(self):
        self.zip.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def has(self, name):
        return name + ".npy" in self.members

    def _read_meta(self):
        path = self.path
        if not self.has(HEADER_KEY):
            names = ", ".join(sorted(n[:-4] if n.endswith(".npy") else n
                                     for n in self.members)[:6]) or "nothing"
            raise _bad(path, f"an archive without {HEADER_KEY!r} (it holds {names})")
        header = self.read(HEADER_KEY, kinds="U", limit=HEADER_LIMIT)
        if not (header.ndim == 1 and len(header) >= 3 and header[0] == FORMAT_NAME):
            raise _bad(path, f"a malformed {HEADER_KEY!r} header {header!r:.80}")
        try:
            version = int(header[1])
        except ValueError:
            raise _bad(path, f"a malformed format version {header[1]!r}") from None
        if version > FORMAT_VERSION:
            raise ValueError(f"expected a crnn file of format version {FORMAT_VERSION} or "
                             f"older at {path!r}, got version {version}: it was written by "
                             f"a newer crnn")
        if not self.has(CONFIG_KEY):
            raise _bad(path, f"no {CONFIG_KEY!r} as a uint8 array")
        raw = self.read(CONFIG_KEY, kinds="u", limit=CONFIG_LIMIT)
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise _bad(path, f"no {CONFIG_KEY!r} as a uint8 array")
        try:
            meta = json.loads(raw.tobytes().decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise _bad(path, f"a {CONFIG_KEY!r} that is not valid JSON ({one_line(e)})") \
                from e
        if not (isinstance(meta, dict) and meta.get("kind") in ("model", "weights")
                and isinstance(meta.get("weights"), list)
                and all(isinstance(n, str) and n.startswith(WEIGHTS_PREFIX)
                        for n in meta["weights"])):
            raise _bad(path, f"a {CONFIG_KEY!r} without 'kind' and the list of 'weights'")
        if len(set(meta["weights"])) != len(meta["weights"]):
            raise _bad(path, f"a {CONFIG_KEY!r} that lists a weight twice")
        for n in meta["weights"]:
            if not self.has(n):
                raise _bad(path, f"no array for the weight {n!r} its {CONFIG_KEY!r} lists")
        self.meta = meta

    def _open_member(self, name):
        """The member's stream, positioned after its ``.npy`` header, with the header's
        ``(shape, fortran_order, dtype)`` and the size of the data it declares."""
        info = self.members[name + ".npy"]
        f = None
        try:
            f = self.zip.open(info)
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"a .npy format version {version}")
            offset = f.tell()
        except Exception as e:
            if f is not None:
                f.close()
            raise _bad(self.path, f"a member {name!r} that is not a readable .npy array "
                                  f"({type(e).__name__}: {one_line(e)})") from e
        if dtype.hasobject:
            f.close()
            raise _bad(self.path, "an array of Python objects, which would need "
                                  "unpickling; crnn files hold only numeric arrays and JSON")
        nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
        if info.file_size != offset + nbytes:
            f.close()
            raise _bad(self.path, f"a member {name!r} whose .npy header declares "
                                  f"{dtype} {tuple(shape)} ({nbytes:,} bytes) but whose "
                                  f"archive entry holds {info.file_size - offset:,}")
        return f, tuple(shape), fortran, dtype, nbytes

    def declared(self, name):
        """``(shape, dtype)`` the member's header declares, reading nothing else."""
        f, shape, _, dtype, _ = self._open_member(name)
        f.close()
        return shape, dtype

    def read(self, name, shape=None, kinds="biuf", limit=None):
        """The array ``name``, after checking its declared dtype kind, its ``shape`` if
        given and its size against ``limit`` (bytes) if given: nothing more than it
        declares is decompressed, and a damaged member (CRC) raises."""
        f, declared, fortran, dtype, nbytes = self._open_member(name)
        with f:
            if dtype.kind not in kinds:
                raise _bad(self.path, f"the array {name!r} of dtype {dtype}")
            if shape is not None and declared != tuple(shape):
                raise _bad(self.path, f"the array {name!r} of shape {declared} where "
                                      f"{tuple(shape)} is expected")
            if limit is not None and nbytes > limit:
                raise _bad(self.path, f"the array {name!r} of {nbytes:,} bytes, more than "
                                      f"the {limit:,} it may hold")
            try:
                data = f.read(nbytes)
                extra = f.read(1)            # reaches the end: the CRC is checked
            except Exception as e:  # zipfile.BadZipFile (CRC), zlib.error, EOFError, ...
                raise _bad(self.path, f"a damaged or truncated archive ({type(e).__name__}"
                                      f": {one_line(e)})") from e
        if len(data) != nbytes or extra:
            raise _bad(self.path, f"a member {name!r} whose data is not the size its "
                                  f"header declares")
        a = np.frombuffer(data, dtype=dtype)
        return a.reshape(declared, order="F" if fortran else "C").copy()


def _check_declared(archive, targets, model):
    """Compare the weights the file lists (their declared shapes, read from the members'
    headers only) with ``targets`` ({name: shape}), before anything is built or read:
    the same ``ValueError`` as :func:`crnn.saving.weights.assign` when they differ."""
    names = archive.meta["weights"]
    declared = {}
    for n in names:
        shape, dtype = archive.declared(n)
        if dtype.kind not in "biuf":
            raise _bad(archive.path, f"the weight {n!r} of dtype {dtype}")
        declared[n] = shape
    stand_ins = {n: np.broadcast_to(np.zeros((), np.float32), shape)
                 for n, shape in declared.items()}
    expected = {n: np.broadcast_to(np.zeros((), np.float32), shape)
                for n, shape in targets.items()}
    check_names(model, expected, stand_ins, names, archive.path)


def _read_weights(archive, targets):
    """The weights the file lists, each read after checking it has its target's shape."""
    return {n: archive.read(n, shape=targets[n].shape) for n in archive.meta["weights"]}


def _read(path):
    """``(meta, arrays)`` of a crnn file with every listed member read (for tests and
    tools; the loaders read member by member)."""
    with _Archive(path) as archive:
        arrays = {n: archive.read(n) for n in archive.meta["weights"]}
        return archive.meta, arrays


def _meta(model, kind, names):
    return {"format": FORMAT_NAME, "version": FORMAT_VERSION, "kind": kind,
            "crnn_version": __version__, "model_class": type(model).__name__,
            "model_name": model.name, "weights": list(names)}


# -- the API ------------------------------------------------------------------------------
def save_model(model, path, include_optimizer=True, compressed=False):
    """Write a model to one file: architecture, weights, compile configuration and
    optimizer state (see the module docstring for the format).

    Parameters
    ----------
    model : crnn.Model
        Sequential, functional, or subclassed when its class is registered with
        :func:`crnn.saving.register_serializable` and has ``get_config`` (the file holds
        its registered name, its config and the shapes of its last call's inputs, which
        build its weights again at load time; an unregistered one raises ``ValueError``:
        use :func:`save_weights`).
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
        model_config = subclassed_model_config(model)
    else:
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


def _rebuild(path, model_data, custom_objects):
    """The model a file's architecture describes, with the errors of a damaged one as
    ``ValueError``."""
    try:
        check(isinstance(model_data, dict), "the architecture under 'model'", model_data)
        cls = resolve_class(model_data.get("class_name"), custom_objects,
                            model_data.get("registered_name"))
        return build_model(cls, model_data.get("config"), custom_objects,
                           model_data.get("build_input"))
    except ValueError as e:
        raise ValueError(f"could not rebuild the model saved in {path!r}: "
                         f"{one_line(e)}") from e
    except Exception as e:
        raise ValueError(f"could not rebuild the model saved in {path!r} (a damaged "
                         f"architecture?): {type(e).__name__}: {one_line(e)}") from e


def _expected_shapes(path, model_data, custom_objects):
    """:func:`crnn.saving.architecture.weight_shapes` of the file's architecture, with
    the errors of a damaged one as ``ValueError``."""
    try:
        check(isinstance(model_data, dict), "the architecture under 'model'", model_data)
        return weight_shapes(model_data, custom_objects)
    except ValueError as e:
        raise ValueError(f"could not rebuild the model saved in {path!r}: "
                         f"{one_line(e)}") from e
    except Exception as e:
        raise ValueError(f"could not rebuild the model saved in {path!r} (a damaged "
                         f"architecture?): {type(e).__name__}: {one_line(e)}") from e


class _Named:
    """A stand-in model for :func:`check_names`'s message (the name the file gives)."""

    def __init__(self, name):
        self.name = name
        self.layers = []


def load_model(path, custom_objects=None, compile=True):
    """Read a model written by :func:`save_model`, or a Keras ``.keras`` or ``.h5`` model
    file (chosen by the file's content; :mod:`crnn.saving.keras_format`, needs h5py).

    Parameters
    ----------
    path : str or os.PathLike
    custom_objects : dict of str to class, optional
        Classes the file names that are not crnn's own and not registered with
        :func:`crnn.saving.register_serializable`, by class name (a subclassed model's
        class, a user's layer, regularizer or constraint).
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
        :func:`save_weights`, or naming an unknown class), or its weights are not those
        of the architecture it describes. The weight shapes the architecture gives are
        compared with those the file declares before the model is built, and each member
        is read only after its declared shape and size were checked.
    """
    path = os.fspath(path)
    if is_keras_file(path):                     # a Keras .keras or .h5 file, by content
        return load_keras(path, compile=compile)
    with _Archive(path) as archive:
        meta = archive.meta
        if meta["kind"] != "model":
            raise ValueError(f"expected a model file (written by save) at {path!r}, got a "
                             f"file of weights only (written by save_weights): build the "
                             f"model in code and call model.load_weights(path)")
        model_data = meta.get("model")
        with custom_scope(custom_objects):
            shapes = _expected_shapes(path, model_data, custom_objects)
            if shapes is not None:   # refused here, before a weight is allocated
                stand_in = _Named(meta.get("model_name") if isinstance(
                    meta.get("model_name"), str) else "model")
                _check_declared(archive, shapes, stand_in)
            model, layers = _rebuild(path, model_data, custom_objects)
            targets = named_weights(layers)
            try:
                restore_rngs(layers, meta.get("rng") or {})
            except ValueError as e:
                raise ValueError(f"could not rebuild the model saved in {path!r}: "
                                 f"{one_line(e)}") from e
        _check_declared(archive, {n: w.shape for n, w in targets.items()}, model)
        assign(model, targets, _read_weights(archive, targets), meta["weights"], path)
        if compile and meta.get("compile"):
            try:
                state = _optimizer_state(archive, targets)
                restore_compile(model, meta["compile"], state)
            except Exception as e:
                raise ValueError(f"could not compile the model saved in {path!r} as it "
                                 f"was saved ({type(e).__name__}: {one_line(e)}); "
                                 f"load_model(path, compile=False) loads it "
                                 f"uncompiled") from e
    return model


def _optimizer_state(archive, targets):
    """The optimizer's state arrays the file lists, each no larger than the largest
    weight (a slot has its weight's shape) and at most a few per weight."""
    names = archive.meta.get("optimizer_state") or []
    check(isinstance(names, list) and all(isinstance(n, str) for n in names),
          "'optimizer_state' as a list of names", names)
    check(len(names) <= 8 * len(targets) + 8,
          f"at most {8 * len(targets) + 8} optimizer state arrays", len(names))
    limit = max([w.nbytes for w in targets.values()] + [0]) + 8 * SMALL_STATE
    state = {}
    for n in names:
        check(archive.has(OPTIMIZER_PREFIX + n), f"an array {OPTIMIZER_PREFIX + n!r}", None)
        state[n] = archive.read(OPTIMIZER_PREFIX + n, limit=limit)
    return state


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
    targets = named_weights(model.layers)
    with _Archive(path) as archive:
        _check_declared(archive, {n: w.shape for n, w in targets.items()}, model)
        assign(model, targets, _read_weights(archive, targets), archive.meta["weights"],
               path)
