"""The weights of a model by name (``layers/<i>/<name>``, nested layers adding their
path), the state of every random generator inside it, and putting weights read from a
file back into a model."""
import numpy as np

from crnn.layers.base import Layer, architecture
from crnn.saving.codec import check, decode, encode

__all__ = ["WEIGHTS_PREFIX", "assign", "check_names", "check_numeric", "named_weights", "restore_rngs",
           "rng_states", "unbuilt_layers", "walk"]

WEIGHTS_PREFIX = "layers/"


def _children(layer):
    """``(path, sublayer)`` for the layers directly inside ``layer``."""
    if architecture(layer) is not None:
        return [(f"layers/{j}/", sub) for j, sub in enumerate(layer.layers)]
    out = []
    for attr, value in vars(layer).items():
        if attr in ("params", "grads") or attr.startswith("_"):
            continue
        if isinstance(value, Layer):
            out.append((f"{attr}/", value))
        elif isinstance(value, (list, tuple)):
            out += [(f"{attr}/{j}/", v) for j, v in enumerate(value)
                    if isinstance(v, Layer)]
    return out


def walk(layers):
    """``(path, layer)`` for every layer, nested ones included, each once: the paths that
    name weights (``layers/<i>/``, ``layers/<i>/cell/``, ...)."""
    seen = set()

    def visit(path, layer):
        if id(layer) in seen:
            return
        seen.add(id(layer))
        yield path, layer
        for sub_path, sub in _children(layer):
            yield from visit(path + sub_path, sub)

    for i, layer in enumerate(layers):
        yield from visit(f"{WEIGHTS_PREFIX}{i}/", layer)


def named_weights(layers):
    """``{name: array}`` for every weight (the arrays themselves, in Keras's order): a
    layer's own ``params`` under its path; an array shared by two layers (an RNN layer
    and its cell) keeps its first name."""
    named, seen = {}, set()
    for path, layer in walk(layers):
        for name, w in layer.params.items():
            if id(w) not in seen:
                seen.add(id(w))
                named[path + name] = w
    # a layer may hold weights its params and sublayers do not show
    for i, layer in enumerate(layers):
        for k, w in enumerate(layer.weights):
            if id(w) not in seen:
                seen.add(id(w))
                named[f"{WEIGHTS_PREFIX}{i}/weight_{k}"] = w
    return named


def unbuilt_layers(layers):
    return [layer.name for _, layer in walk(layers)
            if not getattr(layer, "built", True)]


def rng_states(layers):
    """The state of each layer's random generator (dropout masks, initialisers), so that
    a loaded model draws what the saved one would have drawn next."""
    states, seen = {}, set()
    for path, layer in walk(layers):
        rng = layer.__dict__.get("_rng")
        if isinstance(rng, np.random.Generator) and id(rng) not in seen:
            seen.add(id(rng))
            states[path] = encode(rng.bit_generator.state, f"the generator of {path}")
    return states


def restore_rngs(layers, states):
    check(isinstance(states, dict), "'rng' as an object", states)
    by_path = dict(walk(layers))
    for path, state in states.items():
        layer = by_path.get(path)
        rng = None if layer is None else layer.__dict__.get("_rng")
        if isinstance(rng, np.random.Generator):
            try:
                rng.bit_generator.state = decode(state)
            except (TypeError, ValueError, KeyError) as e:
                kind = type(rng.bit_generator).__name__
                raise ValueError(f"expected the state of a {kind} generator for {path}, "
                                 f"got {state!r:.80}") from e


def check_numeric(name, a):
    if not isinstance(a, np.ndarray) or a.dtype.kind not in "biuf":
        raise ValueError(f"expected {name} to be a numeric array, got "
                         f"{getattr(a, 'dtype', type(a).__name__)}")


def assign(model, targets, arrays, names, path):
    """Check every array against the model's weights by name and shape, then copy them in
    (all or nothing)."""
    check_names(model, targets, arrays, names, path)
    for n in names:
        w = targets[n]
        w[...] = arrays[n].astype(w.dtype, copy=False)


def check_names(model, targets, arrays, names, path):
    """Raise ``ValueError`` listing the weights missing from the file, those the model
    lacks and those of another shape, unless ``arrays`` (anything with ``shape`` and
    ``dtype``) match ``targets`` by name and shape."""
    missing = [n for n in targets if n not in names]
    extra = [n for n in names if n not in targets]
    differ = []
    for n in names:
        if n in targets:
            a = arrays[n]
            if a.shape != targets[n].shape or a.dtype.kind not in "biuf":
                differ.append(f"{n} {targets[n].shape} vs {a.shape}"
                              + ("" if a.dtype.kind in "biuf" else f" {a.dtype}"))
    if missing or extra or differ:
        def listed(items):
            shown = ", ".join(items[:8])
            return shown + (f" and {len(items) - 8} more" if len(items) > 8 else "")
        parts = []
        if missing:
            parts.append("missing from the file: " + listed(
                [f"{n} {targets[n].shape}" for n in missing]))
        if extra:
            parts.append("not in the model: " + listed(
                [f"{n} {arrays[n].shape}" for n in extra]))
        if differ:
            parts.append("different shapes (model vs file): " + listed(differ))
        unbuilt = unbuilt_layers(model.layers)
        hint = (f" (not built yet: {', '.join(unbuilt[:8])}: call the model on a batch "
                f"before load_weights)" if unbuilt else "")
        raise ValueError(f"expected the weights in {path!r} to match the model "
                         f"{model.name!r}; " + "; ".join(parts) + hint)
