"""The small layers around a recurrence, with Keras's semantics: Embedding (ids to
vectors, the usual first layer of a text model), Masking (marks padded steps), Dropout,
Activation, RepeatVector (one vector to a sequence, for one-to-many models) and Flatten.

Each is a primitive on the tape (:mod:`crnn.engine`): ``_forward`` computes from NumPy
arrays and keeps a cache, ``_backward`` mirrors it line by line in reverse. Notation:
``B`` batch, ``T`` time, ``D`` features, ``V`` vocabulary size (``input_dim``), ``E``
embedding size (``output_dim``).

Floating inputs are cast to the layer's ``dtype`` (``"float32"`` unless given), as Keras
casts a layer's inputs to its compute dtype.
"""
import numpy as np

from crnn import activations, backend, constraints, engine, initializers, regularizers
from crnn.layers.base import Layer, as_input, check_real
from crnn.layers.recurrent import check_rate, dropout_mask


def check_positive_int(name, n):
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"expected {name} to be a positive int, got {n!r}")
    return int(n)


def _initializer(name):
    # Keras's string "uniform" is RandomUniform(-0.05, 0.05): crnn's random_uniform.
    return initializers.get("random_uniform" if name == "uniform" else name)


class Embedding(Layer):
    """Integer ids to dense vectors: row ``i`` of ``embeddings`` for id ``i``.

    .. math:: y_{\\ldots, :} = W_{\\mathrm{ids}_{\\ldots}, :}

    Parameters
    ----------
    input_dim : int
        ``V``, the vocabulary size: ids lie in ``[0, V)``.
    output_dim : int
        ``E``, the size of each vector.
    embeddings_initializer : str or callable
        ``"uniform"`` (Keras's default, uniform on [-0.05, 0.05]) or any name of
        :mod:`crnn.initializers`, or a callable ``(shape, dtype, rng) -> array``.
    mask_zero : bool
        Id 0 is padding: :meth:`compute_mask` returns ``ids != 0``, which the models
        pass on to the layers that follow (a recurrent layer skips those steps) and to
        the loss.
    seed : int, optional
        Seeds the initialiser.
    dtype : {"float32", "float64"}
    embeddings_regularizer, activity_regularizer : optional
        Penalties in ``losses`` (:mod:`crnn.regularizers`), on the table or on the
        output.
    embeddings_constraint : optional
        A projection applied after each update (:mod:`crnn.constraints`).
    weights : list of one array ``(V, E)``, optional
        A pretrained table (GloVe, word2vec) to start from, as Keras's
        ``Embedding(weights=[matrix])`` (one array alone is accepted too); its shape
        must be ``(input_dim, output_dim)``. With ``trainable=False`` it stays as
        given: ``fit`` leaves it alone.
    trainable : bool
        False freezes the table (see :attr:`crnn.layers.Layer.trainable`).

    Calling on ids of any shape ``S`` (an integer array, or a float array holding whole
    numbers, which Keras would cast) returns ``(*S, E)``. Ids are checked before any
    indexing: one outside ``[0, V)`` raises ``ValueError`` (a negative id never wraps
    around to the end of the table). Weights ``[embeddings (V, E)]``.
    The ids get no gradient; ``embeddings`` gets ``dy`` added into the rows used, so
    an id used twice gets both contributions.

    Examples
    --------
    >>> layer = Embedding(10, 3)
    >>> layer(np.array([[1, 2, 0]])).shape
    (1, 3, 3)
    >>> Embedding(10, 3, mask_zero=True).compute_mask(np.array([[1, 2, 0]])).tolist()
    [[True, True, False]]
    """

    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform",
                 mask_zero=False, seed=None, dtype="float32", name=None, *,
                 embeddings_regularizer=None, activity_regularizer=None,
                 embeddings_constraint=None, weights=None, trainable=True):
        super().__init__(name=name, dtype=dtype)
        self.input_dim = check_positive_int("input_dim", input_dim)
        self.output_dim = check_positive_int("output_dim", output_dim)
        _initializer(embeddings_initializer)
        self.embeddings_initializer = embeddings_initializer
        self.mask_zero = bool(mask_zero)
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self.embeddings_regularizer = regularizers.get(embeddings_regularizer)
        self.activity_regularizer = regularizers.get(activity_regularizer)
        self.embeddings_constraint = constraints.get(embeddings_constraint)
        self.trainable = trainable
        if weights is not None:
            self._set_pretrained(weights)

    def _set_pretrained(self, weights):
        """Keras's ``weights=[matrix]``: the table is the given matrix (copied)."""
        table = weights[0] if isinstance(weights, (list, tuple)) and len(weights) == 1 \
            else weights
        if isinstance(weights, (list, tuple)) and len(weights) != 1:
            raise ValueError(f"expected weights=[matrix] (one array, the table of shape "
                             f"({self.input_dim}, {self.output_dim})), got a list of "
                             f"{len(weights)}")
        try:
            table = np.asarray(table)
        except (TypeError, ValueError) as e:
            raise ValueError(f"expected weights=[matrix] with a numeric matrix, got "
                             f"{type(table).__name__}: {e}") from None
        check_real("the embeddings table", table)
        shape = (self.input_dim, self.output_dim)
        if table.dtype.kind not in "biuf" or table.shape != shape:
            raise ValueError(f"expected weights=[matrix] with a numeric matrix of shape "
                             f"(input_dim, output_dim) = {shape}, got "
                             f"{table.dtype} of shape {table.shape}")
        if not np.isfinite(table).all():
            raise ValueError("expected a finite embeddings table in weights=[matrix], got "
                             "NaN or infinite values")
        self.build()
        self.params["embeddings"][...] = table

    def get_config(self):
        config = super().get_config()
        del config["weights"]         # the table goes with the weights, not the config
        return config

    def build(self, input_shape=None):
        """Create ``embeddings (V, E)``; the weights do not depend on the input shape."""
        if self.built:
            return
        self.params.clear()
        self.add_weight(name="embeddings", shape=(self.input_dim, self.output_dim),
                        initializer=_initializer(self.embeddings_initializer),
                        regularizer=self.embeddings_regularizer,
                        constraint=self.embeddings_constraint)
        self.built = True

    @property
    def embeddings(self):
        self._check_built("reading embeddings")
        return self.params["embeddings"]

    def call(self, inputs, training=False):
        """The rows of ``embeddings`` for integer ids ``inputs (B, ...)``: ``(B, ..., E)``."""
        return self._run([inputs], training=training)[0]

    def compute_output_spec(self, inputs, training=False):
        kind = inputs.dtype.kind
        if kind not in "iuf":
            raise ValueError(f"expected integer ids, got a placeholder of dtype "
                             f"{inputs.dtype}")
        self._maybe_build(inputs.shape)
        return engine.SymbolicTensor(tuple(inputs.shape) + (self.output_dim,), self.dtype)

    def compute_output_shape(self, input_shape):
        """``input_shape + (output_dim,)`` (without building)."""
        return tuple(input_shape) + (self.output_dim,)

    def compute_mask(self, inputs, mask=None):
        """``ids != 0`` with ``mask_zero``, else None."""
        if not self.mask_zero:
            return None
        return np.asarray(engine.value_of(inputs)) != 0

    def check_ids(self, ids):
        """``ids`` as an int64 array, after checking type and range (no wrap-around)."""
        ids = np.asarray(ids)
        if ids.dtype.kind in "iu":
            pass
        elif ids.dtype.kind == "f":
            whole = np.isfinite(ids) & (ids == np.floor(ids))
            if not whole.all():
                bad = ids[~whole].flat[0]
                raise ValueError(f"expected integer ids, got a {ids.dtype} array holding "
                                 f"{bad.item()!r}")
        else:
            raise ValueError(f"expected an array of integer ids, got dtype {ids.dtype}")
        if ids.size:
            lo, hi = ids.min(), ids.max()
            if lo < 0 or hi >= self.input_dim:
                raise ValueError(f"expected ids in [0, {self.input_dim}) (input_dim="
                                 f"{self.input_dim}), got ids from {lo} to {hi}")
        return ids.astype(np.int64, copy=False)

    def _forward(self, inputs, training=False):
        ids = self.check_ids(inputs[0])                 # validated before any indexing
        self._maybe_build(ids.shape)
        y = self.params["embeddings"][ids]              # 1. y = W[ids]  (a copy)
        return [y], ids

    def _backward(self, ids, d_outputs):
        dy = d_outputs[0]
        if dy is None:
            return [None], {"embeddings": np.zeros_like(self.params["embeddings"])}
        # 1b. scatter-add dy into the rows used: repeated ids add up
        dW = backend.kernels("embedding").embedding_backward(
            ids, np.asarray(dy, dtype=self.dtype), self.input_dim)
        return [None], {"embeddings": dW}

    def backward(self, grad):
        """Backpropagate ``grad (*S, E)`` through the last call, outside a tape; sets
        ``grads`` and returns None (ids have no gradient)."""
        self._backward_last([np.asarray(grad, dtype=self.dtype)])
        return None


class _Weightless(Layer):
    """A layer with no weights: built from the start (``count_params() == 0``)."""

    def __init__(self, dtype="float32", name=None):
        super().__init__(name=name, dtype=dtype)
        self.built = True

    def call(self, inputs, training=False):
        return self._run([inputs], training=training)[0]

    def backward(self, grad):
        """``dx`` for ``grad`` (the output's shape), through the last call, outside a
        tape."""
        return self._backward_last([np.asarray(grad, dtype=self.dtype)])[0]

    def _input(self, a, ndim=None, layout="(batch, ...)"):
        """``a`` as a C-contiguous array of the layer's dtype (of rank ``ndim`` if
        given)."""
        a = np.asarray(a)
        return as_input("input", a, self.dtype, a.ndim if ndim is None else ndim, layout)


class Masking(_Weightless):
    """Mark the padded steps of a sequence (Keras's ``Masking``): a step whose features
    all equal ``mask_value`` is padding.

    .. math:: m_{b,t} = \\exists d:\\ x_{b,t,d} \\ne \\mathrm{mask\\_value}, \\qquad
              y = x \\odot m

    Parameters
    ----------
    mask_value : float
        The value that fills a padded step (default 0.0).
    dtype : {"float32", "float64"}

    The output is the input with the padded steps set to zero; :meth:`compute_mask`
    returns ``m (B, T)`` (bool), which the models pass on to the layers that follow and to
    the loss. Padded steps get no gradient.

    Examples
    --------
    >>> x = np.array([[[1.0], [0.0]]])
    >>> Masking(0.0).compute_mask(x).tolist()
    [[True, False]]
    """

    supports_masking = True

    def __init__(self, mask_value=0.0, dtype="float32", name=None):
        super().__init__(name=name, dtype=dtype)
        if not isinstance(mask_value, (int, float, np.integer, np.floating)) \
                or isinstance(mask_value, bool):
            raise ValueError(f"expected mask_value to be a number, got {mask_value!r}")
        self.mask_value = float(mask_value)

    def compute_output_spec(self, inputs, training=False):
        if len(inputs.shape) < 2:
            raise ValueError(f"expected input of shape (batch, time, ...), got shape "
                             f"{inputs.shape}")
        return engine.SymbolicTensor(inputs.shape, self.dtype)

    def compute_mask(self, inputs, mask=None):
        """``m (B, T)``: True where a step has a feature other than ``mask_value``."""
        x = np.asarray(engine.value_of(inputs))
        return np.any(x != x.dtype.type(self.mask_value) if x.dtype.kind == "f"
                      else x != self.mask_value, axis=-1)

    def _forward(self, inputs, training=False):
        x = self._input(inputs[0])
        if x.ndim < 2:
            raise ValueError(f"expected input of shape (batch, time, ...), got shape "
                             f"{x.shape}")
        m = self.compute_mask(x)[..., None]                  # 1. m: the real steps
        return [x * m], m                                     # 2. y = x * m

    def _backward(self, m, d_outputs):
        dy = d_outputs[0]
        return [None if dy is None else dy * m], None         # 2b. dx = dy * m


class Dropout(_Weightless):
    """Inverted dropout (Keras's ``Dropout``): when training, each entry is zeroed with
    probability ``rate`` and the others scaled by ``1 / (1 - rate)``; otherwise the
    identity.

    .. math:: y = x \\odot m, \\quad m_i = [u_i \\ge r] / (1 - r), \\quad r = \\mathrm{rate}

    Parameters
    ----------
    rate : float in [0, 1)
    seed : int, optional
        Seeds the masks: a layer with the same seed draws the same sequence of masks.
    dtype : {"float32", "float64"}

    A new mask is drawn at every training call (any shape); backward multiplies by the
    mask of the call it undoes.

    Examples
    --------
    >>> layer = Dropout(0.5, seed=0)
    >>> layer(np.ones((2, 4))).tolist()   # no dropout outside training
    [[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]]
    """

    supports_masking = True

    def __init__(self, rate, seed=None, dtype="float32", name=None):
        super().__init__(name=name, dtype=dtype)
        self.rate = check_rate("rate", rate)
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    def compute_output_spec(self, inputs, training=False):
        return engine.SymbolicTensor(inputs.shape, self.dtype)

    def _forward(self, inputs, training=False):
        # (the cache is never None: Layer._backward_last takes None for "no call yet")
        x = self._input(inputs[0])
        if not training or self.rate == 0:
            return [x], (None,)                                    # identity
        mask = dropout_mask(self._rng, x.shape, self.rate, self.dtype)   # 1. m
        return [x * mask], (mask,)                                 # 2. y = x * m

    def _backward(self, cache, d_outputs):
        (mask,), dy = cache, d_outputs[0]
        if dy is None or mask is None:
            return [dy], None
        return [dy * mask], None                                   # 2b. dx = dy * m


class Activation(_Weightless):
    """An activation applied element-wise (softmax: over the last axis).

    Parameters
    ----------
    activation : str or None
        As for :class:`crnn.Dense`: ``None``/``"linear"``, ``"tanh"``, ``"relu"``,
        ``"sigmoid"`` or ``"softmax"``.
    dtype : {"float32", "float64"}

    Examples
    --------
    >>> Activation("relu")(np.array([[-1.0, 2.0]])).tolist()
    [[0.0, 2.0]]
    """

    supports_masking = True

    def __init__(self, activation, dtype="float32", name=None):
        super().__init__(name=name, dtype=dtype)
        self._act = activations.check_output(activation)
        self.activation = activation

    def compute_output_spec(self, inputs, training=False):
        if self._act == "softmax" and len(inputs.shape) < 1:
            raise ValueError(f"expected an input with a last axis for softmax, got shape "
                             f"{inputs.shape}")
        return engine.SymbolicTensor(inputs.shape, self.dtype)

    def _forward(self, inputs, training=False):
        x = self._input(inputs[0])
        if self._act == "softmax" and x.ndim < 1:
            raise ValueError(f"expected an input with a last axis for softmax, got shape "
                             f"{x.shape}")
        y = activations.apply(self._act, x)                     # 1. y = act(x)
        return [y], y

    def _backward(self, y, d_outputs):
        return [activations.backward(self._act, y, d_outputs[0])], None  # 1b. from y


class RepeatVector(_Weightless):
    """Repeat a vector ``n`` times: ``(B, D)`` to ``(B, n, D)`` (Keras's ``RepeatVector``;
    feeds one input to every step of a recurrence, for one-to-many models).

    Parameters
    ----------
    n : int
        The number of steps, positive.
    dtype : {"float32", "float64"}

    Backward sums the gradient over the ``n`` copies.

    Examples
    --------
    >>> RepeatVector(3)(np.ones((2, 4))).shape
    (2, 3, 4)
    """

    def __init__(self, n, dtype="float32", name=None):
        super().__init__(name=name, dtype=dtype)
        self.n = check_positive_int("n", n)

    def compute_output_spec(self, inputs, training=False):
        if len(inputs.shape) != 2:
            raise ValueError(f"expected input shape (batch, features), got "
                             f"{inputs.shape}")
        return engine.SymbolicTensor((inputs.shape[0], self.n, inputs.shape[1]),
                                     self.dtype)

    def _forward(self, inputs, training=False):
        x = self._input(inputs[0], 2, "(batch, features)")
        y = np.repeat(x[:, None, :], self.n, axis=1)           # 1. y[:, t] = x
        return [y], x.shape

    def _backward(self, shape, d_outputs):
        return [d_outputs[0].sum(axis=1)], None                 # 1b. dx = sum_t dy[:, t]


class Flatten(_Weightless):
    """``(B, ...)`` to ``(B, prod(...))`` (Keras's ``Flatten``; ``(B,)`` gives
    ``(B, 1)``).

    Parameters
    ----------
    dtype : {"float32", "float64"}

    Examples
    --------
    >>> Flatten()(np.zeros((2, 3, 4))).shape
    (2, 12)
    """

    def __init__(self, dtype="float32", name=None):
        super().__init__(name=name, dtype=dtype)

    def compute_output_spec(self, inputs, training=False):
        if len(inputs.shape) < 1:
            raise ValueError(f"expected input shape (batch, ...), got {inputs.shape}")
        rest = inputs.shape[1:]
        n = None if any(d is None for d in rest) else int(np.prod(rest, dtype=np.int64))
        return engine.SymbolicTensor((inputs.shape[0], n), self.dtype)

    def _forward(self, inputs, training=False):
        x = np.asarray(inputs[0])
        if x.ndim < 1:
            raise ValueError(f"expected input of shape (batch, ...), got shape {x.shape}")
        x = self._input(x)
        n = int(np.prod(x.shape[1:], dtype=np.int64))
        return [x.reshape(x.shape[0], n)], x.shape              # 1. y = x.reshape(B, -1)

    def _backward(self, shape, d_outputs):
        return [d_outputs[0].reshape(shape)], None              # 1b. dx = dy.reshape


__all__ = ["Activation", "Dropout", "Embedding", "Flatten", "RepeatVector"]
