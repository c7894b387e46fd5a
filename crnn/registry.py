"""The one registry of crnn's serializable classes, by class name.

Every crnn class that a saved file names (a layer, an op, a loss, an optimizer) is
registered here under its class name when it is defined, so that :mod:`crnn.saving` turns
a name read from a file back into the class without importing anything the file names.
Only crnn's own classes register: a user's class of the same name must not replace one of
them (theirs come back through ``custom_objects``). This module imports nothing from
crnn: everything above registers into it.
"""


def is_crnn_class(cls):
    """Whether ``cls`` is defined inside the crnn package."""
    module = getattr(cls, "__module__", "") or ""
    return module == "crnn" or module.startswith("crnn.")


_classes = {}


def register(cls):
    """Register ``cls`` under its class name if it is one of crnn's own; returns it (so
    that it serves as a class decorator)."""
    if is_crnn_class(cls):
        _classes[cls.__name__] = cls
    return cls


def lookup(name):
    """The registered class named ``name``, or None."""
    return _classes.get(name)


def names():
    """The registered class names, sorted."""
    return sorted(_classes)
