"""How crnn differentiates any composition of layers: a tape of layer calls.

Every layer (and every op in :mod:`crnn.ops`) is a *primitive*: it computes its outputs
from NumPy arrays and keeps a ``cache``, and its ``_backward(cache, d_outputs)`` returns
the gradients of its inputs and of its weights. While a :class:`GradientTape` records,
each call of a primitive appends one record ``(layer, cache, inputs, outputs)`` and
returns its outputs wrapped as :class:`Tensor` objects, so that later calls can name them
as their inputs. ``tape.gradient`` then replays the records in reverse: each record gets
the gradients that reached its outputs, and hands on the gradients of its inputs, summed
where one tensor fed several calls. A layer called several times (a cell in a Python
loop over time steps, a layer shared by two branches) has one record, with its own cache,
per call, and its weight gradients add up over the calls: backpropagation through time
across the user's own loop.

The three ways to build a model use this one mechanism. A subclassed model's ``call`` is
plain Python that calls layers; a :class:`crnn.Sequential` calls its layers in order; a
functional :class:`crnn.Model` is a graph of :class:`Node` objects, recorded by calling
layers on :class:`SymbolicTensor` placeholders (from :func:`crnn.Input`), and replayed
by calling the same layers on arrays.
"""
import contextlib
import threading

import numpy as np

from crnn import cores

_local = threading.local()


def _tapes():
    tapes = getattr(_local, "tapes", None)
    if tapes is None:
        tapes = _local.tapes = []
    return tapes


def recording():
    """Whether a :class:`GradientTape` is recording in this thread."""
    return bool(_tapes())


def grad_enabled():
    """Whether layer calls in this thread keep what a backward pass needs (False inside
    :class:`no_grad`)."""
    return getattr(_local, "no_grad", 0) == 0


class no_grad:
    """Run layers without keeping anything for a backward pass (``torch.no_grad``; what
    ``predict`` and ``evaluate`` use).

    Inside, layer calls record nothing on any :class:`GradientTape` (the tapes of this
    thread are paused), keep no cache for ``backward``, and the recurrent layers run
    their inference kernels, which store no per-step record (e.g. the LSTM's gates and
    cell states: 39 MB per call at batch 64, 100 steps, 256 units). The outputs are a
    normal call's: bit for bit for SimpleRNN and the LSTM; the float32 GRU's products run
    on the packed GEMM here from a size on (``crnn._gru.gru_inference``), whose
    summation order differs from OpenBLAS's in the last bits. ``layer.backward`` after
    a call made inside raises.

    >>> with crnn.no_grad():
    ...     y = model(x)
    """

    def __enter__(self):
        _local.no_grad = getattr(_local, "no_grad", 0) + 1
        self._paused = paused_tapes()
        self._paused.__enter__()
        return self

    def __exit__(self, *exc):
        _local.no_grad -= 1
        self._paused.__exit__(*exc)
        return False


@contextlib.contextmanager
def paused_tapes():
    """Run with every tape of this thread paused (they record nothing inside); a tape
    opened inside records as usual."""
    tapes = _tapes()
    paused = tapes[:]
    tapes.clear()
    try:
        yield
    finally:
        tapes[:] = paused + tapes


# -- nested structures of tensors ---------------------------------------------------------
def flatten(structure):
    """The leaves of nested lists/tuples, in order (anything else is a leaf)."""
    if isinstance(structure, (list, tuple)):
        return [leaf for item in structure for leaf in flatten(item)]
    return [structure]


def pack_like(structure, leaves):
    """Rebuild ``structure`` with the leaves taken in order from ``leaves``."""
    it = iter(leaves)

    def build(s):
        if isinstance(s, (list, tuple)):
            return type(s)(build(item) for item in s)
        return next(it)
    return build(structure)


# -- tensors ------------------------------------------------------------------------------
class _Operators:
    """Arithmetic, slicing and NumPy conversion, shared by both tensor types; the
    arithmetic goes through :mod:`crnn.ops`, so it is recorded and differentiable."""

    __slots__ = ()
    __array_priority__ = 100.0  # ndarray + tensor calls tensor.__radd__

    @property
    def ndim(self):
        return len(self.shape)

    def __add__(self, other):
        from crnn import ops
        return ops.add(self, other)

    def __radd__(self, other):
        from crnn import ops
        return ops.add(other, self)

    def __sub__(self, other):
        from crnn import ops
        return ops.subtract(self, other)

    def __rsub__(self, other):
        from crnn import ops
        return ops.subtract(other, self)

    def __mul__(self, other):
        from crnn import ops
        return ops.multiply(self, other)

    def __rmul__(self, other):
        from crnn import ops
        return ops.multiply(other, self)

    def __truediv__(self, other):
        from crnn import ops
        return ops.divide(self, other)

    def __rtruediv__(self, other):
        from crnn import ops
        return ops.divide(other, self)

    def __neg__(self):
        from crnn import ops
        return ops.negative(self)

    def __matmul__(self, other):
        from crnn import ops
        return ops.matmul(self, other)

    def __rmatmul__(self, other):
        from crnn import ops
        return ops.matmul(other, self)

    def __getitem__(self, key):
        from crnn import ops
        return ops.getitem(self, key)

    def __len__(self):
        if not self.shape or self.shape[0] is None:
            raise TypeError(f"len() of a tensor of shape {self.shape}")
        return self.shape[0]

    def __iter__(self):
        # Iterating would silently unstack along axis 0 without recording it.
        raise TypeError("iterate over crnn.ops.unstack(x, axis=...) instead of the tensor")

    __hash__ = object.__hash__  # tensors are keys by identity; == is not overloaded


class Tensor(_Operators):
    """An array computed while a tape records, so that the tape can name it.

    ``value`` is the NumPy array; ``np.asarray(t)`` and ``t.numpy()`` return it. Tensors
    support ``+ - * / @``, unary ``-`` and indexing (``x[:, t]``), all differentiable.
    """

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    @property
    def shape(self):
        return self.value.shape

    @property
    def dtype(self):
        return self.value.dtype

    @property
    def size(self):
        return self.value.size

    def numpy(self):
        return self.value

    def __array__(self, dtype=None, copy=None):
        if copy:
            return np.array(self.value, dtype=dtype, copy=True)
        return self.value if dtype is None else self.value.astype(dtype, copy=False)

    def __float__(self):
        return float(self.value)

    def __repr__(self):
        return f"Tensor({self.value!r})"


def value_of(a):
    """The array behind a :class:`Tensor`; anything else unchanged."""
    return a.value if isinstance(a, Tensor) else a


def values_of(structure):
    """:func:`value_of` over a nested structure."""
    if isinstance(structure, (list, tuple)):
        return type(structure)(values_of(s) for s in structure)
    return value_of(structure)


# -- the tape -----------------------------------------------------------------------------
def record(layer, cache, inputs, outputs):
    """Note one call of a primitive on every recording tape.

    ``inputs`` are what the call read (Tensors, arrays or None), ``outputs`` the arrays it
    computed. Returns the outputs as Tensors while a tape records, else unchanged.
    """
    tapes = _tapes()
    if not tapes or not grad_enabled():   # a tape opened inside no_grad records nothing
        return outputs
    wrapped = [None if o is None else Tensor(o) for o in outputs]
    for tape in tapes:
        tape.records.append((layer, cache, list(inputs), wrapped))
    return wrapped


class GradientTape:
    """Records layer calls for :meth:`gradient` (as ``tf.GradientTape``).

    Examples
    --------
    >>> with crnn.GradientTape() as tape:
    ...     y = model(x, training=True)
    ...     loss = crnn.ops.mean(crnn.ops.square(y - target))
    >>> grads = tape.gradient(loss, model.trainable_weights)
    """

    def __init__(self):
        self.records = []

    def __enter__(self):
        _tapes().append(self)
        return self

    def __exit__(self, *exc):
        tapes = _tapes()
        for i in range(len(tapes) - 1, -1, -1):
            if tapes[i] is self:
                del tapes[i]
                break
        return False

    def watch(self, array):
        """``array`` as a Tensor, so that :meth:`gradient` can return its gradient."""
        if isinstance(array, Tensor):
            return array
        return Tensor(np.asarray(array))

    @cores.computing()
    def gradient(self, target, sources=None, output_gradient=None):
        """Gradients of ``target`` with respect to ``sources``.

        Parameters
        ----------
        target : Tensor or list of Tensor
            Usually a scalar loss. Without ``output_gradient`` its gradient is ones.
        sources : list, optional
            Weight arrays (as in ``model.trainable_weights``) and/or Tensors; the result
            has one entry per source, None where no gradient reached it.
        output_gradient : array or list of arrays, optional
            The gradient arriving at ``target`` (one per target).

        Every layer on the tape also gets its weight gradients, summed over its calls, in
        its ``grads`` (so ``layer.get_gradients()`` works after this).
        """
        targets = target if isinstance(target, (list, tuple)) else [target]
        if output_gradient is None:
            seeds = [None] * len(targets)
        else:
            seeds = (output_gradient if isinstance(output_gradient, (list, tuple))
                     else [output_gradient])
            if len(seeds) != len(targets):
                raise ValueError(f"expected {len(targets)} output gradients (one per "
                                 f"target), got {len(seeds)}")
        grads = {}
        for t, g in zip(targets, seeds):
            if not isinstance(t, Tensor):
                raise ValueError(f"expected target to be a Tensor computed under this "
                                 f"tape, got {type(t).__name__}")
            g = np.ones_like(t.value) if g is None else np.asarray(g, dtype=t.dtype)
            if g.shape != t.shape:
                raise ValueError(f"expected an output gradient of shape {t.shape}, got "
                                 f"{g.shape}")
            _accumulate(grads, id(t), g)
        weight_grads = {}   # id(layer) -> (layer, {name: gradient})
        for layer, cache, inputs, outputs in reversed(self.records):
            d_outputs = [None if o is None else grads.get(id(o)) for o in outputs]
            if all(d is None for d in d_outputs):
                continue
            d_inputs, d_params = layer._backward(cache, d_outputs)
            for a, d in zip(inputs, d_inputs):
                if d is not None and isinstance(a, Tensor):
                    _accumulate(grads, id(a), d)
            if d_params:
                _, by_name = weight_grads.setdefault(id(layer), (layer, {}))
                for name, d in d_params.items():
                    _accumulate(by_name, name, d)
        by_array = {}
        for layer, by_name in weight_grads.values():
            layer.grads.clear()  # in place: a wrapping layer may share the dict
            for name, p in layer.params.items():
                d = by_name.get(name)
                layer.grads[name] = np.zeros_like(p) if d is None else d
                by_array[id(p)] = layer.grads[name]
        if sources is None:
            return None
        single = not isinstance(sources, (list, tuple))
        out = []
        for s in ([sources] if single else sources):
            out.append(grads.get(id(s)) if isinstance(s, Tensor) else by_array.get(id(s)))
        return out[0] if single else out


def _accumulate(grads, key, g):
    # Never add in place: the stored array may be another record's cache or output.
    prev = grads.get(key)
    grads[key] = g if prev is None else prev + g


# -- symbolic tensors and the functional graph --------------------------------------------
class SymbolicTensor(_Operators):
    """A placeholder with a shape (batch axis first, ``None`` where unknown) and a dtype:
    what :func:`crnn.Input` returns and what calling a layer on one returns. It records
    the call as a :class:`Node` of a functional graph instead of computing anything."""

    __slots__ = ("shape", "dtype", "node", "index", "name")

    def __init__(self, shape, dtype, node=None, index=0, name=None):
        self.shape = tuple(None if d is None else int(d) for d in shape)
        self.dtype = np.dtype(dtype)
        self.node = node
        self.index = index
        self.name = name

    def __repr__(self):
        return (f"<SymbolicTensor shape={self.shape} dtype={self.dtype.name}"
                + (f" name={self.name!r}" if self.name else "") + ">")


class Node:
    """One call of a layer in a functional graph: the layer, the arguments it was called
    with (SymbolicTensors where tensors go) and the SymbolicTensors it returned."""

    def __init__(self, layer, args, kwargs):
        self.layer = layer
        self.args = args
        self.kwargs = kwargs
        self.outputs = []

    def inputs(self):
        """The SymbolicTensors this call read."""
        return [a for a in flatten([list(self.args), list(self.kwargs.values())])
                if isinstance(a, SymbolicTensor)]


def is_symbolic(structure):
    if isinstance(structure, dict):
        return any(is_symbolic(v) for v in structure.values())
    return any(isinstance(a, SymbolicTensor) for a in flatten(structure))


def symbolic_call(layer, args, kwargs):
    """Record ``layer(*args, **kwargs)`` as a graph node; return its output placeholders.

    The layer says what it would return through ``compute_output_spec`` (the same
    arguments, answering with SymbolicTensors that carry only shape and dtype).
    """
    specs = layer.compute_output_spec(*args, **kwargs)
    node = Node(layer, args, kwargs)
    leaves = flatten(specs)
    outs = [SymbolicTensor(s.shape, s.dtype, node, i) for i, s in enumerate(leaves)]
    # An output listed twice (a cell's output is also its new h) stays one tensor.
    seen = {}
    for i, s in enumerate(leaves):
        if id(s) in seen:
            outs[i] = outs[seen[id(s)]]
        else:
            seen[id(s)] = i
    node.outputs = outs
    return pack_like(specs, outs)


def substitute(structure, values):
    """``structure`` (a symbolic tensor, or lists/tuples of them and other objects) with
    every :class:`SymbolicTensor` replaced by ``values[id(tensor)]``: how a functional
    model's graph is evaluated, node by node."""
    if isinstance(structure, SymbolicTensor):
        return values[id(structure)]
    if isinstance(structure, (list, tuple)):
        return type(structure)(substitute(s, values) for s in structure)
    return structure


def topological_nodes(outputs):
    """The nodes that ``outputs`` depend on, each after the nodes it reads from."""
    order, state = [], {}

    def visit(node):
        mark = state.get(id(node))
        if mark == "done":
            return
        if mark == "visiting":
            raise ValueError("the layer graph has a cycle")
        state[id(node)] = "visiting"
        for t in node.inputs():
            if t.node is not None:
                visit(t.node)
        state[id(node)] = "done"
        order.append(node)

    for t in flatten(outputs):
        if not isinstance(t, SymbolicTensor):
            raise ValueError(f"expected the model's outputs to be what calling layers on "
                             f"crnn.Input placeholders returned, got {type(t).__name__}")
        if t.node is not None:
            visit(t.node)
    return order
