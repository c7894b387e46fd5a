"""Dense: the output layer around a recurrence (the textbook's ``W_yh``).

.. math::
    y = \\mathrm{act}(x W + b)

over the last axis of ``x``, so ``(B, H)`` gives ``(B, units)`` and ``(B, T, H)`` gives
``(B, T, units)`` (every step through the same weights, as Keras's ``Dense`` does).
"""
import numpy as np

from crnn import _blas, activations, constraints, engine, initializers, regularizers
from crnn.layers.base import Layer, as_input


def matmul(a, b, trans_a=False, trans_b=False):
    """``op(a) @ op(b)`` of 2-D arrays of one float dtype through crnn's GEMM (so that,
    while crnn computes, a large product runs on crnn's pool: :mod:`crnn.cores`)."""
    dtype = np.result_type(a, b, np.float32)                 # as NumPy's @ would promote
    a, b = np.ascontiguousarray(a, dtype=dtype), np.ascontiguousarray(b, dtype=dtype)
    m = a.shape[1] if trans_a else a.shape[0]
    n = b.shape[0] if trans_b else b.shape[1]
    out = np.empty((m, n), dtype=a.dtype)
    return _blas.gemm_py("t" if trans_a else "n", "t" if trans_b else "n", 1.0, a, b, 0.0,
                         out)


class Dense(Layer):
    """A fully connected layer on the last axis: ``y = act(x @ kernel + bias)``.

    Parameters
    ----------
    units : int
        Output features.
    activation : str or None
        ``None``/``"linear"``, ``"tanh"``, ``"relu"``, ``"sigmoid"`` or ``"softmax"``.
    use_bias : bool
    kernel_initializer, bias_initializer : str or callable
        As in :mod:`crnn.initializers` (Keras's defaults: glorot_uniform, zeros).
    seed : int, optional
        Seeds the initialiser.
    dtype : {"float32", "float64"}
    kernel_regularizer, bias_regularizer, activity_regularizer : optional
        Penalties in ``losses`` (:mod:`crnn.regularizers`: ``"l1"``, ``"l2"``,
        ``L1L2(...)``, ...), on the weight or, for the activity, on the output.
    kernel_constraint, bias_constraint : optional
        Projections applied after each update (:mod:`crnn.constraints`).

    Weights ``[kernel (D, units), bias (units,)]``, Keras's layout.

    Examples
    --------
    >>> layer = Dense(3, activation="softmax")
    >>> y = layer(np.zeros((2, 5, 4), "float32"))   # every step through the same weights
    >>> y.shape, np.allclose(y.sum(axis=-1), 1)
    ((2, 5, 3), True)
    """


    supports_masking = True   # applied to the last axis: the steps stay where they are

    def __init__(self, units, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", seed=None,
                 dtype="float32", name=None, *, kernel_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 bias_constraint=None):
        super().__init__(name=name, dtype=dtype)
        if not isinstance(units, (int, np.integer)) or isinstance(units, bool) or units < 1:
            raise ValueError(f"expected units to be a positive int, got {units!r}")
        self.units = int(units)
        self.activation = activation
        self._act = activations.check_output(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer
        for init in (kernel_initializer, bias_initializer):
            initializers.get(init)
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.activity_regularizer = regularizers.get(activity_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.bias_constraint = constraints.get(bias_constraint)

    def build(self, input_shape):
        D = input_shape[-1]
        if D is None or D < 1:
            raise ValueError(f"expected a known, positive last dimension, got input shape "
                             f"{tuple(input_shape)}")
        D = int(D)
        self.params.clear()
        self.add_weight(name="kernel", shape=(D, self.units),
                        initializer=self.kernel_initializer,
                        regularizer=self.kernel_regularizer,
                        constraint=self.kernel_constraint)
        if self.use_bias:
            self.add_weight(name="bias", shape=(self.units,),
                            initializer=self.bias_initializer,
                            regularizer=self.bias_regularizer,
                            constraint=self.bias_constraint)
        self.input_dim = D
        self.built = True

    def call(self, inputs, training=False):
        """``act(inputs @ kernel + bias)`` over the last axis of ``inputs (B, ..., D)``."""
        return self._run([inputs])[0]

    def compute_output_spec(self, inputs, training=False):
        if len(inputs.shape) < 2:
            raise ValueError(f"expected input shape (batch, ..., features), got "
                             f"{inputs.shape}")
        self._maybe_build(inputs.shape)
        return engine.SymbolicTensor(inputs.shape[:-1] + (self.units,), self.dtype)

    def compute_output_shape(self, input_shape):
        """``(..., units)`` for ``(batch, ..., features)`` (without building)."""
        input_shape = tuple(input_shape)
        if len(input_shape) < 2:
            raise ValueError(f"expected input shape (batch, ..., features), got "
                             f"{input_shape}")
        return input_shape[:-1] + (self.units,)

    def _forward(self, inputs):
        x = np.asarray(inputs[0])
        if x.ndim < 2:
            raise ValueError(f"expected input of shape (batch, ..., features), got shape "
                             f"{x.shape}")
        x = as_input("input", x, self.dtype, x.ndim, "(batch, ..., features)")
        self._maybe_build(x.shape)
        if x.shape[-1] != self.input_dim:
            raise ValueError(f"expected input with {self.input_dim} features (the built "
                             f"input size), got shape {x.shape}")
        x2 = x.reshape(-1, self.input_dim)             # every step's rows in one product
        a = matmul(x2, self.params["kernel"]).reshape(x.shape[:-1] + (self.units,))  # 1. x W
        if self.use_bias:
            a += self.params["bias"]                   # 2. + b
        y = activations.apply(self._act, a)            # 3. act
        return [y], (x, y)

    def _backward(self, cache, d_outputs):
        x, y = cache
        da = activations.backward(self._act, y, d_outputs[0])   # 3b. through act
        da2 = da.reshape(-1, self.units)
        grads = {"kernel": matmul(x.reshape(-1, x.shape[-1]), da2, trans_a=True)}  # 1b. x^T da
        if self.use_bias:
            grads["bias"] = da2.sum(axis=0)                          # 2b. db
        dx = matmul(da2, self.params["kernel"], trans_b=True)        # 1b. dx = da W^T
        return [dx.reshape(x.shape)], grads

    def backward(self, grad):
        """Backpropagate ``grad`` (the output's shape) through the last call, outside a
        tape; returns ``dx`` and sets ``grads``."""
        return self._backward_last([np.asarray(grad, dtype=self.dtype)])[0]
