"""crnn.metrics: which accuracy "accuracy" means, each metric against a hand computation,
running weighted means over batches, sequences (every step counts), reset and lookup."""
import numpy as np
import pytest

from crnn import losses, metrics


def test_accuracy_follows_the_loss():
    m = metrics.get("accuracy", loss_name="binary_crossentropy")
    assert isinstance(m, metrics.BinaryAccuracy) and m.threshold == 0.5
    m = metrics.get("accuracy", loss_name=losses.BinaryCrossentropy(from_logits=True))
    assert isinstance(m, metrics.BinaryAccuracy) and m.threshold == 0.0
    m = metrics.get("acc", loss_name="binary_crossentropy", from_logits=True)
    assert m.threshold == 0.0 and m.name == "acc"
    m = metrics.get("acc", loss_name="categorical_crossentropy")
    assert isinstance(m, metrics.CategoricalAccuracy) and m.name == "acc"
    m = metrics.get("accuracy", loss_name=losses.SparseCategoricalCrossentropy(True))
    assert isinstance(m, metrics.SparseCategoricalAccuracy) and m.name == "accuracy"
    m = metrics.get("accuracy", loss_name=losses.sparse_categorical_crossentropy)
    assert isinstance(m, metrics.SparseCategoricalAccuracy)
    # multi-label binary cross-entropy still means binary accuracy (element-wise)
    m = metrics.get("accuracy", loss_name="binary_crossentropy")
    m.update([[1, 0, 1], [0, 0, 1]], [[0.9, 0.2, 0.4], [0.1, 0.7, 0.8]])
    assert m.result() == pytest.approx((2 / 3 + 2 / 3) / 2)


def test_accuracy_without_a_crossentropy_uses_keras3_shape_rule():
    m = metrics.get("accuracy", loss_name="mse")
    m.update([[1.0], [0.0]], [[0.8], [0.7]])           # y_pred last axis 1: binary
    assert isinstance(m.resolved, metrics.BinaryAccuracy) and m.result() == 0.5
    m = metrics.get("accuracy")
    m.update([2, 0], [[0.1, 0.2, 0.7], [0.5, 0.4, 0.1]])  # fewer axes: sparse
    assert isinstance(m.resolved, metrics.SparseCategoricalAccuracy) and m.result() == 1.0
    m = metrics.get("accuracy")
    m.update([[2], [1]], [[0.1, 0.2, 0.7], [0.5, 0.4, 0.1]])  # last axis 1 vs 3: sparse
    assert isinstance(m.resolved, metrics.SparseCategoricalAccuracy) and m.result() == 0.5
    m = metrics.get("accuracy", loss_name="mae")
    m.update([[0, 1, 0], [1, 0, 0]], [[0.1, 0.2, 0.7], [0.5, 0.4, 0.1]])  # categorical
    assert isinstance(m.resolved, metrics.CategoricalAccuracy) and m.result() == 0.5
    m.reset()
    assert m.result() == 0.0 and isinstance(m.resolved, metrics.CategoricalAccuracy)


def test_binary_accuracy_by_hand():
    m = metrics.BinaryAccuracy()
    y_true = np.array([1, 1, 0, 0])
    y_pred = np.array([[0.3], [0.6], [0.5], [0.9]])      # 0.5 is not above 0.5
    m.update(y_true, y_pred)                            # matches 0, 1, 1, 0
    assert m.result() == 0.5
    logits = metrics.BinaryAccuracy(from_logits=True)
    logits.update(y_true[:, None], np.array([[-1.0], [2.0], [0.0], [-3.0]]))
    assert logits.result() == 0.75
    custom = metrics.BinaryAccuracy(threshold=0.8)
    custom.update(y_true, y_pred)                        # predicted 0, 0, 0, 1
    assert custom.result() == 0.25


def test_categorical_and_sparse_accuracy_by_hand():
    y_pred = np.array([[0.1, 0.6, 0.3], [0.8, 0.1, 0.1], [0.2, 0.2, 0.6], [0.3, 0.3, 0.4]])
    k = np.array([1, 2, 2, 0])                           # right, wrong, right, wrong
    m = metrics.CategoricalAccuracy()
    m.update(np.eye(3)[k], y_pred)
    assert m.result() == 0.5
    for form in (k, k[:, None], k.astype(float)):
        s = metrics.SparseCategoricalAccuracy()
        s.update(form, y_pred)
        assert s.result() == 0.5


def test_running_weighted_mean_over_batches():
    m = metrics.SparseCategoricalAccuracy()
    y_pred = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    m.update([0, 0, 0], y_pred, sample_weight=[1.0, 3.0, 0.0])   # 1 right of weight 4
    assert m.result() == pytest.approx(0.25)
    m.update([1, 1], y_pred[:2])                                   # 1 right of 2
    assert m.result() == pytest.approx((1 + 1) / (4 + 2))
    assert (m.total, m.count) == (2.0, 6.0)
    m.reset()
    assert m.result() == 0.0 and m.count == 0


def test_sequences_count_every_step():
    y_pred = np.array([[[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]],
                       [[0.4, 0.6], [0.4, 0.6], [0.1, 0.9]]])    # arg-max 0 1 0 / 1 1 1
    k = np.array([[0, 0, 0], [1, 1, 0]])                         # right: 1 0 1 / 1 1 0
    m = metrics.get("sparse_categorical_accuracy")
    m.update(k, y_pred)
    assert m.result() == pytest.approx(4 / 6)
    step_weights = np.array([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    m.reset()
    m.update(k, y_pred, sample_weight=step_weights)              # right: 1 0 - / 1 - -
    assert m.result() == pytest.approx(2 / 3)
    m.reset()
    m.update(k, y_pred, sample_weight=[3.0, 1.0])                # per sample over its steps
    assert m.result() == pytest.approx((3 * 2 + 1 * 2) / (3 * 3 + 1 * 3))
    c = metrics.CategoricalAccuracy()
    c.update(np.eye(2)[k], y_pred)
    assert c.result() == pytest.approx(4 / 6)
    b = metrics.BinaryAccuracy()
    b.update(k, y_pred[..., 1:])                                 # (B, T) targets, (B, T, 1)
    assert b.result() == pytest.approx(np.mean((y_pred[..., 1] > 0.5) == k))


def test_mse_and_mae_by_hand():
    y_true = np.array([[1.0, 2.0], [0.0, -1.0]])
    y_pred = np.array([[1.5, 1.0], [0.0, 1.0]])
    for name in ("mse", "mean_squared_error"):
        m = metrics.get(name)
        assert isinstance(m, metrics.MeanSquaredError) and m.name == name
        m.update(y_true, y_pred)
        assert m.result() == pytest.approx(((0.25 + 1) / 2 + (0 + 4) / 2) / 2)
        m.update(y_true, y_true, sample_weight=[2.0, 0.0])     # zero error, weight 2
        assert m.result() == pytest.approx(((0.25 + 1) / 2 + 2) / 4)
    for name in ("mae", "mean_absolute_error"):
        m = metrics.get(name)
        m.update(y_true, y_pred, sample_weight=[1.0, 3.0])
        assert m.result() == pytest.approx((1 * 0.75 + 3 * 1.0) / 4)


def test_mean_metric_and_lookup():
    m = metrics.Mean(name="loss")
    m.update(2.0)
    m.update(np.array([1.0, 3.0]), sample_weight=[1.0, 2.0])
    assert m.result() == pytest.approx((2 + 1 + 6) / 4) and m.name == "loss"
    assert metrics.get(m) is m
    for name, cls in [("binary_accuracy", metrics.BinaryAccuracy),
                      ("categorical_accuracy", metrics.CategoricalAccuracy),
                      ("sparse_categorical_accuracy", metrics.SparseCategoricalAccuracy),
                      ("MAE", metrics.MeanAbsoluteError)]:
        assert type(metrics.get(name)) is cls
    with pytest.raises(ValueError, match=r"expected a metric name, one of .*'accuracy'.*"
                                         r"got 'auc'"):
        metrics.get("auc")
    with pytest.raises(ValueError, match="expected"):
        metrics.get(None)


def test_bad_shapes_raise_value_error():
    with pytest.raises(ValueError, match=r"expected y_true of shape \(2, 3\).*got \(2, 2\)"):
        metrics.get("mse").update(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"expected y_true \(one-hot\) of shape"):
        metrics.CategoricalAccuracy().update([0, 1], np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"expected y_true \(class indices\) of shape"):
        metrics.SparseCategoricalAccuracy().update(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="rank >= 2"):
        metrics.BinaryAccuracy().update([1, 0], [0.3, 0.6])
    with pytest.raises(ValueError, match="sample_weight"):
        metrics.BinaryAccuracy().update([1, 0], [[0.3], [0.6]], sample_weight=[1, 2, 3])
