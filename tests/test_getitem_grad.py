"""ops.getitem's backward: basic indexing (slices, ints, Ellipsis, None: each element at
most once, as Bidirectional's time reversal) writes the gradient into place; advanced
indexing (arrays, which may repeat an index) adds repeated ones up. Both equal the
gradient NumPy's np.add.at gives, for every kind of key."""
import numpy as np
import pytest

import crnn
from crnn import ops

KEYS = [
    (slice(None), slice(None, None, -1)),       # Bidirectional's reversal of time
    (Ellipsis, 1),
    (0, slice(1, 3), None),
    np.int64(1),
    (np.array([0, 1, 1]),),                     # a repeated row: its gradients add up
    (slice(None), np.array([2, 0, 2, 2])),
    np.array([[True, False, True], [False, True, True]]),
]


@pytest.mark.parametrize("key", KEYS, ids=range(len(KEYS)))
def test_getitem_gradient(key):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4))
    out_shape = x[key].shape
    g = rng.standard_normal(out_shape)
    with crnn.GradientTape() as tape:
        t = tape.watch(x)
        y = ops.getitem(t, key)
    (dx,) = tape.gradient(y, [t], output_gradient=g)
    expected = np.zeros_like(x)
    np.add.at(expected, key, g)
    np.testing.assert_array_equal(dx, expected)
