"""Stateful metrics: running weighted means over batches, as Keras's ``MeanMetricWrapper``.

A metric has a ``name``, ``update(y_true, y_pred, sample_weight=None)``, ``result()`` and
``reset()``. Each update computes one value per sample (and per step) ``m_v`` over
``V = y_pred.shape[:-1]`` (``(B,)``, or ``(B, T)`` for sequences, where every step counts)
and accumulates

.. math::

    \\mathrm{total} \\mathrel{+}= \\sum_v w_v m_v, \\qquad
    \\mathrm{count} \\mathrel{+}= \\sum_v w_v, \\qquad
    \\mathrm{result} = \\mathrm{total} / \\mathrm{count}

(0 while the count is 0), where ``w`` is ``sample_weight`` broadcast to ``V`` as the losses
do (``(B,)`` per sample, ``(B, T)`` per step; ones when absent). The sums are kept in
float64.

``get("accuracy")`` (or ``"acc"``) picks the accuracy that fits the loss, as Keras's
``compile`` does: binary accuracy for ``binary_crossentropy`` (threshold 0.5 on
probabilities, 0 on logits), categorical accuracy for ``categorical_crossentropy``, sparse
categorical accuracy for ``sparse_categorical_crossentropy``; for any other loss (or none),
Keras 3's rule from the shapes of the first batch: binary when ``y_pred.shape[-1] == 1``,
sparse when ``y_true`` has fewer axes than ``y_pred`` (or a last axis of 1 against several
classes), categorical otherwise.
"""
import numpy as np

from crnn import losses as _losses


def _check_pred(y_pred):
    y_pred = np.asarray(y_pred)
    if not (np.issubdtype(y_pred.dtype, np.floating) or np.issubdtype(y_pred.dtype, np.integer)):
        raise ValueError(f"expected y_pred to hold real numbers, got dtype {y_pred.dtype}")
    if y_pred.ndim < 2:
        raise ValueError(f"expected y_pred of rank >= 2, (batch, ..., features), got shape "
                         f"{y_pred.shape}")
    return y_pred


def _check_true(y_true, y_pred):
    """``y_true`` in ``y_pred``'s shape (Keras's squeeze-or-expand rule), as float64."""
    y_true = _losses._numeric("y_true", y_true).astype(np.float64, copy=False)
    if y_true.shape == y_pred.shape:
        return y_true
    if y_pred.shape[-1] == 1 and y_true.shape == y_pred.shape[:-1]:
        return y_true[..., None]
    if y_true.shape == y_pred.shape + (1,):
        return y_true[..., 0]
    raise ValueError(f"expected y_true of shape {y_pred.shape} (the shape of y_pred), got "
                     f"{y_true.shape}")


def _check_sparse_true(y_true, y_pred):
    """Class indices of shape ``y_pred.shape[:-1]`` (or with a trailing axis of 1)."""
    y_true = _losses._numeric("y_true", y_true)
    V = y_pred.shape[:-1]
    if y_true.shape == V + (1,):
        y_true = y_true[..., 0]
    if y_true.shape != V:
        raise ValueError(f"expected y_true (class indices) of shape {V} or {V + (1,)} "
                         f"(y_pred.shape[:-1]), got {y_true.shape}")
    return y_true


# -- per-value metric functions (shape y_pred.shape[:-1]) -------------------------------------
def binary_accuracy(y_true, y_pred, threshold=0.5):
    """Fraction of outputs whose thresholded prediction equals the target, per sample.

    .. math:: m_v = \\frac{1}{C} \\sum_c [\\, [p_{vc} > \\tau] = y_{vc} \\,]
    """
    y_pred = _check_pred(y_pred)
    y_true = _check_true(y_true, y_pred)
    predicted = (y_pred > threshold).astype(np.float64)
    return np.mean(predicted == y_true, axis=-1)


def categorical_accuracy(y_true, y_pred):
    """Whether the arg-max of the prediction is the arg-max of the one-hot target.

    .. math:: m_v = [\\operatorname{argmax}_c p_{vc} = \\operatorname{argmax}_c y_{vc}]
    """
    y_pred = _check_pred(y_pred)
    y_true = _losses._numeric("y_true", y_true)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"expected y_true (one-hot) of shape {y_pred.shape} (the shape of "
                         f"y_pred), got {y_true.shape}")
    return (np.argmax(y_pred, axis=-1) == np.argmax(y_true, axis=-1)).astype(np.float64)


def sparse_categorical_accuracy(y_true, y_pred):
    """Whether the arg-max of the prediction is the integer target.

    .. math:: m_v = [\\operatorname{argmax}_c p_{vc} = k_v]
    """
    y_pred = _check_pred(y_pred)
    k = _check_sparse_true(y_true, y_pred)
    return (np.argmax(y_pred, axis=-1) == k).astype(np.float64)


def mean_squared_error(y_true, y_pred):
    """.. math:: m_v = \\frac{1}{C} \\sum_c (p_{vc} - y_{vc})^2"""
    y_pred = _check_pred(y_pred)
    y_true = _check_true(y_true, y_pred)
    return np.mean(np.square(y_pred - y_true), axis=-1)


def mean_absolute_error(y_true, y_pred):
    """.. math:: m_v = \\frac{1}{C} \\sum_c |p_{vc} - y_{vc}|"""
    y_pred = _check_pred(y_pred)
    y_true = _check_true(y_true, y_pred)
    return np.mean(np.abs(y_pred - y_true), axis=-1)


# -- stateful metrics -----------------------------------------------------------------------
class Metric:
    """A running weighted mean of per-value results, over every batch since :meth:`reset`."""

    default_name = None

    def __init__(self, name=None):
        if name is not None and not isinstance(name, str):
            raise ValueError(f"expected name to be a string, got {name!r}")
        self.name = name or self.default_name
        self.reset()

    def reset(self):
        """Forget every batch seen."""
        self.total = 0.0
        self.count = 0.0

    def result(self):
        """The weighted mean so far, :math:`\\mathrm{total} / \\mathrm{count}` (0.0 before any
        weight was seen)."""
        return self.total / self.count if self.count != 0 else 0.0

    def _accumulate(self, values, sample_weight):
        values = np.asarray(values, dtype=np.float64)
        w = _losses._check_sample_weight(sample_weight, values.shape, np.float64)
        if w is None:
            self.total += float(np.sum(values))
            self.count += float(values.size)
        else:
            self.total += float(np.sum(values * w))
            self.count += float(np.sum(w))

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r})"


class Mean(Metric):
    """The weighted mean of values passed to ``update(values, sample_weight=None)`` (e.g. the
    loss of each batch)."""

    default_name = "mean"

    def update(self, values, sample_weight=None):
        values = _losses._numeric("values", values)
        self._accumulate(values, sample_weight)


class MeanMetricWrapper(Metric):
    """A per-value metric function ``fn(y_true, y_pred) -> m`` of shape
    ``y_pred.shape[:-1]``, averaged over every value of every batch."""

    def __init__(self, fn, name=None):
        super().__init__(name=name or getattr(fn, "__name__", None))
        self.fn = fn

    def update(self, y_true, y_pred, sample_weight=None):
        """Add one batch: ``y_pred`` of shape ``(B, ..., C)``, ``y_true`` as the metric
        needs, ``sample_weight`` of shape ``(B,)`` or ``(B, T)``."""
        self._accumulate(self.fn(y_true, y_pred), sample_weight)


class BinaryAccuracy(MeanMetricWrapper):
    """:func:`binary_accuracy` averaged over batches. ``threshold`` defaults to 0.5, or to 0
    with ``from_logits`` (the sigmoid of a logit exceeds 0.5 exactly when the logit exceeds
    0)."""

    default_name = "binary_accuracy"

    def __init__(self, threshold=None, from_logits=False, name=None):
        if threshold is None:
            threshold = 0.0 if from_logits else 0.5
        self.threshold = float(threshold)
        self.from_logits = bool(from_logits)
        super().__init__(self._fn, name=name or self.default_name)

    def _fn(self, y_true, y_pred):
        return binary_accuracy(y_true, y_pred, self.threshold)


class CategoricalAccuracy(MeanMetricWrapper):
    """:func:`categorical_accuracy` averaged over batches."""

    default_name = "categorical_accuracy"

    def __init__(self, name=None):
        super().__init__(categorical_accuracy, name=name or self.default_name)


class SparseCategoricalAccuracy(MeanMetricWrapper):
    """:func:`sparse_categorical_accuracy` averaged over batches."""

    default_name = "sparse_categorical_accuracy"

    def __init__(self, name=None):
        super().__init__(sparse_categorical_accuracy, name=name or self.default_name)


class MeanSquaredError(MeanMetricWrapper):
    """:func:`mean_squared_error` averaged over batches."""

    default_name = "mean_squared_error"

    def __init__(self, name=None):
        super().__init__(mean_squared_error, name=name or self.default_name)


class MeanAbsoluteError(MeanMetricWrapper):
    """:func:`mean_absolute_error` averaged over batches."""

    default_name = "mean_absolute_error"

    def __init__(self, name=None):
        super().__init__(mean_absolute_error, name=name or self.default_name)


class Accuracy(Metric):
    """``"accuracy"`` for a loss that does not say which accuracy it means: the kind is
    chosen from the shapes of the first batch by Keras 3's rule (see the module docstring)
    and kept from then on (:meth:`reset` clears the counts, not the choice)."""

    default_name = "accuracy"

    def __init__(self, from_logits=False, name=None):
        self.from_logits = bool(from_logits)
        self.resolved = None
        super().__init__(name=name)

    def reset(self):
        super().reset()
        if self.resolved is not None:
            self.resolved.reset()

    def result(self):
        return self.resolved.result() if self.resolved is not None else 0.0

    def update(self, y_true, y_pred, sample_weight=None):
        if self.resolved is None:
            y_t, y_p = np.shape(y_true), np.shape(y_pred)
            if len(y_p) and y_p[-1] == 1:
                self.resolved = BinaryAccuracy(from_logits=self.from_logits, name=self.name)
            elif len(y_t) < len(y_p) or (len(y_t) and len(y_p) and y_t[-1] == 1
                                         and y_p[-1] > 1):
                self.resolved = SparseCategoricalAccuracy(name=self.name)
            else:
                self.resolved = CategoricalAccuracy(name=self.name)
        self.resolved.update(y_true, y_pred, sample_weight)


_ACCURACY_FOR_LOSS = {"binary_crossentropy": BinaryAccuracy,
                      "categorical_crossentropy": CategoricalAccuracy,
                      "sparse_categorical_crossentropy": SparseCategoricalAccuracy}
_NAMES = {"binary_accuracy": BinaryAccuracy, "categorical_accuracy": CategoricalAccuracy,
          "sparse_categorical_accuracy": SparseCategoricalAccuracy,
          "mse": MeanSquaredError, "mean_squared_error": MeanSquaredError,
          "mae": MeanAbsoluteError, "mean_absolute_error": MeanAbsoluteError}


def _loss_kind(loss):
    """``(name, from_logits)`` of a loss given by name, object, class or function."""
    if loss is None:
        return None, False
    if isinstance(loss, str):
        cls = _losses.loss_class(loss)
        return (cls.default_name if cls else loss), False
    if isinstance(loss, _losses.Loss):
        return type(loss).default_name, bool(loss.get_config().get("from_logits", False))
    cls = _losses.loss_class(loss)
    return (cls.default_name, False) if cls is not None else (None, False)


def get(identifier, loss_name=None, from_logits=None):
    """Resolve a metric by name, or return a metric object as it is.

    Parameters
    ----------
    identifier : str or Metric
        ``"accuracy"``/``"acc"``, ``"binary_accuracy"``, ``"categorical_accuracy"``,
        ``"sparse_categorical_accuracy"``, ``"mse"``/``"mean_squared_error"``,
        ``"mae"``/``"mean_absolute_error"``; the metric's ``name`` is the string given.
    loss_name : str, loss object or loss function, optional
        The loss the model trains with; it decides what ``"accuracy"`` means (and, for a loss
        object, whether the predictions are logits).
    from_logits : bool, optional
        Whether predictions are logits (binary accuracy then thresholds at 0); by default
        taken from a loss object, else False.

    Returns
    -------
    Metric
    """
    if isinstance(identifier, Metric):
        return identifier
    if not isinstance(identifier, str):
        raise ValueError(f"expected a metric name or a Metric, got {identifier!r}")
    name, loss_logits = _loss_kind(loss_name)
    logits = loss_logits if from_logits is None else bool(from_logits)
    key = identifier.lower()
    if key in ("accuracy", "acc"):
        cls = _ACCURACY_FOR_LOSS.get(name)
        if cls is BinaryAccuracy:
            return BinaryAccuracy(from_logits=logits, name=identifier)
        if cls is not None:
            return cls(name=identifier)
        return Accuracy(from_logits=logits, name=identifier)
    cls = _NAMES.get(key)
    if cls is None:
        known = sorted([*_NAMES, "acc", "accuracy"])
        raise ValueError(f"expected a metric name, one of {known}, got {identifier!r}")
    if cls is BinaryAccuracy:
        return BinaryAccuracy(from_logits=logits, name=identifier)
    return cls(name=identifier)
