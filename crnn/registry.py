"""The one registry of crnn's serializable classes, by kind and class name.

Every crnn class that a saved file or a config names is registered here when it is
defined: layers (kind ``"layer"``: every crnn subclass of
:class:`crnn.engine.Operation`), ops (``"op"``: of :class:`crnn.engine.Op`, written with
``"module": "crnn.ops"``), losses (``"loss"``), optimizers (``"optimizer"``) and
learning-rate schedules (``"schedule"``). Each is written as ``{"class_name": ...,
"config": ...}`` (:func:`serialize`) and read back by looking its name up here, so that
nothing a file names is imported. Only crnn's own classes register: a user's class of the
same name must not replace one of them (theirs come back through ``custom_objects``).
This module imports nothing from crnn: everything above registers into it.
"""

__all__ = ["is_crnn_class", "lookup", "names", "register", "serializable", "serialize"]


def is_crnn_class(cls):
    """Whether ``cls`` is defined inside the crnn package."""
    module = getattr(cls, "__module__", "") or ""
    return module == "crnn" or module.startswith("crnn.")


_classes = {}   # kind -> {class name: class}


def register(cls, kind="layer"):
    """Register ``cls`` under its class name among the ``kind`` if it is one of crnn's
    own; returns it."""
    if is_crnn_class(cls):
        _classes.setdefault(kind, {})[cls.__name__] = cls
    return cls


def serializable(kind):
    """A class decorator: :func:`register` the class among the ``kind``."""
    def decorate(cls):
        return register(cls, kind)
    return decorate


def lookup(name, kind="layer"):
    """The registered class of that kind named ``name``, or None."""
    return _classes.get(kind, {}).get(name)


def names(kind="layer"):
    """The registered class names of that kind, sorted."""
    return sorted(_classes.get(kind, {}))


def serialize(obj):
    """``{"class_name": ..., "config": ...}``: how every registered kind is written
    (``type(obj).from_config(config)`` rebuilds it)."""
    return {"class_name": type(obj).__name__, "config": obj.get_config()}
