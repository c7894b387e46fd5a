"""Reshape and Permute (Keras 3's): the same entries, arranged differently. The batch
axis is never touched; shapes and dimensions are given without it."""
import numpy as np

from crnn import engine
from crnn.layers.base import Layer

__all__ = ["Permute", "Reshape"]


class Reshape(Layer):
    """Reshape each sample: ``(B, ...)`` to ``(B, *target_shape)`` (Keras's
    ``Reshape``; one entry of ``target_shape`` may be -1, inferred).

    Parameters
    ----------
    target_shape : tuple of ints
        Without the batch axis.
    dtype : {"float32", "float64"}
    name : str, optional

    Examples
    --------
    >>> Reshape((3, 2))(np.zeros((4, 6))).shape
    (4, 3, 2)
    >>> Reshape((-1, 2))(np.zeros((4, 3, 2))).shape
    (4, 3, 2)
    """

    def __init__(self, target_shape, dtype="float32", name=None):
        super().__init__(name=name, dtype=dtype)
        if isinstance(target_shape, (int, np.integer)):
            target_shape = (target_shape,)
        if (not isinstance(target_shape, (list, tuple))
                or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool)
                           and (d >= 1 or d == -1) for d in target_shape)
                or sum(d == -1 for d in target_shape) > 1):
            raise ValueError(f"expected target_shape to be a tuple of positive ints with at "
                             f"most one -1, got {target_shape!r}")
        self.target_shape = tuple(int(d) for d in target_shape)
        self.built = True

    def compute_output_shape(self, input_shape):
        rest = tuple(input_shape)[1:]
        target = self.target_shape
        if -1 not in target:
            if None not in rest and int(np.prod(rest)) != int(np.prod(target)):
                raise ValueError(f"expected an input of {int(np.prod(target))} entries per "
                                 f"sample for Reshape ({self.name!r}) to {target}, got "
                                 f"shape {tuple(input_shape)}")
            return (input_shape[0],) + target
        if None in rest:
            return (input_shape[0],) + tuple(None if d == -1 else d for d in target)
        known = int(np.prod([d for d in target if d != -1]))
        total = int(np.prod(rest))
        if total % known:
            raise ValueError(f"expected the entries per sample ({total}, shape "
                             f"{tuple(input_shape)}) to be a multiple of {known} for "
                             f"Reshape ({self.name!r}) to {target}")
        return (input_shape[0],) + tuple(total // known if d == -1 else d for d in target)

    def compute_output_spec(self, inputs):
        return engine.SymbolicTensor(self.compute_output_shape(inputs.shape), self.dtype)

    def call(self, inputs):
        """``inputs (B, ...)`` reshaped to ``(B, *target_shape)``."""
        return self._run([inputs])[0]

    def backward(self, grad):
        return self._backward_last([np.asarray(grad, dtype=self.dtype)])[0]

    def _forward(self, inputs):
        x = np.asarray(inputs[0])
        if x.ndim < 1:
            raise ValueError(f"expected input of shape (batch, ...), got a scalar")
        x = np.ascontiguousarray(x, dtype=self.dtype)
        shape = self.compute_output_shape(x.shape)
        return [x.reshape(shape)], x.shape                     # 1. y = x.reshape

    def _backward(self, shape, d_outputs):
        return [d_outputs[0].reshape(shape)], None             # 1b. dx = dy.reshape


class Permute(Layer):
    """Permute the non-batch axes (Keras's ``Permute``): ``dims`` numbers them from 1;
    ``Permute((2, 1))`` swaps time and features of ``(B, T, D)``.

    Parameters
    ----------
    dims : tuple of ints
        A permutation of ``1 .. rank - 1``.
    dtype : {"float32", "float64"}
    name : str, optional

    Examples
    --------
    >>> Permute((2, 1))(np.zeros((4, 3, 2))).shape
    (4, 2, 3)
    """

    def __init__(self, dims, dtype="float32", name=None):
        super().__init__(name=name, dtype=dtype)
        if (not isinstance(dims, (list, tuple))
                or sorted(dims) != list(range(1, len(dims) + 1))
                or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool)
                           for d in dims)):
            raise ValueError(f"expected dims to be a permutation of 1 .. n (the non-batch "
                             f"axes, numbered from 1), got {dims!r}")
        self.dims = tuple(int(d) for d in dims)
        self.built = True

    def compute_output_shape(self, input_shape):
        if len(input_shape) != len(self.dims) + 1:
            raise ValueError(f"expected an input of rank {len(self.dims) + 1} for Permute "
                             f"({self.name!r}) with dims {self.dims}, got shape "
                             f"{tuple(input_shape)}")
        return (input_shape[0],) + tuple(input_shape[d] for d in self.dims)

    def compute_output_spec(self, inputs):
        return engine.SymbolicTensor(self.compute_output_shape(inputs.shape), self.dtype)

    def call(self, inputs):
        """``inputs (B, ...)`` with the axes after the batch axis permuted by ``dims``."""
        return self._run([inputs])[0]

    def backward(self, grad):
        return self._backward_last([np.asarray(grad, dtype=self.dtype)])[0]

    def _forward(self, inputs):
        x = np.asarray(inputs[0], dtype=self.dtype)
        self.compute_output_shape(x.shape)
        order = (0,) + self.dims
        return [np.ascontiguousarray(x.transpose(order))], order   # 1. y = x.transpose

    def _backward(self, order, d_outputs):
        return [d_outputs[0].transpose(np.argsort(order))], None    # 1b. the inverse
