"""Which implementation of the kernels runs: the Cython one or the NumPy reference.

``crnn.set_backend("reference")`` switches every layer whose ``backend`` is ``"auto"``
(the default) to the NumPy specification in :mod:`crnn.reference`, to debug or to learn;
``crnn.set_backend("cython")`` switches back. A layer built with ``backend="cython"`` or
``backend="reference"`` keeps that choice whatever the global setting.
"""
import importlib

BACKENDS = ("cython", "reference")
_default = "cython"

# The kernel module of each backend, for each kernel family.
_MODULES = {
    ("cython", "simple_rnn"): "crnn._simple_rnn",
    ("reference", "simple_rnn"): "crnn.reference.simple_rnn",
    ("cython", "lstm"): "crnn._lstm",
    ("reference", "lstm"): "crnn.reference.lstm",
    ("cython", "gru"): "crnn._gru",
    ("reference", "gru"): "crnn.reference.gru",
    ("cython", "embedding"): "crnn._embedding",
    ("reference", "embedding"): "crnn.reference.embedding",
    ("cython", "adam"): "crnn._optim",
    ("reference", "adam"): "crnn.reference.optim",
}


def set_backend(name):
    """Set the backend of every layer created with ``backend="auto"``."""
    global _default
    if name not in BACKENDS:
        raise ValueError(f"expected backend to be one of {BACKENDS}, got {name!r}")
    _default = name


def get_backend():
    """The backend that ``backend="auto"`` currently means."""
    return _default


def check(name):
    """Validate a layer's ``backend`` argument."""
    if name != "auto" and name not in BACKENDS:
        raise ValueError(f"expected backend to be 'auto' or one of {BACKENDS}, got {name!r}")
    return name


_loaded = {}   # (backend, family) -> module, imported once (kernels runs every call)


def kernels(family, backend="auto"):
    """The module holding ``<family>_forward`` / ``<family>_backward`` for a backend."""
    name = _default if backend == "auto" else backend
    module = _loaded.get((name, family))
    if module is None:
        try:
            module = importlib.import_module(_MODULES[name, family])
        except ImportError as e:  # only the compiled modules can fail to import
            raise ImportError(
                f"crnn's compiled kernels are missing ({e}); reinstall with 'pip install "
                f".' (needs a C compiler), or use crnn.set_backend('reference')") from e
        _loaded[name, family] = module
    return module
