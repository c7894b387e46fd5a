"""The one registry of crnn's serializable classes, by kind and class name.

Every crnn class that a saved file or a config names is registered here when it is
defined: layers (kind ``"layer"``: every crnn subclass of
:class:`crnn.engine.Operation`), ops (``"op"``: of :class:`crnn.engine.Op`, written with
``"module": "crnn.ops"``), losses (``"loss"``), optimizers (``"optimizer"``) and
learning-rate schedules (``"schedule"``). Each is written as ``{"class_name": ...,
"config": ...}`` (:func:`serialize`) and read back by looking its name up here, so that
nothing a file names is imported. Only crnn's own classes register: a user's class of the
same name must not replace one of them (theirs come back through ``custom_objects``, or
by the name :func:`register_serializable` gives them, ``"package>Name"``, written in the
file as ``registered_name`` beside ``class_name``, as Keras does).
This module imports nothing from crnn: everything above registers into it.
"""
import threading

__all__ = ["custom_object_scope", "current_custom_objects", "deserialize", "is_crnn_class",
           "lookup", "lookup_user", "names", "register", "register_serializable",
           "registered_name", "resolve", "serializable", "serialize"]


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
    (``type(obj).from_config(config)`` rebuilds it); a class registered by the user adds
    its ``registered_name``."""
    data = {"class_name": type(obj).__name__, "config": obj.get_config()}
    name = registered_name(type(obj))
    if name is not None:
        data["registered_name"] = name
    return data


# -- the user's classes -------------------------------------------------------------------
_user = {}   # "package>Name" -> class


def register_serializable(package="Custom", name=None):
    """A class decorator (Keras's ``register_keras_serializable``): the class can be
    saved and loaded by the name ``"package>name"`` (``name`` defaults to the class
    name) without ``custom_objects``. The class must have ``get_config`` (and a
    ``from_config``, inherited from crnn's bases)."""
    if not isinstance(package, str) or not package or ">" in package:
        raise ValueError(f"expected package to be a non-empty string without '>', got "
                         f"{package!r}")
    if name is not None and (not isinstance(name, str) or not name or ">" in name):
        raise ValueError(f"expected name to be None or a non-empty string without '>', "
                         f"got {name!r}")

    def decorate(cls):
        if not isinstance(cls, type):
            raise ValueError(f"expected a class to register, got {cls!r:.60}")
        if not callable(getattr(cls, "get_config", None)):
            raise ValueError(f"expected {cls.__name__} to have get_config to be "
                             f"serializable, got a class without it")
        key = f"{package}>{name or cls.__name__}"
        _user[key] = cls
        cls._registered_name = key     # set on this class only (read from __dict__)
        return cls
    return decorate


def registered_name(cls):
    """The ``"package>Name"`` the user registered ``cls`` under, or None."""
    return cls.__dict__.get("_registered_name") if isinstance(cls, type) else None


def lookup_user(key):
    """The user's class registered as ``key`` (``"package>Name"``), or None."""
    return _user.get(key) if isinstance(key, str) else None


# -- custom objects passed to a load ------------------------------------------------------
_local = threading.local()


class custom_object_scope:
    """``with custom_object_scope({"Name": cls}):`` makes the user's classes visible to
    every deserialization inside (Keras's ``CustomObjectScope``): what
    :func:`crnn.load_model`'s ``custom_objects`` opens."""

    def __init__(self, custom_objects):
        if custom_objects is not None and not isinstance(custom_objects, dict):
            raise ValueError(f"expected custom_objects to be a dict of name to class, got "
                             f"{type(custom_objects).__name__}")
        self.custom_objects = custom_objects

    def __enter__(self):
        _local.__dict__.setdefault("stack", []).append(self.custom_objects)
        return self

    def __exit__(self, *exc):
        _local.stack.pop()
        return False


def current_custom_objects():
    """The custom objects of every open :class:`custom_object_scope`, merged (None when
    none)."""
    merged = {}
    for d in getattr(_local, "stack", []):
        merged.update(d or {})
    return merged or None


def resolve(data, kind, custom_objects=None):
    """The class ``{"class_name", "registered_name"?}`` names: from ``custom_objects``
    (given, or of the open scopes) by class name, then crnn's own of that kind, then the
    user's registered classes; None when none."""
    name = data.get("class_name")
    custom = dict(current_custom_objects() or {})
    custom.update(custom_objects or {})
    if isinstance(name, str) and name in custom:
        return custom[name]
    cls = lookup(name, kind) if isinstance(name, str) else None
    if cls is not None:
        return cls
    return lookup_user(data.get("registered_name"))


def deserialize(config, kind, custom_objects=None):
    """Rebuild an object of ``kind`` from :func:`serialize`'s ``{"class_name", "config"}``
    (the class found by :func:`resolve`); ``ValueError`` naming the kind otherwise."""
    if not (isinstance(config, dict) and isinstance(config.get("class_name"), str)
            and isinstance(config.get("config", {}), dict)):
        raise ValueError(f"expected a {kind} as {{'class_name': ..., 'config': "
                         f"{{...}}}}, got {config!r:.80}")
    cls = resolve(config, kind, custom_objects)
    if cls is None or not hasattr(cls, "from_config"):
        raise ValueError(f"unknown {kind} {config['class_name']!r}: expected one of "
                         f"{names(kind)}, a class registered with "
                         f"crnn.saving.register_serializable, or one in custom_objects")
    return cls.from_config(dict(config.get("config", {})))
