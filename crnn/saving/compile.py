"""The compile configuration a model file keeps (optimizer, losses, metrics, loss
weights, as ``model.get_compile_config()`` gives them or as ``compile`` received them) and
the optimizer's state, so that training resumes identically after loading."""
import numpy as np

from crnn import losses, metrics, optimizers
from crnn.saving.architecture import decode, encode
from crnn.saving.codec import check
from crnn.saving.weights import check_numeric

__all__ = ["compile_config", "restore_compile"]


def compile_config(model):
    """``(config, optimizer state)`` of a compiled model, ``(None, None)`` otherwise.

    The arguments come from ``model.get_compile_config()`` (None when not compiled). The
    optimizer is stored by :func:`crnn.optimizers.serialize`, each loss by name or
    :func:`crnn.losses.serialize`, each metric by name; anything else (a loss or metric
    that is a Python function) raises ``ValueError``.
    """
    raw = model.get_compile_config()
    if raw is None:
        return None, None
    args = {}
    for key, value in raw.items():
        if key == "optimizer" and not isinstance(value, dict):
            value = optimizers.serialize(optimizers.get(value))
        elif key == "loss":
            value = _map_structure(_loss_data, value)
        elif key == "metrics":
            value = _map_structure(_metric_data, value)
        args[key] = encode(value, f"the compile argument {key!r}")
    state = None
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and callable(getattr(optimizer, "get_state", None)):
        state = {}
        for k, v in optimizer.get_state().items():
            a = np.asarray(v)
            check_numeric(f"the optimizer state {k!r}", a)
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


def restore_compile(model, config, state):
    check(isinstance(config, dict) and isinstance(config.get("args"), dict),
          "the compile configuration as {'args': {...}}", config)
    args = decode(config["args"])
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
