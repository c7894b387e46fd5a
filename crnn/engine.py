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

Ops and layers alike are :class:`Operation` objects (defined here, with the primitives
behind the tensors' operators ``+ - * / @``, unary ``-`` and indexing): the calling
convention and the weights by name that the tape and a functional graph rely on.
:mod:`crnn.ops` and :mod:`crnn.layers` build on it; this module imports neither.

The three ways to build a model use this one mechanism. A subclassed model's ``call`` is
plain Python that calls layers; a :class:`crnn.Sequential` calls its layers in order; a
functional :class:`crnn.Model` is a graph of :class:`Node` objects, recorded by calling
layers on :class:`SymbolicTensor` placeholders (from :func:`crnn.Input`), and replayed
by calling the same layers on arrays.
"""
import contextlib
import functools
import itertools
import re
import threading
from collections import defaultdict

import numpy as np

from crnn import cores, registry

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
    arithmetic goes through the primitives at the end of this module (the ops
    :mod:`crnn.ops` exports as ``add``, ``multiply``, ...), so it is recorded and
    differentiable."""

    __slots__ = ()
    __array_priority__ = 100.0  # ndarray + tensor calls tensor.__radd__

    @property
    def ndim(self):
        return len(self.shape)

    def __add__(self, other):
        return Add()._apply([self, other])

    def __radd__(self, other):
        return Add()._apply([other, self])

    def __sub__(self, other):
        return Subtract()._apply([self, other])

    def __rsub__(self, other):
        return Subtract()._apply([other, self])

    def __mul__(self, other):
        return Multiply()._apply([self, other])

    def __rmul__(self, other):
        return Multiply()._apply([other, self])

    def __truediv__(self, other):
        return Divide()._apply([self, other])

    def __rtruediv__(self, other):
        return Divide()._apply([other, self])

    def __neg__(self):
        return Negative()._apply([self])

    def __matmul__(self, other):
        return MatMul()._apply([self, other])

    def __rmatmul__(self, other):
        return MatMul()._apply([other, self])

    def __getitem__(self, key):
        return GetItem(key)._apply([self])

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


@cores.computing()
def run_concurrently(calls):
    """Run independent primitive calls at once (:func:`crnn.cores.concurrently`) and
    record them as :meth:`Operation._run` does, as a group whose backward passes run at
    once too.

    ``calls`` is a list of ``(operation, inputs, options)``, what each call would pass
    to ``_run``; no call may read another's outputs. Returns each call's flat outputs
    (Tensors while a tape records), in order.
    """
    no_grad_depth = getattr(_local, "no_grad", 0)

    def task(operation, inputs, options):
        def run():
            saved = getattr(_local, "no_grad", 0)
            _local.no_grad = no_grad_depth   # the caller's no_grad in this thread too
            try:
                return operation._forward([value_of(a) for a in inputs], **options)
            finally:
                _local.no_grad = saved
        return run
    results = cores.concurrently(*[task(*call) for call in calls])
    tapes = _tapes() if grad_enabled() else []
    firsts = [len(tape.records) for tape in tapes]
    outputs = [operation._note_call(cache, inputs, outs)
               for (operation, inputs, _), (outs, cache) in zip(calls, results)]
    for tape, first in zip(tapes, firsts):
        if len(tape.records) - first > 1:
            tape.groups[len(tape.records) - 1] = first
    return outputs


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
        # calls that ran at once (run_concurrently): index of a group's last record ->
        # index of its first; their backward passes run at once too
        self.groups = {}

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
        its ``grads`` (so ``layer.get_gradients()`` works after this). A weight array that
        ops read directly (``x @ self.params["kernel"]`` in a user's layer or cell) gets
        the gradient summed over every op that read that array object (not a copy or a
        view of it, such as ``kernel.T``).
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
        # id(layer.params) -> (layer, params, {name: gradient}): keyed by the weights,
        # so that two operations showing one dict (an RNN layer and its cell, a weight
        # read onto the tape by crnn.regularizers) add into one gradient per weight
        weight_grads = {}
        # arrays read directly by an op (a user's layer or cell computing with its weight
        # arrays through crnn.ops): id -> gradient; the records keep the arrays alive
        array_grads = {}
        last = len(self.records) - 1
        while last >= 0:
            # one record, or a group that ran at once (none reads another's outputs)
            first = self.groups.get(last, last)
            calls = []
            for layer, cache, inputs, outputs in reversed(self.records[first:last + 1]):
                d_outputs = [None if o is None else grads.get(id(o)) for o in outputs]
                if any(d is not None for d in d_outputs):
                    calls.append((layer, cache, inputs, d_outputs))
            last = first - 1
            results = cores.concurrently(*[
                functools.partial(layer._backward, cache, d_outputs)
                for layer, cache, _, d_outputs in calls])
            for (layer, _, inputs, _), (d_inputs, d_params) in zip(calls, results):
                for a, d in zip(inputs, d_inputs):
                    if d is None:
                        continue
                    if isinstance(a, Tensor):
                        _accumulate(grads, id(a), d)
                    elif isinstance(a, np.ndarray):
                        _accumulate(array_grads, id(a), d)
                if d_params:
                    params = layer.params   # held in the entry: its id stays its own
                    _, _, by_name = weight_grads.setdefault(id(params),
                                                            (layer, params, {}))
                    for name, d in d_params.items():
                        _accumulate(by_name, name, d)
        by_array = {}
        for layer, params, by_name in weight_grads.values():
            layer.grads.clear()  # in place: a wrapping layer may share the dict
            for name, p in params.items():
                d = by_name.get(name)
                layer.grads[name] = np.zeros_like(p) if d is None else d
                by_array[id(p)] = layer.grads[name]
        if sources is None:
            return None
        single = not isinstance(sources, (list, tuple))
        out = []
        for s in ([sources] if single else sources):
            if isinstance(s, Tensor):
                out.append(grads.get(id(s)))
                continue
            # a weight array: through its layer's own backward and/or read by ops
            g, d = by_array.get(id(s)), array_grads.get(id(s))
            out.append(d if g is None else g if d is None else g + d)
        return out[0] if single else out


def _naming(operation, error):
    """``error`` (a ValueError raised by a layer's computation) saying which layer raised
    it, unless it already does; an op's (``crnn.ops``) as it is."""
    where = f"{type(operation).__name__} {operation.name!r}"
    if isinstance(operation, Op) or where in str(error):
        return error
    return ValueError(f"{where}: {error}").with_traceback(error.__traceback__)


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


def Input(shape, dtype="float32", name=None, batch_size=None):
    """A placeholder for a model's input: ``shape`` without the batch axis (``None``
    where a length varies), as ``keras.Input``."""
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    try:
        shape = tuple(None if d is None else int(d) for d in shape)
    except (TypeError, ValueError):
        raise ValueError(f"expected shape to be a tuple of ints or None, got {shape!r}") \
            from None
    if any(d is not None and d < 0 for d in shape):
        raise ValueError(f"expected non-negative dimensions, got shape {shape}")
    dt = np.dtype(dtype)
    return SymbolicTensor((batch_size,) + shape, dt, name=name)


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


# -- the operation: what the tape records and a functional graph holds --------------------
_DTYPES = {"float32": np.float32, "float64": np.float64}


def as_dtype(dtype):
    """Normalise a dtype argument to ``np.float32`` or ``np.float64``."""
    key = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if key not in _DTYPES:
        raise ValueError(f"expected dtype 'float32' or 'float64', got {dtype!r}")
    return np.dtype(_DTYPES[key])


_name_counts = defaultdict(itertools.count)


def unique_name(base):
    """``base``, then ``base_1``, ``base_2``, ... (as Keras names layers)."""
    n = next(_name_counts[base])
    return base if n == 0 else f"{base}_{n}"


def snake_case(name):
    """Keras's ``to_snake_case`` of a class name: ``SimpleRNN`` -> ``simple_rnn``,
    ``GlobalAveragePooling1D`` -> ``global_average_pooling1d`` (the default names of
    layers, and where a Keras file keeps a layer's weights)."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


class Operation:
    """The calling convention shared by every op (:mod:`crnn.ops`) and every layer
    (:class:`crnn.layers.Layer`, which adds the dtype, configuration and weights of its
    constructor), as Keras's ``Operation``.

    An operation has a ``name``, weights by name in ``params`` (none for an op) and, after
    a backward pass, their gradients in ``grads``. Calling it runs :meth:`call` on arrays
    (or on :class:`Tensor` objects while a :class:`GradientTape` records), or, on
    :func:`crnn.Input` placeholders, adds a :class:`Node` to a functional graph. A
    primitive implements ``_forward(inputs, **options) -> (outputs, cache)`` and
    ``_backward(cache, d_outputs) -> (d_inputs, d_weights)`` over flat lists of arrays,
    and its :meth:`call` passes them to :meth:`_run`, which records the call on the tape.
    Every crnn subclass registers itself by its class name (:mod:`crnn.registry`),
    except a base that says ``register=False`` in its class statement.
    """

    # Whether the operation passes a mask of real steps on (Keras's ``supports_masking``):
    # the default :meth:`compute_mask` returns its input's mask where this is True and
    # None (the mask ends here) where it is False.
    supports_masking = False

    def __init_subclass__(cls, register=True, **kwargs):
        super().__init_subclass__(**kwargs)
        if register:   # crnn's own classes only (see crnn.registry)
            registry.register(cls)

    def __init__(self, name=None, dtype="float32"):
        self.dtype = as_dtype(dtype)
        self.name = name or unique_name(snake_case(type(self).__name__))
        self.built = False
        self.params = {}
        self.grads = {}
        self._last_call = None

    # -- calling -----------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        if is_symbolic(args) or is_symbolic(kwargs):
            return symbolic_call(self, args, kwargs)
        return self.call(*args, **kwargs)

    def call(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not implement call")

    @cores.computing()
    def _run(self, inputs, **options):
        """Run the primitive on the flat list ``inputs`` (arrays or Tensors; None for an
        absent optional input) and record it on the tape. Returns the flat outputs."""
        try:
            outputs, cache = self._forward([value_of(a) for a in inputs], **options)
        except ValueError as e:
            raise _naming(self, e) from None
        return self._note_call(cache, inputs, outputs)

    def _note_call(self, cache, inputs, outputs):
        """Keep the call's cache for :meth:`_backward_last` and record the call."""
        if grad_enabled():
            self._last_call = cache
            self._called = True
        else:
            self._last_call = None
            self._called = "no_grad"
        return record(self, cache, inputs, outputs)

    def _check_last_call(self):
        """Raise unless the last call kept what :meth:`_backward_last` needs."""
        called = getattr(self, "_called", False)
        if called == "no_grad":
            raise ValueError(f"{type(self).__name__}.backward after a call inside "
                             f"crnn.no_grad() (or predict/evaluate), which keeps nothing "
                             f"to backpropagate through: call the layer outside no_grad "
                             f"first")
        if not called:
            raise ValueError(f"{type(self).__name__}.backward called before any forward "
                             f"call")

    def _forward(self, inputs, **options):
        raise NotImplementedError

    def _backward(self, cache, d_outputs):
        raise NotImplementedError

    @cores.computing()
    def _backward_last(self, d_outputs):
        """``_backward`` of the last call, outside any tape; sets ``grads``."""
        self._check_last_call()
        d_inputs, d_params = self._backward(self._last_call, d_outputs)
        self.grads.clear()  # in place: a wrapping layer may share the dict
        self.grads.update(d_params or {})
        return d_inputs

    def compute_output_spec(self, *args, **kwargs):
        """What a call with these arguments returns, as SymbolicTensors carrying shape and
        dtype (batch axis first, None where unknown). Builds a layer."""
        raise NotImplementedError(f"{type(self).__name__} cannot be called on crnn.Input "
                                  f"placeholders: it has no compute_output_spec")

    def compute_mask(self, inputs, mask=None):
        """The mask of real steps of this operation's output, for a call on ``inputs``
        whose mask was ``mask`` (Keras's ``compute_mask``): ``mask`` itself for one that
        ``supports_masking`` (one that keeps the time axis), else None. The models pass
        it on to the next layer (:mod:`crnn.models`) and to the loss."""
        return mask if self.supports_masking else None

    @property
    def trainable_weights(self):
        return list(self.params.values())

    # -- building --------------------------------------------------------------------
    def build(self, input_shape):
        self.built = True

    def _maybe_build(self, input_shape):
        if not self.built:
            self.build(tuple(input_shape))

    def _check_built(self, what):
        if not self.built:
            raise ValueError(f"{type(self).__name__} has no weights yet: call it on an "
                             f"input or call build(input_shape) before {what}")

    # -- weights ---------------------------------------------------------------------
    @property
    def weights(self):
        """The weight arrays themselves (not copies), in Keras's order."""
        return list(self.params.values())

    def get_weights(self):
        """Copies of the weights, in Keras's order and layout."""
        return [w.copy() for w in self.params.values()]

    def set_weights(self, weights):
        """Set the weights from a list in Keras's order and layout (as ``get_weights``)."""
        self._check_built("set_weights")
        weights = list(weights)
        names = list(self.params)
        where = f"{type(self).__name__} {self.name!r}"
        if len(weights) != len(names):
            raise ValueError(f"{where}: expected {len(names)} weight arrays {names}, got "
                             f"{len(weights)}")
        new = {}
        for i, (name, w) in enumerate(zip(names, weights)):
            w = np.asarray(w)
            if w.dtype.kind not in "biuf":
                raise ValueError(f"{where}, weight {i}: expected {name} of real numbers, "
                                 f"got dtype {w.dtype}")
            if w.shape != self.params[name].shape:
                raise ValueError(f"{where}, weight {i}: expected {name} of shape "
                                 f"{self.params[name].shape}, got {w.shape}")
            new[name] = np.ascontiguousarray(w, dtype=self.dtype)
        for name, w in new.items():
            self.params[name][...] = w

    def get_gradients(self):
        """Gradients from the last backward pass, in the order of ``get_weights``."""
        if not self.grads:
            raise ValueError(f"{type(self).__name__} has no gradients: call backward first")
        return [self.grads[name] for name in self.params]

    def count_params(self):
        self._check_built("count_params")
        return int(sum(w.size for w in self.params.values()))

    def get_config(self):
        """What ``type(self).from_config(config)`` rebuilds this operation from."""
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        config = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({config})"


# -- the primitives behind the tensors' operators (crnn.ops exports them) -----------------
def _unbroadcast(g, shape):
    """Sum ``g`` over the axes along which an input of ``shape`` was broadcast."""
    if g.shape == shape:
        return g
    g = g.sum(axis=tuple(range(g.ndim - len(shape)))) if g.ndim > len(shape) else g
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    return g.sum(axis=axes, keepdims=True) if axes else g


class Op(Operation, register=False):
    """A weightless primitive over a flat list of inputs (what :mod:`crnn.ops` is made
    of). Subclasses implement ``_forward(inputs) -> (outputs, cache)`` and
    ``_backward(cache, d_outputs)``. They register among the ``"op"`` kind of
    :mod:`crnn.registry`, apart from the layers: an op may share a layer's name (the
    ``Add`` behind ``a + b`` and the ``Add`` layer)."""

    def __init_subclass__(cls, register=True, **kwargs):
        super().__init_subclass__(register=False, **kwargs)
        if register:
            registry.register(cls, "op")

    def __init__(self, name=None):
        super().__init__(name=name)

    def _apply(self, inputs):
        if is_symbolic(inputs):
            return symbolic_call(self, (inputs,), {})
        return self.call(inputs)

    def call(self, inputs):
        outs = self._run(list(inputs))
        return outs[0] if len(outs) == 1 else list(outs)

    def compute_output_spec(self, inputs):
        """Shapes found by running the op on small stand-ins, twice with different sizes
        for the unknown (None) dimensions: an output dimension that changes is unknown."""
        runs = []
        for k in (61, 67):
            values = []
            for a in inputs:
                if isinstance(a, SymbolicTensor):
                    shape = tuple(k if d is None else d for d in a.shape)
                    values.append(np.zeros(shape, dtype=a.dtype))
                else:
                    values.append(value_of(a))
            outs, _ = self._forward(values)
            runs.append(outs)
        specs = [SymbolicTensor(tuple(None if p != q else p
                                      for p, q in zip(a.shape, b.shape)), a.dtype)
                 for a, b in zip(*runs)]
        return specs[0] if len(specs) == 1 else specs


def _operands(a, b):
    """Both as arrays; a Python number takes the other operand's floating dtype (so
    ``x * 0.5`` keeps a float32 ``x`` float32, as NumPy's own ``x * 0.5`` does)."""
    def convert(v, other):
        if isinstance(v, (int, float)) and not isinstance(v, bool) and isinstance(
                other, np.ndarray) and other.dtype.kind == "f":
            return np.asarray(v, dtype=other.dtype)
        return np.asarray(v)
    return convert(a, b), convert(b, a)


class _Binary(Op):
    def _forward(self, inputs):
        a, b = _operands(*inputs)
        return [np.asarray(self.f(a, b))], (a, b)


class Add(_Binary):
    f = staticmethod(np.add)

    def _backward(self, cache, d_outputs):
        a, b = cache
        g = d_outputs[0]
        return [_unbroadcast(g, a.shape), _unbroadcast(g, b.shape)], None


class Subtract(_Binary):
    f = staticmethod(np.subtract)

    def _backward(self, cache, d_outputs):
        a, b = cache
        g = d_outputs[0]
        return [_unbroadcast(g, a.shape), _unbroadcast(-g, b.shape)], None


class Multiply(_Binary):
    f = staticmethod(np.multiply)

    def _backward(self, cache, d_outputs):
        a, b = cache
        g = d_outputs[0]
        return [_unbroadcast(g * b, a.shape), _unbroadcast(g * a, b.shape)], None


class Divide(_Binary):
    f = staticmethod(np.divide)

    def _backward(self, cache, d_outputs):
        a, b = cache
        g = d_outputs[0] / b
        return [_unbroadcast(g, a.shape), _unbroadcast(-g * a / b, b.shape)], None


class MatMul(_Binary):
    f = staticmethod(np.matmul)

    def _forward(self, inputs):
        a, b = _operands(*inputs)
        if a.ndim < 2 or b.ndim != 2:
            raise ValueError(f"expected matmul of an (..., K) array by a (K, N) matrix, "
                             f"got shapes {a.shape} and {b.shape}")
        return [a @ b], (a, b)

    def _backward(self, cache, d_outputs):
        a, b = cache
        g = d_outputs[0]
        da = g @ b.T
        db = a.reshape(-1, a.shape[-1]).T @ g.reshape(-1, g.shape[-1])
        return [da, db], None


class Unary(Op):
    """``y = f(x)``; ``_grad(x, y)`` is ``f'`` (from the output where it can be)."""

    def _forward(self, inputs):
        x = np.asarray(inputs[0])
        y = np.asarray(self.f(x))
        return [y], (x, y)

    def _backward(self, cache, d_outputs):
        x, y = cache
        return [d_outputs[0] * self._grad(x, y)], None


class Negative(Unary):
    f = staticmethod(np.negative)

    def _grad(self, x, y):
        return -1


class GetItem(Op):
    def __init__(self, key):
        super().__init__()
        self.key = key

    def get_config(self):
        return {"key": self.key}

    def _forward(self, inputs):
        x = np.asarray(inputs[0])
        return [np.array(x[self.key])], (x.shape, x.dtype)

    def _backward(self, cache, d_outputs):
        shape, dtype = cache
        dx = np.zeros(shape, dtype=d_outputs[0].dtype)
        if _basic_index(self.key):
            dx[self.key] = d_outputs[0]             # a view: every element at most once
        else:
            np.add.at(dx, self.key, d_outputs[0])  # indices given twice add up
        return [dx], None


def _basic_index(key):
    """Whether ``key`` is NumPy basic indexing (ints, slices, Ellipsis, None), which
    selects each element at most once (the time reversal of Bidirectional)."""
    parts = key if isinstance(key, tuple) else (key,)
    return all(k is None or k is Ellipsis or isinstance(k, (slice, int, np.integer))
               and not isinstance(k, (bool, np.bool_)) for k in parts)
