"""Attention layers (Keras 3's ``Attention`` and ``AdditiveAttention``): each query
step reads a weighted mean of the value steps, weighted by how well the query matches
each key.

Notation: ``B`` batch, ``Tq`` query steps, ``Tv`` value (and key) steps, ``D`` the
query and key features, ``Dv`` the value features; ``q (B, Tq, D)``, ``v (B, Tv, Dv)``,
``k (B, Tv, D)`` (``k = v`` when no key is given), scores ``s (B, Tq, Tv)``, weights
``w (B, Tq, Tv)``, output ``o (B, Tq, Dv)``. Forward, numbered::

    1-2. s = score(q, k)                       (the layer's own: dot, concat, additive)
    3.   s = s - 1e9 where the score mask is False   (the value mask, the causal mask)
    4.   w = softmax(s) over the value steps
    5.   w = w * dropout mask                  (training, dropout > 0)
    6.   o = w @ v
    7.   o = o * query mask

and backward undoes them in reverse, with the same numbers. A call on ``[q, v]`` or
``[q, v, k]`` may pass ``mask=[query_mask (B, Tq), value_mask (B, Tv)]`` (a functional
model passes its inputs' masks), ``use_causal_mask=True`` (query step ``i`` sees value
steps ``j <= i``), ``return_attention_scores=True`` (returns ``(o, w)``) and
``training``. The output's mask is the query's.
"""
import numpy as np

from crnn import activations, engine, initializers
from crnn.layers.base import Layer
from crnn.layers.recurrent import check_rate, dropout_mask

__all__ = ["AdditiveAttention", "Attention"]

_MASKED = 1.0e9      # Keras's: a masked score becomes s - 1e9 (weight exp(-1e9) = 0)


class Attention(Layer):
    """Dot-product attention (Luong-style; Keras 3's ``Attention``).

    .. math::

        s_{b,i,j} = \\gamma \\, q_{b,i} \\cdot k_{b,j} \\quad (\\mathrm{dot}), \\qquad
        s_{b,i,j} = c \\sum_d \\tanh(\\gamma (q_{b,i,d} + k_{b,j,d}))
        \\quad (\\mathrm{concat}),

        w_{b,i,:} = \\mathrm{softmax}(s_{b,i,:}), \\qquad o_{b,i} = \\sum_j w_{b,i,j} v_{b,j}

    with :math:`\\gamma` the trained ``scale`` (1 without ``use_scale``) and :math:`c` the
    trained ``concat_score_weight``. Masks as in :mod:`crnn.layers.attention`.

    Parameters
    ----------
    use_scale : bool, default False
        Train a scalar ``scale`` (initially 1) multiplying the scores.
    score_mode : {"dot", "concat"}
        How a query step is matched with a key step.
    dropout : float in [0, 1)
        Dropout on the attention weights while training.
    seed : int, optional
        Seeds the dropout masks.
    dtype : {"float32", "float64"}
    name : str, optional

    Weights (in this order, where they exist): ``scale ()``, ``concat_score_weight ()``.

    Examples
    --------
    >>> q = np.zeros((1, 2, 3)); v = np.arange(12.0).reshape(1, 4, 3)
    >>> # equal scores: each query step averages the two real value steps
    >>> Attention()([q, v], mask=[None, np.array([[1, 1, 0, 0]], bool)]).tolist()
    [[[1.5, 2.5, 3.5], [1.5, 2.5, 3.5]]]
    """

    def __init__(self, use_scale=False, score_mode="dot", dropout=0.0, seed=None,
                 dtype="float32", name=None):
        super().__init__(name=name, dtype=dtype)
        if score_mode not in ("dot", "concat"):
            raise ValueError(f"expected score_mode to be 'dot' or 'concat', got "
                             f"{score_mode!r}")
        self.use_scale = bool(use_scale)
        self.score_mode = score_mode
        self.dropout = check_rate("dropout", dropout)
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    # -- weights ------------------------------------------------------------------------
    def build(self, input_shape):
        """Create the weights from ``[query shape, value shape(, key shape)]``."""
        if self.built:
            return
        shapes = self._check_list(input_shape, "input shapes")
        self.params.clear()
        for name, shape, init in self._weight_specs(shapes[0][-1]):
            # (np.array, not ascontiguousarray: that makes a scalar weight 1-D)
            w = np.array(initializers.get(init)(shape, self.dtype, self._rng),
                         dtype=self.dtype, order="C")
            if w.shape != shape:
                raise ValueError(f"expected the initializer of {name} to return shape "
                                 f"{shape}, got {w.shape}")
            self.params[name] = w
        self.built = True

    def _weight_specs(self, dim):
        specs = []
        if self.use_scale:
            specs.append(("scale", (), "ones"))
        if self.score_mode == "concat":
            specs.append(("concat_score_weight", (), "ones"))
        return specs

    # -- checks ---------------------------------------------------------------------------
    def _check_list(self, inputs, kind="inputs"):
        if not isinstance(inputs, (list, tuple)) or len(inputs) not in (2, 3):
            got = (f"a list of {len(inputs)}" if isinstance(inputs, (list, tuple))
                   else type(inputs).__name__)
            raise ValueError(f"expected {type(self).__name__} ({self.name!r}) to be called "
                             f"on a list [query, value] or [query, value, key] of {kind}, "
                             f"got {got}")
        return list(inputs)

    def compute_output_shape(self, input_shape):
        shapes = [tuple(s) for s in self._check_list(input_shape, "input shapes")]
        q, v = shapes[0], shapes[1]
        k = shapes[2] if len(shapes) == 3 else v
        for what, s in (("query", q), ("value", v), ("key", k)):
            if len(s) != 3:
                raise ValueError(f"expected the {what} of {type(self).__name__} "
                                 f"({self.name!r}) to have shape (batch, steps, features), "
                                 f"got {s}")

        def clash(a, b):
            return a is not None and b is not None and a != b
        if clash(q[0], v[0]) or clash(q[0], k[0]):
            raise ValueError(f"expected one batch size for the query, value and key of "
                             f"{type(self).__name__} ({self.name!r}), got shapes {shapes}")
        if clash(v[1], k[1]):
            raise ValueError(f"expected the value and key of {type(self).__name__} "
                             f"({self.name!r}) to have one number of steps, got value {v} "
                             f"and key {k}")
        if clash(q[2], k[2]):
            raise ValueError(f"expected the query and key of {type(self).__name__} "
                             f"({self.name!r}) to have one number of features, got query "
                             f"{q} and key {k}")
        return (q[0], q[1], v[2])

    def compute_output_spec(self, inputs, mask=None, training=False,
                            return_attention_scores=False, use_causal_mask=False):
        shapes = [t.shape for t in self._check_list(inputs)]
        out = self.compute_output_shape(shapes)
        if shapes[0][-1] is None:
            raise ValueError(f"expected a known number of query features for "
                             f"{type(self).__name__} ({self.name!r}), got shape "
                             f"{shapes[0]}")
        self._maybe_build(shapes)
        o = engine.SymbolicTensor(out, self.dtype)
        if return_attention_scores:
            return o, engine.SymbolicTensor((out[0], out[1], shapes[1][1]), self.dtype)
        return o

    def _masks(self, mask, n):
        if mask is None:
            return None, None
        if not isinstance(mask, (list, tuple)) or len(mask) not in (2, 3):
            raise ValueError(f"expected the mask of {type(self).__name__} ({self.name!r}) to "
                             f"be a list [query_mask, value_mask] (either may be None), got "
                             f"{mask!r:.80}")
        return [None if m is None else np.asarray(engine.value_of(m), dtype=bool)
                for m in mask[:2]]

    # -- calling ----------------------------------------------------------------------------
    def call(self, inputs, mask=None, training=False, return_attention_scores=False,
             use_causal_mask=False):
        """The attention of ``inputs = [query, value]`` or ``[query, value, key]`` (see the
        class docstring): ``(B, T_q, D)``, with the scores ``(B, T_q, T_v)`` too when
        ``return_attention_scores``; ``mask`` is ``[query_mask, value_mask]``."""
        inputs = self._check_list(inputs)
        q_mask, v_mask = self._masks(mask, len(inputs))
        o, w = self._run(inputs, q_mask=q_mask, v_mask=v_mask, training=bool(training),
                         causal=bool(use_causal_mask))
        return (o, w) if return_attention_scores else o

    def compute_mask(self, inputs, mask=None):
        """The query's mask (Keras's rule), or None."""
        if mask is None or not isinstance(mask, (list, tuple)) or not mask:
            return None
        return None if mask[0] is None else np.asarray(engine.value_of(mask[0]), bool)

    def backward(self, grad, grad_scores=None):
        """The inputs' gradients ``[dq, dv(, dk)]`` for ``grad (B, Tq, Dv)`` (and the
        weights' gradient ``grad_scores``), through the last call, outside a tape; sets
        ``grads``."""
        dw = None if grad_scores is None else np.asarray(grad_scores, dtype=self.dtype)
        return self._backward_last([np.asarray(grad, dtype=self.dtype), dw])

    def _forward(self, inputs, q_mask=None, v_mask=None, training=False, causal=False):
        xs = [np.ascontiguousarray(a, dtype=self.dtype) for a in inputs]
        self.compute_output_shape([x.shape for x in xs])
        q, v = xs[0], xs[1]
        k = xs[2] if len(xs) == 3 else v
        B, Tq, _ = q.shape
        Tv = v.shape[1]
        for what, m, shape in (("query", q_mask, (B, Tq)), ("value", v_mask, (B, Tv))):
            if m is not None and m.shape != shape:
                raise ValueError(f"expected the {what} mask of {type(self).__name__} "
                                 f"({self.name!r}) of shape {shape}, got {m.shape}")
        self._maybe_build([x.shape for x in xs])
        s, score_cache = self._scores(q, k)                       # 1-2. the scores
        keep = None                                               # 3. the score mask
        if v_mask is not None:
            keep = v_mask[:, None, :]                             #    (B, 1, Tv)
        if causal:
            rows = np.arange(Tq)[:, None] >= np.arange(Tv)[None, :]   # j <= i
            keep = rows[None] if keep is None else keep & rows[None]
        if keep is not None:
            s = np.where(keep, s, s - self.dtype.type(_MASKED))
        w = activations.softmax(s, axis=-1)                       # 4. w = softmax(s)
        drop = None
        wd = w
        if training and self.dropout > 0:
            drop = dropout_mask(self._rng, w.shape, self.dropout, self.dtype)
            wd = w * drop                                         # 5. dropout on w
        o = np.matmul(wd, v)                                      # 6. o = w v
        qm = None
        if q_mask is not None:
            qm = q_mask[:, :, None].astype(self.dtype)
            o = o * qm                                            # 7. o *= query mask
        return [o, wd], (v, w, wd, drop, qm, score_cache, len(xs) == 3)

    def _backward(self, cache, d_outputs):
        v, w, wd, drop, qm, score_cache, has_key = cache
        do, dwd_out = d_outputs
        if do is None:
            do = np.zeros(wd.shape[:2] + v.shape[2:], dtype=self.dtype)
        if qm is not None:
            do = do * qm                                          # 7b. masked steps: 0
        dwd = np.matmul(do, np.swapaxes(v, 1, 2))                 # 6b. dw = do v^T
        if dwd_out is not None:
            dwd = dwd + dwd_out
        dv = np.matmul(np.swapaxes(wd, 1, 2), do)                 #     dv = w^T do
        dw = dwd if drop is None else dwd * drop                  # 5b. through dropout
        ds = activations.softmax_backward(w, dw, axis=-1)         # 4b. through softmax
        # 3b. s - 1e9 is a shift by a constant: ds passes through unchanged
        dq, dk, d_params = self._scores_backward(ds, score_cache)  # 2b-1b.
        if has_key:
            return [dq, dv, dk], d_params
        return [dq, dv + dk], d_params                            # k was v

    # -- the scores ---------------------------------------------------------------------------
    def _scores(self, q, k):
        if self.score_mode == "dot":
            s0 = np.matmul(q, np.swapaxes(k, 1, 2))               # 1. s = q k^T
            s = s0 * self.params["scale"] if self.use_scale else s0   # 2. * scale
            return s, (q, k, s0)
        u = q[:, :, None, :] + k[:, None, :, :]                    # 1. u (B, Tq, Tv, D)
        z = u * self.params["scale"] if self.use_scale else u
        t = activations.tanh(z)                                    # 2. t = tanh(scale u)
        st = t.sum(axis=-1)
        s = self.params["concat_score_weight"] * st                #    s = c sum_d t
        return s, (u, t, st)

    def _scores_backward(self, ds, cache):
        grads = {}
        if self.score_mode == "dot":
            q, k, s0 = cache
            if self.use_scale:
                grads["scale"] = np.sum(ds * s0, dtype=self.dtype).reshape(())  # 2b.
                ds = ds * self.params["scale"]
            dq = np.matmul(ds, k)                                  # 1b. dq = ds k
            dk = np.matmul(np.swapaxes(ds, 1, 2), q)               #     dk = ds^T q
            return dq, dk, grads
        u, t, st = cache
        c = self.params["concat_score_weight"]
        dz = (c * ds)[..., None] * activations.tanh_grad(t)        # 2b. through c, tanh
        if self.use_scale:
            grads["scale"] = np.sum(dz * u, dtype=self.dtype).reshape(())
            dz = dz * self.params["scale"]
        grads["concat_score_weight"] = np.sum(ds * st, dtype=self.dtype).reshape(())
        grads = {name: grads[name] for name in self.params}        # Keras's order
        return dz.sum(axis=2), dz.sum(axis=1), grads               # 1b. u = q + k


class AdditiveAttention(Attention):
    """Additive attention (Bahdanau-style; Keras 3's ``AdditiveAttention``).

    .. math::

        s_{b,i,j} = \\sum_d \\gamma_d \\tanh(q_{b,i,d} + k_{b,j,d}), \\qquad
        w_{b,i,:} = \\mathrm{softmax}(s_{b,i,:}), \\qquad o_{b,i} = \\sum_j w_{b,i,j} v_{b,j}

    with :math:`\\gamma` the trained ``scale (D,)`` (Glorot-uniform initially; 1 without
    ``use_scale``). Calls, masks and outputs as :class:`Attention`. The query and key
    are used as they are: project them first (``Dense``) for Bahdanau's
    :math:`v^T \\tanh(W_1 q + W_2 k)`.

    Parameters
    ----------
    use_scale : bool, default True
    dropout : float in [0, 1)
    seed : int, optional
        Seeds the initial ``scale`` and the dropout masks.
    dtype : {"float32", "float64"}
    name : str, optional

    Weights: ``scale (D,)`` with ``use_scale``.

    Examples
    --------
    >>> layer = AdditiveAttention(use_scale=False)
    >>> layer([np.zeros((1, 2, 3)), np.ones((1, 4, 3))]).shape
    (1, 2, 3)
    """

    def __init__(self, use_scale=True, dropout=0.0, seed=None, dtype="float32", name=None):
        super().__init__(use_scale=use_scale, score_mode="dot", dropout=dropout, seed=seed,
                         dtype=dtype, name=name)

    def _weight_specs(self, dim):
        return [("scale", (int(dim),), "glorot_uniform")] if self.use_scale else []

    def _scores(self, q, k):
        u = q[:, :, None, :] + k[:, None, :, :]                    # 1. u (B, Tq, Tv, D)
        t = activations.tanh(u)                                    #    t = tanh(u)
        if self.use_scale:
            return np.sum(self.params["scale"] * t, axis=-1), t     # 2. s = sum_d g_d t_d
        return t.sum(axis=-1), t

    def _scores_backward(self, ds, t):
        grads = {}
        dt = ds[..., None]
        if self.use_scale:
            grads["scale"] = np.sum(dt * t, axis=(0, 1, 2))          # 2b. dg = sum ds t
            dt = dt * self.params["scale"]                          #     dt = ds g
        du = dt * activations.tanh_grad(t)                          # 1b. through tanh
        return du.sum(axis=2), du.sum(axis=1), grads                #     u = q + k
