"""Global pooling over time (Keras 3's ``GlobalAveragePooling1D`` and
``GlobalMaxPooling1D``): a sequence ``(B, T, D)`` to one vector ``(B, D)``, counting only
the real steps when a mask of real steps comes with it.

Notation: ``x (B, T, D)`` (``channels_last``; ``channels_first`` is ``(B, D, T)``),
``m (B, T)`` the mask (1 for a real step), ``y (B, D)``.
"""
import numpy as np

from crnn import engine
from crnn.layers.base import Layer

__all__ = ["GlobalAveragePooling1D", "GlobalMaxPooling1D"]


class _GlobalPooling1D(Layer, register=False):   # a base: no file names it
    def __init__(self, data_format="channels_last", keepdims=False, dtype="float32",
                 name=None):
        super().__init__(name=name, dtype=dtype)
        if data_format is None:
            data_format = "channels_last"
        if data_format not in ("channels_last", "channels_first"):
            raise ValueError(f"expected data_format 'channels_last' or 'channels_first', "
                             f"got {data_format!r}")
        self.data_format = data_format
        self.keepdims = bool(keepdims)
        self.built = True

    @property
    def _steps_axis(self):
        return 1 if self.data_format == "channels_last" else 2

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"expected input of shape (batch, steps, features) for "
                             f"{type(self).__name__} ({self.name!r}), got "
                             f"{tuple(input_shape)}")
        shape = list(input_shape)
        if self.keepdims:
            shape[self._steps_axis] = 1
        else:
            del shape[self._steps_axis]
        return tuple(shape)

    def compute_output_spec(self, inputs, mask=None):
        return engine.SymbolicTensor(self.compute_output_shape(inputs.shape), self.dtype)

    def compute_mask(self, inputs, mask=None):
        return None                          # the time axis is gone

    def call(self, inputs, mask=None):
        if mask is not None:
            mask = np.asarray(engine.value_of(mask), dtype=bool)
        return self._run([inputs], mask=mask)[0]

    def backward(self, grad):
        return self._backward_last([np.asarray(grad, dtype=self.dtype)])[0]

    def _input(self, inputs, mask):
        x = np.asarray(inputs[0])
        if x.ndim != 3:
            raise ValueError(f"expected input of shape (batch, steps, features) for "
                             f"{type(self).__name__} ({self.name!r}), got shape {x.shape}")
        x = np.ascontiguousarray(x, dtype=self.dtype)
        m = None
        if mask is not None:
            want = (x.shape[0], x.shape[self._steps_axis])
            if mask.shape != want:
                raise ValueError(f"expected a mask of shape {want} for {type(self).__name__} "
                                 f"({self.name!r}), got {mask.shape}")
            m = np.expand_dims(mask, 2 if self.data_format == "channels_last" else 1)
        return x, m


class GlobalAveragePooling1D(_GlobalPooling1D):
    """The mean over the steps, of the real ones only with a mask (Keras 3's).

    .. math:: y_{b,d} = \\frac{\\sum_t m_{b,t} x_{b,t,d}}{\\sum_t m_{b,t}}

    (:math:`m = 1` without a mask). A sequence without any real step gives 0 (Keras
    divides 0 by 0 into NaN).

    Parameters
    ----------
    data_format : {"channels_last", "channels_first"}
        ``(B, T, D)`` or ``(B, D, T)``.
    keepdims : bool, default False
        Keep the steps axis, of size 1.
    dtype : {"float32", "float64"}
    name : str, optional

    Examples
    --------
    >>> x = np.array([[[1.0], [3.0], [100.0]]])
    >>> GlobalAveragePooling1D()(x, mask=np.array([[True, True, False]])).tolist()
    [[2.0]]
    """

    supports_masking = True

    def _forward(self, inputs, mask=None):
        x, m = self._input(inputs, mask)
        ax = self._steps_axis
        if m is None:
            return [x.mean(axis=ax, keepdims=self.keepdims)], (x.shape, None, None)
        w = m.astype(self.dtype)
        count = np.maximum(w.sum(axis=ax, keepdims=True), 1)     # 1. real steps (>= 1)
        y = (x * w).sum(axis=ax, keepdims=True) / count          # 2. y = sum m x / count
        return [y if self.keepdims else y.squeeze(ax)], (x.shape, w, count)

    def _backward(self, cache, d_outputs):
        shape, w, count = cache
        ax = self._steps_axis
        dy = d_outputs[0]
        if not self.keepdims:
            dy = np.expand_dims(dy, ax)
        if w is None:
            return [np.broadcast_to(dy / shape[ax], shape).copy()], None
        return [dy * w / count], None                            # 2b. dx = dy m / count


class GlobalMaxPooling1D(_GlobalPooling1D):
    """The maximum over the steps (Keras 3's), of the real ones only with a mask.

    .. math:: y_{b,d} = \\max_{t:\\, m_{b,t}} x_{b,t,d}

    Keras's layer ignores a mask; here a padded step never wins (so the result does not
    depend on what the padding holds), and a sequence without any real step gives 0.
    The gradient goes to the step that holds the maximum (the first one on a tie).

    Parameters
    ----------
    data_format : {"channels_last", "channels_first"}
    keepdims : bool, default False
    dtype : {"float32", "float64"}
    name : str, optional

    Examples
    --------
    >>> x = np.array([[[1.0], [3.0], [100.0]]])
    >>> GlobalMaxPooling1D()(x, mask=np.array([[True, True, False]])).tolist()
    [[3.0]]
    """

    supports_masking = True

    def _forward(self, inputs, mask=None):
        x, m = self._input(inputs, mask)
        ax = self._steps_axis
        xm = x if m is None else np.where(m, x, -np.inf)          # 1. padding never wins
        idx = np.argmax(xm, axis=ax)                              # 2. where the max is
        y = np.take_along_axis(x, np.expand_dims(idx, ax), axis=ax)
        if m is not None:
            y = np.where(m.any(axis=ax, keepdims=True), y, 0)     #    none real: 0
        has = None if m is None else m.any(axis=ax, keepdims=True)
        return [y if self.keepdims else y.squeeze(ax)], (x.shape, idx, has)

    def _backward(self, cache, d_outputs):
        shape, idx, has = cache
        ax = self._steps_axis
        dy = d_outputs[0]
        if not self.keepdims:
            dy = np.expand_dims(dy, ax)
        if has is not None:
            dy = np.where(has, dy, 0)
        dx = np.zeros(shape, dtype=self.dtype)                    # 2b. dy to the argmax
        np.put_along_axis(dx, np.expand_dims(idx, ax), dy, axis=ax)
        return [dx], None
