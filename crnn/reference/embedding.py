"""Embedding's backward pass in NumPy: the specification of ``crnn._embedding``.

Notation: ``N`` looked-up positions (every id of the batch, flattened), ``V`` rows of the
table (``input_dim``), ``E`` its width (``output_dim``). Forward, ``y[i] = W[ids[i]]``.
"""
import numpy as np


def embedding_backward(ids, dy, input_dim):
    """``dW (V, E)``: the gradient ``dy`` (shape ``ids.shape + (E,)``) of each looked-up
    row added into the row it came from; repeated ids add up, in the order of ``ids``."""
    ids = np.asarray(ids).reshape(-1)
    dy = np.asarray(dy)
    dy = dy.reshape(-1, dy.shape[-1])
    dW = np.zeros((int(input_dim), dy.shape[-1]), dtype=dy.dtype)   # 1b. dW = 0
    np.add.at(dW, ids, dy)                                         # 1b. dW[ids[i]] += dy[i]
    return dW
