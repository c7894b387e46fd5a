"""crnn.losses: values against direct NumPy formulas, gradients against central finite
differences (float64), extreme logits, sample weights per sample and per step, sequence
shapes, argument checks, the loss objects, and PyTorch as referee for values and gradients.
"""
import numpy as np
import pytest

from conftest import assert_close, numeric_grad, require_torch
from crnn import losses

EPS = 1e-7
SHAPES = [(1, 2), (4, 3), (2, 5, 3)]
# (function, options, kind of data)
CASES = [
    (losses.mean_squared_error, {}, "real"),
    (losses.mean_absolute_error, {}, "real"),
    (losses.binary_crossentropy, {}, "prob"),
    (losses.binary_crossentropy, {"from_logits": True}, "logit"),
    (losses.categorical_crossentropy, {}, "dist"),
    (losses.categorical_crossentropy, {"from_logits": True}, "dist_logit"),
    (losses.sparse_categorical_crossentropy, {}, "sparse"),
    (losses.sparse_categorical_crossentropy, {"from_logits": True}, "sparse_logit"),
]
CASE_IDS = [f"{fn.__name__}{'-logits' if o else ''}" for fn, o, _ in CASES]


# -- direct formulas (float64), written independently of crnn.losses ------------------------
def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def per_value(fn, opts, y, p):
    """One loss value per sample (and step): the Keras formulas, written plainly."""
    logits = opts.get("from_logits", False)
    if fn is losses.mean_squared_error:
        return ((p - y) ** 2).mean(-1)
    if fn is losses.mean_absolute_error:
        return np.abs(p - y).mean(-1)
    if fn is losses.binary_crossentropy:
        s = sigmoid(p) if logits else np.clip(p, EPS, 1 - EPS)
        return -(y * np.log(s) + (1 - y) * np.log(1 - s)).mean(-1)
    if fn is losses.sparse_categorical_crossentropy:
        y = np.eye(p.shape[-1])[y]
    if logits:
        log_p = np.log(np.exp(p) / np.exp(p).sum(-1, keepdims=True))
    else:
        log_p = np.log(np.clip(p / p.sum(-1, keepdims=True), EPS, 1 - EPS))
    return -(y * log_p).sum(-1)


def reference(fn, opts, y, p, w=None):
    """sum(w * l) / (number of values), Keras's "sum_over_batch_size"."""
    values = per_value(fn, opts, y, p)
    if w is not None:
        w = np.asarray(w, dtype=np.float64)
        if w.ndim == values.ndim - 1:
            w = w[..., None]
        values = values * w
    return values.sum() / values.size


def make(kind, shape, rng):
    """(y_true, y_pred) for a loss, away from kinks and clips so finite differences hold."""
    C = shape[-1]
    if kind == "real":
        y = rng.standard_normal(shape)
        return y, y + rng.choice([-1, 1], shape) * rng.uniform(0.1, 1.0, shape)
    if kind == "prob":
        return rng.uniform(0, 1, shape), rng.uniform(0.05, 0.95, shape)
    if kind == "logit":
        return rng.uniform(0, 1, shape), 3 * rng.standard_normal(shape)
    if kind in ("dist", "dist_logit"):
        y = rng.uniform(0, 1, shape)
        y /= y.sum(-1, keepdims=True)
        # probabilities that do not sum to one: Keras rescales them, the gradient must too
        p = rng.uniform(0.2, 1.0, shape) if kind == "dist" else 2 * rng.standard_normal(shape)
        return y, p
    k = rng.integers(0, C, shape[:-1])
    p = rng.uniform(0.2, 1.0, shape) if kind == "sparse" else 2 * rng.standard_normal(shape)
    return k, p


def weights(which, shape, rng):
    if which is None:
        return None
    if which == "sample":
        return rng.uniform(0.1, 2.0, shape[:1])
    return rng.uniform(0.1, 2.0, shape[:-1])  # per step (per value)


def weight_cases(shape):
    return [None, "sample"] + (["step"] if len(shape) == 3 else [])


# -- values and gradients -------------------------------------------------------------------
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("fn, opts, kind", CASES, ids=CASE_IDS)
def test_value_matches_formula(fn, opts, kind, shape):
    rng = np.random.default_rng(len(shape) * 10 + shape[-1])
    y, p = make(kind, shape, rng)
    for which in weight_cases(shape):
        w = weights(which, shape, rng)
        loss, grad = fn(y, p, sample_weight=w, **opts)
        assert loss.shape == () and loss.dtype == np.float64
        assert grad.shape == p.shape and grad.dtype == np.float64
        assert_close(loss, reference(fn, opts, y, p, w), np.float64, err_msg=str(which))


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("fn, opts, kind", CASES, ids=CASE_IDS)
def test_gradient_matches_finite_differences(fn, opts, kind, shape):
    rng = np.random.default_rng(len(shape) * 10 + shape[-1] + 1)
    y, p = make(kind, shape, rng)
    for which in weight_cases(shape):
        w = weights(which, shape, rng)
        _, grad = fn(y, p, sample_weight=w, **opts)
        q = p.copy()
        fd = numeric_grad(lambda: float(fn(y, q, sample_weight=w, **opts)[0]), q)
        np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8, err_msg=str(which))


@pytest.mark.parametrize("fn, opts, kind", CASES, ids=CASE_IDS)
def test_float32_stays_float32_and_matches_float64(fn, opts, kind):
    rng = np.random.default_rng(7)
    y, p = make(kind, (3, 4, 5), rng)
    w = weights("step", (3, 4, 5), rng)
    loss64, grad64 = fn(y, p, sample_weight=w, **opts)
    loss32, grad32 = fn(y, p.astype(np.float32), sample_weight=w, **opts)
    assert loss32.dtype == np.float32 and grad32.dtype == np.float32
    assert_close(loss32, loss64, np.float32, scale=10)
    assert_close(grad32, grad64, np.float32, scale=10)


def test_sample_weight_forms_are_equivalent():
    """(B,) per sample = (B, 1) = (B, T) with the weight repeated; a scalar scales; the
    divisor is the number of values, not the sum of the weights."""
    rng = np.random.default_rng(3)
    y, p = make("real", (4, 6, 2), rng)
    w = rng.uniform(0.1, 2.0, 4)
    ref = losses.mean_squared_error(y, p, sample_weight=np.repeat(w[:, None], 6, axis=1))
    for form in (w, w[:, None], w.tolist()):
        loss, grad = losses.mean_squared_error(y, p, sample_weight=form)
        assert_close(loss, ref[0], np.float64)
        assert_close(grad, ref[1], np.float64)
    plain = losses.mean_squared_error(y, p)
    loss, grad = losses.mean_squared_error(y, p, sample_weight=2.5)
    assert_close(loss, 2.5 * plain[0], np.float64)
    assert_close(grad, 2.5 * plain[1], np.float64)
    # all weight on one sample: the loss is that sample's loss divided by B*T, not by 6
    one = np.zeros(4)
    one[1] = 1.0
    values = ((p - y) ** 2).mean(-1)
    assert_close(losses.mean_squared_error(y, p, sample_weight=one)[0],
                 values[1].sum() / values.size, np.float64)


def test_per_step_weights_of_zero_mask_steps():
    rng = np.random.default_rng(4)
    k, z = make("sparse_logit", (3, 5, 4), rng)
    mask = (rng.random((3, 5)) > 0.4).astype(float)
    loss, grad = losses.sparse_categorical_crossentropy(k, z, sample_weight=mask,
                                                        from_logits=True)
    assert np.all(grad[mask == 0] == 0)
    assert_close(loss, reference(losses.sparse_categorical_crossentropy,
                                 {"from_logits": True}, k, z, mask), np.float64)


def test_targets_with_or_without_trailing_axis_of_one():
    rng = np.random.default_rng(5)
    y, p = make("prob", (6, 1), rng)
    for fn in (losses.mean_squared_error, losses.mean_absolute_error,
               losses.binary_crossentropy):
        a = fn(y, p)
        b = fn(y[:, 0], p)
        assert_close(b[0], a[0], np.float64)
        assert b[1].shape == (6, 1)
        assert_close(b[1], a[1], np.float64)
    # y_true with one more trailing axis of 1 is squeezed (Keras's same-rank rule)
    y, p = make("real", (4, 3), rng)
    assert_close(losses.mean_squared_error(y[..., None], p)[0],
                 losses.mean_squared_error(y, p)[0], np.float64)
    # sparse targets (B, T) and (B, T, 1); whole-number floats are class indices too
    k, z = make("sparse_logit", (2, 5, 4), rng)
    a = losses.sparse_categorical_crossentropy(k, z, from_logits=True)
    for form in (k[..., None], k.astype(np.float32), k.astype(np.int8)):
        b = losses.sparse_categorical_crossentropy(form, z, from_logits=True)
        assert_close(b[0], a[0], np.float64)
        assert_close(b[1], a[1], np.float64)


def test_sparse_equals_categorical_with_one_hot():
    rng = np.random.default_rng(6)
    for logits in (False, True):
        k, p = make("sparse_logit" if logits else "sparse", (3, 4, 5), rng)
        one_hot = np.eye(5)[k]
        a = losses.sparse_categorical_crossentropy(k, p, from_logits=logits)
        b = losses.categorical_crossentropy(one_hot, p, from_logits=logits)
        assert_close(a[0], b[0], np.float64)
        assert_close(a[1], b[1], np.float64)


def test_probability_clip_gives_finite_values_and_zero_gradient():
    for dtype in (np.float32, np.float64):
        y = np.array([[1.0, 0.0, 1.0, 0.0]])
        p = np.array([[0.0, 1.0, 1.0, 0.0]], dtype=dtype)
        loss, grad = losses.binary_crossentropy(y, p)
        # wrong answers cost -log(eps) and -log(1 - (1 - eps)), right ones about 0, with
        # 1 - eps rounded to the dtype as Keras rounds it (float32: 1 - 1.19e-7)
        lo, hi = dtype(EPS), dtype(1 - EPS)
        expected = -(np.log(lo) + np.log(1 - hi) + np.log(hi) + np.log(1 - lo)) / 4
        assert np.isfinite(loss) and np.isclose(loss, expected, rtol=1e-6)
        assert np.all(grad == 0) and grad.dtype == dtype
        # categorical: a zero probability for the target class is clipped to eps
        y = np.array([[0.0, 1.0, 0.0]])
        p = np.array([[0.5, 0.0, 0.5]], dtype=dtype)
        loss, grad = losses.categorical_crossentropy(y, p)
        assert np.isclose(loss, -np.log(EPS), rtol=1e-5)
        assert np.all(np.isfinite(grad))
        loss, grad = losses.sparse_categorical_crossentropy([1], p)
        assert np.isclose(loss, -np.log(EPS), rtol=1e-5)
        assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("big", [1e4, 1e30])
def test_extreme_logits(dtype, big):
    L = dtype(big)
    # binary: rows (target 1, target 0) x columns (logit +L, -L)
    y = np.array([[1.0, 1.0], [0.0, 0.0]])
    z = np.array([[L, -L], [L, -L]], dtype=dtype)
    loss, grad = losses.binary_crossentropy(y, z, from_logits=True)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    # right answers cost 0, wrong ones cost L; mean over 2 columns then 2 rows
    assert np.isclose(loss, big / 2, rtol=1e-6)
    np.testing.assert_allclose(grad, [[0.0, -0.25], [0.25, 0.0]], atol=1e-7)
    # a half target: the loss grows like L/2 either way
    loss, grad = losses.binary_crossentropy([[0.5, 0.5]], z[:1], from_logits=True)
    assert np.isclose(loss, big / 2, rtol=1e-6)
    np.testing.assert_allclose(grad, [[0.25, -0.25]], atol=1e-7)

    # categorical: right, wrong, and a tie between two dominant logits (log 2 exactly)
    z = np.array([[L, -L, -L], [-L, L, -L], [L, L, -L]], dtype=dtype)
    y = np.array([[1.0, 0, 0], [1.0, 0, 0], [1.0, 0, 0]])
    for fn, target in ((losses.categorical_crossentropy, y),
                       (losses.sparse_categorical_crossentropy, [0, 0, 0])):
        loss, grad = fn(target, z, from_logits=True)
        assert loss.dtype == dtype and grad.dtype == dtype
        assert np.isfinite(loss) and np.all(np.isfinite(grad))
        assert np.isclose(loss, (0 + 2 * big + np.log(2)) / 3, rtol=1e-6)
        np.testing.assert_allclose(grad, np.array([[0, 0, 0], [-1, 1, 0], [-0.5, 0.5, 0]]) / 3,
                                   atol=1e-7)


def test_empty_batch_is_zero():
    loss, grad = losses.mean_squared_error(np.zeros((0, 3)), np.zeros((0, 3)))
    assert loss == 0 and grad.shape == (0, 3)
    loss, grad = losses.sparse_categorical_crossentropy(np.zeros(0, int), np.zeros((0, 3)),
                                                        from_logits=True)
    assert loss == 0 and grad.shape == (0, 3)


# -- argument checks ------------------------------------------------------------------------
@pytest.mark.parametrize("call, match", [
    (lambda: losses.mean_squared_error(np.zeros(3), np.zeros(3)), r"rank >= 2.*got shape \(3,\)"),
    (lambda: losses.mean_squared_error(np.zeros((2, 3)), np.zeros((2, 3), int)), "dtype"),
    (lambda: losses.mean_squared_error(np.zeros((2, 4)), np.zeros((2, 3))),
     r"expected y_true of shape \(2, 3\).*got \(2, 4\)"),
    (lambda: losses.binary_crossentropy(np.zeros(2), np.zeros((2, 3))), "y_true of shape"),
    (lambda: losses.categorical_crossentropy(np.zeros((2, 3, 1)), np.zeros((2, 3, 2))),
     "y_true of shape"),
    (lambda: losses.mean_squared_error(np.array([["a"]]), np.zeros((1, 1))), "numbers"),
    (lambda: losses.sparse_categorical_crossentropy([0, 3], np.ones((2, 3))),
     r"in \[0, 3\).*got 3"),
    (lambda: losses.sparse_categorical_crossentropy([0, -1], np.ones((2, 3))), "got -1"),
    (lambda: losses.sparse_categorical_crossentropy([0, 1.5], np.ones((2, 3))),
     "integer class indices, got 1.5"),
    (lambda: losses.sparse_categorical_crossentropy([0, np.nan], np.ones((2, 3))), "integer"),
    (lambda: losses.sparse_categorical_crossentropy([True, False], np.ones((2, 3))), "bool"),
    (lambda: losses.sparse_categorical_crossentropy(np.zeros((2, 3)), np.ones((2, 3))),
     r"of shape \(2,\) or \(2, 1\)"),
    (lambda: losses.mean_squared_error(np.zeros((2, 3)), np.zeros((2, 3)), np.ones(3)),
     r"sample_weight broadcastable to \(2,\).*got \(3,\)"),
    (lambda: losses.mean_squared_error(np.zeros((2, 4, 3)), np.zeros((2, 4, 3)),
                                       np.ones((2, 5))), r"got \(2, 5\)"),
    (lambda: losses.mean_squared_error(np.zeros((2, 4, 3)), np.zeros((2, 4, 3)),
                                       np.ones((2, 4, 3))), r"got \(2, 4, 3\)"),
    (lambda: losses.binary_crossentropy(np.zeros((2, 3)), np.zeros((2, 3)), from_logits="no"),
     "from_logits"),
])
def test_bad_arguments_raise_value_error(call, match):
    with pytest.raises(ValueError, match="expected") as info:
        call()
    assert info.match(match)


# -- loss objects, lookup, serialisation ----------------------------------------------------
OBJECTS = [losses.MeanSquaredError(), losses.MeanAbsoluteError(),
           losses.BinaryCrossentropy(), losses.BinaryCrossentropy(from_logits=True),
           losses.CategoricalCrossentropy(from_logits=True),
           losses.SparseCategoricalCrossentropy(), losses.SparseCategoricalCrossentropy(True)]


@pytest.mark.parametrize("obj", OBJECTS, ids=repr)
def test_object_calls_its_function(obj):
    rng = np.random.default_rng(8)
    fn = type(obj).fn
    opts = {k: v for k, v in obj.get_config().items() if k != "name"}
    kind = {losses.mean_squared_error: "real", losses.mean_absolute_error: "real",
            losses.binary_crossentropy: "prob", losses.categorical_crossentropy: "dist",
            losses.sparse_categorical_crossentropy: "sparse"}[fn]
    y, p = make(kind, (3, 2, 4), rng)
    w = rng.uniform(size=3)
    a, b = obj(y, p, w), fn(y, p, sample_weight=w, **opts)
    assert a[0] == b[0] and np.array_equal(a[1], b[1])


@pytest.mark.parametrize("obj", OBJECTS, ids=repr)
def test_config_and_serialisation_round_trip(obj):
    again = type(obj)(**obj.get_config())
    assert again == obj and again.name == obj.name
    data = losses.serialize(obj)
    assert data["class_name"] == type(obj).__name__
    assert losses.deserialize(data) == obj
    assert losses.get(data) == obj


def test_names_and_get():
    expected = {"mse": losses.MeanSquaredError, "mean_squared_error": losses.MeanSquaredError,
                "mae": losses.MeanAbsoluteError,
                "mean_absolute_error": losses.MeanAbsoluteError,
                "binary_crossentropy": losses.BinaryCrossentropy,
                "categorical_crossentropy": losses.CategoricalCrossentropy,
                "sparse_categorical_crossentropy": losses.SparseCategoricalCrossentropy,
                "BinaryCrossentropy": losses.BinaryCrossentropy}
    for name, cls in expected.items():
        assert type(losses.get(name)) is cls
    assert losses.get("mse").name == "mean_squared_error"
    assert losses.BinaryCrossentropy(from_logits=True).get_config() == {
        "name": "binary_crossentropy", "from_logits": True}
    assert losses.MeanSquaredError(name="my_loss").name == "my_loss"
    obj = losses.CategoricalCrossentropy(from_logits=True)
    assert losses.get(obj) is obj

    def custom(y_true, y_pred, sample_weight=None):
        return np.float64(0.0), np.zeros_like(y_pred)
    assert losses.get(custom) is custom
    assert losses.get(losses.mean_absolute_error) is losses.mean_absolute_error
    assert losses.serialize(losses.mean_absolute_error)["class_name"] == "MeanAbsoluteError"
    assert losses.serialize("mse")["class_name"] == "MeanSquaredError"
    with pytest.raises(ValueError, match="expected a loss name, one of .*'mse'.*got 'hinge'"):
        losses.get("hinge")
    with pytest.raises(ValueError, match="expected"):
        losses.get(3)
    with pytest.raises(ValueError, match="expected one of crnn's losses"):
        losses.serialize(custom)
    with pytest.raises(ValueError, match="class_name"):
        losses.deserialize({"class_name": "Hinge", "config": {}})
    with pytest.raises(ValueError, match="from_logits"):
        losses.BinaryCrossentropy(from_logits=1)


def test_repr_shows_only_non_defaults():
    assert repr(losses.MeanSquaredError()) == "MeanSquaredError()"
    assert repr(losses.BinaryCrossentropy(from_logits=True)) == \
        "BinaryCrossentropy(from_logits=True)"
    assert repr(losses.MeanAbsoluteError(name="l1")) == "MeanAbsoluteError(name='l1')"


# -- PyTorch as referee ---------------------------------------------------------------------
def torch_value_and_grad(torch, f, p):
    x = torch.tensor(p, requires_grad=True)
    value = f(x)
    value.backward()
    return value.detach().numpy(), x.grad.numpy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(4, 3), (2, 5, 3)], ids=str)
@pytest.mark.parametrize("weighted", [False, True])
def test_against_torch(dtype, shape, weighted):
    torch = require_torch()
    F = torch.nn.functional
    rng = np.random.default_rng(11)
    B, C = shape[0], shape[-1]
    w = rng.uniform(0.1, 2.0, B) if weighted else None

    def reduce(per_element, mean_last=True):
        """crnn's reduction written in torch: per value over C, weighted, / number of values."""
        v = per_element.mean(-1) if mean_last else per_element
        if w is not None:
            tw = torch.tensor(w, dtype=v.dtype).reshape((B,) + (1,) * (v.ndim - 1))
            return (v * tw).sum() / v.numel()
        return v.mean()

    def check(ours, theirs):
        assert_close(ours[0], theirs[0], dtype, scale=10)
        assert_close(ours[1], theirs[1], dtype, scale=10)

    y, p = make("real", shape, rng)
    p = p.astype(dtype)
    ty = torch.tensor(y.astype(dtype))
    if not weighted:  # torch's own means over every element are crnn's reduction
        check(losses.mean_squared_error(y, p),
              torch_value_and_grad(torch, lambda x: F.mse_loss(x, ty), p))
        check(losses.mean_absolute_error(y, p),
              torch_value_and_grad(torch, lambda x: F.l1_loss(x, ty), p))
    check(losses.mean_squared_error(y, p, w), torch_value_and_grad(
        torch, lambda x: reduce(F.mse_loss(x, ty, reduction="none")), p))
    check(losses.mean_absolute_error(y, p, w), torch_value_and_grad(
        torch, lambda x: reduce(F.l1_loss(x, ty, reduction="none")), p))

    y, p = make("prob", shape, rng)  # away from the clip, where torch's clamp differs
    p = p.astype(dtype)
    ty = torch.tensor(y.astype(dtype))
    check(losses.binary_crossentropy(y, p, w), torch_value_and_grad(
        torch, lambda x: reduce(F.binary_cross_entropy(x, ty, reduction="none")), p))

    y, z = make("logit", shape, rng)
    z = np.concatenate([z, np.full(shape[:-1] + (2,), 1e4), np.full(shape[:-1] + (2,), -1e4)],
                       axis=-1).astype(dtype)          # with extreme logits, both stable
    y = np.concatenate([y, np.ones(shape[:-1] + (4,))], axis=-1)
    ty = torch.tensor(y.astype(dtype))
    check(losses.binary_crossentropy(y, z, w, from_logits=True), torch_value_and_grad(
        torch, lambda x: reduce(F.binary_cross_entropy_with_logits(x, ty, reduction="none")), z))

    # softmax cross-entropy: torch's cross_entropy takes (N, C); soft targets for categorical
    y, z = make("dist_logit", shape, rng)
    z[..., 0] = 1e4  # a dominant logit, wrong for most targets
    z = z.astype(dtype)
    ty = torch.tensor(y.astype(dtype))
    check(losses.categorical_crossentropy(y, z, w, from_logits=True), torch_value_and_grad(
        torch, lambda x: reduce(F.cross_entropy(x.reshape(-1, C), ty.reshape(-1, C),
                                                reduction="none").reshape(shape[:-1]),
                                mean_last=False), z))
    k, z = make("sparse_logit", shape, rng)
    z = z.astype(dtype)
    tk = torch.tensor(k.reshape(-1))
    check(losses.sparse_categorical_crossentropy(k, z, w, from_logits=True),
          torch_value_and_grad(torch, lambda x: reduce(
              F.cross_entropy(x.reshape(-1, C), tk, reduction="none").reshape(shape[:-1]),
              mean_last=False), z))

    # probabilities: Keras rescales each row to sum to one before the log; torch's autograd
    # differentiates that same formula, and nll_loss of log(p / sum p) gives the same value
    for sparse in (False, True):
        y, p = make("sparse" if sparse else "dist", shape, rng)
        p = p.astype(dtype)
        target = np.eye(C)[y] if sparse else y
        ty = torch.tensor(target.astype(dtype))

        def keras_formula(x):
            q = torch.clamp(x / x.sum(-1, keepdim=True), EPS, 1 - EPS)
            return reduce(-(ty * torch.log(q)).sum(-1), mean_last=False)
        fn = losses.sparse_categorical_crossentropy if sparse else losses.categorical_crossentropy
        ours = fn(y, p, w)
        check(ours, torch_value_and_grad(torch, keras_formula, p))
        if sparse and not weighted:
            tp = torch.tensor(p)
            nll = F.nll_loss(torch.log(tp / tp.sum(-1, keepdim=True)).reshape(-1, C),
                             torch.tensor(y.reshape(-1)))
            assert_close(ours[0], nll.numpy(), dtype, scale=10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_logits_against_torch(dtype):
    torch = require_torch()
    F = torch.nn.functional
    z = np.array([[1e30, -1e30, 0.0], [-1e30, 1e30, 1e30], [1e4, -1e4, 1e4]], dtype=dtype)
    y = np.array([[1.0, 0.0, 0.5], [1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    ty = torch.tensor(y.astype(dtype))
    ours = losses.binary_crossentropy(y, z, from_logits=True)
    theirs = torch_value_and_grad(torch, lambda x: F.binary_cross_entropy_with_logits(x, ty), z)
    assert_close(ours[0], theirs[0], dtype)
    assert_close(ours[1], theirs[1], dtype)
    k = np.array([0, 0, 1])
    ours = losses.sparse_categorical_crossentropy(k, z, from_logits=True)
    theirs = torch_value_and_grad(torch, lambda x: F.cross_entropy(x, torch.tensor(k)), z)
    assert np.isfinite(ours[0]) and np.all(np.isfinite(ours[1]))
    assert_close(ours[0], theirs[0], dtype)
    assert_close(ours[1], theirs[1], dtype)
