"""LayerNormalization (Keras 3's): each sample normalised over its feature axes, then
scaled and shifted by trained weights.

Notation: ``x`` the input, the statistics taken over the axes in ``axis`` (the last by
default), ``N`` entries per statistic, ``mu`` the mean, ``var`` the (biased) variance,
``r = 1 / sqrt(var + epsilon)``, ``xh = (x - mu) r``, ``y`` the output.
"""
import numpy as np

from crnn import engine, initializers
from crnn.layers.base import Layer, as_input

__all__ = ["LayerNormalization"]


class LayerNormalization(Layer):
    """Normalise each sample over ``axis`` (Keras 3's ``LayerNormalization``).

    .. math::

        \\mu = \\mathrm{mean}_{axis}(x), \\quad
        \\sigma^2 = \\mathrm{mean}_{axis}((x - \\mu)^2), \\quad
        y = \\gamma \\frac{x - \\mu}{\\sqrt{\\sigma^2 + \\epsilon}} + \\beta

    With ``rms_scaling`` (Keras 3's formula, which keeps the centred variance but not the
    centring): :math:`y = \\gamma \\, x / \\sqrt{\\sigma^2 + \\epsilon}`.

    Parameters
    ----------
    axis : int or list of ints, default -1
        The axes normalised over (not the batch axis).
    epsilon : float, default 1e-3
    center : bool, default True
        Train ``beta`` (an offset).
    scale : bool, default True
        Train ``gamma`` (a factor).
    rms_scaling : bool, default False
        Scale by ``gamma`` and the inverse root of the variance only (no ``beta``).
    beta_initializer, gamma_initializer : str or callable
        Keras's defaults ``"zeros"`` and ``"ones"``.
    dtype : {"float32", "float64"}
    name : str, optional

    Weights ``[gamma, beta]`` (where they exist), each shaped as the input on ``axis``.
    The mask of real steps passes through (each step is normalised on its own).

    Examples
    --------
    >>> y = LayerNormalization(epsilon=0.0, dtype="float64")(np.array([[1.0, 2.0, 3.0]]))
    >>> np.round(y, 4).tolist()
    [[-1.2247, 0.0, 1.2247]]
    """

    supports_masking = True

    def __init__(self, axis=-1, epsilon=1e-3, center=True, scale=True, rms_scaling=False,
                 beta_initializer="zeros", gamma_initializer="ones", dtype="float32",
                 name=None):
        super().__init__(name=name, dtype=dtype)
        axes = axis if isinstance(axis, (list, tuple)) else [axis]
        if not axes or not all(isinstance(a, (int, np.integer)) and not isinstance(a, bool)
                               for a in axes):
            raise ValueError(f"expected axis to be an int or a list of ints, got {axis!r}")
        self.axis = [int(a) for a in axes] if isinstance(axis, (list, tuple)) else int(axis)
        if (isinstance(epsilon, bool) or not isinstance(epsilon, (int, float, np.floating))
                or not epsilon >= 0):
            raise ValueError(f"expected epsilon to be a number >= 0, got {epsilon!r}")
        self.epsilon = float(epsilon)
        self.center, self.scale = bool(center), bool(scale)
        self.rms_scaling = bool(rms_scaling)
        for init in (beta_initializer, gamma_initializer):
            initializers.get(init)
        self.beta_initializer = beta_initializer
        self.gamma_initializer = gamma_initializer
        self._rng = np.random.default_rng(0)     # for an initializer that draws

    def _axes(self, rank):
        axes = self.axis if isinstance(self.axis, list) else [self.axis]
        out = []
        for a in axes:
            if not -rank <= a < rank or a % rank == 0:
                raise ValueError(f"expected the axis of LayerNormalization ({self.name!r}) "
                                 f"to name non-batch axes of an input of rank {rank}, got "
                                 f"axis={self.axis}")
            out.append(a % rank)
        if len(set(out)) != len(out):
            raise ValueError(f"expected distinct axes, got axis={self.axis}")
        return sorted(out)

    def build(self, input_shape):
        if self.built:
            return
        shape = tuple(input_shape)
        axes = self._axes(len(shape))
        pshape = tuple(shape[a] for a in axes)
        if any(d is None for d in pshape):
            raise ValueError(f"expected known sizes on the normalised axes of "
                             f"LayerNormalization ({self.name!r}), got input shape {shape}")
        self.params.clear()
        if self.scale or self.rms_scaling:
            self.params["gamma"] = np.ascontiguousarray(initializers.get(
                self.gamma_initializer)(pshape, self.dtype, self._rng), dtype=self.dtype)
        if self.center and not self.rms_scaling:
            self.params["beta"] = np.ascontiguousarray(initializers.get(
                self.beta_initializer)(pshape, self.dtype, self._rng), dtype=self.dtype)
        self._param_axes = axes
        self.built = True

    def compute_output_shape(self, input_shape):
        self._axes(len(input_shape))
        return tuple(input_shape)

    def compute_output_spec(self, inputs, training=False):
        self._maybe_build(inputs.shape)
        return engine.SymbolicTensor(self.compute_output_shape(inputs.shape), self.dtype)

    def call(self, inputs, training=False):
        """``inputs`` normalised over ``axis``, scaled by ``gamma`` and shifted by ``beta``."""
        return self._run([inputs])[0]

    def backward(self, grad):
        """``dx`` for ``grad`` (the output's shape), through the last call, outside a
        tape; sets ``grads``."""
        return self._backward_last([np.asarray(grad, dtype=self.dtype)])[0]

    def _broadcast(self, w, rank, axes):
        shape = [1] * rank
        for a, n in zip(axes, w.shape):
            shape[a] = n
        return w.reshape(shape)

    def _forward(self, inputs):
        x = np.asarray(inputs[0])
        x = as_input("input", x, self.dtype, max(x.ndim, 1), "(batch, ...)")
        axes = self._axes(x.ndim)
        self._maybe_build(x.shape)
        if self._param_axes != axes or any(
                x.shape[a] != n for a, n in zip(axes, next(iter(self.params.values()),
                                                            np.empty(())).shape)):
            raise ValueError(f"expected an input shaped as LayerNormalization "
                             f"({self.name!r}) was built for on axes {axes}, got shape "
                             f"{x.shape}")
        ax = tuple(axes)
        mu = x.mean(axis=ax, keepdims=True)                       # 1. mu
        xc = x - mu                                               # 2. x - mu
        var = np.mean(xc * xc, axis=ax, keepdims=True)            # 3. var
        r = 1.0 / np.sqrt(var + self.dtype.type(self.epsilon))    # 4. r = 1/sqrt(var+eps)
        xh = (x if self.rms_scaling else xc) * r                  # 5. xh (rms: x r)
        y = xh
        if "gamma" in self.params:
            y = y * self._broadcast(self.params["gamma"], x.ndim, axes)   # 6. * gamma
        if "beta" in self.params:
            y = y + self._broadcast(self.params["beta"], x.ndim, axes)    # 7. + beta
        return [y], (x, xc, r, xh, axes)

    def _backward(self, cache, d_outputs):
        x, xc, r, xh, axes = cache
        dy = d_outputs[0]
        ax = tuple(axes)
        other = tuple(i for i in range(x.ndim) if i not in axes)
        grads = {}
        if "beta" in self.params:                                 # 7b. dbeta = sum dy
            grads["beta"] = dy.sum(axis=other).reshape(self.params["beta"].shape)
        dxh = dy
        if "gamma" in self.params:                                # 6b. dgamma, dxh
            grads["gamma"] = (dy * xh).sum(axis=other).reshape(self.params["gamma"].shape)
            dxh = dy * self._broadcast(self.params["gamma"], x.ndim, axes)
        grads = {name: grads[name] for name in self.params}      # Keras's order
        n = np.prod([x.shape[a] for a in axes])
        if self.rms_scaling:
            # 5b-1b. xh = x r(var(x)): dx = dxh r - xc r^3 mean(dxh x)
            dx = dxh * r - xc * (r ** 3) * np.sum(dxh * x, axis=ax, keepdims=True) / n
        else:
            # 5b-1b. xh = (x - mu) r: dx = r (dxh - mean(dxh) - xh mean(dxh xh))
            dx = r * (dxh - dxh.sum(axis=ax, keepdims=True) / n
                      - xh * np.sum(dxh * xh, axis=ax, keepdims=True) / n)
        return [dx.astype(self.dtype, copy=False)], grads
