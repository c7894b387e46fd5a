"""Embedding's backward kernel (crnn._embedding) against its NumPy twin
(crnn.reference.embedding, np.add.at): equal bit for bit, in both dtypes, with repeated
ids; bad input raises before the compiled loop."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import crnn
from crnn import _embedding
from crnn.reference import embedding as reference


@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.integers(0, 6), min_size=1, max_size=3),
       V=st.integers(1, 9), E=st.integers(1, 17), seed=st.integers(0, 2**16),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_equals_reference_bit_for_bit(shape, V, E, seed, dtype):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, V, size=shape)           # few rows: ids repeat
    dy = rng.standard_normal(tuple(shape) + (E,)).astype(dtype)
    fast = _embedding.embedding_backward(ids, dy, V)
    slow = reference.embedding_backward(ids, dy, V)
    assert fast.dtype == dtype and fast.shape == (V, E)
    np.testing.assert_array_equal(fast, slow)


def test_non_contiguous_and_narrow_integer_inputs():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 5, size=(6, 8)).astype(np.int32)[:, ::2]
    dy = rng.standard_normal((6, 8, 3))[:, ::2]
    np.testing.assert_array_equal(_embedding.embedding_backward(ids, dy, 5),
                                  reference.embedding_backward(ids, dy, 5))


@pytest.mark.parametrize("ids, dy, V, message", [
    (np.array([[0, 5]]), np.ones((1, 2, 3)), 5, r"expected ids in \[0, 5\), got ids from 0 to 5"),
    (np.array([[-1, 0]]), np.ones((1, 2, 3)), 5, r"got ids from -1 to 0"),
    (np.array([[0.0, 1.0]]), np.ones((1, 2, 3)), 5, "expected integer ids, got dtype float64"),
    (np.array([[0, 1]]), np.ones((1, 2, 3), dtype=np.int64), 5, "expected dy float32 or"),
    (np.array([[0, 1]]), np.ones((1, 3, 3)), 5, r"expected dy of shape ids.shape \+ \(E,\)"),
    (np.array([[0, 1]]), np.ones((1, 2)), 5, r"expected dy of shape ids.shape \+ \(E,\)"),
    (np.array([[0, 1]]), np.ones((1, 2, 3)), 0, "expected input_dim >= 1, got 0"),
])
def test_bad_input_raises(ids, dy, V, message):
    with pytest.raises(ValueError, match=message):
        _embedding.embedding_backward(ids, dy, V)


def test_embedding_layer_uses_the_selected_backend():
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 7, size=(4, 9))
    dy = rng.standard_normal((4, 9, 5)).astype(np.float32)
    grads = []
    for name in ("cython", "reference"):
        crnn.set_backend(name)
        try:
            layer = crnn.Embedding(7, 5)
            layer(ids)
            layer.backward(dy)
            grads.append(layer.grads["embeddings"])
        finally:
            crnn.set_backend("cython")
    np.testing.assert_array_equal(grads[0], grads[1])
    np.testing.assert_array_equal(grads[0], reference.embedding_backward(ids, dy, 7))
