"""Differentiable functions to use between layers.

Each function works on NumPy arrays, on the :class:`crnn.engine.Tensor` objects layers
return while a :class:`crnn.GradientTape` records (the call is recorded, so gradients
flow through it), and on :func:`crnn.Input` placeholders (the call becomes a node of a
functional model). Arithmetic on tensors (``a + b``, ``a * 2``, ``x[:, t]``) calls these.

Every op is a weightless :class:`crnn.engine.Operation` (an :class:`crnn.engine.Op`)
with ``_forward``/``_backward``, written for a reader::

    forward:  y = f(x)          backward: dx = dy * f'(x), taken from y where possible

Broadcasting follows NumPy; a gradient is summed over the axes its input was broadcast
along.
"""
import numpy as np

from crnn import activations, engine
# The primitives behind the tensors' operators live with the tensors (crnn.engine).
from crnn.engine import (Add, Divide, GetItem, MatMul, Multiply, Negative, Op, Subtract,
                         Unary)

__all__ = ["add", "subtract", "multiply", "divide", "negative", "matmul", "sigmoid", "tanh",
           "relu", "softmax", "exp", "log", "square", "sum", "mean", "concatenate",
           "stack", "unstack", "getitem", "reshape", "where"]


def add(a, b):
    """``a + b``."""
    return Add()._apply([a, b])


def subtract(a, b):
    """``a - b``."""
    return Subtract()._apply([a, b])


def multiply(a, b):
    """``a * b`` (element-wise)."""
    return Multiply()._apply([a, b])


def divide(a, b):
    """``a / b`` (element-wise)."""
    return Divide()._apply([a, b])


def matmul(a, b):
    """``a @ b`` for ``a (..., K)`` and a matrix ``b (K, N)``."""
    return MatMul()._apply([a, b])


# -- elementwise, one input --------------------------------------------------------------
class Sigmoid(Unary):
    f = staticmethod(activations.sigmoid)

    def _grad(self, x, y):
        return activations.sigmoid_grad(y)   # backprop through sigmoid, from its output


class Tanh(Unary):
    f = staticmethod(activations.tanh)

    def _grad(self, x, y):
        return activations.tanh_grad(y)      # backprop through tanh, from its output


class Relu(Unary):
    f = staticmethod(activations.relu)

    def _grad(self, x, y):
        return activations.relu_grad(y)


class Exp(Unary):
    f = staticmethod(np.exp)

    def _grad(self, x, y):
        return y


class Log(Unary):
    f = staticmethod(np.log)

    def _grad(self, x, y):
        return 1 / x


class Square(Unary):
    f = staticmethod(np.square)

    def _grad(self, x, y):
        return 2 * x


class Softmax(Op):
    def __init__(self, axis=-1):
        super().__init__()
        self.axis = axis

    def get_config(self):
        return {"axis": self.axis}

    def _forward(self, inputs):
        y = activations.softmax(np.asarray(inputs[0]), axis=self.axis)
        return [y], y

    def _backward(self, y, d_outputs):
        return [activations.softmax_backward(y, d_outputs[0], axis=self.axis)], None


def negative(x):
    """``-x``."""
    return Negative()._apply([x])


def sigmoid(x):
    """``1 / (1 + exp(-x))``."""
    return Sigmoid()._apply([x])


def tanh(x):
    """``tanh(x)``, elementwise; its gradient ``1 - tanh(x)**2`` from the output."""
    return Tanh()._apply([x])


def relu(x):
    """``max(x, 0)``."""
    return Relu()._apply([x])


def exp(x):
    """``exp(x)``, elementwise."""
    return Exp()._apply([x])


def log(x):
    """The natural logarithm of ``x``, elementwise."""
    return Log()._apply([x])


def square(x):
    """``x * x``, elementwise."""
    return Square()._apply([x])


def softmax(x, axis=-1):
    """``exp(x) / sum(exp(x), axis)``, computed without overflow."""
    return Softmax(axis)._apply([x])


# -- reductions --------------------------------------------------------------------------
class _Reduce(Op):
    def __init__(self, axis=None, keepdims=False):
        super().__init__()
        self.axis = tuple(axis) if isinstance(axis, (list, tuple)) else axis
        self.keepdims = bool(keepdims)

    def get_config(self):
        return {"axis": self.axis, "keepdims": self.keepdims}

    def _forward(self, inputs):
        x = np.asarray(inputs[0])
        y = np.asarray(self.f(x, axis=self.axis, keepdims=self.keepdims))
        return [y], x.shape

    def _spread(self, g, shape):
        """``g`` broadcast back to the input's shape."""
        if not self.keepdims and self.axis is not None:
            axes = self.axis if isinstance(self.axis, tuple) else (self.axis,)
            g = np.expand_dims(g, tuple(a % len(shape) for a in axes))
        return np.broadcast_to(g, shape)


class Sum(_Reduce):
    f = staticmethod(np.sum)

    def _backward(self, shape, d_outputs):
        return [np.array(self._spread(d_outputs[0], shape))], None


class Mean(_Reduce):
    f = staticmethod(np.mean)

    def _backward(self, shape, d_outputs):
        g = d_outputs[0]
        n = max(int(np.prod(shape)), 1) // max(g.size, 1)   # inputs per output
        return [self._spread(g, shape) / n], None


def sum(x, axis=None, keepdims=False):  # noqa: A001 (the NumPy name, on purpose)
    """The sum of ``x`` over ``axis`` (every axis when None), as ``np.sum``."""
    return Sum(axis, keepdims)._apply([x])


def mean(x, axis=None, keepdims=False):
    """The mean of ``x`` over ``axis`` (every axis when None), as ``np.mean``."""
    return Mean(axis, keepdims)._apply([x])


# -- joining, splitting and slicing ------------------------------------------------------
class Concatenate(Op):
    def __init__(self, axis=-1):
        super().__init__()
        self.axis = int(axis)

    def get_config(self):
        return {"axis": self.axis}

    def _forward(self, inputs):
        arrays = [np.asarray(a) for a in inputs]
        return [np.concatenate(arrays, axis=self.axis)], [a.shape[self.axis] for a in arrays]

    def _backward(self, sizes, d_outputs):
        return list(np.split(d_outputs[0], np.cumsum(sizes)[:-1], axis=self.axis)), None


class Stack(Op):
    def __init__(self, axis=0):
        super().__init__()
        self.axis = int(axis)

    def get_config(self):
        return {"axis": self.axis}

    def _forward(self, inputs):
        return [np.stack([np.asarray(a) for a in inputs], axis=self.axis)], len(inputs)

    def _backward(self, n, d_outputs):
        g = d_outputs[0]
        return [np.take(g, i, axis=self.axis) for i in range(n)], None


class Unstack(Op):
    def __init__(self, axis=0):
        super().__init__()
        self.axis = int(axis)

    def get_config(self):
        return {"axis": self.axis}

    def call(self, inputs):
        return list(self._run(list(inputs)))  # a list even of one

    def compute_output_spec(self, inputs):
        x = inputs[0]
        if x.shape[self.axis] is None:
            raise ValueError(f"unstack needs a known length along axis {self.axis}, got "
                             f"shape {x.shape}")
        shape = x.shape[:self.axis % len(x.shape)] + x.shape[self.axis % len(x.shape) + 1:]
        return [engine.SymbolicTensor(shape, x.dtype) for _ in range(x.shape[self.axis])]

    def _forward(self, inputs):
        x = np.asarray(inputs[0])
        return [np.take(x, i, axis=self.axis) for i in range(x.shape[self.axis])], x.shape

    def _backward(self, shape, d_outputs):
        dx = np.zeros(shape, dtype=next(g.dtype for g in d_outputs if g is not None))
        for i, g in enumerate(d_outputs):
            if g is not None:
                index = [slice(None)] * len(shape)
                index[self.axis] = i
                dx[tuple(index)] = g
        return [dx], None


class Reshape(Op):
    def __init__(self, shape):
        super().__init__()
        self.shape = tuple(shape)

    def get_config(self):
        return {"shape": self.shape}

    def _forward(self, inputs):
        x = np.asarray(inputs[0])
        return [x.reshape(self.shape)], x.shape

    def _backward(self, shape, d_outputs):
        return [d_outputs[0].reshape(shape)], None


class Where(Op):
    """``y = where(condition, a, b)``: ``condition`` is data (no gradient); the gradient
    goes to ``a`` where it holds and to ``b`` elsewhere."""

    def _forward(self, inputs):
        condition = np.asarray(inputs[0])
        if condition.dtype != bool:
            raise ValueError(f"expected a bool condition, got {condition.dtype}")
        a, b = engine._operands(inputs[1], inputs[2])
        return [np.where(condition, a, b)], (condition, a.shape, b.shape)

    def _backward(self, cache, d_outputs):
        condition, a_shape, b_shape = cache
        g = d_outputs[0]
        zero = np.zeros((), dtype=g.dtype)
        return [None, engine._unbroadcast(np.where(condition, g, zero), a_shape),
                engine._unbroadcast(np.where(condition, zero, g), b_shape)], None


def concatenate(tensors, axis=-1):
    """Join a list of tensors along ``axis``."""
    return Concatenate(axis)._apply(list(tensors))


def stack(tensors, axis=0):
    """Join a list of equally shaped tensors along a new ``axis``."""
    return Stack(axis)._apply(list(tensors))


def unstack(x, axis=0):
    """Split ``x`` along ``axis`` into a list (``unstack(x, axis=1)`` gives the time steps
    of a ``(B, T, D)`` batch, as ``tf.unstack``)."""
    op = Unstack(axis)
    if engine.is_symbolic([x]):
        return engine.symbolic_call(op, ([x],), {})
    return op.call([x])


def getitem(x, key):
    """``x[key]`` (basic or integer-array indexing)."""
    return GetItem(key)._apply([x])


def reshape(x, shape):
    """``x.reshape(shape)`` (``-1`` allowed once)."""
    return Reshape(shape)._apply([x])


def where(condition, a, b):
    """``a`` where ``condition`` (a bool array, broadcast as NumPy does) holds, else
    ``b``; differentiable in ``a`` and ``b``."""
    return Where()._apply([condition, a, b])
