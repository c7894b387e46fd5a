"""Models in and out of crnn: PyTorch's recurrent modules (:mod:`crnn.interop.pytorch`).

``crnn.interop.from_torch(module)`` and ``crnn.interop.to_torch(layer_or_model)``; torch
is imported only when they are called.
"""
from crnn.interop.pytorch import from_torch, to_torch

__all__ = ["from_torch", "to_torch"]
