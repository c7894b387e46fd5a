"""crnn: recurrent neural networks on the CPU.

Cython kernels over BLAS run the time loop and backpropagation through time; every kernel
has a NumPy twin in :mod:`crnn.reference` that defines what it computes.
"""
from crnn import ops, reference
from crnn.backend import get_backend, set_backend
from crnn.engine import GradientTape, Tensor
from crnn.layers import (GRU, LSTM, Dense, GRUCell, Layer, LSTMCell, SimpleRNN,
                         SimpleRNNCell)
from crnn.models import Input, Model, Sequential

__version__ = "0.1.0"

__all__ = ["Dense", "GRU", "GRUCell", "GradientTape", "Input", "LSTM", "LSTMCell", "Layer",
           "Model", "Sequential", "SimpleRNN", "SimpleRNNCell", "Tensor", "get_backend",
           "ops", "reference", "set_backend"]
